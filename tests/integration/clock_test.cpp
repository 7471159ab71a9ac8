// A tablet whose clock runs a day ahead must not win every later edit (issue 3, clock
// skew): the server refuses changes stamped too far ahead, and the tablet corrects its
// clock and re-stamps its writes before or after sending them.

#include "fixture.hpp"

// Store internals: a test pins a batch before the tablet ever heard the server's time.
#include "store_impl.hpp"

#include <catch2/catch.hpp>

using namespace caresync;
using caresync::testing::care_schema;
using caresync::testing::open_tablet;
using caresync::testing::temp_dir;
using caresync::testing::test_server;

namespace {

constexpr std::uint64_t k_day_ms = 86'400'000;

std::unique_ptr<store> open_fast_tablet(const temp_dir& dir, const std::string& name) {
  store_options o{dir.file(name + ".db"), care_schema(), durability::normal};
  o.time_source = [] { return system_time_ms() + k_day_ms; };
  return store::open(o);
}

std::string status_of(store& s, const record_id& id) {
  return std::get<std::string>(s.get("visits", id)->at("status"));
}

}  // namespace

TEST_CASE("a tablet a day ahead is brought back to the server's time and does not win later edits", "[sync][clock]") {
  temp_dir dir;
  test_server server(dir);
  auto fast = open_fast_tablet(dir, "fast");
  auto right = open_tablet(dir, "right");

  // Offline, the fast tablet stamps its writes a day ahead.
  const auto id = fast->create("visits", {{"status", std::string("planned")}, {"note", std::string("first visit")}});
  fast->update("visits", id, {{"status", std::string("done")}});
  const auto first = sync_client(*fast, server.options(0)).sync();
  CHECK(first.pushed == 2);
  CHECK(first.quarantined == 0);
  // Re-stamped with the server's time before they were sent: nothing was refused.
  CHECK(server.get().stats().changes_refused == 0);

  // A coordinator with a right clock edits the visit later: her edit wins everywhere.
  sync_client(*right, server.options(1)).sync();
  REQUIRE(status_of(*right, id) == "done");
  right->update("visits", id, {{"status", std::string("cancelled")}});
  sync_client(*right, server.options(1)).sync();
  sync_client(*fast, server.options(0)).sync();
  CHECK(status_of(*fast, id) == "cancelled");

  // And the fast tablet's next edit, made after hers, wins in turn: its clock follows
  // the server's now, not its own.
  fast->update("visits", id, {{"status", std::string("done")}});
  sync_client(*fast, server.options(0)).sync();
  sync_client(*right, server.options(1)).sync();
  CHECK(status_of(*right, id) == "done");
  CHECK(fast->state_digest() == right->state_digest());
  CHECK(fast->state_digest() == server.digest());
}

TEST_CASE("a change already pinned with a stamp too far ahead is refused, re-stamped and resent in the same sync",
          "[sync][clock]") {
  temp_dir dir;
  test_server server(dir);
  auto fast = open_fast_tablet(dir, "fast");
  const auto id = fast->create("visits", {{"status", std::string("planned")}});
  // Pinned before the tablet heard the server's time (an earlier sync was cut after it).
  REQUIRE(fast->internal().pin_batch(100));

  const auto report = sync_client(*fast, server.options(0)).sync();
  CHECK(server.get().stats().changes_refused == 1);  // the pinned change, as it was
  CHECK(report.quarantined == 0);
  CHECK(report.pushed == 1);                         // the same write, re-stamped
  CHECK(fast->outbox_size() == 0);
  CHECK(fast->quarantined().empty());
  CHECK(fast->is_synced("visits", id));

  auto other = open_tablet(dir, "other");
  sync_client(*other, server.options(1)).sync();
  CHECK(other->get("visits", id)->at("status") == value{std::string("planned")});
  CHECK(other->state_digest() == fast->state_digest());
}

TEST_CASE("a tablet whose clock is behind follows the server's clock", "[sync][clock]") {
  temp_dir dir;
  test_server server(dir);
  store_options o{dir.file("slow.db"), care_schema(), durability::normal};
  o.time_source = [] { return system_time_ms() - k_day_ms; };
  auto slow = store::open(o);
  auto right = open_tablet(dir, "right");
  const auto id = right->create("visits", {{"status", std::string("planned")}});
  sync_client(*right, server.options(1)).sync();
  sync_client(*slow, server.options(0)).sync();
  // Its edit, made after it saw the right tablet's, wins although its clock is a day behind.
  slow->update("visits", id, {{"status", std::string("done")}});
  sync_client(*slow, server.options(0)).sync();
  sync_client(*right, server.options(1)).sync();
  CHECK(status_of(*right, id) == "done");
}
