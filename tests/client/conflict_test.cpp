// keep_both fields between stores, without a server (docs/conflicts.md): changes move
// from one store to another through the internals a sync uses (pin_batch, ack_batch,
// apply_page), in the order a server's log would give them. Concurrent writes of a
// keep_both field leave the same open conflict on every store; resolving or dismissing
// it on one closes it everywhere; last-writer-wins fields never open one.
#include "../support/conflict_text.hpp"
#include "../support/temp_dir.hpp"
#include "store_impl.hpp"

#include <caresync/protocol/errors.hpp>
#include <caresync/protocol/messages.hpp>
#include <caresync/store.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

using caresync::change;
using caresync::collection_def;
using caresync::field_def;
using caresync::field_write;
using caresync::merge_policy;
using caresync::open_conflict;
using caresync::record_id;
using caresync::storage_errc;
using caresync::store;
using caresync::value;
using caresync::value_kind;
using caresync::testing::temp_dir;
namespace wire = caresync::wire;

using caresync::testing::describe;
using caresync::testing::note_of;

namespace {

// A time far from any real clock, so that the tests decide which write is newer.
constexpr std::uint64_t k_start_ms = 1'700'000'000'000;

caresync::schema visits_schema() {
  return caresync::schema{{collection_def{"visits",
                                          {field_def{"client", value_kind::text},
                                           field_def{"status", value_kind::text},
                                           field_def{"minutes", value_kind::integer},
                                           field_def{"note", value_kind::text, merge_policy::keep_both}}}}};
}

/// A store in `dir` whose clock reads `*now` (milliseconds), which the test moves.
struct tablet {
  std::string path;
  std::shared_ptr<std::uint64_t> now;
  std::unique_ptr<store> s;

  tablet(const temp_dir& dir, const std::string& name, std::uint64_t start_ms)
      : path(dir.file(name + ".db")), now(std::make_shared<std::uint64_t>(start_ms)) {
    open();
  }
  void open() {
    auto clock = now;
    s = store::open(caresync::store_options{path, visits_schema(), caresync::durability::normal,
                                            [clock] { return *clock; }});
  }
  void reopen() {
    s.reset();
    open();
  }
  store* operator->() const { return s.get(); }
  store& operator*() const { return *s; }
};

/// A server's log in memory: pushed changes get sequence numbers; a pull gives a store
/// every change above its cursor except its own, as the real server does.
class relay {
 public:
  /// Pins and acknowledges every outbox batch of `s`; returns the changes pushed.
  std::size_t push(store& s) {
    std::size_t pushed = 0;
    while (auto batch = s.internal().pin_batch(100)) {
      for (const auto& c : batch->decode_changes()) log_.push_back(c);
      pushed += batch->change_count;
      s.internal().ack_batch(*batch);
    }
    return pushed;
  }
  /// Applies the changes `s` has not seen as one page; returns apply_page's count.
  std::size_t pull(store& s) {
    wire::changes_page page;
    for (std::uint64_t seq = s.cursor() + 1; seq <= log_.size(); ++seq) {
      const change& c = log_[seq - 1];
      if (c.ver.node != s.node()) page.items.push_back(caresync::sequenced_change{seq, c});
    }
    page.next_cursor = log_.size();
    return s.internal().apply_page(page);
  }
  /// Number of changes in the log.
  std::size_t size() const noexcept { return log_.size(); }

 private:
  std::vector<change> log_;
};

/// The code of the caresync::error `body` throws (a default code if none).
template <class Body>
std::error_code refusal_of(Body&& body) {
  try {
    body();
  } catch (const caresync::error& e) {
    return e.code();
  }
  return {};
}

std::error_code code(storage_errc e) { return make_error_code(e); }

/// Two stores that both hold one visit (created on `a`), then each wrote its own note
/// without having seen the other's: `b` a millisecond later, so b's note is current.
struct concurrent_notes {
  temp_dir dir;
  tablet a{dir, "a", k_start_ms};
  tablet b{dir, "b", k_start_ms};
  relay server;
  record_id id;
  std::size_t pulled_by_a = 0, pulled_by_b = 0;

  concurrent_notes() {
    id = a->create("visits", {{"client", std::string("Ana")}, {"note", std::string("first words")}});
    server.push(*a);
    server.pull(*b);
    *a.now += 10;
    *b.now += 11;
    a->update("visits", id, {{"note", std::string("A's words")}});
    b->update("visits", id, {{"note", std::string("B's words")}});
    server.push(*a);
    server.push(*b);
    pulled_by_a = server.pull(*a);
    pulled_by_b = server.pull(*b);
  }
  /// Pushes and pulls both stores, twice, so each has what the other wrote.
  void exchange() {
    for (int round = 0; round < 2; ++round) {
      server.push(*a);
      server.push(*b);
      server.pull(*a);
      server.pull(*b);
    }
  }
};

}  // namespace

TEST_CASE("concurrent edits of a keep_both note leave the same open conflict on both stores", "[store][conflict]") {
  concurrent_notes t;
  auto& a = t.a;
  auto& b = t.b;

  // Each store counted the other's write once, as a newly opened conflict.
  CHECK(t.pulled_by_a == 1);
  CHECK(t.pulled_by_b == 1);
  CHECK(a->conflict_count() == 1);
  CHECK(b->conflict_count() == 1);

  const auto listed = a->conflicts();
  REQUIRE(listed.size() == 1);
  const auto& c = listed.front();
  CHECK(c.collection == "visits");
  CHECK(c.record == t.id);
  CHECK(c.field == "note");
  CHECK_FALSE(c.record_deleted);
  // b wrote a millisecond later: its note is current, a's is kept.
  CHECK(c.current.val == value{std::string("B's words")});
  CHECK(c.current.ver.node == b->node());
  REQUIRE(c.others.size() == 1);
  CHECK(c.others[0].val == value{std::string("A's words")});
  CHECK(c.others[0].ver.node == a->node());
  CHECK(c.others[0].ver < c.current.ver);

  CHECK(describe(b->conflicts()) == describe(listed));
  CHECK(describe(a->conflicts("visits", t.id)) == describe(listed));
  CHECK(describe(b->conflicts("visits", t.id)) == describe(listed));
  CHECK(a->conflicts("visits", record_id::generate()).empty());
  // The record shows the current value on both.
  CHECK(note_of(*a, t.id) == "\"B's words\"");
  CHECK(note_of(*b, t.id) == "\"B's words\"");
  CHECK(a->state_digest() == b->state_digest());

  SECTION("pulling again changes nothing") {
    const auto digest = a->state_digest();
    t.exchange();
    CHECK(a->state_digest() == digest);
    CHECK(b->state_digest() == digest);
    CHECK(describe(a->conflicts()) == describe(listed));
  }
}

TEST_CASE("three concurrent notes: one conflict with both losing values, ascending, on every store",
          "[store][conflict]") {
  temp_dir dir;
  tablet a{dir, "a", k_start_ms};
  tablet b{dir, "b", k_start_ms};
  tablet c{dir, "c", k_start_ms};
  relay server;
  const auto id = a->create("visits", {{"note", std::string("first words")}});
  server.push(*a);
  server.pull(*b);
  server.pull(*c);
  *a.now += 30;  // newest
  *b.now += 10;
  *c.now += 20;
  a->update("visits", id, {{"note", std::string("A's words")}});
  b->update("visits", id, {{"note", std::string("B's words")}});
  c->update("visits", id, {{"note", std::string("C's words")}});
  // Pushed and pulled in a mixed order (each store pushes before it pulls, as a sync
  // does): the result does not depend on it.
  server.push(*c);
  server.push(*b);
  server.pull(*b);
  server.push(*a);
  for (auto* s : {&c, &a, &b}) server.pull(**s);

  const auto listed = a->conflicts();
  REQUIRE(listed.size() == 1);
  CHECK(listed[0].current.val == value{std::string("A's words")});
  REQUIRE(listed[0].others.size() == 2);
  CHECK(listed[0].others[0].val == value{std::string("B's words")});
  CHECK(listed[0].others[1].val == value{std::string("C's words")});
  CHECK(describe(b->conflicts()) == describe(listed));
  CHECK(describe(c->conflicts()) == describe(listed));
  CHECK(b->state_digest() == a->state_digest());
  CHECK(c->state_digest() == a->state_digest());

  // One resolution closes both losing values everywhere.
  c->resolve_conflict("visits", id, "note", std::string("all three, merged"));
  for (auto* s : {&a, &b, &c}) server.push(**s);
  for (auto* s : {&a, &b, &c}) server.pull(**s);
  for (auto* s : {&a, &b, &c}) {
    CHECK((*s)->conflict_count() == 0);
    CHECK(note_of(**s, id) == "\"all three, merged\"");
  }
  CHECK(b->state_digest() == a->state_digest());
  CHECK(c->state_digest() == a->state_digest());
}

TEST_CASE("concurrent edits of a last-writer-wins field open no conflict", "[store][conflict]") {
  temp_dir dir;
  tablet a{dir, "a", k_start_ms};
  tablet b{dir, "b", k_start_ms};
  relay server;
  const auto id = a->create("visits", {{"status", std::string("planned")}, {"note", std::string("first words")}});
  server.push(*a);
  server.pull(*b);
  *a.now += 10;
  *b.now += 11;
  a->update("visits", id, {{"status", std::string("done")}});
  b->update("visits", id, {{"status", std::string("cancelled")}});
  server.push(*a);
  server.push(*b);
  const auto at_a = server.pull(*a);
  const auto at_b = server.pull(*b);

  // Only b saw an incoming write lose (a's older one); a's value was simply replaced.
  CHECK(at_a == 0);
  CHECK(at_b == 1);
  CHECK(a->conflict_count() == 0);
  CHECK(b->conflict_count() == 0);
  CHECK(a->conflicts().empty());
  CHECK(b->conflicts().empty());
  CHECK(a->get("visits", id)->at("status") == value{std::string("cancelled")});
  CHECK(b->get("visits", id)->at("status") == value{std::string("cancelled")});
  CHECK(a->state_digest() == b->state_digest());
  // Nothing to resolve either.
  CHECK(refusal_of([&] { a->dismiss_conflict("visits", id, "status"); }) == code(storage_errc::not_found));
}

TEST_CASE("resolving a conflict on one store closes it on every store", "[store][conflict]") {
  concurrent_notes t;
  auto& a = t.a;
  auto& b = t.b;
  REQUIRE(a->conflict_count() == 1);

  SECTION("resolved by the store whose value lost") {
    a->resolve_conflict("visits", t.id, "note", std::string("A's and B's words"));
    CHECK(a->conflict_count() == 0);
    CHECK(note_of(*a, t.id) == "\"A's and B's words\"");
    CHECK(b->conflict_count() == 1);  // until the resolution arrives
    CHECK(t.server.push(*a) == 1);
    CHECK(t.server.pull(*b) == 0);  // replaced what b had: nothing lost, nothing opened
  }
  SECTION("resolved by the store whose value is current") {
    b->resolve_conflict("visits", t.id, "note", std::string("A's and B's words"));
    CHECK(b->conflict_count() == 0);
    CHECK(t.server.push(*b) == 1);
    CHECK(t.server.pull(*a) == 0);
  }
  t.exchange();
  CHECK(a->conflict_count() == 0);
  CHECK(b->conflict_count() == 0);
  CHECK(a->conflicts().empty());
  CHECK(b->conflicts().empty());
  CHECK(note_of(*a, t.id) == "\"A's and B's words\"");
  CHECK(note_of(*b, t.id) == "\"A's and B's words\"");
  CHECK(a->state_digest() == b->state_digest());
  // Closed: a second resolution has nothing to resolve.
  CHECK(refusal_of([&] { a->resolve_conflict("visits", t.id, "note", std::string("again")); }) ==
        code(storage_errc::not_found));
}

TEST_CASE("two resolutions made concurrently leave one conflict between them", "[store][conflict]") {
  concurrent_notes t;
  auto& a = t.a;
  auto& b = t.b;
  *a.now += 5;
  *b.now += 6;
  a->resolve_conflict("visits", t.id, "note", std::string("A's resolution"));
  b->resolve_conflict("visits", t.id, "note", std::string("B's resolution"));
  t.exchange();
  // Each resolution replaced both old values; neither saw the other.
  const auto listed = a->conflicts();
  REQUIRE(listed.size() == 1);
  CHECK(listed[0].current.val == value{std::string("B's resolution")});
  REQUIRE(listed[0].others.size() == 1);
  CHECK(listed[0].others[0].val == value{std::string("A's resolution")});
  CHECK(describe(b->conflicts()) == describe(listed));
  CHECK(a->state_digest() == b->state_digest());
}

TEST_CASE("dismissing a conflict keeps the current value and closes it everywhere", "[store][conflict]") {
  concurrent_notes t;
  auto& a = t.a;
  auto& b = t.b;
  const auto before = b->get("visits", t.id);
  REQUIRE(before);

  SECTION("on the store whose value lost") { a->dismiss_conflict("visits", t.id, "note"); }
  SECTION("on the store whose value is current") { b->dismiss_conflict("visits", t.id, "note"); }
  t.exchange();
  CHECK(a->conflict_count() == 0);
  CHECK(b->conflict_count() == 0);
  CHECK(note_of(*a, t.id) == "\"B's words\"");
  CHECK(note_of(*b, t.id) == "\"B's words\"");
  CHECK(a->get("visits", t.id) == before);
  CHECK(a->state_digest() == b->state_digest());
  CHECK(refusal_of([&] { b->dismiss_conflict("visits", t.id, "note"); }) == code(storage_errc::not_found));
}

TEST_CASE("a plain update of the current value leaves the conflict open everywhere", "[store][conflict]") {
  concurrent_notes t;
  auto& a = t.a;
  auto& b = t.b;
  *a.now += 5;
  a->update("visits", t.id, {{"note", std::string("A again")}});
  // Still open here: the update replaced only the current value.
  auto listed = a->conflicts();
  REQUIRE(listed.size() == 1);
  CHECK(listed[0].current.val == value{std::string("A again")});
  REQUIRE(listed[0].others.size() == 1);
  CHECK(listed[0].others[0].val == value{std::string("A's words")});

  t.exchange();
  CHECK(describe(a->conflicts()) == describe(listed));
  CHECK(describe(b->conflicts()) == describe(listed));
  CHECK(note_of(*b, t.id) == "\"A again\"");
  CHECK(a->state_digest() == b->state_digest());

  // An update of another field neither.
  b->update("visits", t.id, {{"minutes", std::int64_t{45}}});
  t.exchange();
  CHECK(a->conflict_count() == 1);
  CHECK(b->conflict_count() == 1);
  CHECK(a->state_digest() == b->state_digest());
}

TEST_CASE("several local writes of a note before a push make no false conflict", "[store][conflict]") {
  temp_dir dir;
  tablet a{dir, "a", k_start_ms};
  tablet b{dir, "b", k_start_ms};
  relay server;
  const auto id = a->create("visits", {{"client", std::string("Ana")}, {"note", std::string("first words")}});

  SECTION("created and rewritten before the first push") {
    *a.now += 1;
    a->update("visits", id, {{"note", std::string("draft 2")}});
    *a.now += 1;
    a->update("visits", id, {{"note", std::string("draft 3")}});
    server.push(*a);
    CHECK(server.pull(*b) == 0);
  }
  SECTION("rewritten twice after a push") {
    server.push(*a);
    server.pull(*b);
    *a.now += 1;
    a->update("visits", id, {{"note", std::string("draft 2")}});
    *a.now += 1;
    a->update("visits", id, {{"note", std::string("draft 3")}});
    CHECK(server.push(*a) == 1);  // the overwritten draft is not sent
    CHECK(server.pull(*b) == 0);
  }
  SECTION("the first rewrite already pinned in a batch when the second is made") {
    server.push(*a);
    server.pull(*b);
    *a.now += 1;
    a->update("visits", id, {{"note", std::string("draft 2")}});
    auto pinned = a->internal().pin_batch(100);
    REQUIRE(pinned);
    *a.now += 1;
    a->update("visits", id, {{"note", std::string("draft 3")}});
    // The pinned batch goes first, as the sync client resends it, then the rest.
    wire::changes_page page;
    std::uint64_t seq = b->cursor();
    for (const auto& c : pinned->decode_changes()) page.items.push_back(caresync::sequenced_change{++seq, c});
    a->internal().ack_batch(*pinned);
    auto rest = a->internal().pin_batch(100);
    REQUIRE(rest);
    for (const auto& c : rest->decode_changes()) page.items.push_back(caresync::sequenced_change{++seq, c});
    a->internal().ack_batch(*rest);
    page.next_cursor = seq;
    CHECK(page.items.size() == 2);
    CHECK(b->internal().apply_page(page) == 0);
  }
  CHECK(b->conflict_count() == 0);
  CHECK(a->conflict_count() == 0);
  CHECK(note_of(*b, id) == "\"draft 3\"");
  // What b shows is a's record exactly.
  CHECK(b->get("visits", id) == a->get("visits", id));
}

TEST_CASE("several local writes on one side of a concurrent edit make one conflict, not more",
          "[store][conflict]") {
  temp_dir dir;
  tablet a{dir, "a", k_start_ms};
  tablet b{dir, "b", k_start_ms};
  relay server;
  const auto id = a->create("visits", {{"note", std::string("first words")}});
  server.push(*a);
  server.pull(*b);
  *a.now += 10;
  a->update("visits", id, {{"note", std::string("A draft")}});
  *a.now += 1;
  a->update("visits", id, {{"note", std::string("A final")}});
  *b.now += 20;
  b->update("visits", id, {{"note", std::string("B's words")}});
  server.push(*a);
  server.push(*b);
  server.pull(*a);
  server.pull(*b);

  const auto listed = b->conflicts();
  REQUIRE(listed.size() == 1);
  CHECK(listed[0].current.val == value{std::string("B's words")});
  REQUIRE(listed[0].others.size() == 1);  // neither "first words" nor "A draft"
  CHECK(listed[0].others[0].val == value{std::string("A final")});
  CHECK(describe(a->conflicts()) == describe(listed));
  CHECK(a->state_digest() == b->state_digest());
}

TEST_CASE("resolve_conflict and dismiss_conflict refuse a field without an open conflict", "[store][conflict]") {
  temp_dir dir;
  tablet a{dir, "a", k_start_ms};
  const auto id = a->create("visits", {{"client", std::string("Ana")}, {"note", std::string("first words")}});
  const auto outbox = a->outbox_size();
  const auto digest = a->state_digest();

  SECTION("a keep_both note without conflict") {
    CHECK(refusal_of([&] { a->resolve_conflict("visits", id, "note", std::string("x")); }) ==
          code(storage_errc::not_found));
    CHECK(refusal_of([&] { a->dismiss_conflict("visits", id, "note"); }) == code(storage_errc::not_found));
  }
  SECTION("a last-writer-wins field") {
    CHECK(refusal_of([&] { a->resolve_conflict("visits", id, "client", std::string("x")); }) ==
          code(storage_errc::not_found));
    CHECK(refusal_of([&] { a->dismiss_conflict("visits", id, "client"); }) == code(storage_errc::not_found));
  }
  SECTION("a field the record never had") {
    CHECK(refusal_of([&] { a->dismiss_conflict("visits", id, "status"); }) == code(storage_errc::not_found));
  }
  SECTION("an unknown record") {
    const auto unknown = record_id::generate();
    CHECK(refusal_of([&] { a->resolve_conflict("visits", unknown, "note", std::string("x")); }) ==
          code(storage_errc::not_found));
    CHECK(refusal_of([&] { a->dismiss_conflict("visits", unknown, "note"); }) == code(storage_errc::not_found));
  }
  SECTION("a deleted record") {
    a->remove("visits", id);
    CHECK(refusal_of([&] { a->resolve_conflict("visits", id, "note", std::string("x")); }) ==
          code(storage_errc::not_found));
    CHECK(refusal_of([&] { a->dismiss_conflict("visits", id, "note"); }) == code(storage_errc::not_found));
    return;  // the delete itself changed the outbox and digest
  }
  // A refusal writes nothing.
  CHECK(a->outbox_size() == outbox);
  CHECK(a->state_digest() == digest);
}

TEST_CASE("resolve_conflict refuses a value of the wrong type or an undeclared field", "[store][conflict]") {
  concurrent_notes t;
  auto& a = t.a;
  const auto outbox = a->outbox_size();
  const auto digest = a->state_digest();
  CHECK(refusal_of([&] { a->resolve_conflict("visits", t.id, "note", std::int64_t{5}); }) ==
        code(storage_errc::invalid_argument));
  CHECK(refusal_of([&] { a->resolve_conflict("visits", t.id, "mood", std::string("x")); }) ==
        code(storage_errc::invalid_argument));
  CHECK(refusal_of([&] { a->resolve_conflict("caregivers", t.id, "note", std::string("x")); }) ==
        code(storage_errc::invalid_argument));
  // Still open, nothing written.
  CHECK(a->conflict_count() == 1);
  CHECK(a->outbox_size() == outbox);
  CHECK(a->state_digest() == digest);
  // Null is a value of every field: it resolves.
  a->resolve_conflict("visits", t.id, "note", value{});
  CHECK(a->conflict_count() == 0);
  CHECK(note_of(*a, t.id) == "null");
}

TEST_CASE("deleting a record drops its open conflicts on every store", "[store][conflict]") {
  concurrent_notes t;
  auto& a = t.a;
  auto& b = t.b;
  REQUIRE(b->conflict_count() == 1);

  SECTION("deleted by the store whose value lost") { a->remove("visits", t.id); }
  SECTION("deleted by the store whose value is current") { b->remove("visits", t.id); }
  t.exchange();
  CHECK(a->conflict_count() == 0);
  CHECK(b->conflict_count() == 0);
  CHECK(a->conflicts().empty());
  CHECK(b->conflicts().empty());
  CHECK_FALSE(a->get("visits", t.id));
  CHECK_FALSE(b->get("visits", t.id));
  CHECK(a->state_digest() == b->state_digest());
  CHECK(refusal_of([&] { a->dismiss_conflict("visits", t.id, "note"); }) == code(storage_errc::not_found));
}

TEST_CASE("a store reopened from its file lists the same conflicts and can resolve them", "[store][conflict]") {
  concurrent_notes t;
  auto& a = t.a;
  auto& b = t.b;
  const auto listed = describe(a->conflicts());
  REQUIRE(listed.size() == 1);
  const auto digest = a->state_digest();

  a.reopen();
  CHECK(describe(a->conflicts()) == listed);
  CHECK(a->conflict_count() == 1);
  CHECK(a->state_digest() == digest);

  // A write made before the reopen and not yet pushed still replaces what it did.
  *a.now += 5;
  a->resolve_conflict("visits", t.id, "note", std::string("settled"));
  a.reopen();
  CHECK(a->conflict_count() == 0);
  t.exchange();
  CHECK(b->conflict_count() == 0);
  CHECK(note_of(*b, t.id) == "\"settled\"");
  CHECK(a->state_digest() == b->state_digest());
}

// Every other test here pushes a store's writes before it pulls, as sync_client does.
// A local keep_both write can still meet a pull before it is sent: after
// retry_quarantined(), or when a change refused as clock_ahead twice is still waiting.
TEST_CASE("a local note that an incoming note beats before it is pushed is still sent as a conflict",
          "[store][conflict]") {
  temp_dir dir;
  tablet a{dir, "a", k_start_ms};
  tablet b{dir, "b", k_start_ms};
  relay server;
  const auto id = a->create("visits", {{"note", std::string("first words")}});
  server.push(*a);
  server.pull(*b);
  *b.now += 10;
  b->update("visits", id, {{"note", std::string("B's words")}});

  SECTION("pulled while the write waits in the outbox") {}
  SECTION("pulled while the write is quarantined, then retried") {
    auto batch = b->internal().pin_batch(100);
    REQUIRE(batch);
    REQUIRE(batch->change_count == 1);
    const std::vector<wire::refusal> refused{
        {0, static_cast<std::uint16_t>(caresync::protocol_errc::limit_exceeded), "a value over the limit"}};
    b->internal().ack_batch(*batch, refused);
    REQUIRE(b->quarantined().size() == 1);
  }
  // a's newer note arrives first: b's stays as an open conflict on b...
  *a.now += 20;
  a->update("visits", id, {{"note", std::string("A's words")}});
  server.push(*a);
  server.pull(*b);
  REQUIRE(b->conflict_count() == 1);
  if (!b->quarantined().empty()) b->retry_quarantined(b->quarantined().front().id);
  // ...and, once b pushes, on a too: b's words were never replaced by anyone.
  CHECK(server.push(*b) == 1);
  server.pull(*a);
  CHECK(describe(a->conflicts()) == describe(b->conflicts()));
  CHECK(a->conflict_count() == 1);
  CHECK(a->state_digest() == b->state_digest());
}
