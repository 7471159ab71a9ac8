#include "change_block.hpp"
#include "wire_examples.hpp"

#include <caresync/protocol/codec.hpp>
#include <caresync/protocol/errors.hpp>
#include <caresync/protocol/frame.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <limits>
#include <random>
#include <string>
#include <vector>

using namespace caresync;
using wire::bytes;

namespace {

constexpr std::uint64_t k_max64 = std::numeric_limits<std::uint64_t>::max();

record_id rid(std::uint8_t fill) {
  record_id id;
  id.bytes.fill(fill);
  return id;
}

change sample_change() {
  change c;
  c.collection = "visit";
  c.id = rid(0xab);
  c.ver = version{hlc_stamp::make(1'700'000'000'000ULL, 3), 42};
  c.fields = {
      {"empty", value{}},
      {"minutes", value{std::int64_t{-1}}},
      {"lowest", value{std::numeric_limits<std::int64_t>::min()}},
      {"highest", value{std::numeric_limits<std::int64_t>::max()}},
      {"temperature", value{-37.25}},
      {"tiny", value{std::numeric_limits<double>::denorm_min()}},
      {"huge", value{std::numeric_limits<double>::infinity()}},
      {"note", value{std::string("Paní Nováková, 3. patro")}},
      {"blank", value{std::string()}},
      {"signature", value{blob{{0x00, 0xff, 0x10}}}},
      {"no_bytes", value{blob{}}},
  };
  return c;
}

template <class T>
T round_trip(const T& m) {
  const wire::message in{m};
  const auto payload = wire::encode(in);
  REQUIRE(!payload.empty());
  CHECK(payload[0] == 0x01);
  const auto out = wire::decode(wire::type_of(in), payload);
  REQUIRE(std::holds_alternative<T>(out));
  return std::get<T>(out);
}

/// sample_change with one keep_both entry (kept_change() below has more).
change kept_change_for_push() {
  change c = sample_change();
  c.id = rid(0xcd);
  c.kept = {kept_field{"note", {version{hlc_stamp::make(1'600'000'000'000ULL, 0), 7}}}};
  return c;
}

std::string hex(const bytes& b) {
  std::string s;
  char buf[4];
  for (auto x : b) {
    std::snprintf(buf, sizeof buf, "%02x", x);
    s += buf;
  }
  return s;
}

bytes concat(std::initializer_list<bytes> parts) {
  bytes out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

bytes unhex(const std::string& s) {
  bytes b;
  for (std::size_t i = 0; i + 1 < s.size();) {
    if (s[i] == ' ' || s[i] == '\n') {
      ++i;
      continue;
    }
    b.push_back(static_cast<std::uint8_t>(std::stoi(s.substr(i, 2), nullptr, 16)));
    i += 2;
  }
  return b;
}

}  // namespace

TEST_CASE("codec: every message type round trips", "[protocol]") {
  SECTION("hello") {
    wire::hello m;
    m.client_name = "caresync-client/0.1";
    m.device_id = "tablet-7";
    m.token = "s3cr3t";
    m.node = k_max64;
    m.features = 0xffffffffu;
    m.app_version = "ward-app 2.4";
    m.outbox = 17;
    m.quarantined = 2;
    m.open_conflicts = 300;
    CHECK(round_trip(m) == m);
    m.open_conflicts = k_max64;
    CHECK(round_trip(m) == m);
    wire::hello empty;
    CHECK(round_trip(empty) == empty);
  }
  SECTION("welcome") {
    wire::welcome m;
    m.server_name = "caresync-server/0.1";
    m.server_time_ms = 1'700'000'000'123ULL;
    m.features = wire::k_feature_deflate;
    m.max_frame_bytes = wire::k_default_max_frame;
    m.max_push_changes = 500;
    m.log_head = k_max64;
    m.max_clock_ahead_ms = 300'000;
    CHECK(round_trip(m) == m);
    wire::welcome empty;
    CHECK(round_trip(empty) == empty);
  }
  SECTION("push") {
    wire::push m;
    m.batch = rid(0x11);
    m.changes.push_back(sample_change());
    change del;
    del.collection = "client";
    del.id = rid(0x22);
    del.ver = version{hlc_stamp{k_max64}, k_max64};
    del.kind = change_kind::remove;
    m.changes.push_back(del);
    // Version 7: the nodes are not sent; they come back 0, for the receiver to give.
    REQUIRE(m.changes[0].ver.node != 0);
    CHECK(round_trip(m) == testing::as_decoded(m));
    CHECK(wire::encode(m) == wire::encode(testing::as_decoded(m)));
    m.batch = numbered_batch(k_max64);
    CHECK(round_trip(m) == testing::as_decoded(m));
    m.batch = numbered_batch(1);
    CHECK(round_trip(m) == testing::as_decoded(m));
    wire::push empty;
    CHECK(round_trip(empty) == empty);
  }
  SECTION("push_result") {
    wire::push_result m{rid(0x33), 0xffffffffu, 1, k_max64, true, {}};
    CHECK(round_trip(m) == m);
    wire::push_result none{rid(0), 0, 0, 0, false, {}};
    CHECK(round_trip(none) == none);
    wire::push_result numbered{numbered_batch(300), 2, 8, 9, true, {}};  // version 7
    CHECK(round_trip(numbered) == numbered);
    CHECK(wire::encode(numbered)[1] == 0xac);  // the batch as uvarint 300: ac 02
    CHECK(wire::encode(numbered)[2] == 0x02);
    wire::push_result refused{rid(0x44), 1, 7, 7, false,
                              {{0, 6, "a value is larger than 1000 bytes"}, {0xffffffffu, 0xffff, "ž"}}};
    CHECK(round_trip(refused) == refused);
    wire::push_result restored{rid(0x45), 0, 0, 0, false,
                               {{2, 15, "only the server side writes 'clients.care_level'",
                                 {{"care_level", value{std::string("II")}, version{hlc_stamp{77}, 9}},
                                  {"registered", value{}, version{}}}},
                                {3, 15, "x",
                                 {{"care_level", value{std::string("III")}, version{hlc_stamp{80}, 9},
                                   {{value{std::string("I")}, version{hlc_stamp{78}, 4}},
                                    {value{std::string("III")}, version{hlc_stamp{80}, 9}}},
                                   true}}}}};
    CHECK(round_trip(restored) == restored);
    // The same field restored twice is malformed (duplicate keys are refused).
    auto twice = restored;
    twice.refused[0].restore[1].name = "care_level";
    CHECK_THROWS_AS(wire::decode(wire::message_type::push_result, wire::encode(twice)), protocol_error);
    // A restored field's conflicts out of version order are malformed too.
    auto disordered = restored;
    std::swap(disordered.refused[1].restore[0].conflicts[0], disordered.refused[1].restore[0].conflicts[1]);
    CHECK_THROWS_AS(wire::decode(wire::message_type::push_result, wire::encode(disordered)), protocol_error);
  }
  SECTION("pull") {
    wire::pull m{k_max64, 1000, 0xffffffffu};
    CHECK(round_trip(m) == m);
    m.scope_epoch = 12;
    m.max_pages = k_max64;  // version 7
    CHECK(round_trip(m) == m);
    m.max_pages = 8;
    CHECK(round_trip(m) == m);
    CHECK(round_trip(wire::pull{}) == wire::pull{});
  }
  SECTION("wait") {
    wire::wait m{k_max64, 0xffffffffu, 1000, 7};
    CHECK(round_trip(m) == m);
    CHECK(round_trip(wire::wait{}) == wire::wait{});
  }
  SECTION("changes") {
    wire::changes_page m;
    m.items.push_back({1, sample_change()});
    m.items.push_back({k_max64, sample_change()});
    m.next_cursor = k_max64;
    m.more = true;
    CHECK(round_trip(m) == m);
    m.scope_epoch = 3;
    m.backfill = {{1, sample_change()}, {k_max64, sample_change()}};
    m.purges = {wire::scope_purge{"visit", rid(0x66)}};
    CHECK(round_trip(m) == m);
    wire::changes_page empty;
    empty.next_cursor = 17;
    CHECK(round_trip(empty) == empty);
  }
  SECTION("error") {
    wire::error m{static_cast<std::uint16_t>(protocol_errc::server_busy), true, "the server is busy; try again later"};
    CHECK(round_trip(m) == m);
    wire::error empty;
    CHECK(round_trip(empty) == empty);
  }
  SECTION("enroll and enrolled") {
    const wire::enroll e{wire::k_protocol_version, "caresync-client/0.1", "ABCD-EFGH-JKMN-PQRS", "terenni-app 1.4"};
    CHECK(round_trip(e) == e);
    CHECK(round_trip(wire::enroll{}) == wire::enroll{});
    const wire::enrolled d{"d-0123456789ab", std::string(64, 'f'), "jana.novakova", "Jana Nováková"};
    CHECK(round_trip(d) == d);
    CHECK(round_trip(wire::enrolled{}) == wire::enrolled{});
    // An enroll of another version is refused before its code is read.
    wire::enroll other = e;
    other.protocol_version = wire::k_protocol_version + 1;
    const auto payload = wire::encode(other);
    try {
      (void)wire::decode(wire::message_type::enroll, payload);
      FAIL("another version was decoded");
    } catch (const protocol_error& x) {
      CHECK(x.code() == make_error_code(protocol_errc::unsupported_version));
    }
  }
  SECTION("ping and pong") {
    CHECK(round_trip(wire::ping{k_max64}) == wire::ping{k_max64});
    CHECK(round_trip(wire::pong{0}) == wire::pong{0});
    CHECK(round_trip(wire::pong{12345}) == wire::pong{12345});
  }
}

TEST_CASE("codec: primitive encodings are as documented", "[protocol]") {
  SECTION("pull: varint cursor, two u32 little-endian, the prime spec (none: two zero varints), the scope epoch, "
          "max_pages (version 7)") {
    CHECK(hex(wire::encode(wire::pull{0, 0, 0})) == "01" "00" "00000000" "00000000" "00" "00" "00" "00");
    CHECK(hex(wire::encode(wire::pull{127, 1, 0x01020304})) == "01" "7f" "01000000" "04030201" "00" "00" "00" "00");
    CHECK(hex(wire::encode(wire::pull{128, 0, 0})) == "01" "8001" "00000000" "00000000" "00" "00" "00" "00");
    CHECK(hex(wire::encode(wire::pull{300, 0, 0})) == "01" "ac02" "00000000" "00000000" "00" "00" "00" "00");
    CHECK(hex(wire::encode(wire::pull{0, 0, 0, {}, 300})) == "01" "00" "00000000" "00000000" "00" "00" "ac02" "00");
    CHECK(hex(wire::encode(wire::pull{0, 0, 0, {}, 0, 8})) == "01" "00" "00000000" "00000000" "00" "00" "00" "08");
    CHECK(hex(wire::encode(wire::pull{0, 0, 0, {}, 1, 300})) == "01" "00" "00000000" "00000000" "00" "00" "01" "ac02");
    CHECK(hex(wire::encode(wire::pull{k_max64, 0, 0})) ==
          "01" "ffffffffffffffffff01" "00000000" "00000000" "00" "00" "00" "00");
  }
  SECTION("error: u16, bool, text") {
    CHECK(hex(wire::encode(wire::error{8, true, "busy"})) == "01" "0800" "01" "04" "62757379");
    CHECK(hex(wire::encode(wire::error{1, false, ""})) == "01" "0100" "00" "00");
  }
  SECTION("pong: u64 little-endian") {
    CHECK(hex(wire::encode(wire::pong{1})) == "01" "0100000000000000");
  }
  SECTION("values: tag, then zigzag integer, f64, text, bytes") {
    const auto field_bytes = [](value v) {
      change c;
      c.collection = "c";
      c.fields = {{"f", std::move(v)}};
      const auto all = hex(wire::encode_change(c));
      // marker, "c", id, stamp, node, kind, count, "f" = 1+2+16+8+8+1+1+2 bytes
      return all.substr(2 * 39);
    };
    CHECK(field_bytes(value{}) == "00");
    CHECK(field_bytes(value{std::int64_t{0}}) == "0100");
    CHECK(field_bytes(value{std::int64_t{-1}}) == "0101");
    CHECK(field_bytes(value{std::int64_t{1}}) == "0102");
    CHECK(field_bytes(value{std::int64_t{-64}}) == "017f");
    CHECK(field_bytes(value{std::int64_t{64}}) == "018001");
    CHECK(field_bytes(value{std::numeric_limits<std::int64_t>::max()}) == "01feffffffffffffffff01");
    CHECK(field_bytes(value{std::numeric_limits<std::int64_t>::min()}) == "01ffffffffffffffffff01");
    CHECK(field_bytes(value{1.0}) == "02000000000000f03f");
    CHECK(field_bytes(value{-2.5}) == "0200000000000004c0");
    CHECK(field_bytes(value{std::string("hé")}) == "0303" "68c3a9");
    CHECK(field_bytes(value{blob{{0xde, 0xad}}}) == "0402" "dead");
    CHECK(field_bytes(value{blob{}}) == "0400");
  }
}

TEST_CASE("codec: encode_change and decode_change round trip", "[protocol]") {
  const auto c = sample_change();
  const auto stored = wire::encode_change(c);
  REQUIRE(stored.size() > 36);
  CHECK(stored[0] == 0x01);
  CHECK(wire::decode_change(stored) == c);

  change del;
  del.collection = "referral";
  del.id = rid(0x5a);
  del.ver = version{hlc_stamp::make(9, 9), 9};
  del.kind = change_kind::remove;
  const auto del_bytes = wire::encode_change(del);
  CHECK(del_bytes.size() == 1 + 1 + 8 + 16 + 8 + 8 + 1 + 1);
  CHECK(del_bytes.back() == 0x00);                        // no fields
  CHECK(del_bytes[del_bytes.size() - 2] == 0x01);         // kind: remove
  CHECK(wire::decode_change(del_bytes) == del);

  SECTION("a stored change is the push encoding of the change with the marker byte and its node (version 7)") {
    wire::push p;
    p.batch = numbered_batch(1);
    p.changes = {c};
    const auto payload = wire::encode(p);
    // marker, batch number 1 (1 byte), count (1), change without its node
    const bytes body(payload.begin() + 3, payload.end());
    bytes with_node(body.begin(), body.begin() + 1 + 5 + 16 + 8);  // collection "visit", id, stamp
    for (int i = 0; i < 8; ++i) with_node.push_back(static_cast<std::uint8_t>(c.ver.node >> (8 * i)));
    with_node.insert(with_node.end(), body.begin() + 1 + 5 + 16 + 8, body.end());
    CHECK(with_node == bytes(stored.begin() + 1, stored.end()));
  }
}

TEST_CASE("codec: a push batch goes as its number, or as 0 and a 16-byte id (version 7)", "[protocol]") {
  CHECK(batch_number(numbered_batch(300)) == 300);
  CHECK(batch_number(rid(0x01)) == 0);
  wire::push p;
  p.batch = numbered_batch(300);
  CHECK(hex(wire::encode(p)) == "01ac0200");  // marker, uvarint 300, no change
  p.batch = rid(0x01);
  const auto legacy = wire::encode(p);
  REQUIRE(legacy.size() == 1 + 1 + 16 + 1);
  CHECK(legacy[1] == 0x00);
  CHECK(std::get<wire::push>(wire::decode(wire::message_type::push, legacy)).batch == rid(0x01));
  wire::push_result r;
  r.batch = numbered_batch(7);
  CHECK(std::get<wire::push_result>(wire::decode(wire::message_type::push_result, wire::encode(r))) == r);
}

TEST_CASE("codec: a version 6 push pinned before an upgrade is read with its id and nodes", "[protocol]") {
  // marker, 16-byte id, count 1, then a stored change less its marker (with its node).
  const auto c = sample_change();
  bytes v6{0x01};
  const auto id = rid(0x77);
  v6.insert(v6.end(), id.bytes.begin(), id.bytes.end());
  v6.push_back(0x01);
  const auto stored = wire::encode_change(c);
  v6.insert(v6.end(), stored.begin() + 1, stored.end());
  const auto legacy = wire::decode_version6_push(v6);
  CHECK(legacy.batch == id);
  REQUIRE(legacy.changes.size() == 1);
  CHECK(legacy.changes[0] == c);
  v6.pop_back();
  CHECK_THROWS_AS(wire::decode_version6_push(v6), protocol_error);
}

TEST_CASE("codec: decode_push gives each change's own bytes, which are its stored form less the marker", "[protocol]") {
  wire::push p;
  p.batch = rid(0x01);
  change del;
  del.collection = "referral";
  del.id = rid(0x5a);
  del.ver = version{hlc_stamp::make(9, 9), 9};
  del.kind = change_kind::remove;
  del.covers = std::vector<version>{version{hlc_stamp::make(8, 1), 9}};
  p.changes = {sample_change(), del, kept_change_for_push()};
  // Every change of a push is the pusher's: the wire carries no node (version 7).
  const node_id pusher = 0x0102030405060708ULL;
  for (auto& c : p.changes) c.ver.node = pusher;
  const auto payload = wire::encode(p);
  std::vector<std::span<const std::uint8_t>> sent{std::span<const std::uint8_t>()};  // replaced, not appended to
  wire::bytes rebuilt{0xee};  // replaced, not appended to
  const auto decoded = wire::decode_push(payload, pusher, rebuilt, sent);
  CHECK(decoded == p);
  REQUIRE(sent.size() == p.changes.size());
  const auto* begin = rebuilt.data();
  const auto* end = rebuilt.data() + rebuilt.size();
  for (std::size_t i = 0; i < sent.size(); ++i) {
    CAPTURE(i);
    CHECK(sent[i].data() >= begin);
    CHECK(sent[i].data() + sent[i].size() <= end);
    const auto stored = wire::encode_change(p.changes[i]);
    CHECK(bytes(sent[i].begin(), sent[i].end()) == bytes(stored.begin() + 1, stored.end()));
  }
  // One after another: nothing is left out between or after them.
  CHECK(sent.front().data() == begin);
  CHECK(sent.back().data() + sent.back().size() == end);
  // decode() of the same push leaves the nodes for the receiver to give.
  const auto plain = std::get<wire::push>(wire::decode(wire::message_type::push, payload));
  CHECK(plain.changes[0].ver.node == 0);

  SECTION("a bad push is refused as decode() refuses it") {
    bytes cut(payload.begin(), payload.end() - 1);
    CHECK_THROWS_AS(wire::decode_push(cut, pusher, rebuilt, sent), protocol_error);
    bytes extra = payload;
    extra.push_back(0);
    CHECK_THROWS_AS(wire::decode_push(extra, pusher, rebuilt, sent), protocol_error);
  }
}

namespace {

version v(std::uint64_t ms, std::uint16_t counter, node_id node) { return version{hlc_stamp::make(ms, counter), node}; }

/// sample_change with keep_both entries: no, one and several replaced versions, extremes included.
change kept_change() {
  change c = sample_change();
  c.kept = {
      kept_field{"note", {}},
      kept_field{"minutes", {v(1'600'000'000'000ULL, 0, 7)}},
      kept_field{"signature", {version{hlc_stamp{0}, 0}, v(1'699'999'999'999ULL, 0xffff, 1), v(1'700'000'000'000ULL, 2, k_max64)}},
  };
  return c;
}

}  // namespace

TEST_CASE("codec: kept fields round trip (protocol version 3)", "[protocol][keep_both]") {
  const auto c = kept_change();
  SECTION("stored form") {
    const auto stored = wire::encode_change(c);
    const auto plain = wire::encode_change(sample_change());
    // The kind byte, right after the fields' header, gets bit 7; the kept list follows the fields.
    const std::size_t kind_at = 1 + 1 + c.collection.size() + 16 + 8 + 8;
    CHECK(plain[kind_at] == 0x00);
    CHECK(stored[kind_at] == 0x80);
    CHECK(bytes(stored.begin(), stored.begin() + static_cast<std::ptrdiff_t>(kind_at)) ==
          bytes(plain.begin(), plain.begin() + static_cast<std::ptrdiff_t>(kind_at)));
    CHECK(bytes(stored.begin() + static_cast<std::ptrdiff_t>(kind_at) + 1, stored.begin() + static_cast<std::ptrdiff_t>(plain.size())) ==
          bytes(plain.begin() + static_cast<std::ptrdiff_t>(kind_at) + 1, plain.end()));
    // count, then per entry: name, count, 16 bytes per version
    CHECK(stored.size() == plain.size() + 1 + (1 + 4 + 1) + (1 + 7 + 1 + 16) + (1 + 9 + 1 + 3 * 16));
    CHECK(wire::decode_change(stored) == c);
  }
  SECTION("one kept field replacing nothing: a first write") {
    change first = sample_change();
    first.kept = {kept_field{"note", {}}};
    const auto stored = wire::encode_change(first);
    CHECK(hex(stored).substr(hex(stored).size() - 2 * 7) == "01" "04" "6e6f7465" "00");
    CHECK(wire::decode_change(stored) == first);
  }
  SECTION("inside push and changes") {
    wire::push p;
    p.batch = rid(0x11);
    p.changes = {c, sample_change(), c};
    CHECK(round_trip(p) == testing::as_decoded(p));
    wire::changes_page page;
    page.items = {{1, c}, {2, sample_change()}, {300, c}};
    page.next_cursor = 300;
    CHECK(round_trip(page) == page);
    wire::changes_page_builder builder;
    for (const auto& item : page.items) builder.add(item.seq, wire::encode_change(item.body));
    CHECK(builder.finish(page.next_cursor, page.more) == wire::encode(page));
  }
}

TEST_CASE("codec: hello ends with the open-conflict count", "[protocol]") {
  wire::hello h;
  h.client_name = "c";
  h.open_conflicts = 300;
  h.quarantined = 1;
  const auto hx = hex(wire::encode(h));
  CHECK(hx.substr(0, 6) == "01" "0700");  // marker, protocol version 7 (u16 LE)
  // ..., app_version "", outbox 0, quarantined 1, open_conflicts 300
  CHECK(hx.substr(hx.size() - 2 * 5) == "00" "00" "01" "ac02");
  CHECK(round_trip(h).open_conflicts == 300);
}

TEST_CASE("codec: changes_page_builder makes the same payload as encoding the page", "[protocol]") {
  wire::changes_page page;
  change a = sample_change();
  change b = sample_change();
  b.kind = change_kind::remove;
  b.fields.clear();
  b.collection = "client";
  page.items = {{5, a}, {127, b}, {128, a}, {1'000'000'000'000ULL, b}};

  SECTION("with items") {
    page.next_cursor = 2'000'000'000'000ULL;
    page.more = true;
    wire::changes_page_builder builder;
    for (const auto& item : page.items) builder.add(item.seq, wire::encode_change(item.body));
    CHECK(builder.count() == 4);
    const auto built = builder.finish(page.next_cursor, page.more);
    CHECK(built == wire::encode(page));
    const auto decoded = wire::decode(wire::message_type::changes, built);
    REQUIRE(std::holds_alternative<wire::changes_page>(decoded));
    CHECK(std::get<wire::changes_page>(decoded) == page);
  }
  SECTION("empty") {
    wire::changes_page_builder builder;
    const auto built = builder.finish(9, false);
    wire::changes_page empty;
    empty.next_cursor = 9;
    CHECK(built == wire::encode(empty));
    // ..., item count 0, then (version 5) scope epoch 0, no purge, no backfill
    CHECK(hex(built) == "01" "09" "00" "00" "00" "00" "00" "00" "00");
  }
  SECTION("a stored change without its marker is refused") {
    wire::changes_page_builder builder;
    auto stored = wire::encode_change(a);
    stored[0] = 0x00;
    CHECK_THROWS_AS(builder.add(1, stored), protocol_error);
    CHECK_THROWS_AS(builder.add(1, bytes{}), protocol_error);
    CHECK(builder.count() == 0);
  }
}

namespace {

/// A value seen in place, as push_builder::add_upsert takes it.
wire::value_view view_of(const value& v) {
  switch (kind_of(v)) {
    case value_kind::null: return std::monostate{};
    case value_kind::integer: return std::get<std::int64_t>(v);
    case value_kind::real: return std::get<double>(v);
    case value_kind::text: return std::string_view(std::get<std::string>(v));
    case value_kind::bytes: return std::span<const std::uint8_t>(std::get<blob>(v).bytes);
  }
  return std::monostate{};
}

/// The fields of a plain upsert as views, in the order given (the caller sorts them).
std::vector<wire::field_view> views_of(const change& c) {
  std::vector<wire::field_view> out;
  for (const auto& f : c.fields) out.push_back({f.name, view_of(f.val)});
  return out;
}

/// sample_change, its fields in name order: a plain upsert with every kind of value.
change plain_upsert(std::uint8_t id_fill) {
  change c = sample_change();
  c.id = rid(id_fill);
  std::sort(c.fields.begin(), c.fields.end(), [](const field_write& a, const field_write& b) { return a.name < b.name; });
  return c;
}

/// Changes add_upsert cannot write: a delete with covers, a revivable delete, an edit
/// with a kept list, one with items, a dismissal.
std::vector<change> general_changes() {
  change del;
  del.collection = "referral";
  del.id = rid(0x5a);
  del.ver = version{hlc_stamp::make(9, 9), 9};
  del.kind = change_kind::remove;
  del.covers = std::vector<version>{version{hlc_stamp::make(8, 1), 9}, version{hlc_stamp::make(8, 2), k_max64}};
  change revivable = del;
  revivable.revivable = true;
  revivable.covers->clear();
  change items;
  items.collection = "visit";
  items.id = rid(0x77);
  items.ver = version{hlc_stamp::make(1'700'000'000'001ULL, 0), 42};
  items.fields = {{"status", value{std::string("done")}}};
  items.items = {item_op{"notes", item_policy::append, {"arrived at 9"}, {}},
                 item_op{"tags", item_policy::set_union, {"", "wound"}, {version{hlc_stamp::make(5, 0), 2}}}};
  change dismissal = plain_upsert(0x99);
  dismissal.dismisses = version{hlc_stamp::make(7, 0), 3};
  return {del, kept_change_for_push(), revivable, items, dismissal};
}

}  // namespace

TEST_CASE("codec: push_builder makes the same payload as encoding the push", "[protocol]") {
  wire::push p;
  p.batch = rid(0x42);
  wire::push_builder builder;

  SECTION("plain upserts written from views, between changes added whole") {
    const auto general = general_changes();
    change bare;  // an upsert of a record created without fields
    bare.collection = "visit";
    bare.id = rid(0x01);
    bare.ver = version{hlc_stamp::make(1, 0), 1};
    change negative = plain_upsert(0x02);
    negative.fields = {{"a", value{std::int64_t{-2}}}, {"b", value{-0.0}}, {"c", value{std::string()}}, {"d", value{blob{}}}};
    const std::vector<change> plain{plain_upsert(0x10), bare, negative, plain_upsert(0x11)};
    // plain, general, plain, general, ...: the two kinds interleave in the payload.
    for (std::size_t i = 0; i < std::max(plain.size(), general.size()); ++i) {
      if (i < plain.size()) {
        const auto views = views_of(plain[i]);
        builder.add_upsert(plain[i].collection, plain[i].id, plain[i].ver, views);
        p.changes.push_back(plain[i]);
      }
      if (i < general.size()) {
        builder.add(general[i]);
        p.changes.push_back(general[i]);
      }
    }
    CHECK(builder.count() == p.changes.size());
    const auto built = builder.finish(p.batch);
    CHECK(built == wire::encode(p));
    const auto decoded = wire::decode(wire::message_type::push, built);
    REQUIRE(std::holds_alternative<wire::push>(decoded));
    CHECK(std::get<wire::push>(decoded) == testing::as_decoded(p));
    // A numbered batch (version 7) is written as encode() writes it.
    p.batch = numbered_batch(129);
    const auto numbered = builder.finish(p.batch);
    CHECK(numbered == wire::encode(p));
    CHECK(hex(bytes(numbered.begin(), numbered.begin() + 3)) == "01" "8101");
    CHECK(numbered.size() == built.size() - 15);  // 2 bytes instead of 00 and 16
  }
  SECTION("a count of two varint bytes") {
    for (std::uint8_t i = 0; i < 200; ++i) {
      const auto c = plain_upsert(i);
      const auto views = views_of(c);
      builder.add_upsert(c.collection, c.id, c.ver, views);
      p.changes.push_back(c);
    }
    CHECK(builder.finish(p.batch) == wire::encode(p));
  }
  SECTION("empty") {
    const auto built = builder.finish(p.batch);
    CHECK(built == wire::encode(p));
    CHECK(built.size() == 1 + 1 + 16 + 1);  // marker, 0 and the batch id (not numbered), count
    CHECK(hex(builder.finish(numbered_batch(5))) == "01" "05" "00");
  }
  SECTION("fields out of name order, or a name twice, are refused and nothing is added") {
    const auto c = sample_change();  // not in name order
    const auto views = views_of(c);
    CHECK_THROWS_AS(builder.add_upsert(c.collection, c.id, c.ver, views), protocol_error);
    const std::vector<wire::field_view> twice{{"note", std::int64_t{1}}, {"note", std::int64_t{2}}};
    CHECK_THROWS_AS(builder.add_upsert(c.collection, c.id, c.ver, twice), protocol_error);
    CHECK(builder.count() == 0);
    CHECK(builder.size_bytes() == 0);
    CHECK(builder.finish(p.batch) == wire::encode(p));
  }
}

TEST_CASE("codec: a hello of another protocol version is refused as unsupported", "[protocol]") {
  wire::hello h;
  h.protocol_version = wire::k_protocol_version + 1;
  const auto payload = wire::encode(h);
  try {
    (void)wire::decode(wire::message_type::hello, payload);
    FAIL("decoded a hello of the next version");
  } catch (const protocol_error& e) {
    CHECK(e.code() == protocol_errc::unsupported_version);
  }
  wire::welcome w;
  w.protocol_version = 0;
  try {
    (void)wire::decode(wire::message_type::welcome, wire::encode(w));
    FAIL("decoded a version 0 welcome");
  } catch (const protocol_error& e) {
    CHECK(e.code() == protocol_errc::unsupported_version);
  }
}

// The worked examples of docs/protocol.md: these bytes are pasted there.
const char* const k_ping_frame_hex = "0900000008" "01efcdab8967452301";

const char* const k_push_frame_hex =
    "59000000" "03"                                    // header: 89 bytes, push
    "01"                                               // marker
    "00" "6f1c2a4e8b3d4c5e9f00112233445566"            // batch: 0, then its 16-byte id (not numbered)
    "01"                                               // 1 change
    "05" "7669736974"                                  // collection "visit"
    "0a1b2c3d4e5f4a6b8c7d8e9fa0b1c2d3"                 // record id
    "01000068e5cf8b01"                                 // stamp (1700000000000 << 16) | 1
                                                       // (version 7: no node; it is hello.node)
    "00"                                               // kind: upsert
    "03"                                               // 3 fields
    "07" "6d696e75746573" "01" "5a"                    // minutes = integer 45 (zigzag 90)
    "04" "6e6f7465" "03" "02" "6f6b"                   // note = text "ok"
    "09" "7765696768745f6b67" "02" "0000000000205240";  // weight_kg = real 72.5

TEST_CASE("codec: the ping frame of the protocol doc, byte for byte", "[protocol]") {
  const auto frame = wire::make_frame(testing::example_ping(), wire::codec::deflate);
  CHECK(hex(frame) == k_ping_frame_hex);
  const auto h = wire::parse_header(std::span<const std::uint8_t, 5>(frame.data(), 5), wire::k_default_max_frame);
  CHECK(h.type == wire::message_type::ping);
  CHECK(h.compression == wire::codec::none);
  CHECK(h.length == 9);
}

TEST_CASE("codec: the push frame of the protocol doc, byte for byte", "[protocol]") {
  const auto frame = wire::make_frame(testing::example_push(), wire::codec::deflate);  // too small to compress
  CHECK(hex(frame) == k_push_frame_hex);
  const auto expected = unhex(k_push_frame_hex);
  REQUIRE(expected.size() > 5);
  const auto h = wire::parse_header(std::span<const std::uint8_t, 5>(expected.data(), 5), wire::k_default_max_frame);
  CHECK(h.type == wire::message_type::push);
  CHECK(h.length == expected.size() - 5);
  const auto m = wire::read_payload(h, std::span(expected).subspan(5), wire::k_default_max_frame, wire::codec::none);
  REQUIRE(std::holds_alternative<wire::push>(m));
  CHECK(std::get<wire::push>(m) == testing::as_decoded(testing::example_push()));
  // The receiver gives the changes the pusher's node, and stores them as encode_change would.
  wire::bytes rebuilt;
  std::vector<std::span<const std::uint8_t>> sent;
  const auto payload = std::span(expected).subspan(5);
  CHECK(wire::decode_push(payload, 0x1122334455667788ULL, rebuilt, sent) == testing::example_push());
  REQUIRE(sent.size() == 1);
  const auto stored = wire::encode_change(testing::example_push().changes.front());
  CHECK(bytes(sent[0].begin(), sent[0].end()) == bytes(stored.begin() + 1, stored.end()));
}

const char* const k_kept_change_hex =
    "01"                                               // marker
    "05" "7669736974"                                  // collection "visit"
    "0a1b2c3d4e5f4a6b8c7d8e9fa0b1c2d3"                 // record id
    "02000068e5cf8b01"                                 // stamp (1700000000000 << 16) | 2
    "8877665544332211"                                 // node 0x1122334455667788
    "80"                                               // kind: upsert, bit 7: a kept list follows
    "01"                                               // 1 field
    "04" "6e6f7465" "03" "02" "6f6b"                   // note = text "ok"
    "01"                                               // 1 kept field
    "04" "6e6f7465"                                    // name "note"
    "01"                                               // replaces 1 version:
    "01000068e5cf8b01"                                 //   stamp (1700000000000 << 16) | 1
    "0807060504030201";                                //   node 0x0102030405060708

TEST_CASE("codec: the stored change with a kept field of the protocol doc, byte for byte", "[protocol][keep_both]") {
  const auto stored = wire::encode_change(testing::example_kept_change());
  CHECK(hex(stored) == k_kept_change_hex);
  CHECK(stored.size() == 73);
  CHECK(wire::decode_change(unhex(k_kept_change_hex)) == testing::example_kept_change());
  // Inside a push the same bytes follow the batch and the count, without the marker and
  // (version 7) without the node.
  const std::string kept_hex = k_kept_change_hex;
  const std::size_t node_at = 2 * (1 + 6 + 16 + 8);  // marker, "visit", id, stamp
  REQUIRE(kept_hex.substr(node_at, 16) == "8877665544332211");
  const auto without_node = kept_hex.substr(2, node_at - 2) + kept_hex.substr(node_at + 16);
  wire::push p;
  p.batch = rid(0);  // not a numbered batch (its number would be 0): 00 and 16 bytes
  p.changes = {testing::example_kept_change()};
  CHECK(hex(wire::encode(p)) == "01" "00" + std::string(32, '0') + "01" + without_node);
  p.batch = numbered_batch(3);
  CHECK(hex(wire::encode(p)) == "01" "03" "01" + without_node);
}

// docs/protocol.md, "a page of two changes" (version 7): these bytes are pasted there.
const char* const k_page_hex =
    "01"                                               // marker
    "2a" "00" "00" "00"                                // next_cursor 42, more 0, remaining 0 and 0
    "02"                                               // items: a block of 2 changes
    "04"                                               //   4 names, in order of first use:
    "05" "7669736974"                                  //     0 "visit" (the first change's collection)
    "07" "6d696e75746573"                              //     1 "minutes"
    "04" "6e6f7465"                                    //     2 "note"
    "09" "7765696768745f6b67"                          //     3 "weight_kg"
    "01" "8877665544332211"                            //   1 node: 0x1122334455667788
    "52" "02"                                          //   seqs: 41 (zigzag 82), then +1
    "00" "00"                                          //   collections: "visit", "visit"
    "0a1b2c3d4e5f4a6b8c7d8e9fa0b1c2d3"                 //   record ids
    "0a1b2c3d4e5f4a6b8c7d8e9fa0b1c2d3"
    "82808080adf9e78b03" "02"                          //   stamps: (1700000000000 << 16) | 1, then +1
    "00" "00"                                          //   node indexes
    "00" "80"                                          //   kinds: upsert; upsert with a kept list
    "03" "01"                                          //   field counts
    "01" "02" "03" "02"                                //   field names: minutes, note, weight_kg; note
    "01" "5a"                                          //   values of "minutes": integer 45
    "03" "02" "6f6b" "03" "02" "6f6b"                  //   of "note": text "ok", text "ok"
    "02" "0000000000205240"                            //   of "weight_kg": real 72.5
    "01" "04" "6e6f7465" "01"                          //   the second change's tail: 1 kept field "note",
    "01000068e5cf8b01" "0807060504030201"              //     replacing 1 version
    "00" "00" "00";                                    // scope epoch 0, no purge, backfill: an empty block

TEST_CASE("codec: the changes page of the protocol doc, byte for byte (version 7)", "[protocol]") {
  const auto page = testing::example_page();
  const auto payload = wire::encode(page);
  CHECK(hex(payload) == k_page_hex);
  CHECK(payload.size() == 146);
  CHECK(payload == testing::changes_payload(page));
  const auto decoded = wire::decode(wire::message_type::changes, unhex(k_page_hex));
  REQUIRE(std::holds_alternative<wire::changes_page>(decoded));
  CHECK(std::get<wire::changes_page>(decoded) == page);
  // The server's path: the changes as stored, laid out when the page is finished.
  wire::changes_page_builder builder;
  for (const auto& item : page.items) builder.add(item.seq, wire::encode_change(item.body));
  CHECK(builder.finish(page.next_cursor, page.more) == payload);
  // max_bytes and remaining_bytes count the items in row form, not the block's bytes.
  CHECK(builder.size_bytes() == wire::page_item_bytes(page.items[0]) + wire::page_item_bytes(page.items[1]));
}

TEST_CASE("codec: print the doc's example frames", "[.dump]") {
  for (const auto& frame : {wire::make_frame(testing::example_ping()),
                            wire::make_frame(testing::example_push()),
                            wire::encode_change(testing::example_kept_change()),
                            wire::encode(testing::example_page())}) {
    for (std::size_t i = 0; i < frame.size(); i += 16) {
      std::printf("%04zx ", i);
      for (std::size_t j = i; j < i + 16 && j < frame.size(); ++j) std::printf(" %02x", frame[j]);
      std::printf("\n");
    }
    std::printf("%s\n\n", hex(frame).c_str());
  }
}

// --- scopes (protocol version 5; docs/protocol.md, "Scopes")

namespace {

record_id counting_id() {
  record_id id;
  for (std::size_t i = 0; i < id.bytes.size(); ++i) id.bytes[i] = static_cast<std::uint8_t>(i);
  return id;
}

wire::message decode_changes(const bytes& payload) { return wire::decode(wire::message_type::changes, payload); }

}  // namespace

TEST_CASE("codec: a changes page ends with its scope epoch, purges and backfilled changes", "[protocol][scope]") {
  SECTION("a purge, byte for byte (docs/protocol.md, worked example)") {
    wire::changes_page page;
    page.next_cursor = 9;
    page.scope_epoch = 3;
    page.purges.push_back(wire::scope_purge{"visits", counting_id()});
    const auto payload = wire::encode(page);
    CHECK(hex(payload) == "01" "09" "00" "00" "00" "00"                        // next 9, more 0, remaining 0 0, no item
                          "03"                                                 // scope epoch 3
                          "01" "06" "766973697473" "000102030405060708090a0b0c0d0e0f"  // one purge: visits, id
                          "00");                                               // no backfill
    wire::changes_page_builder builder;
    builder.set_scope_epoch(3);
    builder.add_purge("visits", counting_id());
    CHECK(builder.finish(9, false) == payload);
    CHECK(std::get<wire::changes_page>(decode_changes(payload)) == page);
  }
  SECTION("backfilled changes, with and without items, built as encoded") {
    wire::changes_page page;
    page.next_cursor = 200;
    page.more = true;
    page.items = {{150, sample_change()}};
    page.scope_epoch = 1ULL << 40;
    page.backfill = {{2, sample_change()}, {170, sample_change()}, {1, sample_change()}};
    page.backfill[2].body.collection = "client";
    wire::changes_page_builder builder;
    builder.add(150, wire::encode_change(sample_change()));
    builder.set_scope_epoch(1ULL << 40);
    for (const auto& item : page.backfill) builder.add_backfill(item.seq, wire::encode_change(item.body));
    const auto built = builder.finish(200, true);
    CHECK(built == wire::encode(page));
    CHECK(builder.backfill_count() == 3);
    CHECK(std::get<wire::changes_page>(decode_changes(built)) == page);
  }
  SECTION("with room reserved or not, the page is the same") {
    const auto fill = [](wire::changes_page_builder& b) {
      b.add(150, wire::encode_change(sample_change()));
      b.add(151, wire::encode_change(sample_change()));
      b.set_scope_epoch(7);
      b.add_purge("visits", counting_id());
      b.add_backfill(3, wire::encode_change(sample_change()));
    };
    wire::changes_page_builder plain;
    fill(plain);
    const auto expected = plain.finish(200, true, 5, 900);
    CHECK(plain.finish(200, true, 5, 900) == expected);  // finish() leaves the builder as it was
    for (const std::size_t room : {std::size_t{0}, std::size_t{16}, std::size_t{1} << 20}) {
      wire::changes_page_builder reserved;
      reserved.reserve(room);
      fill(reserved);
      CHECK(reserved.finish(200, true, 5, 900) == expected);
    }
    const auto page = std::get<wire::changes_page>(decode_changes(expected));
    CHECK(page.items.size() == 2);
    CHECK(page.purges.size() == 1);
    CHECK(page.backfill.size() == 1);
    CHECK(page.remaining_changes == 5);
  }
  SECTION("a page without scope items ends with three zero bytes") {
    const auto plain = wire::encode(wire::changes_page{{{4, sample_change()}}, 4, false});
    CHECK(hex(plain).substr(hex(plain).size() - 6) == "000000");
  }
}

TEST_CASE("codec: bad scope sections are malformed", "[protocol][scope][security]") {
  const bytes head{0x01, 0x09, 0x00, 0x00, 0x00, 0x00};  // a changes page without items
  const auto code_of = [](const bytes& payload) {
    try {
      (void)wire::decode(wire::message_type::changes, payload);
    } catch (const protocol_error& e) {
      return e.code();
    }
    return std::error_code{};
  };
  const auto with = [&](const bytes& tail) {
    bytes b = head;
    b.insert(b.end(), tail.begin(), tail.end());
    return b;
  };
  const auto id = counting_id();
  bytes purge{0x01, 0x06, 'v', 'i', 's', 'i', 't', 's'};
  purge.insert(purge.end(), id.bytes.begin(), id.bytes.end());
  // Valid: epoch 3, the purge, no backfill.
  bytes valid{0x03};
  valid.insert(valid.end(), purge.begin(), purge.end());
  valid.push_back(0x00);
  CHECK_FALSE(code_of(with(valid)));
  SECTION("purges without an epoch") {
    bytes b = valid;
    b[0] = 0x00;
    CHECK(code_of(with(b)) == protocol_errc::malformed);
  }
  SECTION("a purge naming an invalid collection") {
    bytes b = valid;
    b[3] = 'V';  // "Visits"
    CHECK(code_of(with(b)) == protocol_errc::malformed);
  }
  SECTION("a purge count beyond the bytes left") {
    bytes b = valid;
    b[1] = 0x7f;
    CHECK(code_of(with(b)) == protocol_errc::malformed);
  }
  SECTION("cut off, or the section missing (a version 4 page)") {
    CHECK(code_of(with({0x03, 0x01})) == protocol_errc::malformed);
    CHECK(code_of(head) == protocol_errc::malformed);
  }
  SECTION("a backfilled change with sequence number 0") {
    // Epoch 1, no purge, then (version 7) a block of one change whose seq is 0.
    auto block = testing::block_of({{0, sample_change()}});
    REQUIRE(block.seqs == bytes{0x00});
    const auto section = [](const testing::block_parts& backfill) { return concat({{0x01, 0x00}, backfill.joined()}); };
    CHECK(code_of(with(section(block))) == protocol_errc::malformed);
    block.seqs = {0x0a};  // svarint 5
    CHECK_FALSE(code_of(with(section(block))));
    // The second of two changes back at 0: 5, then -5.
    auto two = testing::block_of({{5, sample_change()}, {0, sample_change()}});
    REQUIRE(two.seqs == bytes{0x0a, 0x09});
    CHECK(code_of(with(section(two))) == protocol_errc::malformed);
    two.seqs = {0x0a, 0x07};  // 5, then -4: seq 1
    CHECK_FALSE(code_of(with(section(two))));
  }
  SECTION("pull: the scope epoch is read, and nothing may follow it") {
    const auto p = wire::encode(wire::pull{7, 0, 0, {}, 42});
    CHECK(std::get<wire::pull>(wire::decode(wire::message_type::pull, p)).scope_epoch == 42);
    bytes longer = p;
    longer.push_back(0x00);
    CHECK_THROWS_AS(wire::decode(wire::message_type::pull, longer), protocol_error);
  }
}

// docs/protocol.md, "Revivable deletes": these bytes are pasted there.
const char* const k_revivable_delete_hex =
    "01"                                               // marker
    "05" "7669736974"                                  // collection "visit"
    "0a1b2c3d4e5f4a6b8c7d8e9fa0b1c2d3"                 // record id
    "03000068e5cf8b01"                                 // stamp (1700000000000 << 16) | 3
    "8877665544332211"                                 // node 0x1122334455667788
    "31"                                               // kind: remove, bit 5: covers, bit 4: revivable
    "00"                                               // no fields
    "01"                                               // covers 1 version:
    "01000068e5cf8b01"                                 //   stamp (1700000000000 << 16) | 1
    "0807060504030201";                                //   node 0x0102030405060708

const char* const k_dismissal_hex =
    "01"                                               // marker
    "05" "7669736974"                                  // collection "visit"
    "0a1b2c3d4e5f4a6b8c7d8e9fa0b1c2d3"                 // record id
    "04000068e5cf8b01"                                 // stamp (1700000000000 << 16) | 4
    "0807060504030201"                                 // node 0x0102030405060708
    "08"                                               // kind: upsert, bit 3: dismisses
    "00"                                               // no fields
    "03000068e5cf8b01"                                 // the dismissed delete: stamp
    "8877665544332211";                                //   and node

TEST_CASE("codec: a revivable delete and a dismissal round trip, byte for byte (protocol version 6)", "[protocol][revive]") {
  const auto id = record_id::parse("0a1b2c3d-4e5f-4a6b-8c7d-8e9fa0b1c2d3");
  REQUIRE(id);
  change del;
  del.collection = "visit";
  del.id = *id;
  del.ver = v(1'700'000'000'000ULL, 3, 0x1122334455667788ULL);
  del.kind = change_kind::remove;
  del.covers = std::vector<version>{v(1'700'000'000'000ULL, 1, 0x0102030405060708ULL)};
  del.revivable = true;
  CHECK(check_change(del).empty());
  CHECK(hex(wire::encode_change(del)) == k_revivable_delete_hex);
  CHECK(wire::encode_change(del).size() == 58);
  CHECK(wire::decode_change(unhex(k_revivable_delete_hex)) == del);

  change dismissal;
  dismissal.collection = "visit";
  dismissal.id = *id;
  dismissal.ver = v(1'700'000'000'000ULL, 4, 0x0102030405060708ULL);
  dismissal.dismisses = del.ver;
  CHECK(check_change(dismissal).empty());
  CHECK(hex(wire::encode_change(dismissal)) == k_dismissal_hex);
  CHECK(wire::encode_change(dismissal).size() == 57);
  CHECK(wire::decode_change(unhex(k_dismissal_hex)) == dismissal);

  SECTION("inside a push") {
    wire::push p;
    p.batch = rid(0x21);
    p.changes = {del, dismissal, sample_change()};
    CHECK(round_trip(p) == testing::as_decoded(p));
  }
}

TEST_CASE("codec: the revivable and dismissal bits on the wrong kind are malformed", "[protocol][revive][security]") {
  const auto expect_malformed = [](bytes stored, const char* what) {
    try {
      (void)wire::decode_change(stored);
      FAIL("decoded " << what);
    } catch (const protocol_error& e) {
      CHECK(e.code() == protocol_errc::malformed);
      CHECK(std::string(e.what()).find(what) != std::string::npos);
    }
  };
  const std::size_t kind_at = 1 + 1 + 5 + 16 + 8 + 8;
  auto on_upsert = unhex(k_dismissal_hex);
  on_upsert[kind_at] = 0x10;  // revivable on an upsert
  expect_malformed(on_upsert, "an edit is flagged as a revivable delete");
  auto on_remove = unhex(k_revivable_delete_hex);
  on_remove[kind_at] = 0x39;  // a dismissed version on a remove
  expect_malformed(on_remove, "a delete carries a dismissed delete's version");

  // check_change says the same of a change built in memory, and of a dismissal of a
  // delete not older than itself.
  change c = sample_change();
  c.revivable = true;
  CHECK_FALSE(check_change(c).empty());
  c.revivable = false;
  c.dismisses = c.ver;
  CHECK_FALSE(check_change(c).empty());
  change del;
  del.collection = "visit";
  del.ver = v(5, 0, 1);
  del.kind = change_kind::remove;
  del.dismisses = v(1, 0, 1);
  CHECK_FALSE(check_change(del).empty());
}

// --- change blocks (protocol version 7; docs/protocol.md, "Change blocks")

namespace {

/// Random changes of every kind: upserts with up to 256 fields of every kind of value,
/// kept lists, item operations and dismissals; removes with and without covers,
/// revivable or not. Names, nodes and records come mostly from small pools, so that a
/// page's tables are shared (a field may be named as a collection is); stamps jump both
/// ways, so that their deltas are negative and wrap.
class random_changes {
 public:
  explicit random_changes(std::uint64_t seed) : rng_(seed) {}

  std::uint64_t below(std::uint64_t n) { return rng_() % n; }
  bool one_in(std::uint64_t n) { return below(n) == 0; }
  std::uint64_t number() {
    switch (below(4)) {
      case 0: return below(300);
      case 1: return k_max64 - below(3);
      default: return rng_();
    }
  }
  record_id id() {
    record_id r;
    if (one_in(2)) {
      r.bytes.fill(static_cast<std::uint8_t>(below(4)));
    } else {
      for (auto& b : r.bytes) b = static_cast<std::uint8_t>(rng_());
    }
    return r;
  }

  change next() {
    static const std::vector<std::string> collections{"visit", "client", "referral", "measure", "org_unit"};
    static const std::vector<node_id> nodes{1, 42, 0x1122334455667788ULL, k_max64};
    change c;
    c.collection = collections[below(collections.size())];
    c.id = id();
    stamp_ = one_in(3) ? rng_() : stamp_ + below(1000);
    c.ver = version{hlc_stamp{stamp_}, one_in(8) ? rng_() : nodes[below(nodes.size())]};
    if (one_in(4)) {
      c.kind = change_kind::remove;
      if (!one_in(4)) c.covers = versions(4);
      c.revivable = one_in(2);
      return c;
    }
    c.fields = fields();
    if (!c.fields.empty() && one_in(3)) {
      for (const auto& f : c.fields) {
        if (one_in(2)) c.kept.push_back(kept_field{f.name, versions(3)});
      }
    }
    if (one_in(3)) {
      static const std::vector<std::string> item_fields{"log", "tags", "flags"};
      const auto n = 1 + below(item_fields.size());
      for (std::size_t i = 0; i < n; ++i) {
        item_op op{item_fields[i], one_in(2) ? item_policy::append : item_policy::set_union, {}, {}};
        const auto adds = op.policy == item_policy::append ? 1 : below(5);
        for (std::size_t a = 0; a < adds; ++a) op.add.push_back(text(20));
        if (op.policy == item_policy::set_union) op.remove = versions(3);
        c.items.push_back(std::move(op));
      }
    }
    if (one_in(5)) c.dismisses = version{hlc_stamp{rng_()}, nodes[below(nodes.size())]};
    return c;
  }

 private:
  std::vector<field_write> fields() {
    static const std::vector<std::string> names{"minutes", "note",       "weight_kg", "status", "date",
                                                "visit",   "care_level", "a",         "signature"};
    std::vector<field_write> out;
    if (one_in(25)) {
      // The most a change may write: 256 fields, name indexes of two varint bytes.
      for (int i = 0; i < 256; ++i) out.push_back({"f" + std::to_string(i), any_value()});
      return out;
    }
    for (const auto& name : names) {
      if (one_in(3)) out.push_back({name, any_value()});
    }
    std::shuffle(out.begin(), out.end(), rng_);
    return out;
  }
  value any_value() {
    switch (below(5)) {
      case 0: return value{};
      case 1: {
        static const std::int64_t edges[] = {0, -1, 1, 63, -64, 64, std::numeric_limits<std::int64_t>::min(),
                                             std::numeric_limits<std::int64_t>::max()};
        return value{one_in(2) ? edges[below(8)] : static_cast<std::int64_t>(rng_())};
      }
      case 2: {
        static const double edges[] = {0.0, -0.0, 72.5, -37.25, std::numeric_limits<double>::infinity(),
                                       -std::numeric_limits<double>::infinity(), std::numeric_limits<double>::denorm_min(),
                                       std::numeric_limits<double>::max()};
        if (one_in(2)) return value{edges[below(8)]};
        double d = std::bit_cast<double>(rng_());
        return value{std::isnan(d) ? 1.5 : d};  // NaN is not a change's value, and never equal
      }
      case 3: return value{text(one_in(10) ? 300 : 24)};
      default: {
        blob b;
        b.bytes.resize(below(one_in(10) ? 400 : 8));
        for (auto& x : b.bytes) x = static_cast<std::uint8_t>(rng_());
        return value{std::move(b)};
      }
    }
  }
  std::string text(std::uint64_t most) {
    static const std::string pieces[] = {"a", "Z", " ", "ž", "Nováková", "3. patro", "\n", std::string(1, '\0')};
    std::string s;
    const auto n = below(most + 1);
    while (s.size() < n) s += pieces[below(8)];
    return s;
  }
  std::vector<version> versions(std::uint64_t most) {
    std::vector<version> out(below(most + 1));
    for (auto& v : out) v = version{hlc_stamp{rng_()}, rng_()};
    std::sort(out.begin(), out.end());
    return out;
  }

  std::mt19937_64 rng_;
  std::uint64_t stamp_ = 1'700'000'000'000ULL << 16;
};

wire::changes_page random_page(random_changes& r) {
  wire::changes_page page;
  page.next_cursor = r.number();
  page.more = r.one_in(2);
  page.remaining_changes = r.number();
  page.remaining_bytes = r.number();
  const auto items = r.one_in(6) ? 0 : 1 + r.below(40);
  std::uint64_t seq = r.number();
  for (std::size_t i = 0; i < items; ++i) {
    page.items.push_back({seq, r.next()});
    seq += r.one_in(10) ? r.number() : 1 + r.below(3);  // wraps now and then
  }
  if (r.one_in(2)) {
    page.scope_epoch = 1 + r.below(k_max64 - 1);
    for (auto n = r.below(4); n > 0; --n) page.purges.push_back({"visit", r.id()});
    for (auto n = r.below(12); n > 0; --n) page.backfill.push_back({1 + r.below(k_max64 - 1), r.next()});
  }
  return page;
}

}  // namespace

TEST_CASE("codec: random pages of every kind of change round trip, laid out as the spec says (version 7)",
          "[protocol]") {
  random_changes r(20261124);
  std::size_t changes = 0, tails = 0, removes = 0, backfilled = 0, wide = 0;
  for (int i = 0; i < 300; ++i) {
    CAPTURE(i);
    const auto page = random_page(r);
    const auto payload = wire::encode(page);
    // The library's bytes are the spec's, as the tests' own block writer lays them out.
    CHECK(payload == testing::changes_payload(page));
    const auto decoded = wire::decode(wire::message_type::changes, payload);
    REQUIRE(std::holds_alternative<wire::changes_page>(decoded));
    CHECK(std::get<wire::changes_page>(decoded) == page);
    // A server's page, from the changes as stored, is the same bytes.
    wire::changes_page_builder builder;
    for (const auto& item : page.items) builder.add(item.seq, wire::encode_change(item.body));
    builder.set_scope_epoch(page.scope_epoch);
    for (const auto& p : page.purges) builder.add_purge(p.collection, p.id);
    for (const auto& item : page.backfill) builder.add_backfill(item.seq, wire::encode_change(item.body));
    CHECK(builder.finish(page.next_cursor, page.more, page.remaining_changes, page.remaining_bytes) == payload);

    for (const auto* list : {&page.items, &page.backfill}) {
      for (const auto& item : *list) {
        ++changes;
        tails += testing::tail_of(item.body).empty() ? 0 : 1;
        removes += item.body.kind == change_kind::remove ? 1 : 0;
        wide += item.body.fields.size() == 256 ? 1 : 0;
      }
    }
    backfilled += page.backfill.size();
  }
  // The pages held what they were meant to.
  CHECK(changes > 3000);
  CHECK(tails > 1000);
  CHECK(removes > 500);
  CHECK(backfilled > 500);
  CHECK(wide > 50);
}

TEST_CASE("codec: a change block lists each name and node once, in order of first use (version 7)", "[protocol]") {
  change a = sample_change();  // visit; 11 fields
  change b = a;
  b.collection = "note";  // a collection named as a field of a
  b.ver.node = 7;
  b.fields = {{"note", value{std::string("x")}}, {"zeta", value{}}};
  change c = b;
  c.collection = "visit";
  c.ver.node = a.ver.node;
  c.kind = change_kind::remove;
  c.fields.clear();
  const std::vector<sequenced_change> items{{3, a}, {2, b}, {9, c}};
  const auto block = testing::block_of(items);
  // visit, a's 11 fields (note among them), zeta: 13 names; "note" once.
  CHECK(block.names.front() == 13);
  CHECK(block.nodes == concat({{0x02}, {42, 0, 0, 0, 0, 0, 0, 0}, {7, 0, 0, 0, 0, 0, 0, 0}}));
  CHECK(block.seqs == bytes{0x06, 0x01, 0x0e});         // 3, -1, +7
  CHECK(block.node_indexes == bytes{0x00, 0x01, 0x00});
  CHECK(block.kinds == bytes{0x00, 0x00, 0x01});
  CHECK(block.field_counts == bytes{11, 2, 0});
  wire::changes_page page;
  page.items = items;
  page.next_cursor = 9;
  CHECK(wire::encode(page) == testing::changes_payload(page));
  CHECK(std::get<wire::changes_page>(wire::decode(wire::message_type::changes, wire::encode(page))) == page);
}
