// One bad record never blocks the queue: a change the server refuses is set aside on the
// tablet with its reason (quarantine), the rest of the outbox goes on, and the app can
// list, retry or drop what was set aside. Over the real server and TLS.

#include "fixture.hpp"
// The store's internals, to pin a batch and send it by hand.
#include "store_impl.hpp"

#include <caresync/protocol/errors.hpp>

#include <catch2/catch.hpp>

#include <string>

using namespace caresync;
using caresync::testing::open_tablet;
using caresync::testing::temp_dir;
using caresync::testing::test_server;

namespace {

std::vector<field_write> visit_with_note(std::string note) {
  return {{"worker", std::string("Eva")}, {"duration_min", std::int64_t{30}}, {"note", std::move(note)}};
}

}  // namespace

TEST_CASE("a change the server refuses is quarantined and the rest of the outbox goes through", "[sync][quarantine]") {
  temp_dir dir;
  test_server server(dir);
  server.config().max_value_bytes = 1000;
  server.restart();
  auto a = open_tablet(dir, "a");
  auto b = open_tablet(dir, "b");

  const auto before = a->create("visits", visit_with_note("short"));
  const auto bad = a->create("visits", visit_with_note(std::string(1500, 'x')));
  const auto after = a->create("visits", visit_with_note("also short"));

  const auto first = sync_client(*a, server.options(0)).sync();
  CHECK(first.pushed == 2);
  CHECK(first.quarantined == 1);
  CHECK(a->outbox_size() == 0);
  CHECK(a->is_synced("visits", before));
  CHECK(a->is_synced("visits", after));
  CHECK_FALSE(a->is_synced("visits", bad));  // not on the server: no receipt

  const auto held = a->quarantined();
  REQUIRE(held.size() == 1);
  CHECK(held[0].collection == "visits");
  CHECK(held[0].record == bad);
  CHECK_FALSE(held[0].deleted);
  CHECK(held[0].code == protocol_errc::limit_exceeded);
  CHECK(held[0].reason.find("1000") != std::string::npos);  // names the limit
  CHECK(held[0].reason.find("xxxx") == std::string::npos);  // never the value
  CHECK(held[0].fields.at("note") == value{std::string(1500, 'x')});
  CHECK(a->get("visits", bad).has_value());  // the worker's words stay on the tablet

  // Tablet B gets the two good visits; the next sync of A sends nothing again.
  sync_client(*b, server.options(1)).sync();
  CHECK(b->count("visits") == 2);
  CHECK_FALSE(b->get("visits", bad).has_value());
  const auto second = sync_client(*a, server.options(0)).sync();
  CHECK(second.pushed == 0);
  CHECK(second.batches == 0);
  CHECK(a->quarantined().size() == 1);

  SECTION("retried once the server accepts it") {
    server.config().max_value_bytes = 4000;
    server.restart();
    a->retry_quarantined(held[0].id);
    CHECK(a->quarantined().empty());
    CHECK(a->outbox_size() == 1);
    const auto retried = sync_client(*a, server.options(0)).sync();
    CHECK(retried.pushed == 1);
    CHECK(retried.quarantined == 0);
    CHECK(a->is_synced("visits", bad));
    sync_client(*b, server.options(1)).sync();
    CHECK(b->get("visits", bad) == a->get("visits", bad));
  }
  SECTION("fixed by a new write, then dropped") {
    a->update("visits", bad, {{"note", std::string("shortened")}});
    a->drop_quarantined(held[0].id);
    CHECK(a->quarantined().empty());
    const auto fixed = sync_client(*a, server.options(0)).sync();
    CHECK(fixed.pushed == 1);
    CHECK(a->is_synced("visits", bad));
    sync_client(*b, server.options(1)).sync();
    // The fix carries only the field written again: B has the record, with that field.
    REQUIRE(b->get("visits", bad).has_value());
    CHECK(b->get("visits", bad)->at("note") == value{std::string("shortened")});
  }
  SECTION("unknown quarantine ids are refused") {
    CHECK_THROWS_AS(a->retry_quarantined(held[0].id + 100), caresync::error);
    CHECK_THROWS_AS(a->drop_quarantined(held[0].id + 100), caresync::error);
    CHECK(a->quarantined().size() == 1);
  }
}

TEST_CASE("a resent batch with a refused change is answered with the same refusal", "[sync][quarantine]") {
  // The tablet lost the answer: it sends the pinned batch again, and the server answers
  // from what it stored, refusals included.
  temp_dir dir;
  test_server server(dir);
  server.config().max_value_bytes = 1000;
  server.restart();
  auto a = open_tablet(dir, "a");
  a->create("visits", visit_with_note("fine"));
  const auto bad = a->create("visits", visit_with_note(std::string(2000, 'y')));
  auto batch = a->internal().next_batch(1000);
  REQUIRE(batch);
  const auto first = testing::exchange_raw(server.options(0), a->node(), wire::push{batch->id, batch->decode_changes()});
  REQUIRE(std::holds_alternative<wire::push_result>(first));
  const auto& result = std::get<wire::push_result>(first);
  CHECK(result.accepted == 1);
  REQUIRE(result.refused.size() == 1);
  CHECK(result.refused[0].index == 1);

  const auto report = sync_client(*a, server.options(0)).sync();  // resends the pinned batch
  CHECK(report.pushed == 1);
  CHECK(report.quarantined == 1);
  CHECK(server.get().stats().batches_replayed == 1);
  REQUIRE(a->quarantined().size() == 1);
  CHECK(a->quarantined()[0].record == bad);
  CHECK(server.get().store().head() == 1);
}
