// Live mode: a device that waits after its pull receives other devices' changes as soon
// as the server stores them, so a coordinator sees a worker's visit moments after the
// worker's sync.

#include "fixture.hpp"

#include <caresync/protocol/errors.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <thread>

using namespace caresync;
using caresync::testing::open_tablet;
using caresync::testing::temp_dir;
using caresync::testing::test_server;

namespace {

/// Waits (up to 10 s) until `n` sessions hold a wait on the server.
bool until_waiting(test_server& server, std::uint64_t n) {
  for (int i = 0; i < 1000; ++i) {
    if (server.get().stats().sessions_waiting == n) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

}  // namespace

TEST_CASE("a waiting coordinator receives a worker's visits as soon as they are pushed", "[sync][live]") {
  temp_dir dir;
  test_server server(dir);
  auto worker = open_tablet(dir, "worker");
  auto coordinator = open_tablet(dir, "coordinator");
  auto o = server.options(1);
  o.live_wait = std::chrono::seconds(20);
  sync_report seen;
  std::thread live([&] { seen = sync_client(*coordinator, o).sync(); });  // the coordinator's data thread
  REQUIRE(until_waiting(server, 1));

  std::vector<record_id> ids;
  worker->transaction([&] {
    for (int i = 0; i < 3; ++i) ids.push_back(worker->create("visits", {{"worker", std::string("Jana")}, {"duration_min", std::int64_t{i}}}));
  });
  sync_client(*worker, server.options(0)).sync();
  live.join();

  CHECK(seen.woken);
  CHECK(seen.pulled == 3);
  for (const auto& id : ids) CHECK(coordinator->get("visits", id) == worker->get("visits", id));
  CHECK(server.get().stats().sessions_waiting == 0);
}

TEST_CASE("a wait with nothing new ends after the wait time with nothing pulled", "[sync][live]") {
  temp_dir dir;
  test_server server(dir);
  auto a = open_tablet(dir, "a");
  auto o = server.options(0);
  o.live_wait = std::chrono::milliseconds(200);
  const auto report = sync_client(*a, o).sync();
  CHECK_FALSE(report.woken);
  CHECK(report.pulled == 0);
  CHECK(server.get().stats().sessions_waiting == 0);
}

TEST_CASE("a device's own push does not wake it, and a stopping server ends the wait", "[sync][live]") {
  temp_dir dir;
  test_server server(dir);
  auto a = open_tablet(dir, "a");
  a->create("visits", {{"worker", std::string("Eva")}});
  auto o = server.options(0);
  o.live_wait = std::chrono::seconds(20);
  std::optional<caresync::error> failure;
  std::thread live([&] {
    try {
      sync_client(*a, o).sync();  // pushes its visit, pulls nothing, then waits
    } catch (const caresync::error& e) {
      failure = e;
    }
  });
  REQUIRE(until_waiting(server, 1));
  server.stop();
  live.join();
  REQUIRE(failure.has_value());
  CHECK(is_transient(failure->code()));
  CHECK(a->outbox_size() == 0);  // the push before the wait was kept
}

TEST_CASE("a wait the server did not grant is refused", "[sync][live][security]") {
  temp_dir dir;
  test_server server(dir);
  // exchange_raw offers no features in hello, so wait was not agreed.
  const auto answer = testing::exchange_raw(server.options(0), 0x51, wire::wait{0, 1000, 0, 0});
  REQUIRE(std::holds_alternative<wire::error>(answer));
  CHECK(std::get<wire::error>(answer).code == static_cast<std::uint16_t>(protocol_errc::unexpected_message));
}
