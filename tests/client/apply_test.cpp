// Changes arriving from the server (store::impl::apply_page, as the sync client calls
// it) and changes leaving for it (next_batch): what a newer app wrote is kept, merges
// follow the shared rule, and what a push sends is rebuilt from the records.
#include "../support/sql_probe.hpp"
#include "../support/temp_dir.hpp"
#include "store_impl.hpp"

#include <caresync/protocol/errors.hpp>
#include <caresync/protocol/messages.hpp>
#include <caresync/store.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

using caresync::change;
using caresync::change_kind;
using caresync::collection_def;
using caresync::field_write;
using caresync::hlc_stamp;
using caresync::record_fields;
using caresync::record_id;
using caresync::store;
using caresync::value;
using caresync::value_kind;
using caresync::version;
using caresync::testing::temp_dir;
namespace wire = caresync::wire;

namespace {

constexpr caresync::node_id k_peer = 0x7777;
// A stamp far below any the store makes itself (which follow the wall clock).
constexpr std::uint64_t k_past_ms = 1'600'000'000'000;

caresync::schema visits_only() {
  return caresync::schema{{collection_def{"visits", {{"client", value_kind::text}, {"minutes", value_kind::integer}}}}};
}

caresync::schema with_referrals() {
  auto s = visits_only();
  s.collections.push_back(collection_def{"referrals", {{"reason", value_kind::text}, {"urgent", value_kind::integer}}});
  return s;
}

std::unique_ptr<store> open_store(const std::string& path, caresync::schema s = visits_only()) {
  return store::open(caresync::store_options{path, std::move(s)});
}

change incoming(std::string collection, record_id id, std::uint16_t counter, std::vector<field_write> fields,
                std::uint64_t ms = k_past_ms) {
  change c;
  c.collection = std::move(collection);
  c.id = id;
  c.ver = version{hlc_stamp::make(ms, counter), k_peer};
  c.fields = std::move(fields);
  return c;
}

/// Applies `changes` as one pulled page; returns the conflicts counted.
std::size_t pull(store& s, std::vector<change> changes) {
  wire::changes_page page;
  std::uint64_t seq = s.cursor();
  for (auto& c : changes) page.items.push_back({++seq, std::move(c)});
  page.next_cursor = seq;
  return s.internal().apply_page(page);
}

/// One value of a one-row, one-column query on a plain connection, as an app reads.
std::string scalar(const std::string& path, const std::string& sql) { return caresync::testing::sql_text(path, sql); }

std::vector<change> pending_changes(store& s) {
  auto batch = s.internal().next_batch(1000);
  return batch ? batch->decode_changes() : std::vector<change>{};
}

}  // namespace

TEST_CASE("a field this app does not declare is kept, not dropped", "[store][apply]") {
  temp_dir dir;
  const auto path = dir.file("tablet.db");
  const auto s = open_store(path);
  const auto id = record_id::generate();
  pull(*s, {incoming("visits", id, 1, {{"client", std::string("Ana")}, {"mood", std::string("cheerful")}})});

  CHECK(s->get("visits", id) == record_fields{{"client", std::string("Ana")}, {"mood", std::string("cheerful")}});
  CHECK(scalar(path, "SELECT client FROM visits") == "Ana");
  const auto digest = s->state_digest();

  // A local edit of a declared field leaves the unknown one as it was.
  s->update("visits", id, {{"minutes", std::int64_t{20}}});
  CHECK(s->get("visits", id)->at("mood") == value{std::string("cheerful")});
  // ...and a later write by the newer app replaces it.
  pull(*s, {incoming("visits", id, 2, {{"mood", std::string("tired")}}, caresync::system_time_ms() + 60'000)});
  CHECK(s->get("visits", id)->at("mood") == value{std::string("tired")});
  CHECK(s->state_digest() != digest);
}

TEST_CASE("a value of another type than declared is kept as it came, then replaced by a local write",
          "[store][apply]") {
  temp_dir dir;
  const auto path = dir.file("tablet.db");
  const auto s = open_store(path);
  const auto id = record_id::generate();
  // A newer app made "minutes" a text field; this one declares it integer.
  pull(*s, {incoming("visits", id, 1, {{"minutes", std::string("about half an hour")}})});

  CHECK(s->get("visits", id)->at("minutes") == value{std::string("about half an hour")});
  CHECK(scalar(path, "SELECT minutes FROM visits") == "<null>");  // not converted by column affinity

  s->update("visits", id, {{"minutes", std::int64_t{30}}});
  CHECK(s->get("visits", id)->at("minutes") == value{std::int64_t{30}});
  CHECK(scalar(path, "SELECT minutes FROM visits") == "30");
  CHECK(scalar(path, "SELECT count(*) FROM cs_extra") == "0");
}

TEST_CASE("records of a collection this app does not declare are kept, and adopted once it does",
          "[store][apply]") {
  temp_dir dir;
  const auto path = dir.file("tablet.db");
  const auto id = record_id::generate();
  std::string digest;
  {
    const auto s = open_store(path);
    pull(*s, {incoming("referrals", id, 1, {{"reason", std::string("discharge")}, {"urgent", std::int64_t{1}}})});
    CHECK(s->count("referrals") == 1);
    CHECK(s->get("referrals", id) == record_fields{{"reason", std::string("discharge")}, {"urgent", std::int64_t{1}}});
    digest = s->state_digest();
  }
  // The app updates and now declares referrals: the record is there, unchanged.
  const auto s = open_store(path, with_referrals());
  CHECK(s->count("referrals") == 1);
  CHECK(s->get("referrals", id) == record_fields{{"reason", std::string("discharge")}, {"urgent", std::int64_t{1}}});
  CHECK(s->state_digest() == digest);

  // Its first write moves it into the table the app reads.
  s->update("referrals", id, {{"urgent", std::int64_t{0}}});
  CHECK(s->count("referrals") == 1);
  CHECK(scalar(path, "SELECT count(*) FROM referrals") == "1");
  CHECK(scalar(path, "SELECT urgent FROM referrals") == "0");
  CHECK(scalar(path, "SELECT count(*) FROM cs_meta") == "0");
  CHECK(s->get("referrals", id) == record_fields{{"reason", std::string("discharge")}, {"urgent", std::int64_t{0}}});
}

TEST_CASE("an incoming delete is a tombstone that later writes cannot undo", "[store][apply]") {
  temp_dir dir;
  const auto path = dir.file("tablet.db");
  const auto s = open_store(path);
  const auto id = s->create("visits", {{"client", std::string("Ana")}});

  change remove = incoming("visits", id, 5, {});
  remove.kind = change_kind::remove;
  pull(*s, {remove});
  CHECK_FALSE(s->get("visits", id).has_value());
  CHECK(scalar(path, "SELECT count(*) FROM visits") == "0");
  CHECK(s->count("visits") == 0);

  // An update stamped after the delete still does not bring the record back.
  pull(*s, {incoming("visits", id, 6, {{"client", std::string("Ana again")}}, caresync::system_time_ms() + 60'000)});
  CHECK_FALSE(s->get("visits", id).has_value());
  CHECK(scalar(path, "SELECT count(*) FROM visits") == "0");
  // The local create, written before the delete arrived, is not sent: the delete wins anyway.
  CHECK(pending_changes(*s).empty());
}

TEST_CASE("a tombstone stored before the store was reopened still keeps its record deleted", "[store][apply]") {
  // Pulled records are inserted without a lookup while the collection has no tombstone;
  // the store must learn of tombstones already in the file when it opens.
  temp_dir dir;
  const auto path = dir.file("tablet.db");
  const auto id = record_id::generate();
  {
    const auto s = open_store(path);
    change remove = incoming("visits", id, 5, {});
    remove.kind = change_kind::remove;
    pull(*s, {remove});
  }
  const auto s = open_store(path);
  pull(*s, {incoming("visits", id, 6, {{"client", std::string("Ana")}}, caresync::system_time_ms() + 60'000),
            incoming("visits", record_id::generate(), 7, {{"client", std::string("Bea")}})});
  CHECK_FALSE(s->get("visits", id).has_value());
  CHECK(scalar(path, "SELECT group_concat(client) FROM visits") == "Bea");
}

TEST_CASE("an incoming write newer than the local one replaces it", "[store][apply]") {
  temp_dir dir;
  const auto s = open_store(dir.file("tablet.db"));
  const auto id = s->create("visits", {{"client", std::string("Ana")}, {"minutes", std::int64_t{10}}});
  const auto conflicts =
      pull(*s, {incoming("visits", id, 1, {{"minutes", std::int64_t{45}}}, caresync::system_time_ms() + 60'000)});
  CHECK(conflicts == 0);
  CHECK(s->get("visits", id) == record_fields{{"client", std::string("Ana")}, {"minutes", std::int64_t{45}}});
}

TEST_CASE("an incoming write older than the local one loses and is counted as a conflict", "[store][apply]") {
  temp_dir dir;
  const auto s = open_store(dir.file("tablet.db"));
  const auto id = s->create("visits", {{"client", std::string("Ana")}, {"minutes", std::int64_t{10}}});
  const auto conflicts = pull(*s, {incoming("visits", id, 1, {{"client", std::string("Old name")}, {"minutes", std::int64_t{5}}})});
  CHECK(conflicts == 2);
  CHECK(s->get("visits", id) == record_fields{{"client", std::string("Ana")}, {"minutes", std::int64_t{10}}});
}

TEST_CASE("a push sends each record's latest writes, not the ones overwritten since", "[store][outbox]") {
  temp_dir dir;
  const auto s = open_store(dir.file("tablet.db"));
  const auto id = s->create("visits", {{"minutes", std::int64_t{1}}});
  s->update("visits", id, {{"minutes", std::int64_t{2}}});
  s->update("visits", id, {{"minutes", std::int64_t{3}}, {"client", std::string("Ana")}});
  CHECK(s->outbox_size() == 3);

  const auto out = pending_changes(*s);
  REQUIRE(out.size() == 1);
  CHECK(out[0].id == id);
  CHECK(out[0].fields == std::vector<field_write>{{"client", std::string("Ana")}, {"minutes", std::int64_t{3}}});
  // The entries with nothing left to send go with the batch when it is acknowledged.
  s->internal().ack_batch(*s->internal().next_batch(1000));
  CHECK(s->outbox_size() == 0);
  CHECK(s->is_synced("visits", id));
}

TEST_CASE("a record created without fields is still sent", "[store][outbox]") {
  temp_dir dir;
  const auto s = open_store(dir.file("tablet.db"));
  const auto id = s->create("visits", {});
  const auto out = pending_changes(*s);
  REQUIRE(out.size() == 1);
  CHECK(out[0].id == id);
  CHECK(out[0].kind == change_kind::upsert);
  CHECK(out[0].fields.empty());
}

TEST_CASE("outbox entries with nothing left to send are dropped without a push", "[store][outbox]") {
  temp_dir dir;
  const auto s = open_store(dir.file("tablet.db"));
  const auto id = s->create("visits", {{"minutes", std::int64_t{1}}});
  s->update("visits", id, {{"minutes", std::int64_t{2}}});
  change remove = incoming("visits", id, 0, {}, caresync::system_time_ms() + 60'000);
  remove.kind = change_kind::remove;
  pull(*s, {remove});  // the server's tombstone arrives before this tablet pushed

  CHECK(s->outbox_size() == 2);
  CHECK_FALSE(s->internal().next_batch(1000).has_value());
  CHECK(s->outbox_size() == 0);
}

TEST_CASE("a pinned batch holds the bytes of its changes rebuilt and encoded one by one", "[store][outbox]") {
  // Plain upserts are written into the push straight from their rows; the rest (kept
  // writes, items, deletes, frozen edits) are rebuilt as changes. Both must give the
  // bytes that encoding each rebuilt change gives.
  using caresync::field_def;
  using caresync::merge_policy;
  temp_dir dir;
  caresync::schema schema{{
      collection_def{"visits",
                     {{"client", value_kind::text}, {"minutes", value_kind::integer}, {"score", value_kind::real}, {"sig", value_kind::bytes}}},
      collection_def{"referrals", {field_def{"reason", value_kind::text, merge_policy::keep_both}, {"urgent", value_kind::integer}}},
      collection_def{"journals", {field_def{"entries", value_kind::text, merge_policy::append}, {"title", value_kind::text}}},
  }};
  const auto s = open_store(dir.file("tablet.db"), schema);
  using bytes = std::vector<std::uint8_t>;
  s->create("visits", {{"client", std::string("Ana")}, {"minutes", std::int64_t{-5}}, {"score", 2.5}, {"sig", caresync::blob{bytes{0, 1, 255}}}});
  s->create("visits", {{"client", std::string()}, {"minutes", value{}}, {"score", -0.0}, {"sig", caresync::blob{}}});
  s->create("visits", {});
  const auto edited = s->create("visits", {{"client", std::string("Bo")}, {"minutes", std::int64_t{10}}});
  s->update("visits", edited, {{"minutes", std::int64_t{11}}});
  const auto overwritten = s->create("visits", {{"minutes", std::int64_t{1}}});
  s->update("visits", overwritten, {{"minutes", std::int64_t{2}}});
  const auto referral = s->create("referrals", {{"reason", std::string("falls")}, {"urgent", std::int64_t{1}}});
  s->update("referrals", referral, {{"urgent", std::int64_t{0}}});
  s->create("journals", {{"entries", std::string("arrived")}, {"title", std::string("day 1")}});
  const auto removed = s->create("visits", {{"client", std::string("Cy")}});
  s->update("visits", removed, {{"minutes", std::int64_t{7}}});
  s->remove("visits", removed);

  // What the batch must hold: each outbox entry's change as rebuild() makes it (or as
  // frozen), encoded.
  auto& in = s->internal();
  std::vector<change> expected;
  {
    caresync::sqlite::statement entries(in.db.get(), "SELECT collection, id, stamp, kind, frozen FROM cs_outbox ORDER BY seq");
    while (entries.step()) {
      if (entries.column_type(4) != SQLITE_NULL) {
        expected.push_back(wire::decode_change(entries.column_blob(4)));
        continue;
      }
      const auto raw = entries.column_blob(1);
      record_id id;
      REQUIRE(raw.size() == id.bytes.size());
      std::copy(raw.begin(), raw.end(), id.bytes.begin());
      const version ver{hlc_stamp{static_cast<std::uint64_t>(entries.column_int64(2))}, in.node};
      if (auto c = in.rebuild(entries.column_text(0), id, ver, static_cast<change_kind>(entries.column_int64(3)))) {
        expected.push_back(std::move(*c));
      }
    }
  }
  REQUIRE(expected.size() == 12);  // the write overwritten since is not sent

  const auto batch = in.pin_batch(1000);
  REQUIRE(batch);
  CHECK(batch->payload == wire::encode(wire::push{batch->id, expected}));
  CHECK(batch->change_count == expected.size());
  CHECK(batch->max_stamp == expected.back().ver.stamp);
  CHECK(batch->decode_changes() == expected);
}

TEST_CASE("an acknowledgement for a batch the store did not send is refused", "[store][outbox]") {
  temp_dir dir;
  const auto s = open_store(dir.file("tablet.db"));
  s->create("visits", {{"minutes", std::int64_t{1}}});
  REQUIRE(s->internal().next_batch(1000));
  caresync::outbox_batch stranger;
  stranger.id = record_id::generate();
  CHECK_THROWS_AS(s->internal().ack_batch(stranger), caresync::error);
  CHECK(s->outbox_size() == 1);
}

TEST_CASE("several batches may be pinned at once and are acknowledged oldest first", "[store][outbox]") {
  temp_dir dir;
  const auto s = open_store(dir.file("tablet.db"));
  for (std::int64_t i = 0; i < 5; ++i) s->create("visits", {{"minutes", i}});
  auto& in = s->internal();
  const auto first = in.pin_batch(2);
  const auto second = in.pin_batch(2);
  REQUIRE(first);
  REQUIRE(second);
  CHECK(first->change_count == 2);
  CHECK(second->change_count == 2);
  CHECK(first->id != second->id);
  CHECK(second->decode_changes().front().ver.stamp > first->decode_changes().back().ver.stamp);
  CHECK(first->max_stamp == first->decode_changes().back().ver.stamp);
  // What an interrupted sync resends: both, oldest first, byte for byte.
  const auto pinned = in.pinned_batches();
  REQUIRE(pinned.size() == 2);
  CHECK(pinned[0].payload == first->payload);
  CHECK(pinned[1].payload == second->payload);
  // A write made now goes into a later batch, never into a pinned one.
  s->create("visits", {{"minutes", std::int64_t{99}}});
  CHECK(in.pinned_batches()[1].payload == second->payload);

  CHECK_THROWS_AS(in.ack_batch(*second), caresync::error);  // out of order
  CHECK(s->outbox_size() == 6);
  in.ack_batch(*first);
  CHECK(s->outbox_size() == 4);
  in.ack_batch(*second);
  CHECK(s->outbox_size() == 2);
  const auto third = in.pin_batch(10);
  REQUIRE(third);
  CHECK(third->change_count == 2);
  CHECK_FALSE(in.pin_batch(10).has_value());
}
