// keep_both over the real server and real TLS on 127.0.0.1 (docs/conflicts.md): two
// tablets write one visit note offline; after syncing, every tablet and the server's
// own fold of its log hold the same open conflict, until one tablet resolves it. The
// devices report their open conflicts in hello, and `caresync-server devices` lists them.

#include "../support/conflict_text.hpp"
#include "devices_listed.hpp"
#include "fixture.hpp"

#include <caresync/protocol/errors.hpp>

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

using namespace caresync;
using caresync::testing::care_schema_keeping_notes;
using caresync::testing::devices_listed;
using caresync::testing::open_tablet;
using caresync::testing::temp_dir;
using caresync::testing::test_server;

using caresync::testing::describe;
using caresync::testing::note_of;

namespace {

/// The server's record of `device` once its latest session has ended and `seen` holds
/// (a session records its device as it ends, just after the tablet closed).
template <class Seen>
std::optional<server::device_health> fleet_of(test_server& server, const std::string& device, Seen seen) {
  for (int i = 0; i < 500; ++i) {
    for (const auto& h : server.get().store().fleet()) {
      if (h.device == device && h.last_outcome == "closed by device" && seen(h)) return h;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return std::nullopt;
}

}  // namespace

TEST_CASE("two tablets write one visit note offline: every replica keeps both notes as one open conflict",
          "[sync][conflict]") {
  temp_dir dir;
  test_server server(dir);
  auto a = open_tablet(dir, "a", care_schema_keeping_notes());
  auto b = open_tablet(dir, "b", care_schema_keeping_notes());
  const auto id = a->create("visits", {{"client_id", std::string("client-1")},
                                       {"status", std::string("planned")},
                                       {"note", std::string("Synthetic note: first visit planned.")}});
  sync_client(*a, server.options(0)).sync();
  sync_client(*b, server.options(1)).sync();
  REQUIRE(note_of(*b, id) == "\"Synthetic note: first visit planned.\"");

  // Offline on both: each writes its own note, and its own status (last-writer-wins).
  a->update("visits", id, {{"note", std::string("A: client tired, walked 10 min.")}, {"status", std::string("done")}});
  b->update("visits", id, {{"note", std::string("B: medication reviewed.")}, {"status", std::string("cancelled")}});

  const auto ra = sync_client(*a, server.options(0)).sync();
  const auto rb = sync_client(*b, server.options(1)).sync();  // receives A's
  const auto ra2 = sync_client(*a, server.options(0)).sync();  // receives B's
  CHECK(ra.conflicts == 0);
  CHECK(rb.pulled == 1);
  CHECK(ra2.pulled == 1);
  // Each tablet counts the other's note once, as newly kept; the status that lost is
  // counted once, by the tablet it reached (the one whose change is newer).
  CHECK(rb.conflicts + ra2.conflicts == 3);

  const auto listed = a->conflicts();
  REQUIRE(listed.size() == 1);
  const auto& c = listed.front();
  CHECK(c.collection == "visits");
  CHECK(c.record == id);
  CHECK(c.field == "note");  // not status
  REQUIRE(c.others.size() == 1);
  CHECK(c.others[0].ver < c.current.ver);
  // The greater version is current; the other note is kept, whichever tablet wrote it.
  const bool a_won = c.current.ver.node == a->node();
  CHECK(describe(c.current.val) == (a_won ? "\"A: client tired, walked 10 min.\"" : "\"B: medication reviewed.\""));
  CHECK(describe(c.others[0].val) == (a_won ? "\"B: medication reviewed.\"" : "\"A: client tired, walked 10 min.\""));
  CHECK(c.others[0].ver.node == (a_won ? b->node() : a->node()));
  CHECK(describe(b->conflicts()) == describe(listed));
  CHECK(a->conflict_count() == 1);
  CHECK(b->conflict_count() == 1);
  CHECK(note_of(*a, id) == describe(c.current.val));
  CHECK(note_of(*b, id) == describe(c.current.val));
  CHECK(a->get("visits", id)->at("status") == b->get("visits", id)->at("status"));
  CHECK(a->state_digest() == b->state_digest());
  // The server's fold of its log keeps the same conflict.
  CHECK(server.digest() == a->state_digest());

  // A tablet that was away the whole time gets the same conflict from the log.
  auto late = open_tablet(dir, "late", care_schema_keeping_notes());
  sync_client(*late, server.options(2)).sync();
  CHECK(describe(late->conflicts()) == describe(listed));
  CHECK(late->state_digest() == a->state_digest());

  SECTION("resolved on tablet A, it closes everywhere") {
    a->resolve_conflict("visits", id, "note", std::string("A and B: client tired; medication reviewed."));
    CHECK(a->conflict_count() == 0);
    CHECK(sync_client(*a, server.options(0)).sync().pushed == 1);
    const auto rb2 = sync_client(*b, server.options(1)).sync();
    CHECK(rb2.pulled == 1);
    CHECK(rb2.conflicts == 0);
    sync_client(*late, server.options(2)).sync();
    for (const auto* s : {a.get(), b.get(), late.get()}) {
      CHECK(s->conflict_count() == 0);
      CHECK(s->conflicts().empty());
      CHECK(note_of(*s, id) == "\"A and B: client tired; medication reviewed.\"");
    }
    CHECK(b->state_digest() == a->state_digest());
    CHECK(late->state_digest() == a->state_digest());
    CHECK(server.digest() == a->state_digest());
  }
  SECTION("dismissed on tablet B, the current note stays everywhere") {
    const auto current = describe(c.current.val);
    b->dismiss_conflict("visits", id, "note");
    sync_client(*b, server.options(1)).sync();
    sync_client(*a, server.options(0)).sync();
    CHECK(a->conflict_count() == 0);
    CHECK(b->conflict_count() == 0);
    CHECK(note_of(*a, id) == current);
    CHECK(b->state_digest() == a->state_digest());
    CHECK(server.digest() == a->state_digest());
  }
  SECTION("deleted on tablet B, the conflict goes with the record") {
    b->remove("visits", id);
    sync_client(*b, server.options(1)).sync();
    sync_client(*a, server.options(0)).sync();
    CHECK(a->conflict_count() == 0);
    CHECK(b->conflict_count() == 0);
    CHECK_FALSE(a->get("visits", id));
    CHECK(b->state_digest() == a->state_digest());
    CHECK(server.digest() == a->state_digest());
  }
}

TEST_CASE("caresync-server devices lists each tablet's open conflicts until they are resolved", "[fleet][conflict]") {
  temp_dir dir;
  test_server server(dir);
  auto a = open_tablet(dir, "a", care_schema_keeping_notes());
  auto b = open_tablet(dir, "b", care_schema_keeping_notes());
  const auto id = a->create("visits", {{"note", std::string("Synthetic note: planned.")}});
  sync_client(*a, server.options(0)).sync();
  sync_client(*b, server.options(1)).sync();
  a->update("visits", id, {{"note", std::string("A's words")}});
  b->update("visits", id, {{"note", std::string("B's words")}});
  sync_client(*a, server.options(0)).sync();
  sync_client(*b, server.options(1)).sync();  // receives A's note
  sync_client(*a, server.options(0)).sync();  // receives B's
  // A hello reports what the tablet had before the sync: once more each to say so.
  sync_client(*a, server.options(0)).sync();
  sync_client(*b, server.options(1)).sync();
  REQUIRE(a->conflict_count() == 1);
  REQUIRE(b->conflict_count() == 1);
  const auto open = [](const server::device_health& h) { return h.open_conflicts == 1; };
  REQUIRE(fleet_of(server, test_server::device(0), open));
  REQUIRE(fleet_of(server, test_server::device(1), open));

  auto listed = devices_listed(server);
  REQUIRE(listed.size() == 2);
  for (int i = 0; i < 2; ++i) {
    const auto& line = listed.at(test_server::device(i));
    CHECK(line.at("open_conflicts") == 1);
    REQUIRE(line.at("attention").size() == 1);
    CHECK(line.at("attention").at(0) == "1 open conflicts to resolve");
  }

  a->resolve_conflict("visits", id, "note", std::string("A's and B's words"));
  sync_client(*a, server.options(0)).sync();  // its hello already reports none
  sync_client(*b, server.options(1)).sync();  // receives the resolution
  sync_client(*b, server.options(1)).sync();  // and says so
  const auto none = [](const server::device_health& h) { return h.open_conflicts == 0; };
  REQUIRE(fleet_of(server, test_server::device(0), none));
  REQUIRE(fleet_of(server, test_server::device(1), none));
  listed = devices_listed(server);
  REQUIRE(listed.size() == 2);
  for (int i = 0; i < 2; ++i) {
    const auto& line = listed.at(test_server::device(i));
    CHECK(line.at("open_conflicts") == 0);
    CHECK(line.at("attention").empty());
  }
}
