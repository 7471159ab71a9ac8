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

  // Even an older delete, which covers the write (its writer had it).
  auto del = removal(50, 2);
  del.covers = std::vector<version>{version{hlc_stamp::make(100, 0), 1}};
  auto out = merge(st, del);
  CHECK(out.deleted_now);
  // The record keeps the field's version, no value, and no open conflict.
  REQUIRE(st.fields.size() == 1);
  CHECK(st.fields.at("note").val == value{});
  CHECK(st.fields.at("note").conflicts.empty());
  REQUIRE(st.deleted);
  CHECK(*st.deleted == version{hlc_stamp::make(50, 0), 2});

  // A later edit brings nothing back: the record stays deleted, and the edit (made
  // without seeing the delete) stays visible as an open conflict.
  out = merge(st, upsert(999, 3, {{"note", text("after")}}));
  CHECK(out.updated.empty());
  CHECK(st.deleted);
  CHECK(st.fields.at("note").val == value{});
  REQUIRE(st.fields.at("note").conflicts.size() == 1);
  CHECK(st.fields.at("note").conflicts[0].val == text("after"));

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
    CHECK(fresh.deleted);
    CHECK(fresh.fields.at("note").val == value{});
  }
  SECTION("a delete that covers the concurrent edit closes its conflict") {
    auto again = removal(1000, 4);
    again.covers = std::vector<version>{version{hlc_stamp::make(999, 0), 3}};
    out = merge(st, again);
    CHECK(st.fields.at("note").conflicts.empty());
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

// keep_both (docs/protocol.md, "Merge rule"; docs/conflicts.md): a kept write names the
// versions it replaces; a concurrent kept value that loses stays as an open conflict.

namespace {

/// One write of `name` under keep_both that replaces `supersedes` (what its writer saw).
change kept_write(std::uint64_t ms, node_id node, const std::string& name, value v,
                  std::vector<version> supersedes = {}, std::uint8_t record = 1) {
  change c = upsert(ms, node, {{name, std::move(v)}}, record);
  c.kept.push_back(kept_field{name, std::move(supersedes)});
  return c;
}

version ver_of(const change& c) { return c.ver; }

std::vector<version> conflict_versions(const record_state& st, const std::string& name) {
  std::vector<version> out;
  for (const auto& c : st.fields.at(name).conflicts) out.push_back(c.ver);
  return out;
}

record_state replay(const std::vector<change>& order) {
  record_state st;
  for (const auto& c : order) merge(st, c);
  return st;
}

}  // namespace

TEST_CASE("merge keep_both: two concurrent kept writes leave one current value and one open conflict in either order",
          "[protocol][keep_both]") {
  const auto base = kept_write(100, 1, "note", text("base"));
  const auto a = kept_write(200, 2, "note", text("from a"), {ver_of(base)});  // both saw base,
  const auto b = kept_write(300, 3, "note", text("from b"), {ver_of(base)});  // not each other

  record_state ab;
  merge(ab, base);
  CHECK(ab.fields.at("note").kept);
  const auto out_a = merge(ab, a);
  CHECK(out_a.updated == std::vector<std::string>{"note"});
  CHECK(out_a.conflicts_opened == 0);
  const auto out_b = merge(ab, b);  // b is newer: a becomes the open conflict
  CHECK(out_b.updated == std::vector<std::string>{"note"});
  CHECK(out_b.conflicts_opened == 1);
  CHECK(out_b.conflicts_changed == std::vector<std::string>{"note"});

  record_state ba;
  merge(ba, base);
  merge(ba, b);
  const auto late_a = merge(ba, a);  // a is older: it loses but is kept
  CHECK(late_a.updated.empty());
  CHECK(late_a.conflicts_opened == 1);
  CHECK(late_a.conflicts_changed == std::vector<std::string>{"note"});

  for (const record_state* st : {&ab, &ba}) {
    const auto& f = st->fields.at("note");
    CHECK(f.val == text("from b"));
    CHECK(f.ver == ver_of(b));
    CHECK(f.kept);
    REQUIRE(f.conflicts.size() == 1);
    CHECK(f.conflicts.front() == conflict_value{text("from a"), ver_of(a)});
  }
  CHECK(ab == ba);

  SECTION("three concurrent writes: the conflicts are listed by ascending version") {
    const auto c = kept_write(250, 4, "note", text("from c"), {ver_of(base)});
    std::vector<change> order{a, b, c};
    std::sort(order.begin(), order.end(), [](const change& x, const change& y) { return x.ver < y.ver; });
    std::vector<record_state> states;
    do {
      std::vector<change> all{base};
      all.insert(all.end(), order.begin(), order.end());
      states.push_back(replay(all));
    } while (std::next_permutation(order.begin(), order.end(),
                                   [](const change& x, const change& y) { return x.ver < y.ver; }));
    REQUIRE(states.size() == 6);
    for (const auto& st : states) CHECK(st == states.front());
    CHECK(states.front().fields.at("note").ver == ver_of(b));
    CHECK(conflict_versions(states.front(), "note") == std::vector<version>{ver_of(a), ver_of(c)});
  }
}

TEST_CASE("merge keep_both: a write that replaces values closes exactly those conflicts", "[protocol][keep_both]") {
  const auto base = kept_write(100, 1, "note", text("base"));
  const auto a = kept_write(200, 2, "note", text("from a"), {ver_of(base)});
  const auto b = kept_write(300, 3, "note", text("from b"), {ver_of(base)});
  record_state st = replay({base, a, b});
  REQUIRE(conflict_versions(st, "note") == std::vector<version>{ver_of(a)});

  SECTION("replacing both closes the conflict") {
    const auto resolve = kept_write(400, 2, "note", text("agreed"), {ver_of(a), ver_of(b)});
    const auto out = merge(st, resolve);
    CHECK(out.updated == std::vector<std::string>{"note"});
    CHECK(out.conflicts_changed == std::vector<std::string>{"note"});
    CHECK(out.conflicts_opened == 0);
    CHECK(st.fields.at("note").val == text("agreed"));
    CHECK(st.fields.at("note").conflicts.empty());
  }
  SECTION("replacing only the current value leaves the other conflict open") {
    const auto edit = kept_write(400, 3, "note", text("b, edited"), {ver_of(b)});
    const auto out = merge(st, edit);
    CHECK(out.updated == std::vector<std::string>{"note"});
    CHECK(out.conflicts_opened == 0);
    CHECK(st.fields.at("note").val == text("b, edited"));
    CHECK(conflict_versions(st, "note") == std::vector<version>{ver_of(a)});
  }
  SECTION("replacing only the conflict leaves the current value, now losing, as the conflict") {
    const auto edit = kept_write(400, 2, "note", text("a, edited"), {ver_of(a)});
    const auto out = merge(st, edit);
    CHECK(out.updated == std::vector<std::string>{"note"});
    CHECK(out.conflicts_opened == 1);
    CHECK(st.fields.at("note").val == text("a, edited"));
    CHECK(conflict_versions(st, "note") == std::vector<version>{ver_of(b)});
  }
  SECTION("replacing versions the field never held changes nothing but the value") {
    const auto stray = kept_write(400, 4, "note", text("stray"), {version{hlc_stamp::make(150, 0), 9}});
    merge(st, stray);
    CHECK(st.fields.at("note").val == text("stray"));
    CHECK(conflict_versions(st, "note") == (std::vector<version>{ver_of(a), ver_of(b)}));
  }
  SECTION("a last-writer-wins write replaces nothing: the kept current value becomes a conflict") {
    const auto lww = upsert(400, 4, {{"note", text("plain")}});
    const auto out = merge(st, lww);
    CHECK(out.conflicts_opened == 1);
    CHECK_FALSE(st.fields.at("note").kept);
    CHECK(conflict_versions(st, "note") == (std::vector<version>{ver_of(a), ver_of(b)}));
  }
}

TEST_CASE("merge keep_both: a losing last-writer-wins write is dropped, a losing kept write is kept",
          "[protocol][keep_both]") {
  record_state st;
  merge(st, kept_write(300, 1, "note", text("current")));

  SECTION("last-writer-wins loses and is gone") {
    const auto out = merge(st, upsert(200, 2, {{"note", text("older plain")}}));
    CHECK(out.superseded == 1);
    CHECK(out.conflicts_opened == 0);
    CHECK(out.conflicts_changed.empty());
    CHECK(st.fields.at("note").val == text("current"));
    CHECK(st.fields.at("note").conflicts.empty());
  }
  SECTION("kept loses and stays as an open conflict") {
    const auto out = merge(st, kept_write(200, 2, "note", text("older kept")));
    CHECK(out.updated.empty());
    CHECK(out.conflicts_opened == 1);
    CHECK(st.fields.at("note").val == text("current"));
    REQUIRE(st.fields.at("note").conflicts.size() == 1);
    CHECK(st.fields.at("note").conflicts.front().val == text("older kept"));
  }
  SECTION("a last-writer-wins current value that loses is dropped, not kept") {
    record_state plain;
    merge(plain, upsert(100, 1, {{"note", text("plain")}}));
    CHECK_FALSE(plain.fields.at("note").kept);
    const auto out = merge(plain, kept_write(200, 2, "note", text("kept")));
    CHECK(out.conflicts_opened == 0);
    CHECK(plain.fields.at("note").val == text("kept"));
    CHECK(plain.fields.at("note").kept);
    CHECK(plain.fields.at("note").conflicts.empty());
  }
  SECTION("only the fields a change lists as kept are kept") {
    change c = upsert(200, 2, {{"note", text("kept older")}, {"minutes", value{std::int64_t{5}}}});
    c.kept.push_back(kept_field{"note", {}});
    merge(st, upsert(250, 3, {{"minutes", value{std::int64_t{9}}}}));
    const auto out = merge(st, c);
    CHECK(out.superseded == 1);        // minutes lost and is dropped
    CHECK(out.conflicts_opened == 1);  // the older note is kept (counted once, here)
    CHECK(out.conflicts_changed == std::vector<std::string>{"note"});
    CHECK(st.fields.at("note").conflicts.size() == 1);
    CHECK(st.fields.at("minutes").conflicts.empty());
    CHECK(st.fields.at("minutes").val == value{std::int64_t{9}});
  }
}

TEST_CASE("merge keep_both: a write seen again changes nothing", "[protocol][keep_both]") {
  const auto base = kept_write(100, 1, "note", text("base"));
  const auto a = kept_write(200, 2, "note", text("from a"), {ver_of(base)});
  const auto b = kept_write(300, 3, "note", text("from b"), {ver_of(base)});
  record_state st = replay({base, a, b});
  const auto before = st;
  for (const auto& again : {a, b}) {  // the open conflict, then the current value
    const auto out = merge(st, again);
    CHECK(out.updated.empty());
    CHECK(out.conflicts_changed.empty());
    CHECK(out.conflicts_opened == 0);
    CHECK(out.superseded == 0);
    CHECK(st == before);
  }
  SECTION("a write with a conflict's version is that write, whatever it says it replaces") {
    auto forged = a;
    forged.kept.front().supersedes = {ver_of(b)};
    merge(st, forged);
    CHECK(st == before);
  }
}

// Each change merged once is commutative under causal order, but a duplicate of a write
// that a later write replaced arrives after its replacement: the merge has forgotten the
// replaced version, so the value comes back as an open conflict. docs/protocol.md says
// re-applying a change is harmless. Known bug in protocol/src/merge.cpp: drop the
// [!shouldfail] tag once the merge remembers replaced versions.
TEST_CASE("merge keep_both: a replaced write delivered again stays replaced", "[protocol][keep_both][!shouldfail]") {
  const auto base = kept_write(100, 1, "note", text("base"));
  const auto edit = kept_write(200, 2, "note", text("edited"), {ver_of(base)});
  record_state st = replay({base, edit});
  const auto before = st;
  merge(st, base);
  CHECK(st.fields.at("note").conflicts.empty());
  CHECK(st == before);
}

TEST_CASE("merge keep_both: a tombstone that saw the open conflicts closes them, a later edit stays visible",
          "[protocol][keep_both]") {
  const auto base = kept_write(100, 1, "note", text("base"));
  const auto a = kept_write(200, 2, "note", text("from a"), {ver_of(base)});
  const auto b = kept_write(300, 3, "note", text("from b"), {ver_of(base)});
  record_state st = replay({base, a, b});
  REQUIRE_FALSE(st.fields.at("note").conflicts.empty());
  auto del = removal(350, 4);
  del.covers = std::vector<version>{ver_of(a), ver_of(b)};
  std::sort(del.covers->begin(), del.covers->end());
  const auto out = merge(st, del);
  CHECK(out.deleted_now);
  CHECK(st.deleted);
  CHECK(st.fields.at("note").conflicts.empty());
  CHECK(st.fields.at("note").val == value{});
  // An edit by someone who had not seen the delete: the record stays deleted, the edit
  // stays visible, replacing the values it names.
  const auto late = kept_write(400, 2, "note", text("too late"), {ver_of(a), ver_of(b)});
  const auto later = merge(st, late);
  CHECK(later.updated.empty());
  CHECK(later.conflicts_opened == 1);
  REQUIRE(st.fields.at("note").conflicts.size() == 1);
  CHECK(st.fields.at("note").conflicts[0].val == text("too late"));
  // Whichever of the concurrent writes arrives first.
  CHECK(replay({base, b, a, del, late}) == st);
  CHECK(replay({base, a, b, late, del}) == st);
}

namespace {

/// A random causal history of keep_both and last-writer-wins writes (docs/protocol.md,
/// "Merge rule"): writers write on what they have seen, push to a log and pull from it,
/// as sync does. Each kept write replaces only versions its writer holds.
struct causal_history {
  std::vector<change> changes;                            ///< in log order
  std::vector<std::map<record_id, record_state>> writers;  ///< each writer's replica after a full sync
};

causal_history make_history(std::mt19937_64& rng) {
  struct writer {
    node_id node = 0;
    std::uint64_t last = 0;  // HLC: greatest stamp issued or observed
    std::int64_t skew = 0;   // ms
    std::map<record_id, record_state> local;
    std::vector<change> outbox;
    std::size_t cursor = 0;
  };
  const int writer_count = 2 + static_cast<int>(rng() % 3);
  std::vector<writer> ws(static_cast<std::size_t>(writer_count));
  for (std::size_t i = 0; i < ws.size(); ++i) {
    ws[i].node = 0x100 + i;
    ws[i].skew = static_cast<std::int64_t>(rng() % 7) - 3;
  }
  std::vector<change> log;
  const auto pull = [&](writer& w, std::size_t upto) {
    for (; w.cursor < upto; ++w.cursor) {
      const auto& c = log[w.cursor];
      if (c.ver.node == w.node) continue;  // its own changes are not sent back
      w.last = std::max(w.last, c.ver.stamp.value);
      merge(w.local[c.id], c);
    }
  };
  const auto push = [&](writer& w) {
    log.insert(log.end(), w.outbox.begin(), w.outbox.end());
    w.outbox.clear();
  };
  const std::vector<std::string> kept_names{"note", "mood"};
  const int steps = 20 + static_cast<int>(rng() % 40);
  for (int step = 0; step < steps; ++step) {
    auto& w = ws[rng() % ws.size()];
    switch (rng() % 10) {
      case 0: case 1: case 2: push(w); break;
      case 3: case 4: case 5: pull(w, w.cursor + rng() % (log.size() - w.cursor + 1)); break;
      default: {
        const auto wall = static_cast<std::uint64_t>(1000 + 10 * step + w.skew);
        w.last = std::max(w.last + 1, hlc_stamp::make(wall, 0).value);
        const auto record = rid(static_cast<std::uint8_t>(rng() % 2));
        auto& st = w.local[record];
        if (is_hidden(st)) break;  // as a store: nobody edits or deletes a record she holds deleted
        change c;
        c.collection = "visit";
        c.id = record;
        c.ver = version{hlc_stamp{w.last}, w.node};
        if (rng() % 25 == 0) {
          c.kind = change_kind::remove;
          // The delete covers what its writer has of the record.
          c.covers.emplace();
          for (const auto& [name, f] : st.fields) {
            c.covers->push_back(f.ver);
            for (const auto& o : f.conflicts) c.covers->push_back(o.ver);
          }
          std::sort(c.covers->begin(), c.covers->end());
          c.covers->erase(std::unique(c.covers->begin(), c.covers->end()), c.covers->end());
          // Half of them revivable (update_revives): mixed with final ones on one record,
          // as across app versions that changed the policy.
          c.revivable = rng() % 2 == 0;
        } else {
          // keep_both fields, a last-writer-wins field, and a field written either way.
          for (const auto& name : {"note", "mood", "minutes", "place"}) {
            if (rng() % 2) continue;
            c.fields.push_back({name, value{static_cast<std::int64_t>(step)}});
            const bool kept = std::string(name) == "note" || std::string(name) == "mood" ||
                              (std::string(name) == "place" && rng() % 2);
            if (!kept) continue;
            kept_field k{name, {}};
            if (const auto it = st.fields.find(name); it != st.fields.end()) {
              // What the writer has in front of her: the current value and the open
              // conflicts. An edit replaces the current value; a resolve all of them;
              // now and then some other subset.
              std::vector<version> seen{it->second.ver};
              for (const auto& o : it->second.conflicts) seen.push_back(o.ver);
              switch (rng() % 4) {
                case 0: case 1: k.supersedes = {it->second.ver}; break;
                case 2: k.supersedes = seen; break;
                default:
                  for (const auto& v : seen) {
                    if (rng() % 2) k.supersedes.push_back(v);
                  }
              }
              std::sort(k.supersedes.begin(), k.supersedes.end());
              k.supersedes.erase(std::unique(k.supersedes.begin(), k.supersedes.end()), k.supersedes.end());
            }
            c.kept.push_back(std::move(k));
          }
          if (c.fields.empty()) c.fields.push_back({"minutes", value{std::int64_t{-1}}});
          if (is_revived(st) && rng() % 2) c.dismisses = st.removed;
        }
        INFO(check_change(c));
        REQUIRE(check_change(c).empty());
        merge(st, c);
        w.outbox.push_back(std::move(c));
      }
    }
  }
  for (auto& w : ws) push(w);
  causal_history h;
  for (auto& w : ws) {
    pull(w, log.size());
    h.writers.push_back(std::move(w.local));
  }
  h.changes = std::move(log);
  return h;
}

/// A random delivery of `changes` in which each change comes after the changes it
/// replaces (and no other constraint), plus `duplicates` copies of changes delivered
/// again later. With `before_replaced`, a copy comes no later than the first change that
/// replaces it (see the [!shouldfail] test above for the other case).
std::vector<change> causal_order(const std::vector<change>& changes, int duplicates, bool before_replaced,
                                 std::mt19937_64& rng) {
  const auto n = changes.size();
  std::vector<std::vector<std::size_t>> needs(n);  // the changes each one replaces
  for (std::size_t i = 0; i < n; ++i) {
    // A dismissal comes after the delete it dismisses.
    if (changes[i].dismisses) {
      for (std::size_t j = 0; j < n; ++j) {
        if (j != i && changes[j].id == changes[i].id && changes[j].ver == *changes[i].dismisses) needs[i].push_back(j);
      }
    }
    // A delete comes after the writes it covers.
    if (changes[i].covers) {
      for (std::size_t j = 0; j < n; ++j) {
        if (j != i && changes[j].id == changes[i].id &&
            std::binary_search(changes[i].covers->begin(), changes[i].covers->end(), changes[j].ver)) {
          needs[i].push_back(j);
        }
      }
    }
    for (const auto& k : changes[i].kept) {
      for (std::size_t j = 0; j < n; ++j) {
        if (j != i && changes[j].id == changes[i].id && changes[j].kept_of(k.name) &&
            std::binary_search(k.supersedes.begin(), k.supersedes.end(), changes[j].ver)) {
          needs[i].push_back(j);
        }
      }
    }
  }
  // A random topological order: each step delivers one of the changes that are ready.
  std::vector<double> rank(n, -1.0);
  for (std::size_t delivered = 0; delivered < n; ++delivered) {
    std::vector<std::size_t> ready;
    for (std::size_t i = 0; i < n; ++i) {
      if (rank[i] < 0 && std::all_of(needs[i].begin(), needs[i].end(), [&](std::size_t j) { return rank[j] >= 0; })) {
        ready.push_back(i);
      }
    }
    REQUIRE_FALSE(ready.empty());  // the history is causal, so something is always ready
    rank[ready[rng() % ready.size()]] = static_cast<double>(delivered);
  }
  std::vector<std::pair<double, std::size_t>> deliveries;
  for (std::size_t i = 0; i < n; ++i) deliveries.emplace_back(rank[i], i);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  for (int d = 0; d < duplicates && n > 0; ++d) {
    const auto j = rng() % n;
    double limit = static_cast<double>(n);
    if (before_replaced) {
      for (std::size_t i = 0; i < n; ++i) {
        if (std::find(needs[i].begin(), needs[i].end(), j) != needs[i].end()) limit = std::min(limit, rank[i]);
      }
    }
    // Strictly after the first delivery, strictly before `limit`.
    deliveries.emplace_back(rank[j] + (limit - rank[j]) * (0.001 + 0.998 * unit(rng)), j);
  }
  std::sort(deliveries.begin(), deliveries.end());
  std::vector<change> order;
  for (const auto& [key, i] : deliveries) order.push_back(changes[i]);
  return order;
}

std::map<record_id, record_state> replay_all(const std::vector<change>& order) {
  std::map<record_id, record_state> state;
  for (const auto& c : order) merge(state[c.id], c);
  return state;
}

}  // namespace

TEST_CASE("merge keep_both: every causal order of a random history, with repeats, gives identical records",
          "[protocol][keep_both][property]") {
  std::mt19937_64 rng(20261123);
  std::size_t open_conflicts = 0, resolves = 0, kept_writes = 0, revived = 0, hidden_removed = 0, dismissed = 0;
  for (int round = 0; round < 200; ++round) {
    INFO("round " << round);
    const auto history = make_history(rng);
    const auto reference = replay_all(history.changes);  // the server's view, in log order
    for (const auto& [id, st] : reference) {
      for (const auto& [name, f] : st.fields) open_conflicts += f.conflicts.size();
      revived += is_revived(st) ? 1 : 0;
      hidden_removed += !st.deleted && is_hidden(st) ? 1 : 0;
      dismissed += st.dismissed ? 1 : 0;
    }
    for (const auto& c : history.changes) {
      kept_writes += c.kept.size();
      for (const auto& k : c.kept) resolves += k.supersedes.size() > 1 ? 1 : 0;
    }
    for (std::size_t w = 0; w < history.writers.size(); ++w) {
      INFO("writer " << w);
      CHECK(history.writers[w] == reference);
    }
    for (int perm = 0; perm < 10; ++perm) {
      INFO("order " << perm);
      const auto order = causal_order(history.changes, 3, true, rng);
      REQUIRE(order.size() == history.changes.size() + 3);
      REQUIRE(replay_all(order) == reference);
    }
  }
  // The histories really exercise keep_both: conflicts stay open, and writes replace
  // several values at once (about 4,000 kept writes, 900 open conflicts, 160 such writes).
  CHECK(kept_writes > 1000);
  CHECK(open_conflicts > 50);
  CHECK(resolves > 50);
  // And revivable deletes: records hidden, revived, and revivals dismissed.
  INFO("revived " << revived << ", hidden " << hidden_removed << ", dismissed " << dismissed);
  CHECK(revived > 0);
  CHECK(hidden_removed > 0);
  CHECK(dismissed > 0);
}

namespace {

version ver_at(std::uint64_t ms, node_id node) { return version{hlc_stamp::make(ms, 0), node}; }

change revivable(std::uint64_t ms, node_id node, std::vector<version> covers) {
  auto c = removal(ms, node);
  std::sort(covers.begin(), covers.end());
  c.covers = std::move(covers);
  c.revivable = true;
  return c;
}

}  // namespace

TEST_CASE("merge update_revives: an edit the delete did not cover revives the record, in either order",
          "[protocol][revive]") {
  const auto base = upsert(100, 1, {{"name", text("Aino")}, {"note", text("first")}});
  const auto del = revivable(200, 1, {ver_at(100, 1)});
  const auto edit = upsert(150, 2, {{"note", text("concurrent")}});  // by a writer who had not seen the delete

  SECTION("the delete alone hides the record and keeps its values") {
    const auto st = replay({base, del});
    CHECK(is_hidden(st));
    CHECK_FALSE(st.deleted);
    CHECK_FALSE(is_revived(st));
    REQUIRE(st.removed);
    CHECK(*st.removed == del.ver);
    CHECK(st.fields.at("name").val == text("Aino"));
    CHECK(st.covered == std::vector<version>{ver_at(100, 1)});
  }
  SECTION("delete then edit, edit then delete: the same live record, the delete an open conflict") {
    const auto a = replay({base, del, edit});
    const auto b = replay({base, edit, del});
    CHECK(a == b);
    CHECK_FALSE(is_hidden(a));
    CHECK(is_revived(a));
    CHECK(a.fields.at("name").val == text("Aino"));
    CHECK(a.fields.at("note").val == text("concurrent"));
    // The version the edit replaced is gone, and so is its mark as covered.
    CHECK(a.covered == std::vector<version>{ver_at(100, 1)});
  }
  SECTION("a delete that saw the revival hides the record again, whatever the order") {
    const auto again = revivable(300, 2, {ver_at(100, 1), ver_at(150, 2)});
    const auto a = replay({base, del, edit, again});
    const auto b = replay({base, edit, again, del});
    const auto c = replay({base, edit, del, again});
    CHECK(a == b);
    CHECK(a == c);
    CHECK(is_hidden(a));
    CHECK(*a.removed == again.ver);
    CHECK(a.fields.at("note").val == text("concurrent"));
  }
  SECTION("an edit older than the value the delete covered loses, and does not revive") {
    const auto late = upsert(90, 3, {{"name", text("old")}});
    const auto st = replay({base, del, late});
    CHECK(is_hidden(st));
    CHECK(st.fields.at("name").val == text("Aino"));
  }
}

TEST_CASE("merge update_revives: a dismissal closes the revived conflict on every replica, order-free",
          "[protocol][revive]") {
  const auto base = upsert(100, 1, {{"note", text("first")}});
  const auto del = revivable(200, 1, {ver_at(100, 1)});
  const auto edit = upsert(150, 2, {{"note", text("concurrent")}});
  auto dismiss = upsert(300, 2, {});
  dismiss.dismisses = del.ver;
  REQUIRE(check_change(dismiss).empty());

  const auto a = replay({base, del, edit, dismiss});
  const auto b = replay({base, edit, del, dismiss});
  CHECK(a == b);
  CHECK_FALSE(is_hidden(a));
  CHECK_FALSE(is_revived(a));
  REQUIRE(a.dismissed);
  CHECK(*a.dismissed == del.ver);
  CHECK(a.fields.at("note").val == text("concurrent"));

  SECTION("a later delete and another concurrent edit open it again") {
    const auto del2 = revivable(400, 1, {ver_at(150, 2)});
    const auto edit2 = upsert(350, 3, {{"note", text("third")}});
    const auto x = replay({base, del, edit, dismiss, del2, edit2});
    const auto y = replay({base, del, edit, dismiss, edit2, del2});
    CHECK(x == y);
    CHECK(is_revived(x));
    CHECK(x.fields.at("note").val == text("third"));
  }
}

TEST_CASE("merge update_revives: a final delete wins over revivable ones in any order", "[protocol][revive]") {
  const auto base = upsert(100, 1, {{"note", text("first")}, {"minutes", value{std::int64_t{30}}}});
  const auto rev = revivable(200, 1, {ver_at(100, 1)});
  const auto edit = upsert(150, 2, {{"note", text("concurrent")}});
  auto final_del = removal(250, 3);
  final_del.covers = std::vector<version>{ver_at(100, 1)};

  const std::vector<std::vector<change>> orders{
      {base, rev, edit, final_del}, {base, edit, rev, final_del}, {base, final_del, rev, edit},
      {base, final_del, edit, rev}, {base, edit, final_del, rev},  {base, rev, final_del, edit}};
  const auto reference = replay(orders.front());
  for (std::size_t i = 0; i < orders.size(); ++i) {
    INFO("order " << i);
    CHECK(replay(orders[i]) == reference);
  }
  CHECK(reference.deleted);
  CHECK(is_hidden(reference));
  CHECK_FALSE(is_revived(reference));
  CHECK(reference.covered.empty());
  // The edit neither delete covered stays visible on the tombstone, as under delete_wins.
  REQUIRE(reference.fields.at("note").conflicts.size() == 1);
  CHECK(reference.fields.at("note").conflicts[0].val == text("concurrent"));
  CHECK(reference.fields.at("minutes").conflicts.empty());

  SECTION("a final delete that says nothing of what it covers still counts what the revivable one covered") {
    const auto old_peer = removal(260, 4);  // protocol version 2: covers nothing
    const auto x = replay({base, rev, old_peer});
    const auto y = replay({base, old_peer, rev});
    CHECK(x == y);
    CHECK(x.fields.at("note").conflicts.empty());
  }
}
