// Interrupted pushes and pulls: resent batches are not applied twice, a cut pull resumes
// from its cursor, nothing is lost or duplicated.

#include "../support/fault_proxy.hpp"
#include "fixture.hpp"

// Store internals: a test plays a first push attempt whose acknowledgement never
// reaches the store.
#include "store_impl.hpp"

#include <caresync/protocol/errors.hpp>

#include <catch2/catch.hpp>

using namespace caresync;
using caresync::testing::fault_proxy;
using caresync::testing::link_faults;
using caresync::testing::open_tablet;
using caresync::testing::temp_dir;
using caresync::testing::test_server;

namespace {

std::vector<field_write> visit(int i) {
  return {{"client_id", std::string("client-") + std::to_string(i % 11)},
          {"worker", std::string("petr")},
          {"date", std::string("2026-10-01")},
          {"duration_min", std::int64_t{i}},
          {"note", std::string(150, static_cast<char>('a' + i % 26))},
          {"status", std::string("done")}};
}

void fill(store& s, int n, int offset = 0) {
  s.transaction([&] {
    for (int i = 0; i < n; ++i) s.create("visits", visit(offset + i));
  });
}

wire::push_result push_raw(const sync_options& o, node_id node, const outbox_batch& batch) {
  auto answer = caresync::testing::exchange_raw(o, node, wire::push{batch.id, batch.decode_changes()});
  REQUIRE(std::holds_alternative<wire::push_result>(answer));
  return std::get<wire::push_result>(answer);
}

}  // namespace

TEST_CASE("a push whose acknowledgement was lost is resent and not applied twice", "[sync][faults]") {
  temp_dir dir;
  test_server server(dir);
  auto a = open_tablet(dir, "a");
  fill(*a, 5);

  // First attempt: the server stores the batch, but the tablet never hears back.
  auto batch = a->internal().next_batch(100);
  REQUIRE(batch);
  REQUIRE(batch->change_count == 5);
  const auto first = push_raw(server.options(0), a->node(), *batch);
  CHECK_FALSE(first.replayed);
  CHECK(first.accepted == 5);
  CHECK(first.last_seq - first.first_seq == 4);
  CHECK(a->outbox_size() == 5);

  SECTION("the same batch sent again is answered from what was stored") {
    const auto again = push_raw(server.options(0), a->node(), *batch);
    CHECK(again.replayed);
    CHECK(again.first_seq == first.first_seq);
    CHECK(again.last_seq == first.last_seq);
    CHECK(server.get().store().head() == 5);
  }
  SECTION("the next sync resends the pinned batch, with writes made meanwhile after it") {
    a->create("visits", visit(99));  // made after the batch was pinned: not part of it
    const auto report = sync_client(*a, server.options(0)).sync();
    CHECK(report.pushed == 6);
    CHECK(report.batches == 2);
    CHECK(a->outbox_size() == 0);
    CHECK(server.get().store().head() == 6);
    CHECK(server.get().stats().batches_replayed == 1);
  }
  CHECK(server.digest() == (sync_client(*a, server.options(0)).sync(), a->state_digest()));
}

TEST_CASE("a pull cut at arbitrary bytes resumes with nothing lost or duplicated", "[sync][faults]") {
  temp_dir dir;
  test_server server(dir);
  auto a = open_tablet(dir, "a");
  constexpr int k_records = 1500;
  fill(*a, k_records);
  sync_client(*a, server.options(0)).sync();
  const auto head = server.get().store().head();
  REQUIRE(head == k_records);

  // Learn how many bytes a whole initial pull takes, then cut at fractions of it.
  auto probe = open_tablet(dir, "probe");
  auto options = server.options(1);
  options.pull_page_changes = 100;
  const auto whole = sync_client(*probe, options).sync().bytes_received;

  for (const double fraction : {0.08, 0.3, 0.55, 0.9}) {
    DYNAMIC_SECTION("cut after " << fraction * 100 << "% of the bytes") {
      auto b = open_tablet(dir, "b");
      link_faults cut;
      cut.cut_after_down_bytes = static_cast<std::uint64_t>(static_cast<double>(whole) * fraction);
      fault_proxy proxy(server.port(), cut);
      auto via_proxy = options;
      via_proxy.port = proxy.port();
      try {
        sync_client(*b, via_proxy).sync();
        FAIL("the sync should have been cut");
      } catch (const caresync::error& e) {
        CHECK(e.code() == network_errc::connection_lost);
        CHECK(is_transient(e.code()));
      }
      CHECK(proxy.cuts() == 1);
      const auto cursor = b->cursor();
      CHECK(cursor < head);
      // Every page applied is whole: the records held are exactly those up to the cursor.
      CHECK(b->count("visits") == cursor);

      proxy.set_faults({});
      const auto resumed = sync_client(*b, via_proxy).sync();
      CHECK(resumed.pulled == head - cursor);
      CHECK(b->count("visits") == k_records);
      CHECK(b->state_digest() == a->state_digest());
    }
  }
}

TEST_CASE("a push cut at arbitrary bytes is retried without duplicates", "[sync][faults]") {
  temp_dir dir;
  test_server server(dir);
  auto a = open_tablet(dir, "a");
  constexpr int k_records = 300;
  fill(*a, k_records);

  // Server-to-client budgets around the end of the handshake and the welcome: some cuts
  // land before the push, some after the server stored it but before the tablet heard.
  int cut_failures = 0;
  for (std::uint64_t budget = 300; budget <= 6000 && a->outbox_size() > 0; budget += 150) {
    link_faults cut;
    cut.cut_after_down_bytes = budget;
    fault_proxy proxy(server.port(), cut);
    auto o = server.options(0);
    o.port = proxy.port();
    o.push_batch_changes = 100;
    try {
      sync_client(*a, o).sync();
    } catch (const caresync::error& e) {
      ++cut_failures;
      CHECK(is_transient(e.code()));
    }
    a->create("visits", visit(k_records + static_cast<int>(budget)));  // work goes on offline
  }
  CHECK(cut_failures > 0);
  const auto written = static_cast<std::uint64_t>(a->count("visits"));
  sync_client(*a, server.options(0)).sync();
  CHECK(a->outbox_size() == 0);
  // Every change is in the log exactly once: one create per record, nothing twice.
  CHECK(server.get().store().head() == written);
  CHECK(server.digest() == a->state_digest());
}
