// Scopes, roles and audit over the real TLS server (docs/security.md, "Scopes and roles";
// docs/protocol.md, "Scopes"): the scope matrix (every message type, every actor, records
// of every collection in two units: nothing leaks, every illegal write is refused and
// reverted, every legal one stored), records moving between units, a reassigned worker,
// and the audit export.

#include "../support/command.hpp"
#include "../support/sql_probe.hpp"
#include "fixture.hpp"
#include "store_impl.hpp"

#include <caresync/protocol/codec.hpp>
#include <caresync/protocol/errors.hpp>
#include <caresync/protocol/frame.hpp>
#include <caresync/server/enrollment.hpp>

#include <catch2/catch.hpp>

#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <string>
#include <vector>

using namespace caresync;
using caresync::testing::sql_column;
using caresync::testing::raw_session;
using caresync::testing::temp_dir;
using caresync::testing::test_server;

namespace {

// The org unit tree: a region with two ORP municipalities, each with two teams.
const std::string k_region = "kraj";
const std::string k_orp_a = "kraj/orp-a";
const std::string k_unit_a = "kraj/orp-a/team-1";
const std::string k_unit_a2 = "kraj/orp-a/team-2";
const std::string k_orp_b = "kraj/orp-b";
const std::string k_unit_b = "kraj/orp-b/team-1";

/// The care collections as the server's default scope rules place them, and one
/// collection the rules do not know ("notes").
schema scope_schema() {
  return schema{{
      collection_def{"clients", {{"name", value_kind::text}, {"org_unit", value_kind::text}}},
      collection_def{"caregivers", {{"name", value_kind::text}, {"org_unit", value_kind::text}}},
      collection_def{"visits", {{"note", value_kind::text}, {"org_unit", value_kind::text}}},
      collection_def{"referrals",
                     {{"note", value_kind::text}, {"from_unit", value_kind::text}, {"to_unit", value_kind::text}}},
      collection_def{"services", {{"name", value_kind::text}}},
      collection_def{"notes", {{"text", value_kind::text}, {"org_unit", value_kind::text}}},
  }};
}

const std::vector<std::string> k_collections{"clients", "caregivers", "visits", "referrals", "services", "notes"};

/// A record the seeding device writes, and its secret text (which must never appear where
/// the record may not go).
struct seeded {
  std::string collection;
  record_id id;
  std::string secret;
};

/// The records of the matrix, by name.
struct world {
  std::map<std::string, seeded> records;
  std::set<std::string> names_of(const std::set<record_id>& ids) const {
    std::set<std::string> out;
    for (const auto& [name, r] : records) {
      if (ids.count(r.id)) out.insert(name);
    }
    return out;
  }
};

/// Writes, from an unscoped device of the config file (the pre-enrollment mode), a record
/// of each collection in unit A and in unit B, referrals A->A2, B->B2 and B->A, a service
/// and a note.
world seed(test_server& server, const temp_dir& dir) {
  auto admin_tablet = open_tablet(dir, "seeder", scope_schema());
  world w;
  const auto add = [&](const std::string& name, const std::string& collection, std::vector<field_write> fields) {
    const std::string secret = "SECRET-" + name + "-END";  // no secret is a prefix of another
    fields.push_back({collection == "services" ? "name" : collection == "notes" ? "text" : collection == "visits" || collection == "referrals" ? "note" : "name",
                      secret});
    w.records[name] = seeded{collection, admin_tablet->create(collection, fields), secret};
  };
  for (const auto& c : {"clients", "caregivers", "visits"}) {
    add(std::string(c) + "-A", c, {{"org_unit", k_unit_a}});
    add(std::string(c) + "-B", c, {{"org_unit", k_unit_b}});
  }
  add("referral-A", "referrals", {{"from_unit", k_unit_a}, {"to_unit", k_unit_a2}});
  add("referral-B", "referrals", {{"from_unit", k_unit_b}, {"to_unit", k_orp_b}});
  add("referral-BA", "referrals", {{"from_unit", k_unit_b}, {"to_unit", k_unit_a}});
  add("service", "services", {});
  add("note-A", "notes", {{"org_unit", k_unit_a}});
  REQUIRE(sync_client(*admin_tablet, server.options(0)).sync().pushed == w.records.size());
  return w;
}

/// An enrolled device of a new user with `role` in `unit`: its sync options.
sync_options enrolled(test_server& server, const std::string& user, const std::string& role, const std::string& unit) {
  auto& store = server.get().store();
  store.add_user(server::user_record{user, user, role, unit, 1});
  const auto code = server::issue_enrollment_code(store, user, std::chrono::hours(1), system_time_ms()).code;
  auto o = server.options(0);
  o.device_id.clear();
  o.token.clear();
  const auto got = enroll(o, code);
  o.device_id = got.device_id;
  o.token = got.token;
  return o;
}

/// Every record id a tablet's store holds, live or deleted, in any table of caresync's.
std::set<record_id> held_ids(const std::string& path) {
  std::set<record_id> out;
  for (const auto& c : k_collections) {
    for (const auto& text : sql_column(path, "SELECT id FROM " + c)) out.insert(*record_id::parse(text));
  }
  for (const auto& table : {"cs_meta", "cs_extra", "cs_conflict", "cs_item", "cs_outbox"}) {
    for (const auto& hex : sql_column(path, std::string("SELECT hex(id) FROM ") + table)) {
      record_id id;
      for (std::size_t i = 0; i < 16; ++i) id.bytes[i] = static_cast<std::uint8_t>(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
      out.insert(id);
    }
  }
  return out;
}

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// The secrets of `w` found in the store's files (database and WAL), by record name.
std::set<std::string> secrets_on_disk(const world& w, const std::string& path) {
  const auto bytes = file_bytes(path) + file_bytes(path + "-wal");
  std::set<std::string> out;
  for (const auto& [name, r] : w.records) {
    if (bytes.find(r.secret) != std::string::npos) out.insert(name);
  }
  return out;
}

/// The records named in pages: items, backfilled changes and purges.
struct page_records {
  std::set<record_id> sent;    ///< in items or backfill
  std::set<record_id> purged;
  bool error = false;
  std::uint16_t error_code = 0;
};

void collect(const wire::message& m, page_records& out) {
  if (const auto* e = std::get_if<wire::error>(&m)) {
    out.error = true;
    out.error_code = e->code;
    return;
  }
  REQUIRE(std::holds_alternative<wire::changes_page>(m));
  const auto& page = std::get<wire::changes_page>(m);
  for (const auto& item : page.items) out.sent.insert(item.body.id);
  for (const auto& item : page.backfill) out.sent.insert(item.body.id);
  for (const auto& p : page.purges) out.purged.insert(p.id);
}

/// Pulls the whole log with raw pulls, from cursor 0, as node `node`.
page_records raw_pull_all(const sync_options& o, node_id node) {
  page_records out;
  raw_session s(o, node, wire::k_feature_wait, "scope-test");
  if (const auto* e = std::get_if<wire::error>(&s.welcome())) {
    out.error = true;
    out.error_code = e->code;
    return out;
  }
  std::uint64_t cursor = 0, epoch = 0;
  for (int i = 0; i < 100; ++i) {
    const auto m = s.ask(wire::pull{cursor, 2, 0, {}, epoch});
    collect(m, out);
    if (out.error) return out;
    const auto& page = std::get<wire::changes_page>(m);
    cursor = page.next_cursor;
    if (page.scope_epoch) epoch = page.scope_epoch;
    if (!page.more) break;
  }
  return out;
}

/// A prime of every collection (tier: all records) and a wait from cursor 0, raw.
page_records raw_prime_and_wait(const sync_options& o, node_id node, std::uint64_t until) {
  page_records out;
  raw_session s(o, node, wire::k_feature_wait, "scope-test");
  if (const auto* e = std::get_if<wire::error>(&s.welcome())) {
    out.error = true;
    out.error_code = e->code;
    return out;
  }
  wire::prime_spec spec{until, {}};
  for (const auto& c : k_collections) spec.tiers.push_back(wire::prime_tier{c, wire::prime_match::all, {}, {}});
  std::uint64_t position = 0;
  for (int i = 0; i < 100; ++i) {
    const auto m = s.ask(wire::prime{spec, position, 3, 0});
    collect(m, out);
    if (out.error) return out;
    const auto& page = std::get<wire::changes_page>(m);
    position = page.next_cursor;
    if (!page.more) break;
  }
  collect(s.ask(wire::wait{0, 1000, 0, 0}), out);
  // A ping is answered with its nonce and nothing else.
  const auto pong = s.ask(wire::ping{77});
  CHECK((pong == wire::message{wire::pong{77}}));
  // enroll after hello is no way in: refused, and the connection ends.
  const auto again = s.ask(wire::enroll{wire::k_protocol_version, "scope-test", "ABCD-EFGH-JKMN-PQRS", ""});
  REQUIRE(std::holds_alternative<wire::error>(again));
  CHECK(std::get<wire::error>(again).code == static_cast<std::uint16_t>(protocol_errc::unexpected_message));
  return out;
}

/// Pushes `changes` raw as node `node`; the answer.
wire::message raw_push(const sync_options& o, node_id node, std::vector<change> changes) {
  raw_session s(o, node, wire::k_feature_wait, "scope-test");
  if (std::holds_alternative<wire::error>(s.welcome())) return s.welcome();
  return s.ask(wire::push{batch_id::generate(), std::move(changes)});
}

change write_of(node_id node, const std::string& collection, const record_id& id, std::vector<field_write> fields) {
  change c;
  c.collection = collection;
  c.id = id;
  c.ver = version{hlc_stamp::make(system_time_ms(), 0), node};
  c.kind = change_kind::upsert;
  c.fields = std::move(fields);
  return c;
}

change delete_of(node_id node, const std::string& collection, const record_id& id) {
  change c;
  c.collection = collection;
  c.id = id;
  c.ver = version{hlc_stamp::make(system_time_ms(), 0), node};
  c.kind = change_kind::remove;
  c.covers.emplace();
  return c;
}

/// One actor of the matrix: how it connects and which seeded records it may see.
struct actor {
  std::string name;
  sync_options options;
  std::set<std::string> may_see;       ///< seeded record names
  std::uint16_t refused_with = 0;      ///< non-zero: the connection itself is refused with this code
};

}  // namespace

TEST_CASE("scope matrix: every message type and every actor, no record leaks and every illegal write is refused",
          "[scope][security][integration]") {
  temp_dir dir;
  test_server server(dir);
  // Every actor without credentials tries on purpose, from this one address, faster
  // than a guesser is allowed to (throttling has tests of its own: audit_test.cpp).
  server.config().failed_auth_burst = 0;
  server.restart();
  auto& store = server.get().store();
  for (const auto& u : std::vector<server::org_unit>{{k_region, "", "Kraj"},
                                                     {k_orp_a, k_region, "ORP A"},
                                                     {k_unit_a, k_orp_a, "Team A1"},
                                                     {k_unit_a2, k_orp_a, "Team A2"},
                                                     {k_orp_b, k_region, "ORP B"},
                                                     {k_unit_b, k_orp_b, "Team B1"}}) {
    store.add_org_unit(u);
  }
  const auto w = seed(server, dir);

  std::vector<actor> actors;
  actors.push_back({"worker A", enrolled(server, "worker.a", "field_worker", k_unit_a),
                    {"clients-A", "caregivers-A", "visits-A", "service"}});
  actors.push_back({"worker B", enrolled(server, "worker.b", "field_worker", k_unit_b),
                    {"clients-B", "caregivers-B", "visits-B", "service"}});
  actors.push_back({"coordinator of ORP A", enrolled(server, "coord.a", "coordinator", k_orp_a),
                    {"clients-A", "caregivers-A", "visits-A", "referral-A", "referral-BA", "service"}});
  actors.push_back({"registry admin", enrolled(server, "registry", "registry_admin", k_region), {"service"}});
  actors.push_back({"admin", enrolled(server, "admin", "admin", k_region), {}});
  auto revoked = enrolled(server, "lost.tablet", "field_worker", k_unit_a);
  REQUIRE(store.revoke_device(revoked.device_id, system_time_ms()));
  actors.push_back({"revoked device", revoked, {}, static_cast<std::uint16_t>(protocol_errc::device_revoked)});
  auto bad_token = actors.front().options;
  bad_token.token = std::string(64, 'f');
  actors.push_back({"bad token", bad_token, {}, static_cast<std::uint16_t>(protocol_errc::auth_failed)});
  auto no_token = actors.front().options;
  no_token.token.clear();
  actors.push_back({"no token", no_token, {}, static_cast<std::uint16_t>(protocol_errc::auth_failed)});
  auto unknown = actors.front().options;
  unknown.device_id = "d-000000000000";
  actors.push_back({"unknown device", unknown, {}, static_cast<std::uint16_t>(protocol_errc::auth_failed)});

  const auto head = store.head();
  std::set<std::string> everything;
  for (const auto& [name, r] : w.records) everything.insert(name);

  for (std::size_t i = 0; i < actors.size(); ++i) {
    const auto& a = actors[i];
    INFO("actor: " << a.name);
    const node_id node = 0x5c0e0000 + i;

    // pull (raw pages), prime, wait and ping (raw), as any app could send them.
    const auto pulled = raw_pull_all(a.options, node);
    CHECK(pulled.error == (a.refused_with != 0));
    if (a.refused_with) CHECK(pulled.error_code == a.refused_with);
    CHECK(w.names_of(pulled.sent) == a.may_see);
    CHECK(pulled.purged.empty());
    const auto primed = raw_prime_and_wait(a.options, node + 0x100, head);
    CHECK(w.names_of(primed.sent) == (a.refused_with ? std::set<std::string>{} : a.may_see));

    // enroll instead of hello, with a code that is not one: refused, no record.
    {
      auto o = a.options;
      try {
        (void)enroll(o, "0000-0000-0000-000" + std::to_string(i % 10));
        FAIL("a made-up code enrolled a device");
      } catch (const caresync::error& e) {
        CHECK(e.code() == make_error_code(protocol_errc::enrollment_refused));
      }
    }

    // The library's sync: the store holds exactly what the actor may see, and no secret
    // of another record is anywhere in its files.
    const auto path = dir.file("actor-" + std::to_string(i) + ".db");
    {
      auto tablet = store::open(store_options{path, scope_schema(), durability::normal});
      sync_options o = a.options;
      o.priority = {priority_tier::all("visits"), priority_tier::all("services")};
      if (a.refused_with) {
        CHECK_THROWS_AS(sync_client(*tablet, o).sync(), caresync::error);
      } else {
        // At least one change of each record it sees (earlier actors edited some).
        CHECK(sync_client(*tablet, o).sync().pulled >= a.may_see.size());
      }
    }
    CHECK(w.names_of(held_ids(path)) == a.may_see);
    // No secret of a record it may not see is anywhere in its files (an earlier actor's
    // edit may have replaced the secret of one it sees).
    for (const auto& name : secrets_on_disk(w, path)) CHECK(a.may_see.count(name) == 1);

    // push: raw writes to every seeded record (an edit, a move to the actor's own unit,
    // a delete) and new records in both units, in every collection.
    if (a.refused_with) {
      const auto answer = raw_push(a.options, node, {write_of(node, "clients", record_id::generate(), {{"org_unit", k_unit_a}})});
      REQUIRE(std::holds_alternative<wire::error>(answer));
      CHECK(std::get<wire::error>(answer).code == a.refused_with);
      continue;
    }
    std::vector<change> attempts;
    std::vector<bool> legal;
    const std::string own_unit = a.name == "worker B" ? k_unit_b : k_unit_a;
    const bool writes_units = a.name.rfind("worker", 0) == 0 || a.name.rfind("coordinator", 0) == 0;
    const bool coordinator = a.name.rfind("coordinator", 0) == 0;
    for (const auto& [name, r] : w.records) {
      const bool sees = a.may_see.count(name) > 0;
      // Writes its role allows on records it sees (a field worker and a coordinator
      // their unit's care records, a coordinator its referrals, the registry admin the
      // services) are legal; everything else is refused.
      const bool may_write = sees && (r.collection == "services" ? a.name == "registry admin"
                                      : r.collection == "referrals" ? coordinator
                                                                    : writes_units);
      const std::string field = r.collection == "services" ? "name" : r.collection == "notes" ? "text"
                                : r.collection == "visits" || r.collection == "referrals" ? "note" : "name";
      attempts.push_back(write_of(node, r.collection, r.id, {{field, std::string("edited by ") + a.name}}));
      legal.push_back(may_write);
      attempts.push_back(delete_of(node, r.collection, r.id));
      legal.push_back(false);  // deletes last: a legal one would end the record; kept illegal below
      if (may_write) attempts.pop_back(), legal.pop_back();
      if (r.collection != "services" && r.collection != "referrals") {
        // Moving a record into the actor's own unit: only from a unit it sees already.
        attempts.push_back(write_of(node, r.collection, r.id, {{"org_unit", own_unit}}));
        legal.push_back(may_write && r.collection != "notes");
      }
    }
    for (const auto& c : k_collections) {
      for (const auto& unit : {k_unit_a, k_unit_b}) {
        std::vector<field_write> fields;
        if (c == "referrals") {
          fields = {{"from_unit", unit}, {"to_unit", k_unit_b}};
        } else if (c != "services") {
          fields = {{"org_unit", unit}};
        }
        attempts.push_back(write_of(node, c, record_id::generate(), fields));
        const bool unit_ok = unit == own_unit || (coordinator && unit == k_unit_a);
        legal.push_back(c == "services" ? a.name == "registry admin"
                        : c == "referrals" ? coordinator && unit_ok
                        : c == "notes"     ? false
                                           : writes_units && unit_ok);
      }
    }
    // Versions must rise within a push for a record written twice.
    for (std::size_t k = 0; k < attempts.size(); ++k) attempts[k].ver.stamp = hlc_stamp::make(system_time_ms(), static_cast<std::uint16_t>(k));
    const auto answer = raw_push(a.options, node, attempts);
    REQUIRE(std::holds_alternative<wire::push_result>(answer));
    const auto& result = std::get<wire::push_result>(answer);
    std::set<std::uint32_t> refused;
    for (const auto& f : result.refused) {
      CHECK(f.code == static_cast<std::uint16_t>(protocol_errc::out_of_scope));
      CHECK(f.reason.find("SECRET") == std::string::npos);
      refused.insert(f.index);
    }
    std::size_t expected_accepted = 0;
    for (std::size_t k = 0; k < attempts.size(); ++k) {
      INFO("attempt " << k << ": " << attempts[k].collection << (attempts[k].kind == change_kind::remove ? " delete" : " write"));
      const bool stored = refused.count(static_cast<std::uint32_t>(k)) == 0;
      CHECK(stored == legal[k]);
      if (legal[k]) ++expected_accepted;
    }
    CHECK(result.accepted == expected_accepted);
    CHECK((expected_accepted > 0 || a.name == "admin"));
  }

  // The actors' writes moved nothing out of anybody's sight: each store, synced again,
  // still holds exactly what its actor may see (with the records they created).
  for (std::size_t i = 0; i < 5; ++i) {
    INFO("actor again: " << actors[i].name);
    const auto path = dir.file("actor-" + std::to_string(i) + ".db");
    auto tablet = store::open(store_options{path, scope_schema(), durability::normal});
    sync_client(*tablet, actors[i].options).sync();
    std::set<record_id> seeded_ids;
    for (const auto& [name, r] : w.records) seeded_ids.insert(r.id);
    auto seen = held_ids(path);
    CHECK(w.names_of(seen) == actors[i].may_see);
  }
}

TEST_CASE("scope: a change refused as out of scope is reverted on the tablet and kept for the worker",
          "[scope][security][integration]") {
  temp_dir dir;
  test_server server(dir);
  const auto w = seed(server, dir);
  auto worker = enrolled(server, "worker.a", "field_worker", k_unit_a);
  auto tablet = open_tablet(dir, "worker", scope_schema());
  sync_client(*tablet, worker).sync();
  const auto mine = w.records.at("clients-A").id;
  REQUIRE(tablet->get("clients", mine));

  SECTION("in one batch: the server judges each change against the record it holds") {
    // A client of another unit, a move of her own client out of her unit, a rename
    // (legal: the record is still in her unit on the server), and a visit.
    const auto foreign = tablet->create("clients", {{"name", std::string("words for B")}, {"org_unit", k_unit_b}});
    tablet->update("clients", mine, {{"org_unit", k_unit_b}});
    tablet->update("clients", mine, {{"name", std::string("renamed after the move")}});
    const auto legal = tablet->create("visits", {{"note", std::string("a visit of A")}, {"org_unit", k_unit_a}});
    const auto r = sync_client(*tablet, worker).sync();
    CHECK(r.pushed == 2);
    CHECK(r.refused_out_of_scope == 2);
    CHECK(r.quarantined == 2);
    // The foreign record is gone; her own client comes back as the server has it (in A,
    // renamed), and the words refused wait in the quarantine.
    CHECK_FALSE(tablet->get("clients", foreign));
    CHECK(server.get().store().history("clients", foreign).empty());
    const auto back = tablet->get("clients", mine);
    REQUIRE(back);
    CHECK(std::get<std::string>(back->at("org_unit")) == k_unit_a);
    CHECK(std::get<std::string>(back->at("name")) == "renamed after the move");
    CHECK(tablet->get("visits", legal));
    CHECK(tablet->quarantined().size() == 2);
  }
  SECTION("in later batches: her unsent changes of the record are set aside with it") {
    // One change a batch, and more visits between the move and the rename than batches
    // go out before the first answer is read: when the move's refusal arrives, the
    // rename is not sent yet.
    worker.push_batch_changes = 1;
    tablet->update("clients", mine, {{"org_unit", k_unit_b}});
    constexpr int visits = 4;
    for (int i = 0; i < visits; ++i) {
      tablet->create("visits", {{"note", std::string("a visit of A")}, {"org_unit", k_unit_a}});
    }
    tablet->update("clients", mine, {{"name", std::string("words written after the move")}});
    const auto r = sync_client(*tablet, worker).sync();
    CHECK(r.pushed == visits);
    CHECK(r.refused_out_of_scope == 1);
    const auto back = tablet->get("clients", mine);
    REQUIRE(back);
    CHECK(std::get<std::string>(back->at("org_unit")) == k_unit_a);
    CHECK(std::get<std::string>(back->at("name")) == w.records.at("clients-A").secret);
    const auto held = tablet->quarantined();
    REQUIRE(held.size() == 2);
    CHECK(std::get<std::string>(held[1].fields.at("name")) == "words written after the move");
    CHECK_THAT(held[1].reason, Catch::Contains("not sent"));
  }
  for (const auto& q : tablet->quarantined()) CHECK(q.code == make_error_code(protocol_errc::out_of_scope));
  CHECK(tablet->outbox_size() == 0);
  // Nothing is left to push, and the next sync changes nothing.
  const auto again = sync_client(*tablet, worker).sync();
  CHECK(again.pushed == 0);
  CHECK(again.purged == 0);
  CHECK(again.pulled == 0);
}

TEST_CASE("scope: a client moving to another ORP is purged from the old unit's tablet and appears on the new unit's",
          "[scope][integration]") {
  temp_dir dir;
  test_server server(dir);
  const auto w = seed(server, dir);
  const auto worker_a = enrolled(server, "worker.a", "field_worker", k_unit_a);
  const auto worker_b = enrolled(server, "worker.b", "field_worker", k_unit_b);
  auto a = open_tablet(dir, "a", scope_schema());
  auto b = open_tablet(dir, "b", scope_schema());
  sync_client(*a, worker_a).sync();
  sync_client(*b, worker_b).sync();
  const auto client = w.records.at("clients-A").id;
  REQUIRE(a->get("clients", client));
  REQUIRE_FALSE(b->get("clients", client));
  // A's worker adds a visit note first, which then travels with the client.
  a->update("clients", client, {{"name", std::string("Klient A, edited in A")}});
  sync_client(*a, worker_a).sync();

  // The region (an unscoped device of the config file) moves the client to ORP B.
  auto region = open_tablet(dir, "region", scope_schema());
  sync_client(*region, server.options(1)).sync();
  region->update("clients", client, {{"org_unit", k_unit_b}});
  sync_client(*region, server.options(1)).sync();

  const auto ra = sync_client(*a, worker_a).sync();
  CHECK(ra.purged == 1);
  CHECK_FALSE(a->get("clients", client));
  CHECK(held_ids(dir.file("a.db")).count(client) == 0);
  CHECK(secrets_on_disk(w, dir.file("a.db")).count("clients-A") == 0);
  const auto rb = sync_client(*b, worker_b).sync();
  CHECK(rb.purged == 0);
  const auto got = b->get("clients", client);
  REQUIRE(got);
  CHECK(std::get<std::string>(got->at("name")) == "Klient A, edited in A");
  CHECK(std::get<std::string>(got->at("org_unit")) == k_unit_b);
  // B's copy is the server's: the same state as the region's tablet.
  auto probe = open_tablet(dir, "probe", scope_schema());
  sync_client(*probe, server.options(2)).sync();
  CHECK((b->get("clients", client) == probe->get("clients", client)));

  // Edits go on reaching the new unit only.
  b->update("clients", client, {{"name", std::string("edited in B")}});
  sync_client(*b, worker_b).sync();
  CHECK(sync_client(*a, worker_a).sync().pulled == 0);
  CHECK_FALSE(a->get("clients", client));

  // And moved back, the client returns to A with its whole history.
  region->update("clients", client, {{"org_unit", k_unit_a}});
  sync_client(*region, server.options(1)).sync();
  CHECK(sync_client(*b, worker_b).sync().purged == 1);
  sync_client(*a, worker_a).sync();
  const auto home = a->get("clients", client);
  REQUIRE(home);
  CHECK(std::get<std::string>(home->at("name")) == "edited in B");
}

TEST_CASE("scope: a reassigned worker's tablet purges the old unit's records and receives the new unit's",
          "[scope][integration]") {
  temp_dir dir;
  test_server server(dir);
  for (const auto& u : std::vector<server::org_unit>{{k_region, "", "Kraj"}, {k_orp_b, k_region, "ORP B"}, {k_unit_b, k_orp_b, "B1"}}) {
    server.get().store().add_org_unit(u);
  }
  const auto w = seed(server, dir);
  const auto worker = enrolled(server, "jana", "field_worker", k_unit_a);
  auto tablet = open_tablet(dir, "jana", scope_schema());
  sync_client(*tablet, worker).sync();
  CHECK(w.names_of(held_ids(dir.file("jana.db"))) == std::set<std::string>{"clients-A", "caregivers-A", "visits-A", "service"});

  auto& store = server.get().store();
  auto jana = *store.find_user("jana");
  jana.org_unit = k_unit_b;
  REQUIRE(store.update_user(jana));
  const auto r = sync_client(*tablet, worker).sync();
  CHECK(r.purged == 3);
  CHECK(w.names_of(held_ids(dir.file("jana.db"))) == std::set<std::string>{"clients-B", "caregivers-B", "visits-B", "service"});
  CHECK(secrets_on_disk(w, dir.file("jana.db")).count("clients-A") == 0);

  // Made a coordinator of ORP B: the referrals of B come too.
  jana.role = "coordinator";
  jana.org_unit = k_orp_b;
  REQUIRE(store.update_user(jana));
  sync_client(*tablet, worker).sync();
  CHECK(w.names_of(held_ids(dir.file("jana.db"))) ==
        std::set<std::string>{"clients-B", "caregivers-B", "visits-B", "referral-B", "referral-BA", "service"});

  // Made an admin: nothing of any record stays.
  jana.role = "admin";
  REQUIRE(store.update_user(jana));
  CHECK(sync_client(*tablet, worker).sync().purged == 6);
  CHECK(held_ids(dir.file("jana.db")).empty());
  // An interrupted scope page is sent again: the server learns what the tablet stored
  // from the epoch of its next pull (here: the same store, synced once more, changes nothing).
  CHECK(sync_client(*tablet, worker).sync().purged == 0);
}

namespace {

std::pair<std::string, int> server_command(const std::string& args) {
  auto r = caresync::testing::run_command(std::string(CARESYNC_SERVER_BINARY) + " " + args + " 2>/dev/null");
  return {std::move(r.output), r.exit_code};
}

std::string today() {
  const auto t = static_cast<std::time_t>(system_time_ms() / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "%Y-%m-%d", &tm);
  return buf;
}

}  // namespace

TEST_CASE("scope: org units, users and the audit with caresync-server, and the audit holds ids, never contents",
          "[scope][security][integration]") {
  temp_dir dir;
  test_server server(dir);
  const std::string db = "--db " + server.config().database_file;
  CHECK(server_command("add-org-unit " + db + " --id kraj --name Kraj").second == 0);
  CHECK(server_command("add-org-unit " + db + " --id kraj/orp-a --parent kraj --name 'ORP A'").second == 0);
  CHECK(server_command("add-org-unit " + db + " --id kraj/orp-a/team-1 --parent kraj/orp-a --name 'Team 1'").second == 0);
  CHECK(server_command("add-org-unit " + db + " --id kraj/orp-b --parent kraj --name 'ORP B'").second == 0);
  CHECK(server_command("add-org-unit " + db + " --id kraj/orp-b/team-1 --parent kraj/orp-b --name 'Team 1'").second == 0);
  // Mistakes exit 2: a unit twice, an unknown parent, a user in a unit outside the tree.
  CHECK(server_command("add-org-unit " + db + " --id kraj --name again").second == 2);
  CHECK(server_command("add-org-unit " + db + " --id x --parent nowhere --name X").second == 2);
  CHECK(server_command("add-user " + db + " --user eva --name Eva --role field_worker --org-unit nowhere").second == 2);
  const auto [tree, tree_status] = server_command("org-units " + db);
  CHECK(tree_status == 0);
  CHECK(tree == "kraj  (Kraj)\n  kraj/orp-a  (ORP A)\n    kraj/orp-a/team-1  (Team 1)\n"
                "  kraj/orp-b  (ORP B)\n    kraj/orp-b/team-1  (Team 1)\n");

  const auto w = seed(server, dir);
  const auto [added, added_status] = server_command("add-user " + db +
                                                    " --user jana --name Jana --role field_worker --org-unit kraj/orp-a/team-1");
  REQUIRE(added_status == 0);
  const auto at = added.find("enrollment code for ");
  const auto start = added.find('\n', at) + 1;
  const auto code = added.substr(start, added.find('\n', start) - start);
  auto o = server.options(0);
  o.device_id.clear();
  o.token.clear();
  const auto me = enroll(o, code);
  o.device_id = me.device_id;
  o.token = me.token;
  auto tablet = open_tablet(dir, "jana", scope_schema());
  sync_client(*tablet, o).sync();
  const auto visit = tablet->create("visits", {{"note", std::string("AUDIT-MUST-NOT-SHOW-THIS")}, {"org_unit", k_unit_a}});
  tablet->create("clients", {{"name", std::string("AUDIT-REFUSED-WORDS")}, {"org_unit", k_unit_b}});
  sync_client(*tablet, o).sync();

  CHECK(server_command("move-user " + db + " --user jana --org-unit nowhere").second == 2);
  CHECK(server_command("set-role " + db + " --user jana --role root").second == 2);
  CHECK(server_command("move-user " + db + " --user nobody --org-unit kraj").second == 1);
  CHECK(server_command("move-user " + db + " --user jana --org-unit kraj/orp-b/team-1").second == 0);
  CHECK(sync_client(*tablet, o).sync().purged == 4);  // A's client, caregiver and visits
  sync_client(*tablet, o).sync();                    // confirms the purges

  const auto [csv, csv_status] = server_command("audit " + db + " --from " + today() + " --to " + today());
  REQUIRE(csv_status == 0);
  CHECK(csv.rfind("at,device,user,action,collection,record_id,seq,reason\n", 0) == 0);
  const auto count = [&](const std::string& needle) {
    std::size_t n = 0;
    for (auto p = csv.find(needle); p != std::string::npos; p = csv.find(needle, p + 1)) ++n;
    return n;
  };
  const auto line_with = [&](const std::string& action, const record_id& id) {
    return csv.find("," + action + ",") != std::string::npos &&
           count("\"" + me.device_id + "\",\"jana\"," + action + ",") > 0 && csv.find(id.to_string()) != std::string::npos;
  };
  CHECK(line_with("push", visit));
  CHECK(line_with("receive", w.records.at("clients-A").id));
  CHECK(line_with("purge", w.records.at("clients-A").id));
  CHECK(line_with("purge_confirmed", w.records.at("clients-A").id));
  CHECK(line_with("refused", w.records.at("clients-A").id));  // any refused line of jana's
  CHECK(csv.find(",out_of_scope\n") != std::string::npos);  // with its reason
  CHECK(line_with("receive", w.records.at("clients-B").id));
  CHECK(count(",push,") >= w.records.size() + 1);  // the seeding device's pushes too
  // Ids, never contents or tokens.
  CHECK(csv.find("AUDIT-MUST-NOT-SHOW-THIS") == std::string::npos);
  CHECK(csv.find("AUDIT-REFUSED-WORDS") == std::string::npos);
  CHECK(csv.find("SECRET") == std::string::npos);
  CHECK(csv.find(me.token) == std::string::npos);
  // Filters and a range without events.
  const auto [mine, mine_status] = server_command("audit " + db + " --from " + today() + " --to " + today() + " --user jana");
  CHECK(mine_status == 0);
  CHECK(mine.find("tablet-0") == std::string::npos);
  CHECK(mine.find(me.device_id) != std::string::npos);
  const auto [old, old_status] = server_command("audit " + db + " --from 2001-01-01 --to 2001-01-31");
  CHECK(old_status == 0);
  CHECK(old == "at,device,user,action,collection,record_id,seq,reason\n");
  CHECK(server_command("audit " + db + " --from 2026-13-01 --to 2026-12-01").second == 2);
}

TEST_CASE("scope: a page of purges or backfills that never arrived is sent again, and a new store of the device gets everything",
          "[scope][faults][integration]") {
  temp_dir dir;
  test_server server(dir);
  const auto w = seed(server, dir);
  const auto worker = enrolled(server, "worker.a", "field_worker", k_unit_a);
  auto tablet = open_tablet(dir, "worker", scope_schema());
  sync_client(*tablet, worker).sync();
  auto region = open_tablet(dir, "region", scope_schema());
  sync_client(*region, server.options(1)).sync();
  const auto client_a = w.records.at("clients-A").id;
  const auto client_b = w.records.at("clients-B").id;

  // The region moves A's client to B and B's client to A.
  region->update("clients", client_a, {{"org_unit", k_unit_b}});
  region->update("clients", client_b, {{"org_unit", k_unit_a}});
  sync_client(*region, server.options(1)).sync();

  // The pages for the tablet are made and lost (the connection drops before the tablet
  // stores them): same node, same cursor, its stored epoch.
  const auto lost = [&] {
    raw_session s(worker, tablet->node(), wire::k_feature_wait, "scope-test");
    const auto m = s.ask(wire::pull{tablet->cursor(), 0, 0, {}, tablet->internal().scope_epoch()});
    REQUIRE(std::holds_alternative<wire::changes_page>(m));
    return std::get<wire::changes_page>(m);
  };
  const auto first = lost();
  CHECK(first.scope_epoch > 0);
  CHECK(first.purges.size() == 1);
  CHECK(first.backfill.size() == 2);  // B's client: its creation and its move
  const auto second = lost();          // lost again: the server sends them again
  CHECK(second.scope_epoch > first.scope_epoch);
  CHECK(second.purges == first.purges);
  CHECK(second.backfill == first.backfill);

  // The tablet's own sync gets them and applies them once.
  const auto r = sync_client(*tablet, worker).sync();
  CHECK(r.purged == 1);
  CHECK_FALSE(tablet->get("clients", client_a));
  REQUIRE(tablet->get("clients", client_b));
  CHECK(w.names_of(held_ids(dir.file("worker.db"))) ==
        std::set<std::string>{"clients-B", "caregivers-A", "visits-A", "service"});
  const auto again = sync_client(*tablet, worker).sync();
  CHECK(again.purged == 0);
  CHECK(again.pulled == 0);

  // A purge lost, and the record back in the unit before the tablet syncs: nothing is
  // purged, and what the tablet holds is what a new store of the unit gets.
  region->update("clients", client_b, {{"org_unit", k_unit_b}});
  sync_client(*region, server.options(1)).sync();
  CHECK(lost().purges.size() == 1);
  region->update("clients", client_b, {{"org_unit", k_unit_a}, {"name", std::string("back in A")}});
  sync_client(*region, server.options(1)).sync();
  const auto back = sync_client(*tablet, worker).sync();
  CHECK(back.purged == 0);
  REQUIRE(tablet->get("clients", client_b));
  CHECK(std::get<std::string>(tablet->get("clients", client_b)->at("name")) == "back in A");

  // The app reinstalled: a new store with the same credentials receives all it may see.
  auto fresh = open_tablet(dir, "fresh", scope_schema());
  sync_client(*fresh, worker).sync();
  CHECK(w.names_of(held_ids(dir.file("fresh.db"))) == std::set<std::string>{"clients-B", "caregivers-A", "visits-A", "service"});
  CHECK(fresh->state_digest() == tablet->state_digest());
}

// Figures, not a test (hidden; run by hand):
//   build/tests/integration/caresync_integration_tests "[.scope-figures]"
TEST_CASE("scope figures: an initial sync of one unit's worker among ten units, and of an unscoped device",
          "[.scope-figures]") {
  temp_dir dir;
  test_server server(dir);
  constexpr int k_units = 10;
  constexpr int k_visits = 20'000;
  auto seeder = open_tablet(dir, "seeder", scope_schema());
  seeder->transaction([&] {
    for (int i = 0; i < k_visits; ++i) {
      seeder->create("visits", {{"note", std::string("visit note number ") + std::to_string(i)},
                                {"org_unit", "kraj/team-" + std::to_string(i % k_units)}});
    }
  });
  sync_client(*seeder, server.options(0)).sync();
  const auto worker = enrolled(server, "worker", "field_worker", "kraj/team-3");
  const auto timed = [&](const char* name, const sync_options& o) {
    auto tablet = open_tablet(dir, name, scope_schema());
    const auto started = std::chrono::steady_clock::now();
    const auto r = sync_client(*tablet, o).sync();
    const auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
    std::printf("{\"device\": \"%s\", \"log\": %d, \"records\": %zu, \"pages\": %zu, \"ms\": %.1f, \"bytes_received\": %llu}\n", name,
                k_visits, tablet->count("visits"), r.pages, ms, static_cast<unsigned long long>(r.bytes_received));
  };
  timed("unscoped", server.options(1));
  timed("scoped-worker", worker);
  auto again = enrolled(server, "worker2", "field_worker", "kraj/team-4");
  timed("scoped-worker-2", again);
}
