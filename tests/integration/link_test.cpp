// Bad links, through the fault proxy: connections cut at random byte offsets hundreds of
// times, a slow and cut mobile link, a stalled one. Nothing is lost or duplicated, and a
// sync that can finish does.

#include "../support/fault_proxy.hpp"
#include "../support/sql_probe.hpp"
#include "fixture.hpp"

#include <caresync/protocol/errors.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <iostream>
#include <random>
#include <string>
#include <vector>

using namespace caresync;
using caresync::testing::duplicates_in_log;
using caresync::testing::fault_proxy;
using caresync::testing::link_faults;
using caresync::testing::open_tablet;
using caresync::testing::temp_dir;
using caresync::testing::test_server;

namespace {

std::vector<field_write> visit(std::uint64_t i) {
  return {{"client_id", "client-" + std::to_string(i % 17)},
          {"worker", std::string("jana")},
          {"date", std::string("2026-11-23")},
          {"duration_min", static_cast<std::int64_t>(i % 120)},
          {"note", std::string(200, static_cast<char>('a' + i % 26))},
          {"status", std::string("done")}};
}

/// A sync that may be cut: true if it finished. Only transient errors are expected.
bool try_sync(store& s, const sync_options& o) {
  try {
    sync_client(s, o).sync();
    return true;
  } catch (const caresync::error& e) {
    INFO(e.what());
    REQUIRE(is_transient(e.code()));
    return false;
  }
}

}  // namespace

TEST_CASE("500 connections cut at random bytes during pushes and pulls lose and duplicate nothing",
          "[sync][faults][link]") {
  temp_dir dir;
  test_server server(dir);
  auto a = open_tablet(dir, "a");
  auto b = open_tablet(dir, "b");
  fault_proxy proxy(server.port());
  const std::uint64_t seed = 20261123;
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  auto via_proxy = [&](int device) {
    auto o = server.options(device);
    o.port = proxy.port();
    o.push_batch_changes = 10;  // several batches per sync: cuts land between them too
    o.pull_page_changes = 20;
    return o;
  };
  const auto oa = via_proxy(0);
  const auto ob = via_proxy(1);

  std::vector<record_id> mine;
  std::uint64_t written = 0;
  int finished = 0;
  while (proxy.cuts() < 500) {
    a->transaction([&] {
      for (auto n = 1 + rng() % 15; n > 0; --n) mine.push_back(a->create("visits", visit(written++)));
      if (rng() % 3 == 0) a->update("visits", mine[rng() % mine.size()], {{"status", "edited " + std::to_string(written)}});
    });
    // A cut anywhere from the TLS handshake to the last page.
    proxy.set_faults(link_faults{.cut_after_bytes = 100 + rng() % 12'000});
    finished += try_sync(*a, oa);
    proxy.set_faults(link_faults{.cut_after_bytes = 100 + rng() % 12'000});
    finished += try_sync(*b, ob);
  }
  proxy.set_faults({});
  REQUIRE(try_sync(*a, oa));
  REQUIRE(try_sync(*b, ob));

  CHECK(proxy.cuts() >= 500);
  CHECK(finished > 0);
  CHECK(a->outbox_size() == 0);
  CHECK(b->count("visits") == mine.size());
  CHECK(a->state_digest() == b->state_digest());
  CHECK(server.digest() == a->state_digest());
  CHECK(duplicates_in_log(server.config().database_file) == 0);
}

TEST_CASE("a day of work syncs over a slow mobile link that is cut every 10 seconds", "[sync][faults][link]") {
  // 64 kbit/s each way, 600 ms round trip: a village at the edge of coverage.
  temp_dir dir;
  test_server server(dir);
  auto tablet_schema = testing::care_schema();
  tablet_schema.collections.push_back(
      collection_def{"services", {{"name", value_kind::text}, {"municipality", value_kind::text}}});
  const auto open = [&](const std::string& name) {
    return store::open(store_options{dir.file(name + ".db"), tablet_schema, durability::normal});
  };
  auto tablet = open("tablet");
  auto registry = open("registry");

  // The morning, on the office network: five clients to visit.
  std::vector<record_id> clients;
  for (int i = 0; i < 5; ++i) {
    clients.push_back(tablet->create("clients", {{"name", "Client " + std::to_string(i)}, {"municipality", std::string("Vlašim")}}));
  }
  REQUIRE(try_sync(*tablet, server.options(0)));

  // The day, offline: 20 visits, 5 client edits; the region updates its registry.
  tablet->transaction([&] {
    for (std::uint64_t i = 0; i < 20; ++i) tablet->create("visits", visit(i));
    for (const auto& c : clients) tablet->update("clients", c, {{"municipality", std::string("Trhový Štěpánov")}});
  });
  registry->create("services", {{"name", std::string("Respite care")}, {"municipality", std::string("Vlašim")}});
  REQUIRE(try_sync(*registry, server.options(1)));

  // The evening, on the slow link.
  fault_proxy proxy(server.port(), link_faults{.cut_after_time = std::chrono::seconds(10),
                                               .delay = std::chrono::milliseconds(300),
                                               .bits_per_second = 64'000});
  auto o = server.options(0);
  o.port = proxy.port();
  const auto started = std::chrono::steady_clock::now();
  int attempts = 0;
  bool done = false;
  while (!done && attempts < 10) {
    ++attempts;
    done = try_sync(*tablet, o);
  }
  const auto seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::cout << "{\"slow_link\": {\"kbit_s\": 64, \"rtt_ms\": 600, \"cut_every_s\": 10, \"attempts\": " << attempts
            << ", \"seconds\": " << seconds << ", \"bytes_both_ways\": " << proxy.bytes_forwarded() << "}}" << std::endl;
  REQUIRE(done);
  CHECK(tablet->outbox_size() == 0);
  CHECK(tablet->count("services") == 1);
  CHECK(server.digest() == tablet->state_digest());
}

TEST_CASE("a stalled link fails the sync with a transient timeout, and the next sync recovers", "[sync][faults][link]") {
  temp_dir dir;
  test_server server(dir);
  auto a = open_tablet(dir, "a");
  a->create("visits", visit(1));
  fault_proxy proxy(server.port(), link_faults{.stall = true});
  auto o = server.options(0);
  o.port = proxy.port();
  o.connect_timeout = std::chrono::milliseconds(500);
  o.io_timeout = std::chrono::milliseconds(500);
  try {
    sync_client(*a, o).sync();
    FAIL("a stalled link should time out");
  } catch (const caresync::error& e) {
    CHECK(e.code() == network_errc::timeout);
    CHECK(is_transient(e.code()));
  }
  CHECK(a->outbox_size() == 1);
  proxy.set_faults({});
  CHECK(sync_client(*a, o).sync().pushed == 1);
  CHECK(a->outbox_size() == 0);
}

TEST_CASE("transient failures are retried with backoff, and the counts add up over attempts", "[sync][faults][link]") {
  temp_dir dir;
  test_server server(dir);
  auto a = open_tablet(dir, "a");
  a->transaction([&] {
    for (std::uint64_t i = 0; i < 200; ++i) a->create("visits", visit(i));
  });
  // The first two connections are cut 2,500 bytes in (the TLS handshake is about 2,000);
  // the third goes through.
  fault_proxy proxy(server.port(), link_faults{.cut_after_bytes = 2500, .only_first = 2});
  auto o = server.options(0);
  o.port = proxy.port();
  o.push_batch_changes = 20;
  o.retry = retry_policy{4, std::chrono::milliseconds(10), std::chrono::milliseconds(40)};
  const auto report = sync_client(*a, o).sync();
  CHECK(report.attempts == 3);
  CHECK(proxy.connections() == 3);
  CHECK(proxy.cuts() == 2);
  CHECK(report.pushed == 200);  // each change counted once, in the attempt that heard its answer
  CHECK(a->outbox_size() == 0);
  CHECK(server.get().store().head() == 200);

  SECTION("a failure that is not transient is not retried") {
    proxy.set_faults({});
    auto wrong = o;
    wrong.token = "not-the-token";
    try {
      sync_client(*a, wrong).sync();
      FAIL("a wrong token must be refused");
    } catch (const caresync::error& e) {
      CHECK(e.code() == protocol_errc::auth_failed);
    }
    CHECK(proxy.connections() == 4);
  }
  SECTION("attempts run out") {
    proxy.set_faults(link_faults{.stall = true});
    auto stalled = o;
    stalled.io_timeout = std::chrono::milliseconds(200);
    stalled.connect_timeout = std::chrono::milliseconds(200);
    stalled.retry.max_attempts = 2;
    CHECK_THROWS_AS(sync_client(*a, stalled).sync(), caresync::error);
    CHECK(proxy.connections() == 5);
  }
}

TEST_CASE("progress is reported after each batch and each page", "[sync]") {
  temp_dir dir;
  test_server server(dir);
  auto a = open_tablet(dir, "a");
  auto b = open_tablet(dir, "b");
  a->transaction([&] {
    for (std::uint64_t i = 0; i < 250; ++i) a->create("visits", visit(i));
  });
  std::vector<sync_progress> seen;
  auto o = server.options(0);
  o.push_batch_changes = 50;
  o.size_to_link = false;  // batches of 50 exactly, whatever the link
  o.on_progress = [&](const sync_progress& p) { seen.push_back(p); };
  sync_client(*a, o).sync();
  REQUIRE(seen.size() >= 5);
  for (std::size_t i = 0; i < 5; ++i) {
    CHECK(seen[i].pushed == 50 * (i + 1));
    CHECK(seen[i].to_push == 250);
  }
  CHECK(seen.back().bytes_sent > seen.front().bytes_sent);

  seen.clear();
  auto ob = server.options(1);
  ob.pull_page_changes = 100;
  ob.size_to_link = false;
  ob.on_progress = o.on_progress;
  const auto report = sync_client(*b, ob).sync();
  REQUIRE(seen.size() == 3);
  CHECK(seen[0].pulled == 100);
  CHECK(seen[1].pulled == 200);
  CHECK(seen[2].pulled == 250);
  CHECK(seen[2].to_pull == 250);
  CHECK(seen[2].bytes_received <= report.bytes_received);
}
