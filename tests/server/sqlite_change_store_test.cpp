// The SQLite change store checked against what was appended: every page decoded as a
// client would and compared with the appended changes, the page bounds as invariants
// over every cursor, materialised state against caresync::merge applied by hand, and
// the file itself (WAL, foreign files left untouched).

#include <caresync/protocol/codec.hpp>
#include <caresync/protocol/errors.hpp>
#include <caresync/protocol/merge.hpp>
#include <caresync/server/change_store.hpp>
#include <caresync/server/scope.hpp>

#include "../support/temp_dir.hpp"
#include "../support/thread_nice.hpp"
#include "page_reader.hpp"

#include <catch2/catch.hpp>

#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

namespace {

using namespace caresync;
using caresync::testing::temp_dir;

constexpr node_id k_node_a = 0x1111;
constexpr node_id k_node_b = 0x2222;
constexpr node_id k_node_c = 0x3333;

change upsert(node_id node, std::uint64_t wall_ms, const record_id& id, std::vector<field_write> fields,
              const std::string& collection = "visit") {
  change c;
  c.collection = collection;
  c.id = id;
  c.ver = version{hlc_stamp::make(wall_ms, 0), node};
  c.fields = std::move(fields);
  return c;
}

change note(node_id node, std::uint64_t wall_ms, const std::string& text, const record_id& id = record_id::generate()) {
  return upsert(node, wall_ms, id, {{"note", value{text}}});
}

change tombstone(node_id node, std::uint64_t wall_ms, const record_id& id, const std::string& collection = "visit") {
  change c;
  c.collection = collection;
  c.id = id;
  c.ver = version{hlc_stamp::make(wall_ms, 0), node};
  c.kind = change_kind::remove;
  return c;
}

/// One page, decoded from the bytes a client would receive.
auto read(server::change_store& store, std::uint64_t cursor, node_id exclude, std::uint32_t max_changes,
          std::uint32_t max_bytes) {
  return caresync::testing::read_decoded_page(store, cursor, exclude, max_changes, max_bytes);
}

/// The bytes one change adds to a page, measured with the builder itself.
std::size_t item_bytes(std::uint64_t seq, const change& c) {
  wire::changes_page_builder b;
  b.add(seq, wire::encode_change(c));
  return b.size_bytes();
}

std::vector<std::uint64_t> seqs_of(const wire::changes_page& page) {
  std::vector<std::uint64_t> out;
  for (const auto& item : page.items) out.push_back(item.seq);
  return out;
}

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// Runs `sql` on the SQLite file at `path` (creating it), as another program would.
void sqlite_exec(const std::string& path, const char* sql) {
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open(path.c_str(), &raw);
  const std::unique_ptr<sqlite3, int (*)(sqlite3*)> db(raw, sqlite3_close);
  REQUIRE(rc == SQLITE_OK);
  REQUIRE(sqlite3_exec(db.get(), sql, nullptr, nullptr, nullptr) == SQLITE_OK);
}

/// The first column of the first row of `sql` on the file at `path`, as text.
std::string sqlite_query(const std::string& path, const char* sql) {
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READONLY, nullptr);
  const std::unique_ptr<sqlite3, int (*)(sqlite3*)> db(raw, sqlite3_close);
  REQUIRE(rc == SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  REQUIRE(sqlite3_prepare_v2(db.get(), sql, -1, &stmt, nullptr) == SQLITE_OK);
  const std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> guard(stmt, sqlite3_finalize);
  REQUIRE(sqlite3_step(stmt) == SQLITE_ROW);
  const auto* text = sqlite3_column_text(stmt, 0);
  return text ? reinterpret_cast<const char*>(text) : "";
}

/// A log of 24 changes from three nodes in 9 batches, of sizes from a few bytes to ~3 KiB.
struct mixed_log {
  std::vector<change> changes;  ///< changes[i] has seq i + 1

  mixed_log() {
    const node_id nodes[] = {k_node_a, k_node_a, k_node_b, k_node_a, k_node_c, k_node_b, k_node_b, k_node_a};
    for (int i = 0; i < 24; ++i) {
      const std::size_t size = static_cast<std::size_t>((i * 37) % 11) * 300 + 1;
      changes.push_back(note(nodes[i % 8], 1000 + static_cast<std::uint64_t>(i), std::string(size, 'a' + i % 26)));
    }
  }

  void append_to(server::change_store& store) const {
    const std::size_t batch_sizes[] = {1, 4, 2, 5, 1, 3, 2, 4, 2};
    std::size_t at = 0;
    for (auto n : batch_sizes) {
      const std::vector<change> batch(changes.begin() + static_cast<std::ptrdiff_t>(at),
                                      changes.begin() + static_cast<std::ptrdiff_t>(at + n));
      const auto out = store.append("device-" + std::to_string(batch[0].ver.node), batch_id::generate(), batch);
      REQUIRE(out.first_seq == at + 1);
      at += n;
    }
    REQUIRE(at == changes.size());
  }
};

}  // namespace

TEST_CASE("seqs are consecutive from 1 across batches and devices, and head follows", "[store]") {
  temp_dir dir;
  auto store = server::open_sqlite_change_store(dir.file("server.db"));
  REQUIRE(store->head() == 0);

  const auto first = store->append("tablet-a", batch_id::generate(),
                                   std::vector<change>{note(k_node_a, 10, "1"), note(k_node_a, 11, "2"), note(k_node_a, 12, "3")});
  CHECK(first.accepted == 3);
  CHECK(first.first_seq == 1);
  CHECK(first.last_seq == 3);
  CHECK_FALSE(first.replayed);
  CHECK(store->head() == 3);

  const auto second = store->append("tablet-b", batch_id::generate(), std::vector<change>{note(k_node_b, 13, "4")});
  CHECK(second.accepted == 1);
  CHECK(second.first_seq == 4);
  CHECK(second.last_seq == 4);
  CHECK(store->head() == 4);

  const auto empty_batch = batch_id::generate();
  const auto empty = store->append("tablet-a", empty_batch, {});
  CHECK(empty.accepted == 0);
  CHECK(empty.first_seq == 0);
  CHECK(empty.last_seq == 0);
  CHECK_FALSE(empty.replayed);
  CHECK(store->head() == 4);

  // An empty batch is remembered like any other: resending it is a replay.
  const auto empty_again = store->append("tablet-a", empty_batch, {});
  CHECK(empty_again.replayed);
  CHECK(empty_again.accepted == 0);
  CHECK(empty_again.first_seq == 0);

  const auto third = store->append("tablet-a", batch_id::generate(),
                                   std::vector<change>{note(k_node_a, 14, "5"), note(k_node_a, 15, "6")});
  CHECK(third.first_seq == 5);
  CHECK(third.last_seq == 6);
  CHECK(store->head() == 6);

  const auto all = read(*store, 0, k_node_c, 100, 1 << 20);
  CHECK(seqs_of(all.page) == std::vector<std::uint64_t>{1, 2, 3, 4, 5, 6});
}

TEST_CASE("a replayed batch gets its first outcome back, whatever it now carries, and stores nothing", "[store]") {
  temp_dir dir;
  auto store = server::open_sqlite_change_store(dir.file("server.db"));
  const auto batch = batch_id::generate();
  const std::vector<change> original{note(k_node_a, 100, "original 1"), note(k_node_a, 101, "original 2")};
  const auto stored = store->append("tablet-a", batch, original);
  REQUIRE(stored.first_seq == 1);
  store->append("tablet-b", batch_id::generate(), std::vector<change>{note(k_node_b, 102, "b")});
  REQUIRE(store->head() == 3);

  SECTION("the same changes") {
    const auto again = store->append("tablet-a", batch, original);
    CHECK(again.replayed);
    CHECK(again.accepted == 2);
    CHECK(again.first_seq == 1);
    CHECK(again.last_seq == 2);
  }
  SECTION("other changes under the same batch id are not stored") {
    const std::vector<change> other{note(k_node_a, 200, "x"), note(k_node_a, 201, "y"), note(k_node_a, 202, "z")};
    const auto again = store->append("tablet-a", batch, other);
    CHECK(again.replayed);
    CHECK(again.accepted == 2);
    CHECK(again.first_seq == 1);
    CHECK(again.last_seq == 2);
    CHECK(store->materialize().size() == 3);
  }
  SECTION("an empty resend") {
    const auto again = store->append("tablet-a", batch, {});
    CHECK(again.replayed);
    CHECK(again.accepted == 2);
    CHECK(again.last_seq == 2);
  }

  CHECK(store->head() == 3);
  const auto page = read(*store, 0, k_node_c, 100, 1 << 20);
  REQUIRE(page.page.items.size() == 3);
  CHECK(page.page.items[0].body == original[0]);
  CHECK(page.page.items[1].body == original[1]);
}

TEST_CASE("refused changes are not stored, and a replay returns the same refusals", "[store]") {
  temp_dir dir;
  const auto path = dir.file("server.db");
  const auto batch = batch_id::generate();
  const std::vector<change> changes{note(k_node_a, 100, "kept 1"), note(k_node_a, 101, "refused"),
                                    note(k_node_a, 102, "kept 2"), note(k_node_a, 103, "refused too")};
  const std::vector<wire::refusal> refused{{1, 6, "a value is larger than 10 bytes"}, {3, 6, "another reason"}};
  {
    auto store = server::open_sqlite_change_store(path);
    const auto out = store->append("tablet-a", batch, changes, refused);
    CHECK_FALSE(out.replayed);
    CHECK(out.accepted == 2);
    CHECK(out.first_seq == 1);
    CHECK(out.last_seq == 2);
    CHECK(out.refused == refused);
  }
  // Reopened, as after a crash between the commit and the answer.
  auto store = server::open_sqlite_change_store(path);
  const auto again = store->append("tablet-a", batch, changes, {});
  CHECK(again.replayed);
  CHECK(again.accepted == 2);
  CHECK(again.last_seq == 2);
  CHECK(again.refused == refused);
  CHECK(store->head() == 2);
  const auto page = read(*store, 0, k_node_c, 100, 1 << 20);
  REQUIRE(page.page.items.size() == 2);
  CHECK(page.page.items[0].body == changes[0]);
  CHECK(page.page.items[1].body == changes[2]);

  // A batch refused whole stores no change but is remembered all the same.
  const auto all_refused = batch_id::generate();
  const auto none = store->append("tablet-a", all_refused, std::vector<change>{changes[1]}, std::vector<wire::refusal>{{0, 6, "r"}});
  CHECK(none.accepted == 0);
  CHECK(none.first_seq == 0);
  CHECK(store->head() == 2);
  CHECK(store->append("tablet-a", all_refused, std::vector<change>{changes[1]}).refused.size() == 1);
}

TEST_CASE("history lists every accepted change of one record, oldest first, with who and when", "[store][history]") {
  temp_dir dir;
  auto store = server::open_sqlite_change_store(dir.file("server.db"));
  const auto id = record_id::generate();
  const auto other = record_id::generate();
  store->append("tablet-a", batch_id::generate(), std::vector<change>{note(k_node_a, 1000, "first words", id), note(k_node_a, 1001, "elsewhere", other)});
  store->append("tablet-b", batch_id::generate(), std::vector<change>{note(k_node_b, 1002, "second words", id)});
  store->append("tablet-a", batch_id::generate(), std::vector<change>{tombstone(k_node_a, 1003, id)});

  const auto h = store->history("visit", id);
  REQUIRE(h.size() == 3);
  CHECK(h[0].seq == 1);
  CHECK(h[0].device == "tablet-a");
  CHECK(h[0].body == note(k_node_a, 1000, "first words", id));
  CHECK(h[1].seq == 3);
  CHECK(h[1].device == "tablet-b");
  CHECK(h[1].body.fields.at(0).val == value{std::string("second words")});  // the overwritten value stays visible
  CHECK(h[2].body.kind == change_kind::remove);
  CHECK(h[0].received_ms > 0);
  CHECK(h[0].received_ms <= h[2].received_ms);
  CHECK(store->history("visit", record_id::generate()).empty());
  CHECK(store->history("client", id).empty());  // another collection, same id
}

TEST_CASE("a batch id is scoped to its device", "[store]") {
  temp_dir dir;
  auto store = server::open_sqlite_change_store(dir.file("server.db"));
  const auto batch = batch_id::generate();
  const auto from_a = store->append("tablet-a", batch, std::vector<change>{note(k_node_a, 1, "a1"), note(k_node_a, 2, "a2")});
  const auto from_b = store->append("tablet-b", batch, std::vector<change>{note(k_node_b, 3, "b1")});
  CHECK_FALSE(from_b.replayed);
  CHECK(from_b.accepted == 1);
  CHECK(from_b.first_seq == 3);
  CHECK(from_b.last_seq == 3);
  CHECK(store->head() == 3);

  // Each device's resend answers with its own outcome.
  const auto again_a = store->append("tablet-a", batch, {});
  const auto again_b = store->append("tablet-b", batch, {});
  CHECK(again_a.replayed);
  CHECK(again_a.first_seq == from_a.first_seq);
  CHECK(again_a.last_seq == 2);
  CHECK(again_b.replayed);
  CHECK(again_b.first_seq == 3);
  CHECK(again_b.last_seq == 3);
  CHECK(store->head() == 3);
}

TEST_CASE("a page decodes to exactly the appended changes with their seqs", "[store]") {
  temp_dir dir;
  auto store = server::open_sqlite_change_store(dir.file("server.db"));
  const auto patient = record_id::generate();
  const auto visit = record_id::generate();
  const std::vector<change> first{
      upsert(k_node_a, 5000, patient,
             {{"name", value{std::string("Ana Dias")}},
              {"age", value{std::int64_t{71}}},
              {"weight_kg", value{63.5}},
              {"photo", value{blob{{0x00, 0xff, 0x10}}}},
              {"notes", value{}}},
             "patient"),
      upsert(k_node_a, 5001, visit, {{"note", value{std::string("é ✓ unicode")}}}),
  };
  const std::vector<change> second{
      tombstone(k_node_b, 5002, visit),
      upsert(k_node_b, 5003, patient, {{"age", value{std::int64_t{-1}}}}, "patient"),
  };
  store->append("tablet-a", batch_id::generate(), first);
  store->append("tablet-b", batch_id::generate(), second);

  const auto r = read(*store, 0, k_node_c, 100, 1 << 20);
  const std::vector<sequenced_change> expected{{1, first[0]}, {2, first[1]}, {3, second[0]}, {4, second[1]}};
  CHECK(r.page.items == expected);
  CHECK(r.page.next_cursor == 4);
  CHECK_FALSE(r.page.more);
  CHECK(r.position.next_cursor == 4);

  const auto from_2 = read(*store, 2, k_node_c, 100, 1 << 20);
  CHECK(from_2.page.items == std::vector<sequenced_change>(expected.begin() + 2, expected.end()));
}

TEST_CASE("read_page bounds by count and by bytes, with at least one change", "[store]") {
  temp_dir dir;
  auto store = server::open_sqlite_change_store(dir.file("server.db"));
  std::vector<change> changes;
  for (int i = 0; i < 6; ++i) changes.push_back(note(k_node_a, 100 + static_cast<std::uint64_t>(i), std::string(500, 'n')));
  const auto big = note(k_node_a, 200, std::string(10'000, 'B'));
  changes.insert(changes.begin() + 3, big);  // seq 4 is large
  store->append("tablet-a", batch_id::generate(), changes);
  const auto small = item_bytes(1, changes[0]);
  REQUIRE(small > 500);
  REQUIRE(small < 600);

  SECTION("by count") {
    const auto r = read(*store, 0, k_node_c, 2, 1 << 20);
    CHECK(seqs_of(r.page) == std::vector<std::uint64_t>{1, 2});
    CHECK(r.position.next_cursor == 2);
    CHECK(r.position.more);
  }
  SECTION("a count of 0 still gives one change") {
    const auto r = read(*store, 0, k_node_c, 0, 1 << 20);
    CHECK(seqs_of(r.page) == std::vector<std::uint64_t>{1});
    CHECK(r.position.more);
  }
  SECTION("by bytes: two small changes fit exactly, a third does not") {
    const auto r = read(*store, 0, k_node_c, 100, static_cast<std::uint32_t>(2 * small));
    CHECK(seqs_of(r.page) == std::vector<std::uint64_t>{1, 2});
    CHECK(r.change_bytes == 2 * small);
    CHECK(r.position.next_cursor == 2);
    CHECK(r.position.more);
  }
  SECTION("by bytes: one byte short of two changes gives one") {
    const auto r = read(*store, 0, k_node_c, 100, static_cast<std::uint32_t>(2 * small - 1));
    CHECK(seqs_of(r.page) == std::vector<std::uint64_t>{1});
    CHECK(r.position.more);
  }
  SECTION("a change larger than max_bytes alone is served alone") {
    const auto r = read(*store, 3, k_node_c, 100, 1000);
    REQUIRE(r.page.items.size() == 1);
    CHECK(r.page.items[0].seq == 4);
    CHECK(r.page.items[0].body == big);
    CHECK(r.change_bytes > 10'000);
    CHECK(r.position.next_cursor == 4);
    CHECK(r.position.more);
  }
  SECTION("a large change after a small one waits for the next page") {
    const auto r = read(*store, 2, k_node_c, 100, 1000);
    CHECK(seqs_of(r.page) == std::vector<std::uint64_t>{3});
    CHECK(r.position.next_cursor == 3);
    CHECK(r.position.more);
  }
  SECTION("the last page") {
    const auto r = read(*store, 5, k_node_c, 100, 1 << 20);
    CHECK(seqs_of(r.page) == std::vector<std::uint64_t>{6, 7});
    CHECK(r.position.next_cursor == 7);
    CHECK_FALSE(r.position.more);
  }
  SECTION("a cursor at head") {
    const auto r = read(*store, 7, k_node_c, 100, 1 << 20);
    CHECK(r.page.items.empty());
    CHECK(r.position.next_cursor == 7);
    CHECK_FALSE(r.position.more);
  }
}

TEST_CASE("read_page keeps its contract from every cursor, for every puller and bound", "[store]") {
  temp_dir dir;
  auto store = server::open_sqlite_change_store(dir.file("server.db"));
  const mixed_log log;
  log.append_to(*store);
  const std::uint64_t head = log.changes.size();
  REQUIRE(store->head() == head);

  const node_id pullers[] = {k_node_a, k_node_b, k_node_c};
  const std::uint32_t counts[] = {1, 2, 3, 7, 100};
  const std::uint32_t byte_bounds[] = {1, 700, 2000, 5000, 1u << 20};
  for (const auto exclude : pullers) {
    for (const auto max_changes : counts) {
      for (const auto max_bytes : byte_bounds) {
        INFO("exclude " << exclude << ", max_changes " << max_changes << ", max_bytes " << max_bytes);
        for (std::uint64_t cursor = 0; cursor <= head; ++cursor) {
          INFO("cursor " << cursor);
          const auto r = read(*store, cursor, exclude, max_changes, max_bytes);
          const auto next = r.position.next_cursor;
          REQUIRE(next >= cursor);
          REQUIRE(next <= head);
          CHECK(r.page.next_cursor == next);
          CHECK(r.page.more == r.position.more);
          // `more` exactly when changes exist beyond next_cursor.
          CHECK(r.position.more == (next < head));
          if (cursor < head) CHECK(next > cursor);

          // The page is exactly the other nodes' changes in (cursor, next_cursor], in order.
          std::vector<sequenced_change> expected;
          for (std::uint64_t s = cursor + 1; s <= next; ++s) {
            if (log.changes[s - 1].ver.node != exclude) expected.push_back({s, log.changes[s - 1]});
          }
          CHECK(r.page.items == expected);

          // Bounds: count always; bytes unless the page is a single change.
          CHECK(r.page.items.size() <= max_changes);
          if (r.page.items.size() > 1) CHECK(r.change_bytes <= max_bytes);
          bool any_other = false;
          for (std::uint64_t s = cursor + 1; s <= head; ++s) any_other = any_other || log.changes[s - 1].ver.node != exclude;
          if (any_other) CHECK_FALSE(r.page.items.empty());

          // A page stops early only because the next change would break a bound.
          if (r.position.more) {
            const auto& following = log.changes[next];
            CHECK(following.ver.node != exclude);
            const bool full = r.page.items.size() >= max_changes ||
                              r.change_bytes + item_bytes(next + 1, following) > max_bytes;
            CHECK(full);
          }
        }
      }
    }
  }
}

TEST_CASE("paging from 0 to head delivers every other node's change once, and skips own ones", "[store]") {
  temp_dir dir;
  auto store = server::open_sqlite_change_store(dir.file("server.db"));
  const mixed_log log;
  log.append_to(*store);

  for (const node_id puller : {k_node_a, k_node_b, k_node_c}) {
    INFO("puller " << puller);
    std::vector<sequenced_change> received;
    std::uint64_t cursor = 0;
    int pages = 0;
    for (bool more = true; more; ++pages) {
      REQUIRE(pages < 100);
      const auto r = read(*store, cursor, puller, 3, 2500);
      received.insert(received.end(), r.page.items.begin(), r.page.items.end());
      cursor = r.position.next_cursor;
      more = r.position.more;
    }
    std::vector<sequenced_change> expected;
    for (std::uint64_t s = 1; s <= log.changes.size(); ++s) {
      if (log.changes[s - 1].ver.node != puller) expected.push_back({s, log.changes[s - 1]});
    }
    CHECK(received == expected);
    CHECK(cursor == log.changes.size());
  }
  // Node a wrote seqs 1, 2, 4, 8, 9, 10, 12, 16, ...: a one-change pull by a skips 1 and
  // 2, serves 3, and moves over its own 4 after the page is full.
  const auto r = read(*store, 0, k_node_a, 1, 1 << 20);
  CHECK(seqs_of(r.page) == std::vector<std::uint64_t>{3});
  CHECK(r.position.next_cursor == 4);
  CHECK(r.position.more);
}

TEST_CASE("materialize equals caresync::merge applied by hand, tombstones included", "[store]") {
  temp_dir dir;
  auto store = server::open_sqlite_change_store(dir.file("server.db"));
  std::vector<record_id> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(record_id::generate());

  // Writes arrive out of stamp order; nodes tie on stamps; two records are deleted, one
  // of them written to after its tombstone.
  const std::vector<std::vector<change>> batches{
      {upsert(k_node_a, 300, ids[0], {{"note", value{std::string("a@300")}}, {"score", value{std::int64_t{1}}}}),
       upsert(k_node_b, 100, ids[0], {{"note", value{std::string("b@100")}}})},
      {upsert(k_node_b, 300, ids[0], {{"score", value{std::int64_t{2}}}}),  // same stamp, higher node: wins
       upsert(k_node_a, 50, ids[1], {{"note", value{std::string("doomed")}}})},
      {tombstone(k_node_c, 60, ids[1]), upsert(k_node_a, 400, ids[1], {{"note", value{std::string("too late")}}})},
      {upsert(k_node_c, 10, ids[2], {{"note", value{std::string("only")}}}, "patient")},
      {tombstone(k_node_b, 500, ids[3])},
      {upsert(k_node_a, 900, ids[4], {{"x", value{1.5}}}), upsert(k_node_c, 800, ids[4], {{"x", value{2.5}}, {"y", value{}}})},
  };
  std::map<server::record_key, record_state> expected;
  for (const auto& batch : batches) {
    store->append("device", batch_id::generate(), batch);
    for (const auto& c : batch) merge(expected[{c.collection, c.id}], c);
  }

  const auto state = store->materialize();
  CHECK(state == expected);

  // The hand-applied rule gives what the merge rule says, so the comparison means something.
  REQUIRE(state.size() == 5);
  const auto& r0 = state.at({"visit", ids[0]});
  CHECK(std::get<std::string>(r0.fields.at("note").val) == "a@300");
  CHECK(std::get<std::int64_t>(r0.fields.at("score").val) == 2);
  CHECK(r0.fields.at("score").ver.node == k_node_b);
  const auto& r1 = state.at({"visit", ids[1]});
  REQUIRE(r1.deleted.has_value());
  CHECK(r1.deleted->node == k_node_c);
  for (const auto& [name, f] : r1.fields) CHECK(f.val == value{});  // values gone with the delete
  CHECK(state.at({"patient", ids[2]}).fields.size() == 1);
  CHECK(state.at({"visit", ids[3]}).deleted.has_value());
  const auto& r4 = state.at({"visit", ids[4]});
  CHECK(std::get<double>(r4.fields.at("x").val) == 1.5);
  CHECK(std::holds_alternative<std::monostate>(r4.fields.at("y").val));
}

TEST_CASE("a store reopened from its file answers as before", "[store]") {
  temp_dir dir;
  const auto path = dir.file("server.db");
  const mixed_log log;
  const auto replay_batch = batch_id::generate();
  const auto empty_batch = batch_id::generate();
  std::map<server::record_key, record_state> state_before;
  wire::changes_page page_before;
  {
    auto store = server::open_sqlite_change_store(path);
    log.append_to(*store);
    const auto out = store->append("tablet-z", replay_batch, std::vector<change>{note(k_node_c, 9000, "last")});
    REQUIRE(out.first_seq == 25);
    store->append("tablet-z", empty_batch, {});
    state_before = store->materialize();
    page_before = read(*store, 0, k_node_b, 1000, 1 << 20).page;
  }
  auto store = server::open_sqlite_change_store(path);
  CHECK(store->head() == 25);
  const auto again = store->append("tablet-z", replay_batch, {});
  CHECK(again.replayed);
  CHECK(again.accepted == 1);
  CHECK(again.first_seq == 25);
  CHECK(again.last_seq == 25);
  const auto empty_again = store->append("tablet-z", empty_batch, {});
  CHECK(empty_again.replayed);
  CHECK(empty_again.first_seq == 0);
  CHECK(store->head() == 25);
  CHECK(store->materialize() == state_before);
  CHECK(read(*store, 0, k_node_b, 1000, 1 << 20).page == page_before);

  const auto next = store->append("tablet-z", batch_id::generate(), std::vector<change>{note(k_node_c, 9001, "after")});
  CHECK_FALSE(next.replayed);
  CHECK(next.first_seq == 26);
  CHECK(store->head() == 26);
}

TEST_CASE("a file that is not ours is refused as corrupt and left byte-for-byte unchanged", "[store]") {
  temp_dir dir;
  const auto path = dir.file("foreign.db");

  SECTION("a text file") {
    std::ofstream(path, std::ios::binary) << "patient list, 2026\nAna Dias\nRui Costa\n";
  }
  SECTION("a file of binary junk the size of a database page") {
    std::string junk(4096, '\0');
    for (std::size_t i = 0; i < junk.size(); ++i) junk[i] = static_cast<char>((i * 131 + 7) & 0xff);
    std::ofstream(path, std::ios::binary) << junk;
  }
  SECTION("another program's SQLite database") {
    sqlite_exec(path, "CREATE TABLE inventory(item TEXT, qty INTEGER); INSERT INTO inventory VALUES('gauze', 40);");
  }
  SECTION("another program's empty SQLite database marked with its application_id") {
    sqlite_exec(path, "PRAGMA application_id=42; PRAGMA user_version=3;");
  }
  SECTION("another program's SQLite database in WAL mode") {
    sqlite_exec(path, "PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES(1);");
  }

  const auto before = file_bytes(path);
  REQUIRE_FALSE(before.empty());
  try {
    server::open_sqlite_change_store(path);
    FAIL("the foreign file was opened as a change store");
  } catch (const error& e) {
    CHECK(e.code() == storage_errc::corrupt);
    CHECK_THAT(e.what(), Catch::Contains(path));
  }
  CHECK(file_bytes(path) == before);
}

TEST_CASE("a format-1 server database opens, keeps its log and becomes format 2", "[store]") {
  temp_dir dir;
  const auto path = dir.file("server.db");
  const record_id id = record_id::generate();
  {
    auto store = server::open_sqlite_change_store(path);
    store->append("tablet-a", batch_id::generate(), std::vector<change>{note(k_node_a, 1, "x", id)});
  }
  CHECK(sqlite_query(path, "PRAGMA user_version") == "2");
  // What a format-1 build left: no per-node totals, its own format number.
  sqlite_exec(path, "DROP TABLE log_totals; PRAGMA user_version=1;");
  auto store = server::open_sqlite_change_store(path);
  CHECK(sqlite_query(path, "PRAGMA user_version") == "2");
  CHECK(store->head() == 1);
  CHECK(store->history("visit", id).size() == 1);
  CHECK(store->extent(0, k_node_b).changes == 1);  // counted from the log again
}

TEST_CASE("the store's file is in WAL mode", "[store]") {
  temp_dir dir;
  const auto path = dir.file("server.db");
  auto store = server::open_sqlite_change_store(path);
  store->append("tablet-a", batch_id::generate(), std::vector<change>{note(k_node_a, 1, "x")});
  // journal_mode=WAL is recorded in the file, so another connection sees it; synchronous
  // is per connection and cannot be observed from outside.
  CHECK(sqlite_query(path, "PRAGMA journal_mode") == "wal");
  CHECK(sqlite_query(path, "SELECT count(*) FROM changes") == "1");
  store.reset();
  CHECK(sqlite_query(path, "PRAGMA journal_mode") == "wal");
}

TEST_CASE("the WAL is checkpointed by the store's own thread and emptied when the store is quiet", "[store]") {
  temp_dir dir;
  const auto path = dir.file("server.db");
  const auto wal = path + "-wal";
#if defined(__linux__)
  const auto threads_before = testing::thread_nice_values();
#endif
  auto store = server::open_sqlite_change_store(path);
  // About 8 MB of changes in 40 commits: past the 1000-page (4 MB) mark that wakes a
  // passive checkpoint, more than once.
  const std::string text(1000, 'w');
  std::uint64_t written = 0;
  for (int batch = 0; batch < 40; ++batch) {
    std::vector<change> changes;
    for (int i = 0; i < 200; ++i) changes.push_back(note(k_node_a, 1000 + written++, text));
    store->append("tablet-a", batch_id::generate(), changes);
  }
  const auto state = store->materialize();
  REQUIRE(state.size() == written);
  // Quiet now: within a few seconds a truncating checkpoint leaves the WAL file empty
  // (SQLite's automatic checkpoint, run by commits, never truncates it).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::filesystem::file_size(wal) > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  CHECK(std::filesystem::file_size(wal) == 0);
#if defined(__linux__)
  // The checkpoints ran at the server's own priority (unlike a tablet's, which yield the
  // cores: wal_checkpointer::thread_priority): a busy server's WAL must not grow behind.
  const int own = threads_before.at(testing::this_thread_id());
  for (const auto& [tid, nice] : testing::thread_nice_values()) {
    if (!threads_before.contains(tid)) CHECK(nice == own);
  }
#endif
  // Everything is in the database file, and a reopened store answers as before.
  CHECK(sqlite_query(path, "SELECT count(*) FROM changes") == std::to_string(written));
  store.reset();
  store = server::open_sqlite_change_store(path);
  CHECK(store->head() == written);
  CHECK(store->materialize() == state);
  CHECK(sqlite_query(path, "PRAGMA integrity_check") == "ok");
}

TEST_CASE("the audit of a pull of many pages has one receive line per record per page, old rows read as before",
          "[store][audit]") {
  temp_dir dir;
  const auto path = dir.file("server.db");
  // Two collections, records written more than once, by two nodes; B's own are not sent to B.
  std::vector<change> log;
  std::vector<record_id> ids;
  for (int i = 0; i < 12; ++i) ids.push_back(record_id::generate());
  for (int n = 0; n < 90; ++n) {
    const auto& id = ids[static_cast<std::size_t>(n * 7 % 12)];
    log.push_back(upsert(n % 4 == 3 ? k_node_b : k_node_a, 1000 + static_cast<std::uint64_t>(n), id,
                         {{"note", value{std::string("v") + std::to_string(n)}}}, n * 7 % 12 < 5 ? "clients" : "visits"));
  }
  {
    auto store = server::open_sqlite_change_store(path);
    for (std::size_t at = 0; at < log.size(); at += 30) {
      store->append("tablet-a", batch_id::generate(),
                    std::vector<change>(log.begin() + static_cast<std::ptrdiff_t>(at),
                                        log.begin() + static_cast<std::ptrdiff_t>(at + 30)));
    }
  }
  // As a store made before receipts by page: per-record rows, and no column for them.
  sqlite_exec(path,
              "ALTER TABLE audit DROP COLUMN records;"
              "INSERT INTO audit(at_ms, device, user, action, collection, record_id, seq) VALUES"
              " (1000, 'tablet-b', 'user-b', 'receive', 'visits', x'0102030405060708090a0b0c0d0e0f10', 4),"
              " (1000, 'tablet-b', 'user-b', 'receive', 'clients', x'1102030405060708090a0b0c0d0e0f10', 2),"
              " (1001, 'tablet-b', 'user-b', 'purge', 'clients', x'2102030405060708090a0b0c0d0e0f10', 0);");
  auto store = server::open_sqlite_change_store(path);
  const server::requester who{"tablet-b", "user-b", nullptr};
  // What the audit held before: a line per record of each page, by (collection, record),
  // with the last seq of it the page carried.
  using server::record_key;
  using line = std::tuple<std::string, std::string, std::string, record_key, std::uint64_t>;
  std::vector<line> expected{
      {"tablet-b", "user-b", "receive", {"visits", record_id::parse("01020304-0506-0708-090a-0b0c0d0e0f10").value()}, 4},
      {"tablet-b", "user-b", "receive", {"clients", record_id::parse("11020304-0506-0708-090a-0b0c0d0e0f10").value()}, 2},
      {"tablet-b", "user-b", "purge", {"clients", record_id::parse("21020304-0506-0708-090a-0b0c0d0e0f10").value()}, 0}};
  std::uint64_t cursor = 0;
  int pages = 0;
  for (bool more = true; more; ++pages) {
    wire::changes_page_builder builder;
    const auto pos = store->serve_page(who, server::page_request{cursor, k_node_b, {}, 9, 1u << 20, 0}, builder);
    const auto page = std::get<wire::changes_page>(wire::decode(wire::message_type::changes, builder.finish(pos.next_cursor, pos.more)));
    std::map<record_key, std::uint64_t> sent;
    for (const auto& item : page.items) {
      auto& seq = sent[{item.body.collection, item.body.id}];
      seq = std::max(seq, item.seq);
    }
    for (const auto& [key, seq] : sent) expected.emplace_back("tablet-b", "user-b", "receive", key, seq);
    cursor = pos.next_cursor;
    more = pos.more;
  }
  REQUIRE(pages > 5);
  std::vector<line> got;
  std::uint64_t last_at = 0;
  bool in_order = true;
  store->audit(server::audit_query{0, UINT64_MAX, "tablet-b", ""}, [&](const server::audit_entry& e) {
    in_order = in_order && e.at_ms >= last_at;
    last_at = e.at_ms;
    got.emplace_back(e.device, e.user, e.action, record_key{e.collection, e.record}, e.seq);
  });
  CHECK(in_order);
  CHECK(got == expected);
  // A receive line per record per page, in far fewer rows: one per collection of a page.
  CHECK(std::stoi(sqlite_query(path, "SELECT count(*) FROM audit")) <= 3 + 2 * pages);
}

TEST_CASE("a record's org unit is its newest write by version, node ids compared as unsigned", "[store][scope]") {
  // SQLite holds a node id of 2^63 or more as a negative number: the newest write must
  // still win, whichever order the writes arrive in.
  temp_dir dir;
  auto store = server::open_sqlite_change_store(dir.file("server.db"));
  const auto rules = server::scope_rules::care_defaults();
  store->set_scope_rules(rules);
  constexpr node_id k_high = 0x8000000000000001;
  const auto id = record_id::generate();
  const auto newer = upsert(k_high, 1000, id, {{"org_unit", value{std::string("unit-a")}}}, "visits");
  const auto older = upsert(k_node_b, 1000, id, {{"org_unit", value{std::string("unit-b")}}}, "visits");
  SECTION("newest first") {
    store->append("desk", batch_id::generate(), std::vector<change>{newer});
    store->append("desk", batch_id::generate(), std::vector<change>{older});
  }
  SECTION("newest last") {
    store->append("desk", batch_id::generate(), std::vector<change>{older});
    store->append("desk", batch_id::generate(), std::vector<change>{newer});
  }
  const auto in_a = server::scope_of("user-a", "field_worker", "unit-a", {}, rules);
  const auto in_b = server::scope_of("user-b", "field_worker", "unit-b", {}, rules);
  const auto edit = upsert(k_node_c, 2000, id, {{"note", value{std::string("seen")}}}, "visits");
  const auto by_a = store->append_as(server::requester{"tablet-a", "user-a", &in_a}, batch_id::generate(),
                                     std::vector<change>{edit}, {});
  CHECK(by_a.accepted == 1);
  const auto by_b = store->append_as(server::requester{"tablet-b", "user-b", &in_b}, batch_id::generate(),
                                     std::vector<change>{edit}, {});
  CHECK(by_b.accepted == 0);
  REQUIRE(by_b.refused.size() == 1);
  CHECK(by_b.refused[0].code == static_cast<std::uint16_t>(protocol_errc::out_of_scope));
}


TEST_CASE("a record's org unit follows changes appended without a scope, by this store or another process",
          "[store][scope]") {
  // Unscoped appends (devices of the config file, the registry import, another process
  // on the same file) leave the units index to be brought up when a scoped request
  // reads it: every scope decision still sees the whole log.
  temp_dir dir;
  const auto path = dir.file("server.db");
  const auto rules = server::scope_rules::care_defaults();
  auto store = server::open_sqlite_change_store(path);
  store->set_scope_rules(rules);
  const auto in_a = server::scope_of("user-a", "field_worker", "unit-a", {}, rules);
  const auto in_b = server::scope_of("user-b", "field_worker", "unit-b", {}, rules);
  const server::requester a{"tablet-a", "user-a", &in_a};
  const server::requester b{"tablet-b", "user-b", &in_b};
  const auto id = record_id::generate();
  const auto place = [&](std::uint64_t wall_ms, const char* unit) {
    return upsert(k_node_c, wall_ms, id, {{"org_unit", value{std::string(unit)}}}, "visits");
  };
  const auto edit_by = [&](const server::requester& who, std::uint64_t wall_ms) {
    return store->append_as(who, batch_id::generate(),
                            std::vector<change>{upsert(k_node_a, wall_ms, id, {{"note", value{std::string("x")}}}, "visits")}, {});
  };
  const auto pulls_it = [&](const server::requester& who) {
    wire::changes_page_builder page;
    store->serve_page(who, server::page_request{0, k_node_b, {}, 1000, 1u << 20, 0}, page);
    return page.count() + page.backfill_count() > 0;
  };

  store->append("desk", batch_id::generate(), std::vector<change>{place(1000, "unit-a")});
  CHECK(pulls_it(a));
  CHECK_FALSE(pulls_it(b));
  CHECK(edit_by(a, 1100).accepted == 1);
  CHECK(edit_by(b, 1100).accepted == 0);

  SECTION("moved by an unscoped append of this store") {
    store->append("desk", batch_id::generate(), std::vector<change>{place(2000, "unit-b")});
  }
  SECTION("moved by another process on the same file, which knows no scope rules") {
    auto other = server::open_sqlite_change_store(path);
    other->append("registry-import", batch_id::generate(), std::vector<change>{place(2000, "unit-b")});
  }
  SECTION("moved by an unscoped append, then the server restarted") {
    store->append("desk", batch_id::generate(), std::vector<change>{place(2000, "unit-b")});
    store.reset();
    store = server::open_sqlite_change_store(path);
    store->set_scope_rules(rules);
  }
  CHECK(edit_by(a, 2100).accepted == 0);
  CHECK(edit_by(b, 2100).accepted == 1);
  // The index itself now holds the record's newest unit.
  const auto units = sqlite_query(path, "SELECT group_concat(unit) FROM record_units");
  CHECK(units == "unit-b");
}

TEST_CASE("a page whose audit could not be written leaves no receipt for the next page", "[store][audit]") {
  temp_dir dir;
  const auto path = dir.file("server.db");
  auto store = server::open_sqlite_change_store(path);
  store->append("tablet-a", batch_id::generate(), std::vector<change>{note(k_node_a, 1, "x"), note(k_node_a, 2, "y")});
  // The audit write of tablet-x's page fails (as on a full disk): its page is not sent.
  sqlite_exec(path,
              "CREATE TRIGGER audit_fails BEFORE INSERT ON audit WHEN NEW.device = 'tablet-x'"
              " BEGIN SELECT RAISE(ABORT, 'disk full'); END;");
  {
    wire::changes_page_builder page;
    CHECK_THROWS_AS(store->serve_page(server::requester{"tablet-x", "", nullptr},
                                      server::page_request{0, k_node_b, {}, 100, 1u << 20, 0}, page),
                    error);
  }
  sqlite_exec(path, "DROP TRIGGER audit_fails");
  // tablet-y asks from the head: nothing is sent to it, and the audit says so.
  wire::changes_page_builder page;
  store->serve_page(server::requester{"tablet-y", "", nullptr}, server::page_request{2, k_node_b, {}, 100, 1u << 20, 0}, page);
  CHECK(page.count() == 0);
  int receipts = 0;
  store->audit(server::audit_query{0, UINT64_MAX, "", ""}, [&](const server::audit_entry& e) {
    if (e.action == "receive") ++receipts;
  });
  CHECK(receipts == 0);
}
