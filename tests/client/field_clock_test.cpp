// The per-field clock codec kept in cs_meta.clock (client-lib/src/field_clock.hpp).
#include "field_clock.hpp"

#include <caresync/protocol/errors.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <string>
#include <vector>

using caresync::field_clock;
using caresync::field_clock_entry;
using caresync::hlc_stamp;
using caresync::storage_errc;
using caresync::version;

namespace {

version ver(std::uint64_t wall_ms, std::uint16_t counter, caresync::node_id node) {
  return version{hlc_stamp::make(wall_ms, counter), node};
}

/// Checks two clocks hold the same names with the same versions and flags
/// (field_clock_entry has no operator==).
void check_same(const field_clock& got, const field_clock& want) {
  REQUIRE(got.size() == want.size());
  for (const auto& [name, entry] : want) {
    INFO("field " << name);
    const auto it = got.find(name);
    REQUIRE(it != got.end());
    CHECK(it->second.ver.stamp.value == entry.ver.stamp.value);
    CHECK(it->second.ver.node == entry.ver.node);
    CHECK(it->second.extra == entry.extra);
  }
}

/// The error code decode_field_clock throws for `bytes`; empty if it decodes them.
std::error_code decode_error(const std::vector<std::uint8_t>& bytes) {
  try {
    (void)caresync::decode_field_clock(bytes);
  } catch (const caresync::error& e) {
    return e.code();
  }
  return {};
}

}  // namespace

TEST_CASE("field clock encoding is the documented little-endian layout", "[store]") {
  const field_clock clock{{"a", field_clock_entry{version{hlc_stamp{0x0102}, 0x0304}, false}},
                          {"bc", field_clock_entry{version{hlc_stamp{0x0102}, 0x0304}, true}}};
  const std::vector<std::uint8_t> want{
      0x02, 0x01, 0, 0, 0, 0, 0, 0,  // stamp
      0x04, 0x03, 0, 0, 0, 0, 0, 0,  // node
      2,                             // names in this version
      1,    'a',                     // length
      0x82, 'b',  'c',               // length | 0x80: the value lives in cs_extra
  };
  CHECK(caresync::encode_field_clock(clock) == want);
  check_same(caresync::decode_field_clock(want), clock);
}

TEST_CASE("field clocks survive an encode/decode round trip", "[store]") {
  field_clock clock;

  SECTION("empty") {
    CHECK(caresync::encode_field_clock(clock).empty());
  }
  SECTION("several versions and extra flags") {
    clock["client"] = {ver(1'700'000'000'000, 0, 0x1111), false};
    clock["minutes"] = {ver(1'700'000'000'000, 0, 0x1111), true};
    clock["notes"] = {ver(1'700'000'000'000, 7, 0x1111), false};
    clock["signature"] = {ver(1'700'000'000'000, 0, 0x2222), true};
    clock["temperature"] = {ver(1'600'000'000'000, 65535, ~std::uint64_t{0}), false};
    clock[std::string(63, 'z')] = {ver(0xffff'ffff'ffff, 1, 1), true};  // the longest name
    clock["x"] = {version{hlc_stamp{~std::uint64_t{0}}, 0}, false};
  }
  SECTION("more than 255 fields of one version (split into several groups)") {
    for (int i = 0; i < 600; ++i) {
      clock["f" + std::to_string(i)] = {ver(1'700'000'000'123, 2, 0xabcdef), i % 3 == 0};
    }
  }

  const auto bytes = caresync::encode_field_clock(clock);
  check_same(caresync::decode_field_clock(bytes), clock);
}

TEST_CASE("a truncated single-version field clock is refused as corrupt", "[store]") {
  field_clock clock;
  clock["client"] = {ver(1'700'000'000'000, 3, 42), false};
  clock["minutes"] = {ver(1'700'000'000'000, 3, 42), true};
  clock["notes"] = {ver(1'700'000'000'000, 3, 42), false};
  const auto bytes = caresync::encode_field_clock(clock);
  REQUIRE(bytes.size() == 17 + (1 + 6) + (1 + 7) + (1 + 5));

  for (std::size_t n = 1; n < bytes.size(); ++n) {
    INFO("prefix of " << n << " of " << bytes.size() << " bytes");
    CHECK(decode_error({bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n)}) ==
          make_error_code(storage_errc::corrupt));
  }
}

TEST_CASE("a field clock truncated inside a version group is refused as corrupt", "[store]") {
  // The format has no overall count, so a cut exactly between two version groups reads
  // as the clock of the first group; every other cut must be refused.
  field_clock clock;
  clock["a"] = {ver(100, 0, 7), false};
  clock["bb"] = {ver(100, 0, 7), true};
  clock["ccc"] = {ver(200, 0, 7), false};
  const auto bytes = caresync::encode_field_clock(clock);
  const std::size_t boundary = 17 + (1 + 1) + (1 + 2);
  REQUIRE(bytes.size() == boundary + 17 + (1 + 3));

  for (std::size_t n = 1; n < bytes.size(); ++n) {
    INFO("prefix of " << n << " of " << bytes.size() << " bytes");
    const std::vector<std::uint8_t> prefix(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n));
    if (n == boundary) {
      const auto first = caresync::decode_field_clock(prefix);
      check_same(first, field_clock{{"a", clock["a"]}, {"bb", clock["bb"]}});
    } else {
      CHECK(decode_error(prefix) == make_error_code(storage_errc::corrupt));
    }
  }
}

TEST_CASE("malformed field clock bytes are refused as corrupt", "[store]") {
  std::vector<std::uint8_t> bytes(16, 0);  // stamp and node of version 0
  bytes.push_back(1);                      // one name...

  SECTION("a name of length zero") {
    bytes.push_back(0);
  }
  SECTION("an extra-flagged name of length zero") {
    bytes.push_back(0x80);
  }
  SECTION("a name longer than the bytes left") {
    bytes.insert(bytes.end(), {5, 'a', 'b'});
  }
  SECTION("fewer names than counted") {
    bytes.back() = 2;
    bytes.insert(bytes.end(), {1, 'a'});
  }
  SECTION("trailing bytes too short for another version") {
    bytes.insert(bytes.end(), {1, 'a', 0, 0, 0});
  }

  CHECK(decode_error(bytes) == make_error_code(storage_errc::corrupt));
}
