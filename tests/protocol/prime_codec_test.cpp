// The prioritised initial sync on the wire (protocol version 4): the prime message, the
// prime spec a pull carries, the remaining counts of a changes page, and the size of a
// page item. Hostile specs are built byte by byte, so each refusal is of one fault.

#include <caresync/protocol/codec.hpp>
#include <caresync/protocol/errors.hpp>
#include <caresync/protocol/messages.hpp>

#include <catch2/catch.hpp>

#include <bit>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

using namespace caresync;
using wire::bytes;
using wire::message_type;

namespace {

constexpr std::uint64_t k_max64 = std::numeric_limits<std::uint64_t>::max();

// --- helpers (the ones of codec_test.cpp and hostile_test.cpp live in their files'
// anonymous namespaces, so the few needed are repeated here)

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

std::string hex(const bytes& b) {
  std::string s;
  char buf[4];
  for (auto x : b) {
    std::snprintf(buf, sizeof buf, "%02x", x);
    s += buf;
  }
  return s;
}

/// Runs `f` and returns the protocol_errc it threw; fails the test if it threw nothing
/// or anything else (a std::bad_alloc would mean a length from the wire was trusted).
template <class F>
protocol_errc thrown_code(F&& f) {
  try {
    f();
  } catch (const protocol_error& e) {
    return static_cast<protocol_errc>(e.code().value());
  } catch (const std::exception& e) {
    FAIL("threw something other than protocol_error: " << e.what());
  } catch (...) {
    FAIL("threw something other than a std::exception");
  }
  FAIL("did not throw");
  return protocol_errc{};
}

protocol_errc decode_code(message_type type, const bytes& payload) {
  return thrown_code([&] { (void)wire::decode(type, payload); });
}

bool decodes(message_type type, const bytes& payload) {
  try {
    (void)wire::decode(type, payload);
    return true;
  } catch (const protocol_error& e) {
    UNSCOPED_INFO("refused: " << e.what());
    return false;
  }
}

bytes concat(std::initializer_list<bytes> parts) {
  bytes out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

bytes varint(std::uint64_t v) {
  bytes out;
  while (v >= 0x80) {
    out.push_back(static_cast<std::uint8_t>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<std::uint8_t>(v));
  return out;
}

bytes text(const std::string& s) { return concat({varint(s.size()), bytes(s.begin(), s.end())}); }

bytes u32_le(std::uint32_t v) {
  return {static_cast<std::uint8_t>(v), static_cast<std::uint8_t>(v >> 8), static_cast<std::uint8_t>(v >> 16),
          static_cast<std::uint8_t>(v >> 24)};
}

// Operand values as the codec writes them: tag byte, then the payload.
bytes op_null() { return {0x00}; }
bytes op_integer(std::int64_t i) {
  return concat({{0x01}, varint((static_cast<std::uint64_t>(i) << 1) ^ static_cast<std::uint64_t>(i >> 63))});
}
bytes op_real_bits(std::uint64_t bits) {
  bytes out{0x02};
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::uint8_t>(bits >> (8 * i)));
  return out;
}
bytes op_real(double d) { return op_real_bits(std::bit_cast<std::uint64_t>(d)); }
bytes op_text(const std::string& s) { return concat({{0x03}, text(s)}); }
bytes op_blob(const bytes& b) { return concat({{0x04}, varint(b.size()), b}); }

/// One tier of a spec, as raw parts.
struct raw_tier {
  std::string collection = "visit";
  std::uint8_t match = 1;  // equals
  std::string field = "status";
  bytes operand = op_text("active");
};

bytes spec_bytes(std::uint64_t until, const std::vector<raw_tier>& tiers) {
  bytes out = concat({varint(until), varint(tiers.size())});
  for (const auto& t : tiers) {
    const auto b = concat({text(t.collection), {t.match}, text(t.field), t.operand});
    out.insert(out.end(), b.begin(), b.end());
  }
  return out;
}

/// A prime payload by hand: spec, position 0, max_changes 0, max_bytes 0.
bytes prime_payload(std::uint64_t until, const std::vector<raw_tier>& tiers) {
  return concat({{0x01}, spec_bytes(until, tiers), varint(0), u32_le(0), u32_le(0)});
}
/// A pull payload by hand: cursor 7, max_changes 0, max_bytes 0, spec, scope epoch 0
/// (version 5), max_pages 0 (version 7).
bytes pull_payload(std::uint64_t until, const std::vector<raw_tier>& tiers) {
  return concat({{0x01}, varint(7), u32_le(0), u32_le(0), spec_bytes(until, tiers), varint(0), varint(0)});
}

/// Checks that a spec of `tiers` is refused as malformed in both messages that carry one.
void check_refused(std::uint64_t until, const std::vector<raw_tier>& tiers) {
  CHECK(decode_code(message_type::prime, prime_payload(until, tiers)) == protocol_errc::malformed);
  CHECK(decode_code(message_type::pull, pull_payload(until, tiers)) == protocol_errc::malformed);
}

/// Checks that a spec of `tiers` is accepted by both messages.
void check_accepted(std::uint64_t until, const std::vector<raw_tier>& tiers) {
  CHECK(decodes(message_type::prime, prime_payload(until, tiers)));
  CHECK(decodes(message_type::pull, pull_payload(until, tiers)));
}

record_id rid(std::uint8_t fill) {
  record_id id;
  id.bytes.fill(fill);
  return id;
}

wire::prime_tier tier_equals(std::string collection, std::string field, value v) {
  return {std::move(collection), wire::prime_match::equals, std::move(field), std::move(v)};
}
wire::prime_tier tier_at_least(std::string collection, std::string field, value v) {
  return {std::move(collection), wire::prime_match::at_least, std::move(field), std::move(v)};
}
wire::prime_tier tier_all(std::string collection) { return {std::move(collection), wire::prime_match::all, {}, {}}; }

/// A spec with every match and every operand kind a tier may hold.
wire::prime_spec mixed_spec(std::uint64_t until) {
  return wire::prime_spec{until,
                          {
                              tier_equals("visit", "status", value{std::string("active")}),
                              tier_at_least("referral", "due", value{std::string("2026-11-23")}),
                              tier_at_least("visit", "priority", value{std::int64_t{-3}}),
                              tier_equals("vital", "weight_kg", value{72.5}),
                              tier_at_least("vital", "temperature", value{-std::numeric_limits<double>::infinity()}),
                              tier_all("caregiver"),
                          }};
}

change small_change(std::uint8_t fill) {
  change c;
  c.collection = "visit";
  c.id = rid(fill);
  c.ver = version{hlc_stamp::make(1'700'000'000'000ULL, fill), 0x42};
  return c;
}

}  // namespace

TEST_CASE("prime codec: prime, pull with a prime spec and remaining counts round trip", "[protocol]") {
  SECTION("prime with every match and operand kind") {
    wire::prime m{mixed_spec(12345), 77, 500, 1u << 20};
    const auto out = round_trip(m);
    CHECK(out == m);
    REQUIRE(out.spec.tiers.size() == 6);
    CHECK(out.spec.until == 12345);
    CHECK(out.position == 77);
    CHECK(out.max_changes == 500);
    CHECK(out.max_bytes == 1u << 20);
    CHECK(out.spec.tiers[1].operand == value{std::string("2026-11-23")});
    CHECK(out.spec.tiers[2].operand == value{std::int64_t{-3}});
    CHECK(out.spec.tiers[4].operand == value{-std::numeric_limits<double>::infinity()});
    CHECK(out.spec.tiers[5].match == wire::prime_match::all);
  }
  SECTION("prime at the extremes: the largest until and position, 16 tiers") {
    wire::prime m;
    m.spec.until = k_max64;
    for (std::size_t i = 0; i < wire::k_max_prime_tiers; ++i) {
      m.spec.tiers.push_back(tier_at_least("c" + std::to_string(i), "f", value{std::numeric_limits<std::int64_t>::min()}));
    }
    m.position = k_max64;
    m.max_changes = std::numeric_limits<std::uint32_t>::max();
    m.max_bytes = std::numeric_limits<std::uint32_t>::max();
    CHECK(round_trip(m) == m);
  }
  SECTION("pull with a prime spec") {
    wire::pull m{300, 10, 4096, mixed_spec(299)};
    const auto out = round_trip(m);
    CHECK(out == m);
    CHECK(out.cursor == 300);
    CHECK(out.prime.until == 299);
    CHECK(out.prime.tiers.size() == 6);
  }
  SECTION("pull without a prime spec") {
    const auto out = round_trip(wire::pull{k_max64, 1, 2, {}});
    CHECK(out.prime.until == 0);
    CHECK(out.prime.tiers.empty());
    CHECK(out.cursor == k_max64);
  }
  SECTION("changes_page with remaining counts, with and without items") {
    wire::changes_page page;
    page.next_cursor = 40;
    page.more = true;
    page.remaining_changes = 123456;
    page.remaining_bytes = k_max64;
    CHECK(round_trip(page) == page);
    page.items.push_back(sequenced_change{39, small_change(1)});
    page.items.push_back(sequenced_change{12, small_change(2)});  // prime pages may go down
    const auto out = round_trip(page);
    CHECK(out == page);
    CHECK(out.remaining_changes == 123456);
    CHECK(out.remaining_bytes == k_max64);
    REQUIRE(out.items.size() == 2);
    CHECK(out.items[1].seq == 12);
  }
}

TEST_CASE("prime codec: a prime spec is encoded as documented", "[protocol]") {
  // uvarint until, uvarint tier count, then per tier: collection text, match u8, field
  // text, operand value (text: uvarint length and bytes; value: tag u8 and payload).
  SECTION("prime: spec, uvarint position, two u32 little-endian") {
    const wire::prime m{wire::prime_spec{300, {tier_equals("visit", "status", value{std::string("active")})}}, 2, 100,
                        0x01020304};
    CHECK(hex(wire::encode(m)) ==
          "01"                    // marker
          "ac02"                  // until 300
          "01"                    // one tier
          "05" "7669736974"       // "visit"
          "01"                    // equals
          "06" "737461747573"     // "status"
          "03" "06" "616374697665"  // text "active"
          "02"                    // position 2
          "64000000"              // max_changes 100
          "04030201");            // max_bytes
  }
  SECTION("each match and operand kind") {
    const wire::prime m{wire::prime_spec{1,
                                         {
                                             tier_all("referral"),
                                             tier_at_least("visit", "n", value{std::int64_t{-5}}),
                                             tier_equals("visit", "kg", value{1.5}),
                                         }},
                        0, 0, 0};
    CHECK(hex(wire::encode(m)) ==
          "01" "01" "03"
          "08" "726566657272616c" "00" "00" "00"         // referral, all, no field, null
          "05" "7669736974" "02" "01" "6e" "01" "09"     // visit, at_least, "n", integer -5 (zigzag 9)
          "05" "7669736974" "01" "02" "6b67" "02" "000000000000f83f"  // visit, equals, "kg", real 1.5
          "00" "00000000" "00000000");
  }
  SECTION("pull: the spec follows the two u32") {
    const wire::pull m{5, 0, 0, wire::prime_spec{128, {tier_all("visit")}}};
    // ..., then (version 5) scope epoch 0, (version 7) max_pages 0
    CHECK(hex(wire::encode(m)) == "01" "05" "00000000" "00000000" "8001" "01" "05" "7669736974" "00" "00" "00" "00" "00");
  }
  SECTION("changes_page: remaining counts come between the more flag and the item count") {
    wire::changes_page page;
    page.next_cursor = 9;
    page.more = true;
    page.remaining_changes = 300;
    page.remaining_bytes = 16384;
    // ..., item count 0, then (version 5) scope epoch 0, no purge, no backfill
    CHECK(hex(wire::encode(page)) == "01" "09" "01" "ac02" "808001" "00" "000000");
    wire::changes_page_builder builder;
    CHECK(hex(builder.finish(9, true, 300, 16384)) == "01" "09" "01" "ac02" "808001" "00" "000000");
  }
}

TEST_CASE("prime codec: changes_page_builder writes the remaining counts as encode does", "[protocol]") {
  wire::changes_page page;
  page.next_cursor = 1000;
  page.more = false;
  page.remaining_changes = 17;
  page.remaining_bytes = 1u << 30;
  wire::changes_page_builder builder;
  for (std::uint64_t seq : {1ULL, 200ULL, 3ULL}) {
    const auto c = small_change(static_cast<std::uint8_t>(seq));
    page.items.push_back(sequenced_change{seq, c});
    builder.add(seq, wire::encode_change(c));
  }
  const auto built = builder.finish(1000, false, 17, 1u << 30);
  CHECK(built == wire::encode(page));
  const auto decoded = std::get<wire::changes_page>(wire::decode(message_type::changes, built));
  CHECK(decoded.remaining_changes == 17);
  CHECK(decoded.remaining_bytes == 1u << 30);
  CHECK(decoded == page);
}

TEST_CASE("prime codec: the hand-built payloads of the hostile cases decode when valid", "[protocol][security]") {
  // The baseline every refusal below changes in one place.
  const auto m = wire::decode(message_type::prime, prime_payload(5, {raw_tier{}}));
  REQUIRE(std::holds_alternative<wire::prime>(m));
  CHECK(std::get<wire::prime>(m).spec ==
        wire::prime_spec{5, {tier_equals("visit", "status", value{std::string("active")})}});
  const auto p = wire::decode(message_type::pull, pull_payload(5, {raw_tier{}}));
  REQUIRE(std::holds_alternative<wire::pull>(p));
  CHECK(std::get<wire::pull>(p).cursor == 7);
  CHECK(std::get<wire::pull>(p).prime.until == 5);
  check_accepted(5, {raw_tier{"visit", 0, "", op_null()}});
  check_accepted(5, {raw_tier{"visit", 2, "due", op_integer(-1)}});
  check_accepted(5, {raw_tier{"visit", 2, "due", op_real(0.25)}});
  check_accepted(5, {raw_tier{"visit", 1, "due", op_real(std::numeric_limits<double>::infinity())}});
  check_accepted(5, {raw_tier{"visit", 1, "due", op_text("")}});
}

TEST_CASE("prime codec: until and tiers come together or not at all", "[protocol][security]") {
  SECTION("a log position without tiers") {
    check_refused(5, {});
    check_refused(k_max64, {});
  }
  SECTION("tiers without a log position") {
    check_refused(0, {raw_tier{}});
    check_refused(0, {raw_tier{"visit", 0, "", op_null()}});
  }
  SECTION("neither: a pull without a spec is fine, a prime message is not") {
    CHECK(decodes(message_type::pull, pull_payload(0, {})));
    CHECK(decode_code(message_type::prime, prime_payload(0, {})) == protocol_errc::malformed);
  }
}

TEST_CASE("prime codec: at most 16 tiers", "[protocol][security]") {
  std::vector<raw_tier> tiers;
  for (std::size_t i = 0; i < wire::k_max_prime_tiers; ++i) tiers.push_back(raw_tier{"c" + std::to_string(i), 0, "", op_null()});
  check_accepted(9, tiers);
  tiers.push_back(raw_tier{"c16", 0, "", op_null()});
  REQUIRE(tiers.size() == 17);
  check_refused(9, tiers);
  // The encoder does not refuse, the decoder does: a 17-tier spec never gets through.
  wire::prime m{wire::prime_spec{9, {}}, 0, 0, 0};
  for (int i = 0; i < 17; ++i) m.spec.tiers.push_back(tier_all("visit"));
  CHECK(decode_code(message_type::prime, wire::encode(m)) == protocol_errc::malformed);
}

TEST_CASE("prime codec: a tier names a valid collection", "[protocol][security]") {
  for (const auto& name :
       std::vector<std::string>{"", "Visit", "1visit", "_visit", "cs_state", "vi-sit", "visit ", "v\xc3\xadsit", std::string(64, 'a')}) {
    INFO("collection '" << name << "'");
    check_refused(5, {raw_tier{name, 0, "", op_null()}});
    check_refused(5, {raw_tier{}, raw_tier{name, 1, "status", op_text("x")}});
  }
  check_accepted(5, {raw_tier{std::string(63, 'a'), 0, "", op_null()}});
}

TEST_CASE("prime codec: the match is 0, 1 or 2", "[protocol][security]") {
  for (std::uint8_t match : {3, 4, 0x7f, 0x80, 0x81, 0xff}) {
    INFO("match " << int(match));
    check_refused(5, {raw_tier{"visit", match, "status", op_text("active")}});
    check_refused(5, {raw_tier{"visit", match, "", op_null()}});
  }
}

TEST_CASE("prime codec: a tier matching all carries no field and a null operand", "[protocol][security]") {
  SECTION("a field") {
    check_refused(5, {raw_tier{"visit", 0, "status", op_null()}});
    check_refused(5, {raw_tier{"visit", 0, "Status", op_null()}});
  }
  SECTION("an operand") {
    check_refused(5, {raw_tier{"visit", 0, "", op_integer(0)}});
    check_refused(5, {raw_tier{"visit", 0, "", op_text("")}});
    check_refused(5, {raw_tier{"visit", 0, "", op_real(0.0)}});
    check_refused(5, {raw_tier{"visit", 0, "", op_blob({})}});
  }
}

TEST_CASE("prime codec: equals and at_least need a valid field and an integer, real or text operand",
          "[protocol][security]") {
  const std::uint8_t matches[] = {1, 2};
  SECTION("the field") {
    for (auto match : matches) {
      for (const auto& field : std::vector<std::string>{"", "Status", "9lives", "cs_seq", "due date", std::string(64, 'f')}) {
        INFO("match " << int(match) << ", field '" << field << "'");
        check_refused(5, {raw_tier{"visit", match, field, op_text("active")}});
      }
      check_accepted(5, {raw_tier{"visit", match, std::string(63, 'f'), op_text("active")}});
    }
  }
  SECTION("the operand") {
    for (auto match : matches) {
      INFO("match " << int(match));
      check_refused(5, {raw_tier{"visit", match, "status", op_null()}});
      check_refused(5, {raw_tier{"visit", match, "status", op_blob({})}});
      check_refused(5, {raw_tier{"visit", match, "status", op_blob({0x61})}});
      check_refused(5, {raw_tier{"visit", match, "status", op_real(std::numeric_limits<double>::quiet_NaN())}});
      check_refused(5, {raw_tier{"visit", match, "status", op_real_bits(0xfff8000000000000ULL)}});  // negative NaN
      check_refused(5, {raw_tier{"visit", match, "status", op_real_bits(0x7ff0000000000001ULL)}});  // signalling
      check_refused(5, {raw_tier{"visit", match, "status", bytes{0x05}}});  // no such value tag
    }
  }
}

TEST_CASE("prime codec: a cut or padded prime payload is refused", "[protocol][security]") {
  const auto whole = prime_payload(300, {raw_tier{}, raw_tier{"referral", 2, "due", op_real(2.5)}});
  REQUIRE(decodes(message_type::prime, whole));
  for (std::size_t n = 0; n < whole.size(); ++n) {
    INFO("first " << n << " of " << whole.size() << " bytes");
    CHECK(decode_code(message_type::prime, bytes(whole.begin(), whole.begin() + static_cast<std::ptrdiff_t>(n))) ==
          protocol_errc::malformed);
  }
  CHECK(decode_code(message_type::prime, concat({whole, {0x00}})) == protocol_errc::malformed);
}

TEST_CASE("prime codec: a tier count claiming 2^40 tiers throws before allocating", "[protocol][security]") {
  // Sized by the claim, the tiers would take ~100 TiB: a decoder that allocated first
  // would throw std::bad_alloc (or die), which thrown_code counts as a failure.
  const std::uint64_t huge = 1ULL << 40;
  const auto tier = concat({text("visit"), {0x00}, text(""), op_null()});
  SECTION("in a prime message") {
    CHECK(decode_code(message_type::prime, concat({{0x01}, varint(5), varint(huge), tier, varint(0), u32_le(0), u32_le(0)})) ==
          protocol_errc::malformed);
  }
  SECTION("in a pull") {
    CHECK(decode_code(message_type::pull, concat({{0x01}, varint(0), u32_le(0), u32_le(0), varint(5), varint(huge), tier})) ==
          protocol_errc::malformed);
  }
  SECTION("the largest count a varint holds") {
    CHECK(decode_code(message_type::prime, concat({{0x01}, varint(5), varint(k_max64), tier})) == protocol_errc::malformed);
  }
  SECTION("two tiers claimed, one given") {
    CHECK(decode_code(message_type::prime, concat({{0x01}, varint(5), varint(2), tier, varint(0), u32_le(0), u32_le(0)})) ==
          protocol_errc::malformed);
  }
}

TEST_CASE("prime codec: page_item_bytes of a decoded item is what changes_page_builder adds", "[protocol]") {
  std::vector<change> changes;
  changes.push_back(small_change(1));
  {
    change c = small_change(2);
    c.fields = {{"note", value{std::string(300, 'x')}}, {"kg", value{72.5}}, {"n", value{std::int64_t{-1}}},
                {"sig", value{blob{{0, 1, 2}}}}, {"empty", value{}}};
    c.kept = {kept_field{"note", {version{hlc_stamp::make(5, 0), 7}}}};
    changes.push_back(c);
  }
  {
    change c = small_change(3);
    c.kind = change_kind::remove;
    c.covers = std::vector<version>{version{hlc_stamp::make(5, 0), 7}, version{hlc_stamp::make(6, 0), 7}};
    changes.push_back(c);
  }
  {
    change c = small_change(4);
    c.items = {item_op{"log", item_policy::append, {"entry"}, {}},
               item_op{"tags", item_policy::set_union, {"a", "b"}, {version{hlc_stamp::make(5, 0), 7}}}};
    changes.push_back(c);
  }
  const std::uint64_t seqs[] = {1, 127, 128, 16383, 16384, (1ULL << 35) - 1, 1ULL << 35, 1ULL << 63, k_max64};

  wire::changes_page_builder builder;
  std::vector<std::size_t> added;
  for (auto seq : seqs) {
    for (const auto& c : changes) {
      const auto before = builder.size_bytes();
      builder.add(seq, wire::encode_change(c));
      added.push_back(builder.size_bytes() - before);
    }
  }
  const auto page = std::get<wire::changes_page>(wire::decode(message_type::changes, builder.finish(1, false)));
  REQUIRE(page.items.size() == added.size());
  std::size_t total = 0;
  for (std::size_t i = 0; i < page.items.size(); ++i) {
    INFO("item " << i << ", seq " << page.items[i].seq);
    CHECK(wire::page_item_bytes(page.items[i]) == added[i]);
    CHECK(wire::page_item_bytes(page.items[i].seq, wire::encode_change(page.items[i].body)) == added[i]);
    total += wire::page_item_bytes(page.items[i]);
  }
  CHECK(total == builder.size_bytes());

  // Known sizes: a field-less visit change is 40 bytes without its marker (name 6, id 16,
  // stamp 8, node 8, kind 1, field count 1); the seq adds its uvarint.
  CHECK(wire::page_item_bytes(sequenced_change{1, small_change(9)}) == 41);
  CHECK(wire::page_item_bytes(sequenced_change{127, small_change(9)}) == 41);
  CHECK(wire::page_item_bytes(sequenced_change{128, small_change(9)}) == 42);
  CHECK(wire::page_item_bytes(sequenced_change{k_max64, small_change(9)}) == 50);
}
