#include <caresync/protocol/merge.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

using namespace caresync;

namespace {

record_id rid(std::uint8_t n) {
  record_id id;
  id.bytes[15] = n;
  return id;
}

change upsert(std::uint64_t ms, node_id node, std::vector<field_write> fields, std::uint8_t record = 1) {
  change c;
  c.collection = "visit";
  c.id = rid(record);
  c.ver = version{hlc_stamp::make(ms, 0), node};
  c.kind = change_kind::upsert;
  c.fields = std::move(fields);
  return c;
}

change removal(std::uint64_t ms, node_id node, std::uint8_t record = 1) {
  change c;
  c.collection = "visit";
  c.id = rid(record);
  c.ver = version{hlc_stamp::make(ms, 0), node};
  c.kind = change_kind::remove;
  return c;
}

value text(const char* s) { return value{std::string(s)}; }

}  // namespace

TEST_CASE("merge: a newer stamp wins per field", "[protocol]") {
  record_state st;
  auto out = merge(st, upsert(100, 1, {{"note", text("old")}, {"minutes", value{std::int64_t{30}}}}));
  CHECK(out.updated == std::vector<std::string>{"note", "minutes"});
  CHECK(out.superseded == 0);
  CHECK_FALSE(out.deleted_now);

  out = merge(st, upsert(200, 1, {{"note", text("new")}}));
  CHECK(out.updated == std::vector<std::string>{"note"});
  CHECK(st.fields.at("note").val == text("new"));
  CHECK(st.fields.at("note").ver == version{hlc_stamp::make(200, 0), 1});
  CHECK(st.fields.at("minutes").val == value{std::int64_t{30}});  // other fields untouched

  SECTION("an older write arriving late loses") {
    out = merge(st, upsert(150, 9, {{"note", text("late")}, {"place", text("home")}}));
    CHECK(out.superseded == 1);
    CHECK(out.updated == std::vector<std::string>{"place"});
    CHECK(st.fields.at("note").val == text("new"));
    CHECK(st.fields.at("place").val == text("home"));
  }
}

TEST_CASE("merge: equal stamps are ordered by node id as unsigned", "[protocol]") {
  const std::uint64_t big = 0x8000000000000001ULL;  // negative if read as signed
  SECTION("greater node first") {
    record_state st;
    merge(st, upsert(100, big, {{"note", text("big")}}));
    const auto out = merge(st, upsert(100, 2, {{"note", text("small")}}));
    CHECK(out.superseded == 1);
    CHECK(st.fields.at("note").val == text("big"));
  }
  SECTION("smaller node first") {
    record_state st;
    merge(st, upsert(100, 2, {{"note", text("small")}}));
    const auto out = merge(st, upsert(100, big, {{"note", text("big")}}));
    CHECK(out.updated == std::vector<std::string>{"note"});
    CHECK(st.fields.at("note").val == text("big"));
  }
  SECTION("a stamp with the top bit set is greater, not negative") {
    record_state st;
    change far = upsert(0, 1, {{"note", text("far")}});
    far.ver.stamp.value = 0x8000000000000000ULL;
    merge(st, far);
    merge(st, upsert(100, 2, {{"note", text("near")}}));
    CHECK(st.fields.at("note").val == text("far"));
  }
}

TEST_CASE("merge: a delete wins for good", "[protocol]") {
  record_state st;
  merge(st, upsert(100, 1, {{"note", text("a")}}));

  auto out = merge(st, removal(50, 2));  // even an older delete
  CHECK(out.deleted_now);
  CHECK(st.fields.empty());
  REQUIRE(st.deleted);
  CHECK(*st.deleted == version{hlc_stamp::make(50, 0), 2});

  out = merge(st, upsert(999, 3, {{"note", text("after")}}));
  CHECK(out.updated.empty());
  CHECK(st.fields.empty());

  SECTION("a second delete keeps the greatest tombstone and is not a new deletion") {
    out = merge(st, removal(70, 4));
    CHECK_FALSE(out.deleted_now);
    CHECK(*st.deleted == version{hlc_stamp::make(70, 0), 4});
    out = merge(st, removal(60, 5));
    CHECK(*st.deleted == version{hlc_stamp::make(70, 0), 4});
  }
  SECTION("a delete before any write still leaves a tombstone") {
    record_state fresh;
    out = merge(fresh, removal(10, 1));
    REQUIRE(fresh.deleted);
    merge(fresh, upsert(20, 1, {{"note", text("x")}}));
    CHECK(fresh.fields.empty());
  }
}

TEST_CASE("merge: applying the same change again changes nothing", "[protocol]") {
  record_state st;
  const auto c = upsert(100, 1, {{"note", text("a")}, {"minutes", value{std::int64_t{5}}}});
  merge(st, c);
  const auto before = st;
  const auto out = merge(st, c);
  CHECK(out.updated.empty());
  CHECK(out.superseded == 0);
  CHECK(st == before);

  merge(st, removal(200, 1));
  const auto deleted = st;
  const auto again = merge(st, removal(200, 1));
  CHECK_FALSE(again.deleted_now);
  CHECK(st == deleted);
}

TEST_CASE("merge: any order and any repetition of the same changes converges", "[protocol][property]") {
  std::mt19937_64 rng(20240611);
  const std::vector<std::string> names{"note", "minutes", "place", "mood"};

  for (int round = 0; round < 50; ++round) {
    // A random set of changes over 4 records written by 3 nodes; every version is
    // unique, as it is in a real system (one node never issues a stamp twice).
    std::vector<change> changes;
    const int n = 5 + static_cast<int>(rng() % 30);
    for (int i = 0; i < n; ++i) {
      const auto record = static_cast<std::uint8_t>(rng() % 4);
      const std::uint64_t ms = 1000 + rng() % 20;
      const node_id node = 1 + rng() % 3;
      change c = (rng() % 8 == 0) ? removal(ms, node, record) : upsert(ms, node, {}, record);
      c.ver.stamp = hlc_stamp::make(ms, static_cast<std::uint16_t>(i));  // unique per change
      if (c.kind == change_kind::upsert) {
        for (const auto& name : names) {
          if (rng() % 2) c.fields.push_back({name, value{static_cast<std::int64_t>(rng() % 1000)}});
        }
      }
      changes.push_back(std::move(c));
    }

    const auto replay = [](const std::vector<change>& order) {
      std::map<record_id, record_state> state;
      for (const auto& c : order) merge(state[c.id], c);
      return state;
    };
    const auto reference = replay(changes);
    REQUIRE_FALSE(reference.empty());

    for (int perm = 0; perm < 20; ++perm) {
      auto order = changes;
      // Some changes arrive twice, as after a resent push or a repeated pull.
      for (int d = 0; d < 3; ++d) order.push_back(changes[rng() % changes.size()]);
      std::shuffle(order.begin(), order.end(), rng);
      REQUIRE(replay(order) == reference);
    }
  }
}
