// The SQLite change log: sequence numbers, idempotent batches, pages, materialised state,
// durability across reopen, and refusal of files that are not ours.

#include <caresync/protocol/codec.hpp>
#include <caresync/protocol/errors.hpp>
#include <caresync/server/change_store.hpp>

#include "../support/temp_dir.hpp"
#include "page_reader.hpp"

#include <catch2/catch.hpp>

#include <sqlite3.h>

#include <fstream>
#include <memory>
#include <string>
#include <vector>

namespace {

using namespace caresync;
using caresync::testing::temp_dir;

constexpr node_id k_tablet_a = 0xa;
constexpr node_id k_tablet_b = 0xb;

change visit_note(node_id node, std::uint64_t wall_ms, const std::string& note, const record_id& id = record_id::generate()) {
  change c;
  c.collection = "visit";
  c.id = id;
  c.ver = version{hlc_stamp::make(wall_ms, 0), node};
  c.fields = {{"note", value{note}}};
  return c;
}

/// One page, decoded from the bytes a client would receive.
auto read_page(server::change_store& store, std::uint64_t cursor, node_id exclude, std::uint32_t max_changes,
               std::uint32_t max_bytes) {
  return caresync::testing::read_decoded_page(store, cursor, exclude, max_changes, max_bytes);
}

/// Runs `sql` on the SQLite file at `path` directly (creating it), as another program would.
void make_sqlite_file(const std::string& path, const char* sql) {
  sqlite3* raw = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &raw) == SQLITE_OK);
  const std::unique_ptr<sqlite3, int (*)(sqlite3*)> db(raw, sqlite3_close);
  REQUIRE(sqlite3_exec(db.get(), sql, nullptr, nullptr, nullptr) == SQLITE_OK);
}

std::vector<std::uint64_t> seqs(const wire::changes_page& page) {
  std::vector<std::uint64_t> out;
  for (const auto& item : page.items) out.push_back(item.seq);
  return out;
}

}  // namespace

TEST_CASE("append gives each change of a batch the next sequence number", "[store]") {
  temp_dir dir;
  auto store = server::open_sqlite_change_store(dir.file("server.db"));
  CHECK(store->head() == 0);

  const std::vector<change> first{visit_note(k_tablet_a, 1000, "first"), visit_note(k_tablet_a, 1001, "second")};
  const auto a = store->append("tablet-a", batch_id::generate(), first);
  CHECK(a.accepted == 2);
  CHECK(a.first_seq == 1);
  CHECK(a.last_seq == 2);
  CHECK_FALSE(a.replayed);

  const std::vector<change> second{visit_note(k_tablet_b, 1002, "third")};
  const auto b = store->append("tablet-b", batch_id::generate(), second);
  CHECK(b.accepted == 1);
  CHECK(b.first_seq == 3);
  CHECK(b.last_seq == 3);
  CHECK(store->head() == 3);

  SECTION("an empty batch stores nothing and reports zeros") {
    const auto empty = store->append("tablet-a", batch_id::generate(), {});
    CHECK(empty.accepted == 0);
    CHECK(empty.first_seq == 0);
    CHECK(empty.last_seq == 0);
    CHECK(store->head() == 3);
  }
}

TEST_CASE("a resent batch returns its stored outcome and stores nothing new", "[store]") {
  temp_dir dir;
  auto store = server::open_sqlite_change_store(dir.file("server.db"));
  const auto batch = batch_id::generate();
  const std::vector<change> changes{visit_note(k_tablet_a, 1000, "a"), visit_note(k_tablet_a, 1001, "b")};
  const auto stored = store->append("tablet-a", batch, changes);
  REQUIRE_FALSE(stored.replayed);

  const auto again = store->append("tablet-a", batch, changes);
  CHECK(again.replayed);
  CHECK(again.accepted == stored.accepted);
  CHECK(again.first_seq == stored.first_seq);
  CHECK(again.last_seq == stored.last_seq);
  CHECK(store->head() == 2);

  SECTION("the same batch id from another device is another batch") {
    const auto other = store->append("tablet-b", batch, changes);
    CHECK_FALSE(other.replayed);
    CHECK(other.first_seq == 3);
    CHECK(store->head() == 4);
  }
}

TEST_CASE("read_page serves changes in order within its bounds", "[store]") {
  temp_dir dir;
  auto store = server::open_sqlite_change_store(dir.file("server.db"));
  std::vector<change> changes;
  for (int i = 0; i < 10; ++i) changes.push_back(visit_note(k_tablet_a, 1000 + i, std::string(100, 'x')));
  store->append("tablet-a", batch_id::generate(), changes);

  SECTION("an empty log gives an empty page at the cursor") {
    temp_dir other;
    auto empty = server::open_sqlite_change_store(other.file("empty.db"));
    const auto r = read_page(*empty, 0, k_tablet_b, 100, 1 << 20);
    CHECK(r.page.items.empty());
    CHECK(r.position.next_cursor == 0);
    CHECK_FALSE(r.position.more);
  }

  SECTION("everything fits") {
    const auto r = read_page(*store, 0, k_tablet_b, 100, 1 << 20);
    CHECK(seqs(r.page) == std::vector<std::uint64_t>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10});
    CHECK(r.page.items[0].body == changes[0]);
    CHECK(r.page.items[9].body == changes[9]);
    CHECK(r.position.next_cursor == 10);
    CHECK_FALSE(r.position.more);
  }

  SECTION("bounded by count") {
    const auto r = read_page(*store, 0, k_tablet_b, 4, 1 << 20);
    CHECK(seqs(r.page) == std::vector<std::uint64_t>{1, 2, 3, 4});
    CHECK(r.position.next_cursor == 4);
    CHECK(r.position.more);

    const auto next = read_page(*store, 4, k_tablet_b, 4, 1 << 20);
    CHECK(seqs(next.page) == std::vector<std::uint64_t>{5, 6, 7, 8});
    const auto last = read_page(*store, 8, k_tablet_b, 4, 1 << 20);
    CHECK(seqs(last.page) == std::vector<std::uint64_t>{9, 10});
    CHECK(last.position.next_cursor == 10);
    CHECK_FALSE(last.position.more);
  }

  SECTION("bounded by bytes, never above the bound unless one change alone exceeds it") {
    const auto one = read_page(*store, 0, k_tablet_b, 1, 1 << 20).change_bytes;
    REQUIRE(one > 100);
    const auto r = read_page(*store, 0, k_tablet_b, 100, static_cast<std::uint32_t>(one * 3 + one / 2));
    CHECK(seqs(r.page) == std::vector<std::uint64_t>{1, 2, 3});
    CHECK(r.change_bytes <= one * 3 + one / 2);
    CHECK(r.position.next_cursor == 3);
    CHECK(r.position.more);

    const auto tiny = read_page(*store, 5, k_tablet_b, 100, 1);
    CHECK(seqs(tiny.page) == std::vector<std::uint64_t>{6});
    CHECK(tiny.position.next_cursor == 6);
    CHECK(tiny.position.more);
  }

  SECTION("a cursor at the head gives an empty page") {
    const auto r = read_page(*store, 10, k_tablet_b, 100, 1 << 20);
    CHECK(r.page.items.empty());
    CHECK(r.position.next_cursor == 10);
    CHECK_FALSE(r.position.more);
  }
}

TEST_CASE("read_page skips the puller's own changes but moves the cursor past them", "[store]") {
  temp_dir dir;
  auto store = server::open_sqlite_change_store(dir.file("server.db"));
  store->append("tablet-a", batch_id::generate(),
                std::vector<change>{visit_note(k_tablet_a, 1000, "a1"), visit_note(k_tablet_a, 1001, "a2")});
  store->append("tablet-b", batch_id::generate(), std::vector<change>{visit_note(k_tablet_b, 1002, "b1")});
  store->append("tablet-a", batch_id::generate(), std::vector<change>{visit_note(k_tablet_a, 1003, "a3")});

  SECTION("tablet a sees only b's change, and its cursor covers its own") {
    const auto r = read_page(*store, 0, k_tablet_a, 100, 1 << 20);
    CHECK(seqs(r.page) == std::vector<std::uint64_t>{3});
    CHECK(r.position.next_cursor == 4);
    CHECK_FALSE(r.position.more);
  }

  SECTION("only own changes above the cursor: empty page, cursor at the head") {
    const auto r = read_page(*store, 3, k_tablet_a, 100, 1 << 20);
    CHECK(r.page.items.empty());
    CHECK(r.position.next_cursor == 4);
    CHECK_FALSE(r.position.more);
  }

  SECTION("a full page still moves the cursor over own changes that follow it") {
    const auto r = read_page(*store, 0, k_tablet_a, 1, 1 << 20);
    CHECK(seqs(r.page) == std::vector<std::uint64_t>{3});
    CHECK(r.position.next_cursor == 4);
    CHECK_FALSE(r.position.more);
  }

  SECTION("a full page stops before the next change of another node, past its own") {
    const auto r = read_page(*store, 0, k_tablet_b, 2, 1 << 20);
    CHECK(seqs(r.page) == std::vector<std::uint64_t>{1, 2});
    CHECK(r.position.next_cursor == 3);
    CHECK(r.position.more);
  }

  SECTION("tablet b sees all of a's") {
    const auto r = read_page(*store, 0, k_tablet_b, 100, 1 << 20);
    CHECK(seqs(r.page) == std::vector<std::uint64_t>{1, 2, 4});
    CHECK(r.position.next_cursor == 4);
  }
}

TEST_CASE("read_page bounds the rows it scans past the puller's own changes", "[store]") {
  temp_dir dir;
  auto store = server::open_sqlite_change_store(dir.file("server.db"));
  std::vector<change> own;
  for (int i = 0; i < 1200; ++i) own.push_back(visit_note(k_tablet_a, 1000 + i, "own"));
  store->append("tablet-a", batch_id::generate(), own);
  store->append("tablet-b", batch_id::generate(), std::vector<change>{visit_note(k_tablet_b, 5000, "theirs")});

  std::uint64_t cursor = 0;
  std::vector<std::uint64_t> received;
  int pages = 0;
  for (bool more = true; more; ++pages) {
    REQUIRE(pages < 100);
    const auto r = read_page(*store, cursor, k_tablet_a, 1, 1 << 20);
    CHECK(r.position.next_cursor > cursor);
    for (auto s : seqs(r.page)) received.push_back(s);
    cursor = r.position.next_cursor;
    more = r.position.more;
  }
  CHECK(pages > 1);  // the scan stopped before reaching b's change at first
  CHECK(received == std::vector<std::uint64_t>{1201});
  CHECK(cursor == 1201);
}

TEST_CASE("materialize folds the log by last-writer-wins", "[store]") {
  temp_dir dir;
  auto store = server::open_sqlite_change_store(dir.file("server.db"));
  const auto id = record_id::generate();
  // b's write is later by stamp but reaches the server first; a's older write must lose.
  store->append("tablet-b", batch_id::generate(), std::vector<change>{visit_note(k_tablet_b, 2000, "newer", id)});
  store->append("tablet-a", batch_id::generate(), std::vector<change>{visit_note(k_tablet_a, 1000, "older", id)});
  const auto other = record_id::generate();
  change removed = visit_note(k_tablet_a, 1500, "gone", other);
  change tombstone;
  tombstone.collection = "visit";
  tombstone.id = other;
  tombstone.ver = version{hlc_stamp::make(1600, 0), k_tablet_a};
  tombstone.kind = change_kind::remove;
  tombstone.covers = std::vector<version>{removed.ver};  // its writer had the note
  store->append("tablet-a", batch_id::generate(), std::vector<change>{removed, tombstone});

  const auto state = store->materialize();
  REQUIRE(state.size() == 2);
  const auto& kept = state.at({"visit", id});
  CHECK(std::get<std::string>(kept.fields.at("note").val) == "newer");
  CHECK(kept.fields.at("note").ver.node == k_tablet_b);
  const auto& deleted = state.at({"visit", other});
  CHECK(deleted.deleted.has_value());
  // A deleted record keeps each field's version, no value, nothing left open.
  REQUIRE(deleted.fields.size() == 1);
  CHECK(deleted.fields.at("note").val == value{});
  CHECK(deleted.fields.at("note").conflicts.empty());
}

TEST_CASE("a reopened store keeps its changes, batches and sequence", "[store]") {
  temp_dir dir;
  const auto path = dir.file("server.db");
  const auto batch = batch_id::generate();
  const std::vector<change> changes{visit_note(k_tablet_a, 1000, "kept"), visit_note(k_tablet_a, 1001, "also kept")};
  {
    auto store = server::open_sqlite_change_store(path);
    store->append("tablet-a", batch, changes);
  }
  auto store = server::open_sqlite_change_store(path);
  CHECK(store->head() == 2);
  const auto again = store->append("tablet-a", batch, changes);
  CHECK(again.replayed);
  CHECK(again.first_seq == 1);
  const auto next = store->append("tablet-b", batch_id::generate(), std::vector<change>{visit_note(k_tablet_b, 1002, "new")});
  CHECK(next.first_seq == 3);
  const auto r = read_page(*store, 0, k_tablet_b, 100, 1 << 20);
  CHECK(seqs(r.page) == std::vector<std::uint64_t>{1, 2});
  CHECK(r.page.items[1].body == changes[1]);
  CHECK(store->materialize().size() == 3);
}

TEST_CASE("a file that is not a caresync server store is refused", "[store]") {
  temp_dir dir;
  const auto path = dir.file("not-ours.db");

  SECTION("a text file") {
    std::ofstream(path) << "these are somebody's notes, not a database\n";
  }
  SECTION("another program's SQLite database") {
    make_sqlite_file(path, "CREATE TABLE notes(body TEXT); INSERT INTO notes VALUES('not ours');");
  }
  SECTION("a database of another program that marked it with its application_id") {
    make_sqlite_file(path, "PRAGMA application_id=1234;");
  }

  try {
    server::open_sqlite_change_store(path);
    FAIL("the file was accepted");
  } catch (const error& e) {
    CHECK(e.code() == storage_errc::corrupt);
    CHECK(std::string(e.what()).find("not-ours.db") != std::string::npos);
  }
}

TEST_CASE("a server store written by a newer format is refused", "[store]") {
  temp_dir dir;
  const auto path = dir.file("server.db");
  server::open_sqlite_change_store(path);
  make_sqlite_file(path, "PRAGMA user_version=99;");
  try {
    server::open_sqlite_change_store(path);
    FAIL("the file was accepted");
  } catch (const error& e) {
    CHECK(e.code() == storage_errc::corrupt);
  }
}
