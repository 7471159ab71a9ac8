// Deletes against concurrent edits in the store, per collection (docs/conflicts.md,
// "Deletes"): under update_revives an edit made without seeing a delete brings the
// record back with all its values, and the delete is an open conflict; under delete_wins
// the delete stands and the edit is the conflict. Changes move between real store files
// through the internals a sync uses (pin_batch, ack_batch, apply_page); the server's
// state is the shared merge over the same log.
#include "../support/temp_dir.hpp"
#include "store_impl.hpp"

#include <caresync/protocol/errors.hpp>
#include <caresync/protocol/merge.hpp>
#include <caresync/protocol/messages.hpp>
#include <caresync/store.hpp>

#include <catch2/catch.hpp>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

using caresync::change;
using caresync::collection_def;
using caresync::delete_policy;
using caresync::field_def;
using caresync::merge_policy;
using caresync::record_id;
using caresync::storage_errc;
using caresync::store;
using caresync::value;
using caresync::value_kind;
using caresync::testing::temp_dir;
namespace wire = caresync::wire;

namespace {

constexpr std::uint64_t k_start_ms = 1'700'000'000'000;

/// clients revive; visits are deleted for good (the default).
caresync::schema revive_schema() {
  collection_def clients{"clients",
                         {field_def{"name", value_kind::text},
                          field_def{"phone", value_kind::text},
                          field_def{"note", value_kind::text, merge_policy::keep_both},
                          field_def{"contacts", value_kind::text, merge_policy::append}}};
  clients.deletes = delete_policy::update_revives;
  collection_def visits{"visits",
                        {field_def{"client", value_kind::text}, field_def{"note", value_kind::text, merge_policy::keep_both}}};
  return caresync::schema{{clients, visits}};
}

struct tablet {
  std::string path;
  std::shared_ptr<std::uint64_t> now;
  std::unique_ptr<store> s;

  tablet(const temp_dir& dir, const std::string& name)
      : path(dir.file(name + ".db")), now(std::make_shared<std::uint64_t>(k_start_ms)) {
    open();
  }
  void open() {
    auto clock = now;
    s = store::open(caresync::store_options{path, revive_schema(), caresync::durability::normal, [clock] { return *clock; }});
  }
  void reopen() {
    s.reset();
    open();
  }
  store* operator->() const { return s.get(); }
};

/// A server's log in memory, and its state as the server materialises it.
class relay {
 public:
  void push(store& s) {
    while (auto batch = s.internal().pin_batch(100)) {
      for (const auto& c : batch->decode_changes()) log_.push_back(c);
      s.internal().ack_batch(*batch);
    }
  }
  void pull(store& s) {
    wire::changes_page page;
    for (std::uint64_t seq = s.cursor() + 1; seq <= log_.size(); ++seq) {
      const change& c = log_[seq - 1];
      if (c.ver.node != s.node()) page.items.push_back(caresync::sequenced_change{seq, c});
    }
    page.next_cursor = log_.size();
    s.internal().apply_page(page);
  }
  caresync::record_state state(const std::string& collection, const record_id& id) const {
    caresync::record_state st;
    for (const auto& c : log_) {
      if (c.collection == collection && c.id == id) caresync::merge(st, c);
    }
    return st;
  }
  std::string digest() const {
    std::map<std::pair<std::string, record_id>, caresync::record_state> all;
    for (const auto& c : log_) caresync::merge(all[{c.collection, c.id}], c);
    caresync::state_hasher h;
    for (const auto& [key, st] : all) h.add(key.first, key.second, st);
    return h.finish();
  }
  const std::vector<change>& log() const noexcept { return log_; }

 private:
  std::vector<change> log_;
};

std::error_code refusal_of(const std::function<void()>& body) {
  try {
    body();
  } catch (const caresync::error& e) {
    return e.code();
  }
  return {};
}

std::string text_of(const std::optional<caresync::record_fields>& r, const std::string& field) {
  if (!r) return "<no record>";
  const auto it = r->find(field);
  if (it == r->end()) return "<no field>";
  const auto* s = std::get_if<std::string>(&it->second);
  return s ? *s : "<not text>";
}

std::int64_t rows_in(store& s, const std::string& table) {
  caresync::sqlite::statement q(s.internal().db.get(), "SELECT count(*) FROM \"" + table + "\"");
  q.step();
  return q.column_int64(0);
}

/// Tablet a deletes a record both hold while tablet b, not having seen the delete, edits it.
struct delete_against_edit {
  temp_dir dir;
  tablet a{dir, "a"};
  tablet b{dir, "b"};
  relay server;
  record_id id;

  explicit delete_against_edit(const std::string& collection) {
    if (collection == "clients") {
      id = a->create("clients", {{"name", std::string("Aino")}, {"phone", std::string("040 1")}, {"note", std::string("stairs")}});
      a->update("clients", id, {{"contacts", std::string("called daughter")}});
    } else {
      id = a->create("visits", {{"client", std::string("Aino")}, {"note", std::string("stairs")}});
    }
    server.push(*a.s);
    server.pull(*b.s);
    *a.now += 10;
    *b.now += 20;
    a->remove(collection, id);
    if (collection == "clients") {
      b->update("clients", id, {{"phone", std::string("040 2")}});
    } else {
      b->update("visits", id, {{"note", std::string("B's words")}});
    }
  }
  void exchange() {
    for (int round = 0; round < 2; ++round) {
      server.push(*a.s);
      server.push(*b.s);
      server.pull(*a.s);
      server.pull(*b.s);
    }
  }
};

}  // namespace

TEST_CASE("update_revives: a delete and a concurrent edit leave the record live with all its values, the delete an open conflict",
          "[store][revive]") {
  delete_against_edit t("clients");
  auto& a = t.a;
  auto& b = t.b;
  // Deleted on a: gone for the app, the row out of its table, local writes refused.
  CHECK_FALSE(a->get("clients", t.id));
  CHECK(a->count("clients") == 0);
  CHECK(rows_in(*a.s, "clients") == 0);
  CHECK(refusal_of([&] { a->update("clients", t.id, {{"phone", std::string("x")}}); }) ==
        make_error_code(storage_errc::not_found));
  CHECK(a->conflicts().empty());

  SECTION("a pushes first") {
    t.server.push(*a.s);
    t.server.push(*b.s);
  }
  SECTION("b pushes first") {
    t.server.push(*b.s);
    t.server.push(*a.s);
  }
  SECTION("a reopens its file before it syncs") {
    a.reopen();
    t.server.push(*a.s);
    t.server.push(*b.s);
  }
  t.exchange();
  for (auto* s : {a.s.get(), b.s.get()}) {
    const auto r = s->get("clients", t.id);
    REQUIRE(r);
    CHECK(text_of(r, "name") == "Aino");
    CHECK(text_of(r, "phone") == "040 2");
    CHECK(text_of(r, "note") == "stairs");
    CHECK(text_of(r, "contacts") == R"(["called daughter"])");
    CHECK(s->count("clients") == 1);
    CHECK(rows_in(*s, "clients") == 1);
    const auto conflicts = s->conflicts();
    REQUIRE(conflicts.size() == 1);
    CHECK(conflicts[0].record_revived);
    CHECK_FALSE(conflicts[0].record_deleted);
    CHECK(conflicts[0].field.empty());
    CHECK(conflicts[0].current.ver.node == a->node());  // who deleted it
    CHECK(conflicts[0].others.empty());
    CHECK(s->conflict_count() == 1);
    CHECK(s->conflicts("clients", t.id).size() == 1);
  }
  const auto server_state = t.server.state("clients", t.id);
  CHECK(caresync::is_revived(server_state));
  CHECK(a->state_digest() == t.server.digest());
  CHECK(b->state_digest() == t.server.digest());
  // The record is writable again, and a resolve has nothing to resolve with.
  a->update("clients", t.id, {{"name", std::string("Aino K")}});
  CHECK(refusal_of([&] { a->resolve_conflict("clients", t.id, "", value{std::string("x")}); }) ==
        make_error_code(storage_errc::not_found));
  a.reopen();
  CHECK(a->conflicts().size() == 1);
  CHECK(text_of(a->get("clients", t.id), "name") == "Aino K");
}

TEST_CASE("update_revives: dismissing the revived record's conflict closes it on every store", "[store][revive]") {
  delete_against_edit t("clients");
  t.exchange();
  REQUIRE(t.b->conflict_count() == 1);
  CHECK(refusal_of([&] { t.b->dismiss_conflict("clients", t.id, "phone"); }) == make_error_code(storage_errc::not_found));
  t.b->dismiss_conflict("clients", t.id, "");
  CHECK(t.b->conflicts().empty());
  CHECK(t.b->outbox_size() == 1);
  t.exchange();
  for (auto* s : {t.a.s.get(), t.b.s.get()}) {
    CHECK(s->conflicts().empty());
    CHECK(s->conflict_count() == 0);
    CHECK(text_of(s->get("clients", t.id), "phone") == "040 2");
  }
  CHECK(t.a->state_digest() == t.server.digest());
  CHECK(t.b->state_digest() == t.server.digest());
  CHECK(refusal_of([&] { t.a->dismiss_conflict("clients", t.id, ""); }) == make_error_code(storage_errc::not_found));
}

TEST_CASE("update_revives: deleting the revived record hides it again on every store", "[store][revive]") {
  delete_against_edit t("clients");
  t.exchange();
  *t.b.now += 100;
  t.b->remove("clients", t.id);
  t.exchange();
  for (auto* s : {t.a.s.get(), t.b.s.get()}) {
    CHECK_FALSE(s->get("clients", t.id));
    CHECK(s->count("clients") == 0);
    CHECK(s->conflicts().empty());
    CHECK(s->conflict_count() == 0);
  }
  CHECK(caresync::is_hidden(t.server.state("clients", t.id)));
  CHECK(t.a->state_digest() == t.server.digest());
  CHECK(t.b->state_digest() == t.server.digest());

  SECTION("and a later concurrent edit brings it back once more") {
    // c had the record as revived and edits it without having seen b's delete.
    tablet c{t.dir, "c"};
    // Every change but b's last delete reaches c, as one page.
    wire::changes_page page;
    const auto& log = t.server.log();
    for (std::uint64_t seq = 1; seq <= log.size(); ++seq) {
      const auto& ch = log[seq - 1];
      if (ch.kind == caresync::change_kind::remove && ch.ver.node == t.b->node()) continue;
      page.items.push_back(caresync::sequenced_change{seq, ch});
    }
    page.next_cursor = log.size() - 1;
    c->internal().apply_page(page);
    REQUIRE(c->get("clients", t.id));
    *c.now += 1000;
    c->update("clients", t.id, {{"note", std::string("moved")}});
    auto batch = c->internal().pin_batch(10);
    REQUIRE(batch);
    wire::changes_page late;
    late.items.push_back(caresync::sequenced_change{log.size() + 1, batch->decode_changes().front()});
    late.next_cursor = log.size() + 1;
    t.a->internal().apply_page(late);
    CHECK(text_of(t.a->get("clients", t.id), "note") == "moved");
    CHECK(text_of(t.a->get("clients", t.id), "phone") == "040 2");
    REQUIRE(t.a->conflicts().size() == 1);
    CHECK(t.a->conflicts()[0].record_revived);
    CHECK(t.a->conflicts()[0].current.ver.node == t.b->node());
  }
}

TEST_CASE("delete_wins: the same delete and concurrent edit leave the record deleted, the edit an open conflict",
          "[store][revive]") {
  delete_against_edit t("visits");
  t.exchange();
  for (auto* s : {t.a.s.get(), t.b.s.get()}) {
    CHECK_FALSE(s->get("visits", t.id));
    const auto conflicts = s->conflicts();
    REQUIRE(conflicts.size() == 1);
    CHECK(conflicts[0].record_deleted);
    CHECK_FALSE(conflicts[0].record_revived);
    CHECK(conflicts[0].field == "note");
  }
  // No delete of this collection was sent as revivable.
  for (const auto& c : t.server.log()) CHECK_FALSE(c.revivable);
  CHECK(t.a->state_digest() == t.server.digest());
  CHECK(t.b->state_digest() == t.server.digest());
}

TEST_CASE("update_revives: a delete nobody edited against stays hidden, and is sent as revivable", "[store][revive]") {
  temp_dir dir;
  tablet a{dir, "a"};
  tablet b{dir, "b"};
  relay server;
  const auto id = a->create("clients", {{"name", std::string("Aino")}});
  server.push(*a.s);
  server.pull(*b.s);
  *a.now += 10;
  a->remove("clients", id);
  server.push(*a.s);
  server.pull(*b.s);
  REQUIRE(server.log().size() == 2);
  CHECK(server.log().back().revivable);
  REQUIRE(server.log().back().covers);
  CHECK(server.log().back().covers->size() == 1);
  for (auto* s : {a.s.get(), b.s.get()}) {
    CHECK_FALSE(s->get("clients", id));
    CHECK(s->conflicts().empty());
    CHECK(rows_in(*s, "clients") == 0);
  }
  CHECK(a->state_digest() == server.digest());
  CHECK(b->state_digest() == server.digest());
  b.reopen();
  CHECK(b->state_digest() == server.digest());
}

TEST_CASE("update_revives: a hidden record's kept conflicts are neither listed nor dismissable until it comes back",
          "[store][revive]") {
  temp_dir dir;
  tablet a{dir, "a"};
  tablet b{dir, "b"};
  relay server;
  const auto id = a->create("clients", {{"note", std::string("first")}});
  server.push(*a.s);
  server.pull(*b.s);
  // Concurrent notes: an open conflict on both.
  *a.now += 10;
  *b.now += 20;
  a->update("clients", id, {{"note", std::string("A's")}});
  b->update("clients", id, {{"note", std::string("B's")}});
  server.push(*a.s);
  server.push(*b.s);
  server.pull(*a.s);
  server.pull(*b.s);
  REQUIRE(a->conflict_count() == 1);
  // a deletes, having seen both notes: hidden, the conflict with it.
  *a.now += 100;
  a->remove("clients", id);
  CHECK(a->conflict_count() == 0);
  CHECK(a->conflicts().empty());
  CHECK(refusal_of([&] { a->dismiss_conflict("clients", id, "note"); }) == make_error_code(storage_errc::not_found));
  CHECK(a->outbox_size() == 1);
  server.push(*a.s);
  server.pull(*b.s);
  CHECK(b->conflict_count() == 0);
  CHECK_FALSE(b->get("clients", id));
  CHECK(a->state_digest() == server.digest());
  CHECK(b->state_digest() == server.digest());
}
