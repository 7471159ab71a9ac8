// A full disk on the server during a push: the tablet gets a transient error, nothing is
// corrupted or half-stored, and the sync succeeds once space returns. The disk is made
// "full" by a SQLite VFS that fails the server store's writes (tests/support/failing_vfs).

#include "../support/failing_vfs.hpp"
#include "../support/sql_probe.hpp"
#include "fixture.hpp"

#include <caresync/protocol/errors.hpp>

#include <catch2/catch.hpp>

#include <string>

using namespace caresync;
using caresync::testing::open_tablet;
using caresync::testing::temp_dir;
using caresync::testing::test_server;
namespace failing_vfs = caresync::testing::failing_vfs;

namespace {

void add_visits(store& s, int n) {
  s.transaction([&] {
    for (int i = 0; i < n; ++i) {
      s.create("visits", {{"worker", std::string("marie")}, {"duration_min", std::int64_t{i}}, {"note", std::string(300, 'n')}});
    }
  });
}

}  // namespace

TEST_CASE("a full disk on the server fails the push transiently and loses nothing", "[sync][faults][disk]") {
  failing_vfs::install();  // before the server opens its store
  temp_dir dir;
  test_server server(dir);
  const auto server_db = server.config().database_file;
  auto a = open_tablet(dir, "a");
  add_visits(*a, 100);
  REQUIRE(sync_client(*a, server.options(0)).sync().pushed == 100);

  add_visits(*a, 50);
  failing_vfs::fail_writes("server.db");  // the store and its WAL
  const auto refused_before = failing_vfs::refused_writes();
  try {
    sync_client(*a, server.options(0)).sync();
    FAIL("the push should fail while the server's disk is full");
  } catch (const caresync::error& e) {
    CHECK(e.code() == protocol_errc::storage_failed);
    CHECK(is_transient(e.code()));
  }
  CHECK(failing_vfs::refused_writes() > refused_before);
  CHECK(a->outbox_size() == 50);        // nothing acknowledged
  CHECK(server.get().store().head() == 100);  // nothing half-stored

  failing_vfs::heal();
  const auto again = sync_client(*a, server.options(0)).sync();
  CHECK(again.pushed == 50);
  CHECK(a->outbox_size() == 0);
  CHECK(server.get().store().head() == 150);
  CHECK(server.digest() == a->state_digest());

  // After a restart the store reads back whole and sound.
  server.restart();
  CHECK(server.get().store().head() == 150);
  server.stop();
  CHECK(caresync::testing::sql_text(server_db, "PRAGMA integrity_check") == "ok");
  auto b = open_tablet(dir, "b");
  server.start();
  CHECK(sync_client(*b, server.options(1)).sync().pulled == 150);
  CHECK(b->state_digest() == a->state_digest());
}

TEST_CASE("a full disk on the tablet mid-pull keeps the pages applied and resumes after them", "[sync][faults][disk]") {
  // Pages are applied on a thread of the sync's own while the next one is received
  // (sync_client.cpp, apply_aside): a page that cannot be stored must still fail the sync
  // with the store's error, and every page before it must stay, whole.
  failing_vfs::install();  // before the tablet opens its store
  temp_dir dir;
  test_server server(dir);
  auto a = open_tablet(dir, "a");
  add_visits(*a, 100);
  REQUIRE(sync_client(*a, server.options(0)).sync().pushed == 100);

  auto b = open_tablet(dir, "b");
  auto options = server.options(1);
  options.pull_page_changes = 20;
  options.on_progress = [](const sync_progress& p) {
    if (p.pulled == 40) failing_vfs::fail_writes("b.db");  // after the second page is stored
  };
  const auto refused_before = failing_vfs::refused_writes();
  try {
    sync_client(*b, options).sync();
    FAIL("the pull should fail while the tablet's disk is full");
  } catch (const caresync::error& e) {
    CHECK(e.code() == storage_errc::io_failed);
    CHECK(is_transient(e.code()));
  }
  failing_vfs::heal();
  CHECK(failing_vfs::refused_writes() > refused_before);
  CHECK(b->cursor() == 40);
  CHECK(b->count("visits") == 40);

  options.on_progress = nullptr;
  const auto resumed = sync_client(*b, options).sync();
  CHECK(resumed.pulled == 60);
  CHECK(b->count("visits") == 100);
  CHECK(b->state_digest() == a->state_digest());
}

TEST_CASE("a write whose commit fails on a full disk is undone and the store takes the next one", "[store][faults][disk]") {
  failing_vfs::install();  // before the store is opened
  temp_dir dir;
  auto s = open_tablet(dir, "c");
  const auto kept = s->create("visits", {{"worker", std::string("marie")}});
  failing_vfs::fail_writes("c.db");
  CHECK_THROWS_MATCHES(s->create("visits", {{"worker", std::string("jana")}}), caresync::error,
                       Catch::Predicate<caresync::error>([](const caresync::error& e) { return e.code() == storage_errc::io_failed; }));
  failing_vfs::heal();
  // The failed commit closed its transaction: the next write opens and commits its own.
  const auto next = s->create("visits", {{"worker", std::string("petra")}});
  CHECK(s->count("visits") == 2);
  CHECK(s->get("visits", kept).has_value());
  CHECK(s->get("visits", next).has_value());
  CHECK(s->outbox_size() == 2);
}
