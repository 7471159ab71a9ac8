// The server's half of a prioritised initial sync (docs/protocol.md, "Prioritised
// initial sync"): which records a tier matches, which changes of the log a priority
// phase sends and in what order, the log's extent for progress, and pulls that leave
// the primed changes out. Against a real SQLite change store in a temporary directory.

#include <caresync/protocol/codec.hpp>
#include <caresync/protocol/errors.hpp>
#include <caresync/protocol/merge.hpp>
#include <caresync/server/change_store.hpp>

#include "../support/temp_dir.hpp"

#include <catch2/catch.hpp>

#include <sqlite3.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace {

using namespace caresync;
using caresync::testing::temp_dir;

constexpr node_id k_node_a = 0x1111;
constexpr node_id k_node_b = 0x2222;
constexpr node_id k_node_c = 0x3333;
constexpr node_id k_node_high = 0x8000000000000001ULL;  // stored as a negative SQLite integer
constexpr node_id k_nobody = 0x9999;  // writes nothing: excluding it leaves everything in

record_id rid(std::uint8_t fill) {
  record_id id;
  id.bytes.fill(fill);
  return id;
}

change upsert(node_id node, std::uint64_t wall_ms, const record_id& id, std::vector<field_write> fields,
              const std::string& collection = "visit") {
  change c;
  c.collection = collection;
  c.id = id;
  c.ver = version{hlc_stamp::make(wall_ms, 0), node};
  c.fields = std::move(fields);
  return c;
}

change tombstone(node_id node, std::uint64_t wall_ms, const record_id& id, const std::string& collection = "visit") {
  change c;
  c.collection = collection;
  c.id = id;
  c.ver = version{hlc_stamp::make(wall_ms, 0), node};
  c.kind = change_kind::remove;
  return c;
}

field_write text_field(const std::string& name, const std::string& v) { return {name, value{v}}; }

wire::prime_tier tier_all(std::string collection) { return {std::move(collection), wire::prime_match::all, {}, {}}; }
wire::prime_tier tier_equals(std::string collection, std::string field, value v) {
  return {std::move(collection), wire::prime_match::equals, std::move(field), std::move(v)};
}
wire::prime_tier tier_at_least(std::string collection, std::string field, value v) {
  return {std::move(collection), wire::prime_match::at_least, std::move(field), std::move(v)};
}

/// A live record holding `fields`, merged as the server would.
record_state state_of(std::vector<field_write> fields) {
  record_state s;
  merge(s, upsert(k_node_a, 100, rid(1), std::move(fields)));
  return s;
}

/// The bytes one change adds to a page, measured with the builder itself.
std::size_t item_bytes(std::uint64_t seq, const change& c) {
  wire::changes_page_builder b;
  b.add(seq, wire::encode_change(c));
  return b.size_bytes();
}

/// A store in a temporary directory and every change appended to it, by seq.
struct logged_store {
  temp_dir dir;
  std::unique_ptr<server::change_store> store = server::open_sqlite_change_store(dir.file("server.db"));
  std::vector<change> log;  ///< log[i] has seq i + 1

  /// Appends one change in a batch of its own, as the device named after its node; returns its seq.
  std::uint64_t add(const change& c) { return add_batch({c}); }
  /// Appends a batch; returns the seq of its first change.
  std::uint64_t add_batch(const std::vector<change>& batch) {
    const auto out = store->append("device-" + std::to_string(batch.front().ver.node), batch_id::generate(), batch);
    REQUIRE(out.accepted == batch.size());
    REQUIRE(out.first_seq == log.size() + 1);
    log.insert(log.end(), batch.begin(), batch.end());
    return out.first_seq;
  }
  const change& at(std::uint64_t seq) const { return log.at(seq - 1); }
};

std::vector<std::uint64_t> seqs_of(const std::vector<server::prime_item>& items) {
  std::vector<std::uint64_t> out;
  for (const auto& i : items) out.push_back(i.seq);
  return out;
}

std::vector<std::uint64_t> seqs_of(const wire::changes_page& page) {
  std::vector<std::uint64_t> out;
  for (const auto& i : page.items) out.push_back(i.seq);
  return out;
}

wire::changes_page decoded(const wire::changes_page_builder& builder, std::uint64_t next_cursor = 0, bool more = false) {
  return std::get<wire::changes_page>(wire::decode(wire::message_type::changes, builder.finish(next_cursor, more)));
}

/// Every page a puller would read from `cursor` until `more` is false.
struct full_read {
  std::vector<std::uint64_t> seqs;
  std::uint64_t bytes = 0;  ///< changes_page_builder::size_bytes() summed over the pages
  std::uint64_t next_cursor = 0;
  std::vector<wire::changes_page> pages;
};

full_read read_all(server::change_store& store, std::uint64_t cursor, node_id exclude, std::span<const std::uint64_t> skip,
                   std::uint32_t max_changes, std::uint32_t max_bytes) {
  full_read r;
  for (int guard = 0;; ++guard) {
    REQUIRE(guard < 100000);
    wire::changes_page_builder builder;
    const auto pos = store.read_page(cursor, exclude, skip, max_changes, max_bytes, builder);
    auto page = decoded(builder, pos.next_cursor, pos.more);
    REQUIRE(pos.next_cursor >= cursor);
    for (const auto& item : page.items) {
      REQUIRE(item.seq > cursor);
      REQUIRE(item.seq <= pos.next_cursor);
      r.seqs.push_back(item.seq);
    }
    r.bytes += builder.size_bytes();
    r.pages.push_back(std::move(page));
    r.next_cursor = pos.next_cursor;
    if (!pos.more) break;
    REQUIRE(pos.next_cursor > cursor);  // a page that says more moves on
    cursor = pos.next_cursor;
  }
  return r;
}

}  // namespace

// --- matches()

TEST_CASE("prime matches: all picks every live record and never a deleted one", "[store]") {
  const auto all = tier_all("visit");
  CHECK(server::matches(all, state_of({text_field("status", "active")})));
  CHECK(server::matches(all, state_of({})));  // a record with no fields is live
  CHECK(server::matches(all, record_state{}));

  auto deleted = state_of({text_field("status", "active"), {"minutes", value{std::int64_t{30}}}});
  REQUIRE(server::matches(tier_equals("visit", "status", value{std::string("active")}), deleted));
  merge(deleted, tombstone(k_node_b, 200, rid(1)));
  REQUIRE(deleted.deleted);
  CHECK_FALSE(server::matches(all, deleted));
  CHECK_FALSE(server::matches(tier_equals("visit", "status", value{std::string("active")}), deleted));
  CHECK_FALSE(server::matches(tier_at_least("visit", "minutes", value{std::int64_t{0}}), deleted));

  SECTION("a delete that covered nothing keeps the values visible, and still the record never matches") {
    auto kept = state_of({text_field("status", "active")});
    auto del = tombstone(k_node_b, 200, rid(1));
    del.covers = std::vector<version>{};
    merge(kept, del);
    merge(kept, upsert(k_node_c, 150, rid(1), {text_field("status", "active")}));
    REQUIRE(kept.deleted);
    REQUIRE_FALSE(kept.fields.at("status").conflicts.empty());
    CHECK_FALSE(server::matches(all, kept));
    CHECK_FALSE(server::matches(tier_equals("visit", "status", value{std::string("active")}), kept));
  }
}

TEST_CASE("prime matches: equals and at_least compare integers and reals as numbers", "[store]") {
  const auto i = [](std::int64_t v) { return value{v}; };
  const auto r = [](double v) { return value{v}; };
  const auto with = [](value v) { return state_of({{"minutes", std::move(v)}}); };

  SECTION("integers") {
    CHECK(server::matches(tier_equals("visit", "minutes", i(30)), with(i(30))));
    CHECK_FALSE(server::matches(tier_equals("visit", "minutes", i(30)), with(i(31))));
    CHECK_FALSE(server::matches(tier_equals("visit", "minutes", i(30)), with(i(-30))));
    CHECK(server::matches(tier_at_least("visit", "minutes", i(30)), with(i(30))));
    CHECK(server::matches(tier_at_least("visit", "minutes", i(30)), with(i(31))));
    CHECK_FALSE(server::matches(tier_at_least("visit", "minutes", i(30)), with(i(29))));
    CHECK(server::matches(tier_at_least("visit", "minutes", i(-5)), with(i(-4))));
    CHECK_FALSE(server::matches(tier_at_least("visit", "minutes", i(-5)), with(i(-6))));
    // Exactly, not through a double: these two are one apart beyond 2^53.
    const std::int64_t big = (std::int64_t{1} << 53) + 1;
    CHECK_FALSE(server::matches(tier_equals("visit", "minutes", i(big)), with(i(big - 1))));
    CHECK_FALSE(server::matches(tier_at_least("visit", "minutes", i(big)), with(i(big - 1))));
    const auto lowest = std::numeric_limits<std::int64_t>::min();
    const auto highest = std::numeric_limits<std::int64_t>::max();
    CHECK(server::matches(tier_at_least("visit", "minutes", i(lowest)), with(i(lowest))));
    CHECK(server::matches(tier_at_least("visit", "minutes", i(lowest)), with(i(highest))));
    CHECK_FALSE(server::matches(tier_at_least("visit", "minutes", i(highest)), with(i(highest - 1))));
  }
  SECTION("reals") {
    CHECK(server::matches(tier_equals("visit", "minutes", r(72.5)), with(r(72.5))));
    CHECK_FALSE(server::matches(tier_equals("visit", "minutes", r(72.5)), with(r(72.25))));
    CHECK(server::matches(tier_at_least("visit", "minutes", r(72.5)), with(r(72.75))));
    CHECK_FALSE(server::matches(tier_at_least("visit", "minutes", r(72.5)), with(r(72.25))));
    CHECK(server::matches(tier_equals("visit", "minutes", r(0.0)), with(r(-0.0))));
    CHECK(server::matches(tier_at_least("visit", "minutes", r(-std::numeric_limits<double>::infinity())), with(r(-1e308))));
    CHECK_FALSE(server::matches(tier_at_least("visit", "minutes", r(std::numeric_limits<double>::infinity())), with(r(1e308))));
  }
  SECTION("an integer field against a real operand, and the reverse") {
    CHECK(server::matches(tier_equals("visit", "minutes", r(30.0)), with(i(30))));
    CHECK(server::matches(tier_equals("visit", "minutes", i(30)), with(r(30.0))));
    CHECK_FALSE(server::matches(tier_equals("visit", "minutes", r(30.5)), with(i(30))));
    CHECK_FALSE(server::matches(tier_equals("visit", "minutes", i(30)), with(r(30.000001))));
    CHECK(server::matches(tier_at_least("visit", "minutes", r(29.5)), with(i(30))));
    CHECK_FALSE(server::matches(tier_at_least("visit", "minutes", r(30.5)), with(i(30))));
    CHECK(server::matches(tier_at_least("visit", "minutes", i(30)), with(r(30.0))));
    CHECK(server::matches(tier_at_least("visit", "minutes", i(30)), with(r(30.25))));
    CHECK_FALSE(server::matches(tier_at_least("visit", "minutes", i(30)), with(r(29.75))));
    CHECK_FALSE(server::matches(tier_at_least("visit", "minutes", i(-2)), with(r(-2.5))));
  }
}

// An integer and a real compare as numbers, exactly: a conversion of the integer to a
// double would round beyond 2^53 (2^53 + 1 would "equal" the real 2^53, and INT64_MAX
// would be "at least" the real 2^63).
TEST_CASE("prime matches: an integer and a real compare exactly beyond 2^53", "[store]") {
  const std::int64_t big = (std::int64_t{1} << 53) + 1;
  CHECK_FALSE(server::matches(tier_equals("visit", "n", value{9007199254740992.0}), state_of({{"n", value{big}}})));
  CHECK_FALSE(server::matches(tier_equals("visit", "n", value{big}), state_of({{"n", value{9007199254740992.0}}})));
  CHECK_FALSE(server::matches(tier_at_least("visit", "n", value{9223372036854775808.0}),
                              state_of({{"n", value{std::numeric_limits<std::int64_t>::max()}}})));
}

TEST_CASE("prime matches: text compares by bytes, so ISO dates order", "[store]") {
  const auto t = [](const char* s) { return value{std::string(s)}; };
  const auto due = [](const char* s) { return state_of({text_field("due", s)}); };

  CHECK(server::matches(tier_equals("referral", "due", t("2026-11-23")), due("2026-11-23")));
  CHECK_FALSE(server::matches(tier_equals("referral", "due", t("2026-11-23")), due("2026-11-23T00:00")));
  CHECK_FALSE(server::matches(tier_equals("referral", "status", t("active")), state_of({text_field("status", "Active")})));

  CHECK(server::matches(tier_at_least("referral", "due", t("2026-11-23")), due("2026-11-23")));
  CHECK(server::matches(tier_at_least("referral", "due", t("2026-11-23")), due("2026-11-24")));
  CHECK(server::matches(tier_at_least("referral", "due", t("2026-11-23")), due("2026-12-01")));
  CHECK(server::matches(tier_at_least("referral", "due", t("2026-11-23")), due("2027-01-01")));
  CHECK_FALSE(server::matches(tier_at_least("referral", "due", t("2026-11-23")), due("2026-11-22")));
  CHECK_FALSE(server::matches(tier_at_least("referral", "due", t("2026-11-23")), due("2025-12-31")));
  // A longer text with the operand as its prefix is greater: a time on the day counts.
  CHECK(server::matches(tier_at_least("referral", "due", t("2026-11-23")), due("2026-11-23T08:30:00Z")));
  CHECK_FALSE(server::matches(tier_at_least("referral", "due", t("2026-11-23T08:30")), due("2026-11-23")));
  // Bytes, unsigned: "é" (0xc3 0xa9) sorts after every ASCII letter, "B" before "a".
  CHECK(server::matches(tier_at_least("visit", "name", t("z")), state_of({text_field("name", "\xc3\xa9")})));
  CHECK_FALSE(server::matches(tier_at_least("visit", "name", t("a")), state_of({text_field("name", "B")})));
  CHECK(server::matches(tier_at_least("visit", "name", t("")), state_of({text_field("name", "")})));
}

TEST_CASE("prime matches: other kinds, and a missing field, never match", "[store]") {
  const auto nan = std::numeric_limits<double>::quiet_NaN();
  for (const auto m : {wire::prime_match::equals, wire::prime_match::at_least}) {
    INFO("match " << int(m));
    const auto tier = [&](value operand) { return wire::prime_tier{"visit", m, "x", std::move(operand)}; };
    const auto with = [](value v) { return state_of({{"x", std::move(v)}}); };
    // Numbers and text never compare with each other.
    CHECK_FALSE(server::matches(tier(value{std::string("5")}), with(value{std::int64_t{5}})));
    CHECK_FALSE(server::matches(tier(value{std::string("5")}), with(value{5.0})));
    CHECK_FALSE(server::matches(tier(value{std::int64_t{5}}), with(value{std::string("5")})));
    CHECK_FALSE(server::matches(tier(value{std::int64_t{0}}), with(value{std::string("5")})));
    CHECK_FALSE(server::matches(tier(value{std::string("")}), with(value{std::int64_t{5}})));
    // Bytes and null fields never match, even holding the operand's bytes.
    CHECK_FALSE(server::matches(tier(value{std::string("ab")}), with(value{blob{{'a', 'b'}}})));
    CHECK_FALSE(server::matches(tier(value{std::string("")}), with(value{blob{}})));
    CHECK_FALSE(server::matches(tier(value{std::int64_t{0}}), with(value{})));
    CHECK_FALSE(server::matches(tier(value{std::string("")}), with(value{})));
    // NaN is no number to compare.
    CHECK_FALSE(server::matches(tier(value{0.0}), with(value{nan})));
    CHECK_FALSE(server::matches(tier(value{-std::numeric_limits<double>::infinity()}), with(value{nan})));
    CHECK_FALSE(server::matches(tier(value{std::int64_t{0}}), with(value{nan})));
    // A missing field: the record has others, not this one.
    CHECK_FALSE(server::matches(tier(value{std::int64_t{0}}), state_of({{"y", value{std::int64_t{0}}}})));
    CHECK_FALSE(server::matches(tier(value{std::string("")}), state_of({})));
    // The control: the same state with the field present does match.
    CHECK(server::matches(tier(value{std::int64_t{5}}), with(value{std::int64_t{5}})));
  }
}

// --- prime_changes() and read_changes()

TEST_CASE("prime_changes picks records by their merged state as of until", "[store]") {
  logged_store s;
  const auto active = [](std::uint8_t r, std::uint64_t t, const std::string& collection = "visit") {
    return upsert(k_node_a, t, rid(r), {text_field("status", "active")}, collection);
  };
  const auto closed = [](std::uint8_t r, std::uint64_t t) { return upsert(k_node_a, t, rid(r), {text_field("status", "closed")}); };
  REQUIRE(s.add(active(1, 100)) == 1);                                                 // R1
  REQUIRE(s.add(active(2, 100)) == 2);                                                 // R2
  REQUIRE(s.add(closed(3, 100)) == 3);                                                 // R3
  REQUIRE(s.add(upsert(k_node_a, 110, rid(1), {text_field("note", "seen")})) == 4);    // R1
  REQUIRE(s.add(closed(2, 120)) == 5);                                                 // R2 closed before until
  REQUIRE(s.add(active(4, 100, "referral")) == 6);                                     // another collection
  REQUIRE(s.add(active(5, 100)) == 7);                                                 // R5
  REQUIRE(s.add(tombstone(k_node_a, 130, rid(5))) == 8);                               // R5 deleted before until
  REQUIRE(s.add(active(6, 100)) == 9);                                                 // R6
  REQUIRE(s.add(active(8, 300)) == 10);                                                // R8
  REQUIRE(s.add(closed(8, 250)) == 11);                                                // R8: older stamp, loses
  const std::uint64_t until = 11;
  REQUIRE(s.add(closed(1, 200)) == 12);                         // R1 closed after until
  REQUIRE(s.add(active(3, 200)) == 13);                         // R3 active after until
  REQUIRE(s.add(tombstone(k_node_a, 200, rid(6))) == 14);       // R6 deleted after until
  REQUIRE(s.add(active(7, 100)) == 15);                         // R7 new after until
  REQUIRE(s.add(upsert(k_node_a, 210, rid(8), {text_field("note", "later")})) == 16);  // R8 after until

  const auto active_visits = [&](std::uint64_t u) {
    return s.store->prime_changes(wire::prime_spec{u, {tier_equals("visit", "status", value{std::string("active")})}}, k_nobody);
  };
  SECTION("as of until: changed after it still counts as before, changed before it does not") {
    // R1 (1, 4), R6 (9), R8 (10, 11); not R2 (closed at 5), R3 (active only at 13), R5
    // (deleted), R7 (new at 15), the referral, nor anything after seq 11.
    const auto items = active_visits(until);
    CHECK(seqs_of(items) == std::vector<std::uint64_t>{1, 4, 9, 10, 11});
    for (const auto& item : items) {
      INFO("seq " << item.seq);
      CHECK(item.bytes == item_bytes(item.seq, s.at(item.seq)));
    }
  }
  SECTION("earlier until") {
    CHECK(seqs_of(active_visits(4)) == std::vector<std::uint64_t>{1, 2, 4});
    CHECK(seqs_of(active_visits(7)) == std::vector<std::uint64_t>{1, 4, 7});
    CHECK(seqs_of(active_visits(1)) == std::vector<std::uint64_t>{1});
  }
  SECTION("until at the head: the latest state") {
    // R1 closed, R3 active (3, 13), R6 deleted, R7 active (15), R8 active (10, 11, 16).
    CHECK(seqs_of(active_visits(16)) == std::vector<std::uint64_t>{3, 10, 11, 13, 15, 16});
    CHECK(seqs_of(active_visits(std::numeric_limits<std::uint64_t>::max())) ==
          std::vector<std::uint64_t>{3, 10, 11, 13, 15, 16});
  }
  SECTION("all: every live record, with all its changes up to until") {
    const auto items = s.store->prime_changes(wire::prime_spec{until, {tier_all("visit")}}, k_nobody);
    // Every visit change up to 11 but R5's (7, 8): R5 is deleted.
    CHECK(seqs_of(items) == std::vector<std::uint64_t>{1, 2, 3, 4, 5, 9, 10, 11});
  }
  SECTION("a collection with no changes, and an empty spec") {
    CHECK(s.store->prime_changes(wire::prime_spec{until, {tier_all("caregiver")}}, k_nobody).empty());
    CHECK(s.store->prime_changes(wire::prime_spec{}, k_nobody).empty());
  }
}

TEST_CASE("prime_changes orders by tier then by seq, each record once in its first tier", "[store]") {
  logged_store s;
  const auto v1 = rid(0x00);  // the lowest id a record can have
  const auto v2 = rid(0x42);
  const auto v3 = rid(0xff);  // the highest
  const auto f1 = rid(0x10);
  const auto f2 = rid(0x20);
  REQUIRE(s.add(upsert(k_node_a, 100, v2, {text_field("priority", "low")})) == 1);
  REQUIRE(s.add(upsert(k_node_a, 100, f1, {text_field("due", "2026-12-01")}, "referral")) == 2);
  REQUIRE(s.add(upsert(k_node_a, 100, v1, {text_field("priority", "high")})) == 3);
  REQUIRE(s.add(upsert(k_node_b, 100, v3, {text_field("priority", "high")})) == 4);
  REQUIRE(s.add(upsert(k_node_a, 110, v2, {text_field("note", "n")})) == 5);
  REQUIRE(s.add(upsert(k_node_a, 100, f2, {text_field("due", "2026-10-01")}, "referral")) == 6);
  REQUIRE(s.add(upsert(k_node_c, 110, v1, {text_field("note", "n")})) == 7);
  REQUIRE(s.add(upsert(k_node_a, 110, f1, {text_field("note", "n")}, "referral")) == 8);
  REQUIRE(s.add(upsert(k_node_a, 120, v3, {text_field("note", "n")})) == 9);

  const wire::prime_spec spec{9,
                              {
                                  tier_at_least("referral", "due", value{std::string("2026-11-01")}),  // f1
                                  tier_equals("visit", "priority", value{std::string("high")}),      // v1, v3
                                  tier_all("visit"),                                                  // v2 (v1, v3 taken)
                                  tier_all("referral"),                                               // f2 (f1 taken)
                              }};
  const auto items = s.store->prime_changes(spec, k_nobody);
  CHECK(seqs_of(items) == std::vector<std::uint64_t>{2, 8, 3, 4, 7, 9, 1, 5, 6});
  for (const auto& item : items) {
    INFO("seq " << item.seq);
    CHECK(item.bytes == item_bytes(item.seq, s.at(item.seq)));
  }

  SECTION("a tier repeated, or a broader tier first, sends nothing twice") {
    const wire::prime_spec twice{9, {tier_all("visit"), tier_equals("visit", "priority", value{std::string("high")}), tier_all("visit")}};
    CHECK(seqs_of(s.store->prime_changes(twice, k_nobody)) == std::vector<std::uint64_t>{1, 3, 4, 5, 7, 9});
  }

  SECTION("read_changes returns exactly those changes, in that order") {
    wire::changes_page_builder builder;
    s.store->read_changes(items, builder);
    CHECK(builder.count() == items.size());
    std::uint64_t bytes = 0;
    for (const auto& item : items) bytes += item.bytes;
    CHECK(builder.size_bytes() == bytes);
    const auto page = decoded(builder, items.size(), false);
    REQUIRE(page.items.size() == items.size());
    for (std::size_t i = 0; i < items.size(); ++i) {
      INFO("item " << i);
      CHECK(page.items[i].seq == items[i].seq);
      CHECK(page.items[i].body == s.at(items[i].seq));
    }
  }
  SECTION("read_changes takes any order and a part of the list") {
    const std::vector<server::prime_item> some{{9, 0}, {1, 0}, {5, 0}};
    wire::changes_page_builder builder;
    s.store->read_changes(std::span(some).subspan(1), builder);
    const auto page = decoded(builder);
    CHECK(seqs_of(page) == std::vector<std::uint64_t>{1, 5});
    REQUIRE(page.items.size() == 2);
    CHECK(page.items[0].body == s.at(1));
    CHECK(page.items[1].body == s.at(5));
    wire::changes_page_builder none;
    s.store->read_changes({}, none);
    CHECK(none.count() == 0);
  }
  SECTION("read_changes of a change the log lacks is a corrupt store") {
    const std::vector<server::prime_item> missing{{1, 0}, {10, 0}};
    wire::changes_page_builder builder;
    try {
      s.store->read_changes(missing, builder);
      FAIL("a missing change was not reported");
    } catch (const error& e) {
      CHECK(e.code() == storage_errc::corrupt);
      CHECK_THAT(e.what(), Catch::Contains("10"));
    }
  }
}

TEST_CASE("prime_changes leaves out the excluded node's changes but merges them into the state", "[store]") {
  logged_store s;
  const auto status = [](node_id n, std::uint64_t t, std::uint8_t r, const char* v) {
    return upsert(n, t, rid(r), {text_field("status", v)});
  };
  REQUIRE(s.add(status(k_node_b, 100, 1, "active")) == 1);                            // R1 active by B
  REQUIRE(s.add(upsert(k_node_a, 110, rid(1), {text_field("note", "n")})) == 2);     // R1 note by A
  REQUIRE(s.add(status(k_node_a, 100, 2, "active")) == 3);                            // R2 active by A
  REQUIRE(s.add(status(k_node_b, 120, 2, "closed")) == 4);                            // R2 closed by B
  REQUIRE(s.add(status(k_node_b, 100, 3, "active")) == 5);                            // R3 only B
  REQUIRE(s.add(status(k_node_a, 100, 4, "active")) == 6);                            // R4 by A
  REQUIRE(s.add(upsert(k_node_c, 110, rid(4), {text_field("note", "n")})) == 7);     // R4 note by C
  REQUIRE(s.add(tombstone(k_node_b, 130, rid(4))) == 8);                              // R4 deleted by B
  REQUIRE(s.add(status(k_node_a, 100, 5, "active")) == 9);                            // R5 by A

  const auto primed = [&](std::uint64_t until, node_id exclude) {
    return seqs_of(s.store->prime_changes(
        wire::prime_spec{until, {tier_equals("visit", "status", value{std::string("active")})}}, exclude));
  };
  // Excluding B: R1 matches by B's write and sends A's note only; R2 is closed by B's
  // write; R3 sends nothing; R4 is deleted by B's tombstone.
  CHECK(primed(9, k_node_b) == std::vector<std::uint64_t>{2, 9});
  CHECK(primed(9, k_nobody) == std::vector<std::uint64_t>{1, 2, 5, 9});
  CHECK(primed(9, k_node_a) == std::vector<std::uint64_t>{1, 5});
  // Before B's tombstone, R4 matches with A's and C's changes.
  CHECK(primed(7, k_node_b) == std::vector<std::uint64_t>{2, 6, 7});
  CHECK(primed(7, k_node_c) == std::vector<std::uint64_t>{1, 2, 5, 6});
}

// --- extent()

TEST_CASE("prime extent counts the changes and bytes read_page would put in pages", "[store]") {
  logged_store s;
  // 300 changes (seqs past 127 take a two-byte varint) from four nodes, 2 to ~3000 bytes.
  const node_id nodes[] = {k_node_a, k_node_b, k_node_high, k_node_c, k_node_b};
  for (int b = 0; b < 10; ++b) {
    std::vector<change> batch;
    for (int i = 0; i < 30; ++i) {
      const int n = b * 30 + i;
      batch.push_back(upsert(nodes[b % 5], 1000 + static_cast<std::uint64_t>(n), record_id::generate(),
                             {text_field("note", std::string(static_cast<std::size_t>((n * 37) % 11) * 300 + 1, 'x'))}));
    }
    s.add_batch(batch);
  }
  REQUIRE(s.store->head() == 300);

  for (const std::uint64_t cursor : {0, 1, 5, 126, 127, 128, 129, 200, 299, 300, 310}) {
    for (const node_id exclude : {k_nobody, k_node_a, k_node_b, k_node_c, k_node_high}) {
      INFO("cursor " << cursor << ", excluding node " << exclude);
      const auto pages = read_all(*s.store, cursor, exclude, {}, 7, 8192);
      const auto e = s.store->extent(cursor, exclude);
      CHECK(e.changes == pages.seqs.size());
      CHECK(e.bytes == pages.bytes);
      // And by hand, from what was appended.
      std::uint64_t changes = 0;
      std::uint64_t bytes = 0;
      for (std::uint64_t seq = cursor + 1; seq <= s.log.size(); ++seq) {
        if (s.at(seq).ver.node == exclude) continue;
        ++changes;
        bytes += item_bytes(seq, s.at(seq));
      }
      CHECK(e.changes == changes);
      CHECK(e.bytes == bytes);
    }
  }
  CHECK(s.store->extent(std::numeric_limits<std::uint64_t>::max(), k_nobody).changes == 0);
  CHECK(s.store->extent(std::numeric_limits<std::uint64_t>::max(), k_nobody).bytes == 0);
}

TEST_CASE("prime extent is exact where seqs take three bytes", "[store]") {
  logged_store s;
  std::vector<change> batch;
  for (int i = 0; i < 16400; ++i) {
    batch.push_back(upsert(i % 3 ? k_node_a : k_node_b, 1000, record_id::generate(), {{"n", value{std::int64_t{i}}}}));
  }
  s.add_batch(batch);
  REQUIRE(s.store->head() == 16400);
  for (const std::uint64_t cursor : {0, 16300, 16382, 16383, 16384, 16399}) {
    for (const node_id exclude : {k_nobody, k_node_b}) {
      INFO("cursor " << cursor << ", excluding node " << exclude);
      const auto pages = read_all(*s.store, cursor, exclude, {}, 1000, 1u << 20);
      const auto e = s.store->extent(cursor, exclude);
      CHECK(e.changes == pages.seqs.size());
      CHECK(e.bytes == pages.bytes);
    }
  }
}

TEST_CASE("prime extent of the whole log stays exact in a store made before its running totals", "[store]") {
  logged_store s;
  const node_id nodes[] = {k_node_a, k_node_b, k_node_high, k_node_c};
  for (int b = 0; b < 12; ++b) {
    std::vector<change> batch;
    for (int i = 0; i < 20; ++i) {
      const int n = b * 20 + i;
      batch.push_back(upsert(nodes[(b + i % 2) % 4], 1000 + static_cast<std::uint64_t>(n), record_id::generate(),
                             {text_field("note", std::string(static_cast<std::size_t>((n * 53) % 7) * 200 + 1, 'z'))}));
    }
    s.add_batch(batch);
  }
  const auto path = s.dir.file("server.db");
  const auto edit_file = [&](const char* sql) {
    s.store.reset();
    sqlite3* raw = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &raw) == SQLITE_OK);
    const std::unique_ptr<sqlite3, int (*)(sqlite3*)> db(raw, sqlite3_close);
    REQUIRE(sqlite3_exec(db.get(), sql, nullptr, nullptr, nullptr) == SQLITE_OK);
  };
  SECTION("kept by append") {}
  SECTION("a store made before them") {
    edit_file("DROP TABLE log_totals");
  }
  SECTION("changes appended by an older build that did not count them") {
    // As an older build appends: a row of the log, and no count.
    edit_file("INSERT INTO changes(device, node, collection, record_id, stamp, change, received_ms)"
              " SELECT device, node, collection, record_id, stamp, change, received_ms FROM changes WHERE seq = 7");
    s.log.push_back(s.at(7));
  }
  if (!s.store) s.store = server::open_sqlite_change_store(path);
  // Then appended to again, counted from there on.
  s.add_batch({upsert(k_node_b, 5000, record_id::generate(), {text_field("note", "after")})});
  for (const node_id exclude : {k_nobody, k_node_a, k_node_b, k_node_c, k_node_high}) {
    INFO("excluding node " << exclude);
    // The totals (cursor 0) against a scan of the log (every page a puller reads).
    const auto pages = read_all(*s.store, 0, exclude, {}, 50, 1u << 20);
    const auto e = s.store->extent(0, exclude);
    CHECK(e.changes == pages.seqs.size());
    CHECK(e.bytes == pages.bytes);
    std::uint64_t bytes = 0;
    for (std::uint64_t seq = 1; seq <= s.log.size(); ++seq) {
      if (s.at(seq).ver.node != exclude) bytes += item_bytes(seq, s.at(seq));
    }
    CHECK(e.bytes == bytes);
  }
}

// --- read_page() with skip

TEST_CASE("prime skip: read_page leaves exactly the skipped seqs out and its cursor covers them", "[store]") {
  logged_store s;
  for (int i = 0; i < 30; ++i) {
    const node_id node = (i % 7 == 3) ? k_node_b : k_node_a;  // B wrote 4, 11, 18, 25
    s.add(upsert(node, 1000 + static_cast<std::uint64_t>(i), record_id::generate(),
                 {text_field("note", std::string(static_cast<std::size_t>(i * 50 + 1), 'y'))}));
  }
  REQUIRE(s.store->head() == 30);
  const std::vector<std::uint64_t> skip{2, 3, 10, 11, 12, 20, 29, 30};
  const auto expected = [&](std::uint64_t cursor, node_id exclude) {
    std::vector<std::uint64_t> out;
    for (std::uint64_t seq = cursor + 1; seq <= 30; ++seq) {
      if (std::binary_search(skip.begin(), skip.end(), seq) || s.at(seq).ver.node == exclude) continue;
      out.push_back(seq);
    }
    return out;
  };

  SECTION("whole pulls, by any page size") {
    for (const std::uint32_t max_changes : {1u, 2u, 3u, 100u}) {
      for (const std::uint32_t max_bytes : {1u, 700u, 1u << 20}) {
        for (const node_id exclude : {k_nobody, k_node_b}) {
          for (const std::uint64_t cursor : {0, 1, 2, 9, 12, 28}) {
            INFO("max " << max_changes << " changes, " << max_bytes << " bytes, excluding " << exclude << ", from " << cursor);
            const auto r = read_all(*s.store, cursor, exclude, skip, max_changes, max_bytes);
            CHECK(r.seqs == expected(cursor, exclude));
            CHECK(r.next_cursor == 30);  // the skipped 29 and 30 are covered
            for (const auto& page : r.pages) {
              CHECK(page.items.size() <= max_changes);
              for (const auto& item : page.items) CHECK(item.body == s.at(item.seq));
            }
          }
        }
      }
    }
  }
  SECTION("a page's next cursor covers skipped seqs before the change it stopped at") {
    wire::changes_page_builder b1;
    const auto p1 = s.store->read_page(1, k_nobody, skip, 1, 1u << 20, b1);
    // Seq 2 and 3 are skipped: the page holds 4 (by B, not excluded) and stops at 5.
    CHECK(seqs_of(decoded(b1)) == std::vector<std::uint64_t>{4});
    CHECK(p1.next_cursor == 4);
    CHECK(p1.more);
    wire::changes_page_builder b2;
    const auto p2 = s.store->read_page(0, k_nobody, skip, 1, 1u << 20, b2);
    CHECK(seqs_of(decoded(b2)) == std::vector<std::uint64_t>{1});
    CHECK(p2.next_cursor == 3);  // 2 and 3 skipped, covered; stopped at 4
    CHECK(p2.more);
    wire::changes_page_builder b3;
    const auto p3 = s.store->read_page(9, k_nobody, skip, 100, 1u << 20, b3);
    CHECK(seqs_of(decoded(b3)) == expected(9, k_nobody));  // 13-28 less 20
    CHECK(seqs_of(decoded(b3)).front() == 13);
    CHECK(p3.next_cursor == 30);
    CHECK_FALSE(p3.more);
  }
  SECTION("only skipped changes left: an empty page whose cursor reaches the head") {
    wire::changes_page_builder b;
    const auto p = s.store->read_page(28, k_nobody, skip, 100, 1u << 20, b);
    CHECK(b.count() == 0);
    CHECK(p.next_cursor == 30);
    CHECK_FALSE(p.more);
    wire::changes_page_builder b2;
    const auto p2 = s.store->read_page(9, k_nobody, skip, 1, 1u << 20, b2);
    CHECK(seqs_of(decoded(b2)) == std::vector<std::uint64_t>{13});  // 10, 11, 12 skipped
    CHECK(p2.next_cursor == 13);
  }
  SECTION("skipped seqs at or below the cursor, or past the head, change nothing") {
    const std::vector<std::uint64_t> outside{1, 2, 3, 4, 31, 1000};
    for (const std::uint32_t max_changes : {1u, 4u, 100u}) {
      INFO("max " << max_changes);
      wire::changes_page_builder with;
      wire::changes_page_builder without;
      const auto a = s.store->read_page(4, k_nobody, outside, max_changes, 1u << 20, with);
      const auto b = s.store->read_page(4, k_nobody, max_changes, 1u << 20, without);
      CHECK(a.next_cursor == b.next_cursor);
      CHECK(a.more == b.more);
      CHECK(decoded(with) == decoded(without));
    }
  }
  SECTION("skipped changes do not count towards the byte bound") {
    // With 10-12 skipped, 9 and 13 share a page that 9 and 10 would have filled.
    const auto bound = item_bytes(9, s.at(9)) + item_bytes(13, s.at(13));
    REQUIRE(item_bytes(9, s.at(9)) + item_bytes(10, s.at(10)) + item_bytes(11, s.at(11)) > bound);
    REQUIRE(item_bytes(9, s.at(9)) + item_bytes(10, s.at(10)) <= bound);
    wire::changes_page_builder b;
    const auto p = s.store->read_page(8, k_nobody, skip, 100, static_cast<std::uint32_t>(bound), b);
    CHECK(seqs_of(decoded(b)) == std::vector<std::uint64_t>{9, 13});
    CHECK(b.size_bytes() == bound);
    CHECK(p.next_cursor == 13);
    CHECK(p.more);
    wire::changes_page_builder plain;
    (void)s.store->read_page(8, k_nobody, 100, static_cast<std::uint32_t>(bound), plain);
    CHECK(seqs_of(decoded(plain)) == std::vector<std::uint64_t>{9, 10});
  }
}
