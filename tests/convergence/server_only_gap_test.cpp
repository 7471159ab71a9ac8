// A server_only refusal puts back the server's newest value of the field, which the
// tablet may not have pulled yet. Its delete of the record before that pull must not
// cover the write the value came from: on the server that version covers the write's
// other fields too, while the tablet receives them only later. (Seed 4694 of the
// convergence test found it.) Played through the store's internals and the server's
// real change log and push rules, as the convergence simulation does, so the pull can
// be left out exactly where a cut link would leave it out.

#include "store_impl.hpp"
#include "../support/temp_dir.hpp"

#include <caresync/protocol/codec.hpp>
#include <caresync/protocol/merge.hpp>
#include <caresync/server/change_store.hpp>
#include <caresync/server/push_rules.hpp>

#include <catch2/catch.hpp>

#include <chrono>

using namespace caresync;

namespace {

schema clients_schema(bool level_declared) {
  collection_def clients{"clients", {{"name", value_kind::text}, {"level", value_kind::text}}};
  clients.fields[1].server_only = level_declared;
  return schema{{clients}};
}

struct device {
  std::string id;
  bool server_side;
  std::unique_ptr<store> db;
};

class harness {
 public:
  explicit harness(const testing::temp_dir& dir) : log_(server::open_sqlite_change_store(dir.file("server.db"))) {
    rules_.server_only = {{"clients", {"level"}}};
  }

  /// Pushes the device's whole outbox; returns how many changes had fields put back.
  std::size_t push(device& d) {
    auto& s = d.db->internal();
    std::size_t reverted = 0;
    while (auto batch = s.next_batch(100)) {
      auto rules = rules_;
      rules.server_side = d.server_side;
      const auto now_ms = static_cast<std::uint64_t>(
          std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
      const auto changes = batch->decode_changes();
      const auto screen = server::screen_push(changes, d.db->node(), rules, now_ms);
      auto to_store = changes;
      server::strip_server_only(to_store, screen.refused);
      auto outcome = log_->append(d.id, batch->id, to_store, screen.refused);
      server::fill_restores(*log_, changes, outcome.refused, rules);
      const auto acked = s.ack_batch(*batch, outcome.refused);
      REQUIRE(acked.requeued + acked.reverted == outcome.refused.size());  // nothing else refused
      reverted += acked.reverted;
    }
    return reverted;
  }

  /// Pulls up to the log's head.
  void pull(device& d) {
    auto& s = d.db->internal();
    for (bool more = true; more;) {
      wire::changes_page_builder builder;
      const auto pos = log_->read_page(s.cursor(), d.db->node(), 100, 1u << 20, builder);
      s.apply_page(std::get<wire::changes_page>(
          wire::decode(wire::message_type::changes, builder.finish(pos.next_cursor, pos.more))));
      more = pos.more;
    }
  }

  std::string digest() {
    state_hasher hasher;
    for (const auto& [key, state] : log_->materialize()) hasher.add(key.first, key.second, state);
    return hasher.finish();
  }

 private:
  std::unique_ptr<server::change_store> log_;
  server::push_rules rules_;
};

device open_device(const testing::temp_dir& dir, const std::string& id, bool server_side) {
  store_options o{dir.file(id + ".db"), clients_schema(server_side), durability::normal};
  o.server_side = server_side;
  return device{id, server_side, store::open(o)};
}

}  // namespace

TEST_CASE("server_only: a tablet that deletes a record before pulling the write a refusal put back converges",
          "[convergence][policy]") {
  testing::temp_dir dir;
  harness server(dir);
  auto office = open_device(dir, "office", true);
  auto tablet = open_device(dir, "tablet", false);  // an older app: level is not marked

  const auto id = office.db->create("clients", {{"name", std::string("Jana")}, {"level", std::string("I")}});
  server.push(office);
  server.pull(tablet);

  // The office writes the name and the level in one change; the tablet, not having
  // pulled it, writes the level: refused, and the office's level is put back.
  office.db->update("clients", id, {{"name", std::string("Jana Nováková")}, {"level", std::string("II")}});
  server.push(office);
  tablet.db->update("clients", id, {{"level", std::string("III")}});
  REQUIRE(server.push(tablet) == 1);
  const auto shown = tablet.db->get("clients", id);
  REQUIRE(shown);
  CHECK(shown->at("level") == value{std::string("II")});
  CHECK(shown->at("name") == value{std::string("Jana")});  // the rest of that write is not here yet

  // The link is cut before the pull; the worker deletes the record, then syncs.
  tablet.db->remove("clients", id);
  server.push(tablet);
  server.pull(tablet);
  server.pull(office);

  const auto digest = server.digest();
  CHECK(tablet.db->state_digest() == digest);
  CHECK(office.db->state_digest() == digest);
  // The office's write was not seen by the deleter: it stays visible as conflicts on the
  // deleted record, the same on every replica.
  std::size_t on_deleted = 0;
  for (const auto& c : tablet.db->conflicts()) on_deleted += c.record_deleted ? 1 : 0;
  CHECK(on_deleted == 2);
  CHECK(office.db->conflict_count() == tablet.db->conflict_count());
}

TEST_CASE("server_only: after a pull to the log's head a tablet's delete covers what a refusal put back",
          "[convergence][policy]") {
  testing::temp_dir dir;
  harness server(dir);
  auto office = open_device(dir, "office", true);
  auto tablet = open_device(dir, "tablet", false);

  const auto id = office.db->create("clients", {{"name", std::string("Jana")}, {"level", std::string("I")}});
  server.push(office);
  server.pull(tablet);
  tablet.db->update("clients", id, {{"level", std::string("III")}});
  REQUIRE(server.push(tablet) == 1);
  server.pull(tablet);  // the head: the level put back is the one the tablet holds

  tablet.db->remove("clients", id);
  server.push(tablet);
  server.pull(office);
  const auto digest = server.digest();
  CHECK(tablet.db->state_digest() == digest);
  CHECK(office.db->state_digest() == digest);
  CHECK(tablet.db->conflict_count() == 0);  // the delete saw everything: nothing left open
  CHECK(office.db->conflict_count() == 0);
}
