// Two tablets and the real server over real TLS on 127.0.0.1.

#include "fixture.hpp"

#include <caresync/protocol/errors.hpp>

#include <catch2/catch.hpp>

#include <sqlite3.h>

#include <memory>
#include <thread>
#include <vector>

using namespace caresync;
using caresync::testing::open_tablet;
using caresync::testing::temp_dir;
using caresync::testing::test_server;

namespace {

std::vector<field_write> visit(int i) {
  return {{"client_id", std::string("client-") + std::to_string(i % 7)},
          {"worker", std::string("anna")},
          {"date", std::string("2026-11-") + std::to_string(10 + i % 18)},
          {"duration_min", std::int64_t{30 + i}},
          {"note", std::string("Synthetic note ") + std::to_string(i) + ": discussed respite care."},
          {"status", std::string("done")},
          {"score", 0.5 + i},
          {"photo", blob{{0, 1, 2, static_cast<std::uint8_t>(i)}}}};
}

}  // namespace

TEST_CASE("a visit recorded offline on tablet A reaches tablet B exactly", "[sync]") {
  temp_dir dir;
  test_server server(dir);
  auto a = open_tablet(dir, "a");
  auto b = open_tablet(dir, "b");

  std::vector<record_id> ids;
  a->transaction([&] {
    for (int i = 0; i < 40; ++i) ids.push_back(a->create("visits", visit(i)));
  });
  const auto client = a->create("clients", {{"name", std::string("Synthetic Client")}, {"municipality", std::string("Benešov")}});
  REQUIRE(a->outbox_size() == 41);
  REQUIRE_FALSE(a->is_synced("visits", ids[0]));

  const auto pushed = sync_client(*a, server.options(0)).sync();
  CHECK(pushed.pushed == 41);
  CHECK(pushed.pulled == 0);  // its own changes are not sent back
  CHECK(pushed.bytes_sent > 0);
  CHECK(a->outbox_size() == 0);
  CHECK(a->is_synced("visits", ids[0]));
  CHECK(a->is_synced("clients", client));

  const auto pulled = sync_client(*b, server.options(1)).sync();
  CHECK(pulled.pushed == 0);
  CHECK(pulled.pulled == 41);
  CHECK(pulled.conflicts == 0);
  CHECK(pulled.bytes_received > 0);
  CHECK(b->count("visits") == 40);
  CHECK(b->count("clients") == 1);
  for (int i = 0; i < 40; ++i) {
    const auto got = b->get("visits", ids[static_cast<std::size_t>(i)]);
    REQUIRE(got);
    const auto want = visit(i);
    for (const auto& f : want) CHECK(got->at(f.name) == f.val);
  }
  CHECK(b->state_digest() == a->state_digest());
  CHECK(server.digest() == a->state_digest());
  CHECK(b->cursor() == server.get().store().head());
}

TEST_CASE("updates and deletes propagate, and the tablets converge", "[sync]") {
  temp_dir dir;
  test_server server(dir);
  auto a = open_tablet(dir, "a");
  auto b = open_tablet(dir, "b");
  const auto v1 = a->create("visits", visit(1));
  const auto v2 = a->create("visits", visit(2));
  sync_client(*a, server.options(0)).sync();
  sync_client(*b, server.options(1)).sync();
  REQUIRE(b->get("visits", v1));

  SECTION("an update of one field on B reaches A; other fields stay") {
    b->update("visits", v1, {{"status", std::string("cancelled")}});
    CHECK(sync_client(*b, server.options(1)).sync().pushed == 1);
    const auto r = sync_client(*a, server.options(0)).sync();
    CHECK(r.pulled == 1);
    const auto got = a->get("visits", v1);
    REQUIRE(got);
    CHECK(got->at("status") == value{std::string("cancelled")});
    CHECK(got->at("worker") == value{std::string("anna")});
  }
  SECTION("a delete on A removes the record on B") {
    a->remove("visits", v2);
    sync_client(*a, server.options(0)).sync();
    sync_client(*b, server.options(1)).sync();
    CHECK_FALSE(b->get("visits", v2));
    CHECK(b->count("visits") == 1);
  }
  SECTION("a delete wins over a concurrent update") {
    a->remove("visits", v2);
    b->update("visits", v2, {{"note", std::string("edited while A deleted it")}});
    sync_client(*b, server.options(1)).sync();
    sync_client(*a, server.options(0)).sync();
    sync_client(*b, server.options(1)).sync();
    CHECK_FALSE(a->get("visits", v2));
    CHECK_FALSE(b->get("visits", v2));
  }
  SECTION("concurrent edits of one field: the greater version wins on both") {
    a->update("visits", v1, {{"note", std::string("A's words")}});
    b->update("visits", v1, {{"note", std::string("B's words")}, {"duration_min", std::int64_t{99}}});
    sync_client(*a, server.options(0)).sync();
    const auto rb = sync_client(*b, server.options(1)).sync();
    const auto ra = sync_client(*a, server.options(0)).sync();
    // Exactly one side saw its note lose: the side whose version was smaller. Which side
    // that is depends on the stamps (same millisecond: counter, then node id).
    CHECK(rb.conflicts + ra.conflicts == 1);
    const auto note = a->get("visits", v1)->at("note");
    CHECK(note == b->get("visits", v1)->at("note"));
    CHECK((note == value{std::string("A's words")} || note == value{std::string("B's words")}));
    CHECK(a->get("visits", v1)->at("duration_min") == value{std::int64_t{99}});  // only B wrote it
  }
  CHECK(a->state_digest() == b->state_digest());
  CHECK(server.digest() == a->state_digest());
}

TEST_CASE("data and cursors survive a server restart", "[sync]") {
  temp_dir dir;
  test_server server(dir);
  auto a = open_tablet(dir, "a");
  auto b = open_tablet(dir, "b");
  for (int i = 0; i < 10; ++i) a->create("visits", visit(i));
  sync_client(*a, server.options(0)).sync();
  server.restart();
  CHECK(server.get().store().head() == 10);
  const auto r = sync_client(*b, server.options(1)).sync();
  CHECK(r.pulled == 10);
  a->create("visits", visit(11));
  sync_client(*a, server.options(0)).sync();
  CHECK(sync_client(*b, server.options(1)).sync().pulled == 1);
  CHECK(a->state_digest() == b->state_digest());
}

TEST_CASE("large syncs go in several batches and pages", "[sync]") {
  temp_dir dir;
  test_server server(dir);
  auto a = open_tablet(dir, "a");
  auto b = open_tablet(dir, "b");
  a->transaction([&] {
    for (int i = 0; i < 1200; ++i) a->create("visits", visit(i));
  });
  // Counted exactly: not sized to the link (weak_link_test.cpp tests that).
  auto oa = server.options(0);
  oa.push_batch_changes = 500;
  oa.size_to_link = false;
  const auto ra = sync_client(*a, oa).sync();
  CHECK(ra.batches == 3);
  CHECK(ra.pushed == 1200);
  auto ob = server.options(1);
  ob.pull_page_changes = 100;
  ob.size_to_link = false;
  const auto rb = sync_client(*b, ob).sync();
  CHECK(rb.pages == 12);
  CHECK(rb.pulled == 1200);
  CHECK(b->state_digest() == a->state_digest());
}

TEST_CASE("a push whose batches follow the cursor moves it past them, and otherwise the pull reads on", "[sync]") {
  temp_dir dir;
  test_server server(dir);
  auto a = open_tablet(dir, "a");
  auto b = open_tablet(dir, "b");
  auto oa = server.options(0);
  oa.push_batch_changes = 100;
  oa.pull_page_changes = 100;
  oa.size_to_link = false;
  auto ob = server.options(1);
  ob.pull_page_changes = 100;
  ob.size_to_link = false;
  a->transaction([&] {
    for (int i = 0; i < 450; ++i) a->create("visits", visit(i));
  });
  // Into an empty log: every batch directly follows A's cursor, which ends at the head
  // without a page that reads A's own changes back.
  const auto ra = sync_client(*a, oa).sync();
  CHECK(ra.pushed == 450);
  CHECK(ra.batches == 5);
  CHECK(ra.pages == 1);
  CHECK(ra.pulled == 0);
  CHECK(ra.cursor == 450);
  CHECK(server.get().store().head() == 450);

  // B writes and pushes before pulling A's: its batch does not follow its cursor (0), so
  // its cursor stays and its pull brings A's 450 visits, then passes its own.
  const auto mine = b->create("visits", visit(1000));
  const auto rb = sync_client(*b, ob).sync();
  CHECK(rb.pushed == 1);
  CHECK(rb.pulled == 450);
  CHECK(rb.cursor == 451);
  CHECK(b->get("visits", mine));
  // A, behind B's visit now, pulls it; then a write of A's follows its cursor again.
  const auto again = sync_client(*a, oa).sync();
  CHECK(again.pulled == 1);
  CHECK(again.cursor == 451);
  a->create("visits", visit(1001));
  const auto last = sync_client(*a, oa).sync();
  CHECK(last.pushed == 1);
  CHECK(last.pulled == 0);
  CHECK(last.cursor == 452);
  CHECK(sync_client(*b, ob).sync().pulled == 1);
  CHECK(a->state_digest() == b->state_digest());
}

TEST_CASE("many tablets sync at once and converge", "[sync]") {
  temp_dir dir;
  test_server server(dir, 8);
  std::vector<std::unique_ptr<store>> tablets;
  for (int t = 0; t < 8; ++t) {
    tablets.push_back(open_tablet(dir, "t" + std::to_string(t)));
    tablets.back()->transaction([&] {
      for (int i = 0; i < 50; ++i) tablets.back()->create("visits", visit(t * 100 + i));
    });
  }
  // Each thread owns one store; assertions stay on the test thread.
  for (int round = 0; round < 2; ++round) {
    std::vector<std::string> failures(8);
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
      threads.emplace_back([&, t] {
        try {
          sync_client(*tablets[static_cast<std::size_t>(t)], server.options(t)).sync();
        } catch (const std::exception& e) {
          failures[static_cast<std::size_t>(t)] = e.what();
        }
      });
    }
    for (auto& th : threads) th.join();
    for (const auto& f : failures) CHECK(f.empty());
  }
  // A last round, one at a time, so everyone has everything.
  for (int t = 0; t < 8; ++t) sync_client(*tablets[static_cast<std::size_t>(t)], server.options(t)).sync();
  CHECK(server.get().store().head() == 400);
  for (const auto& t : tablets) {
    CHECK(t->count("visits") == 400);
    CHECK(t->state_digest() == server.digest());
  }
}

TEST_CASE("the batches before a damaged outbox entry are acknowledged before the push stops", "[sync][faults]") {
  // A batch that cannot be pinned ends the push once the batches on the way are answered:
  // whether the pin fails while the first batches go out, or in the transaction that
  // acknowledges an earlier batch (whose acknowledgement must not go with it).
  const int records = GENERATE(3, 6);
  CAPTURE(records);
  temp_dir dir;
  test_server server(dir);
  auto a = open_tablet(dir, "a");
  std::vector<record_id> ids;
  for (int i = 0; i < records; ++i) ids.push_back(a->create("visits", visit(i)));
  {
    // The newest outbox entry names a change kind no store writes.
    sqlite3* raw = nullptr;
    REQUIRE(sqlite3_open(dir.file("a.db").c_str(), &raw) == SQLITE_OK);
    const std::unique_ptr<sqlite3, decltype(&sqlite3_close)> db(raw, &sqlite3_close);
    REQUIRE(sqlite3_exec(raw, "UPDATE cs_outbox SET kind=9 WHERE seq=(SELECT max(seq) FROM cs_outbox)", nullptr, nullptr,
                         nullptr) == SQLITE_OK);
  }
  auto o = server.options(0);
  o.push_batch_changes = 1;  // one batch per record: the last one cannot be pinned
  o.retry.max_attempts = 1;
  try {
    sync_client(*a, o).sync();
    FAIL("the push should stop at the damaged outbox entry");
  } catch (const caresync::error& e) {
    CHECK(e.code() == storage_errc::corrupt);
  }
  CHECK(server.get().store().head() == static_cast<std::uint64_t>(records - 1));
  for (int i = 0; i + 1 < records; ++i) CHECK(a->is_synced("visits", ids[static_cast<std::size_t>(i)]));
  CHECK_FALSE(a->is_synced("visits", ids.back()));
  CHECK(a->outbox_size() == 1);
}
