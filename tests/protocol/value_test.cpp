#include <caresync/protocol/value.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <limits>
#include <string>

using namespace caresync;

TEST_CASE("value kinds follow the variant index, which is the wire tag", "[protocol]") {
  CHECK(kind_of(value{}) == value_kind::null);
  CHECK(kind_of(value{std::int64_t{-5}}) == value_kind::integer);
  CHECK(kind_of(value{2.5}) == value_kind::real);
  CHECK(kind_of(value{std::string("x")}) == value_kind::text);
  CHECK(kind_of(value{blob{{1, 2}}}) == value_kind::bytes);
  CHECK(static_cast<int>(value_kind::null) == 0);
  CHECK(static_cast<int>(value_kind::integer) == 1);
  CHECK(static_cast<int>(value_kind::real) == 2);
  CHECK(static_cast<int>(value_kind::text) == 3);
  CHECK(static_cast<int>(value_kind::bytes) == 4);
}

TEST_CASE("value kind names round trip and unknown names are refused", "[protocol]") {
  for (int i = 0; i <= 4; ++i) {
    const auto kind = static_cast<value_kind>(i);
    value_kind parsed = value_kind::null;
    REQUIRE(parse_value_kind(to_string(kind), parsed));
    CHECK(parsed == kind);
  }
  CHECK(to_string(value_kind::text) == "text");
  CHECK(to_string(value_kind::bytes) == "bytes");
  CHECK(to_string(static_cast<value_kind>(9)) == "invalid");
  value_kind out = value_kind::real;
  CHECK_FALSE(parse_value_kind("Text", out));
  CHECK_FALSE(parse_value_kind("", out));
  CHECK_FALSE(parse_value_kind("invalid", out));
  CHECK(out == value_kind::real);  // untouched on failure
}

TEST_CASE("text and bytes are distinct values even with the same content", "[protocol]") {
  const value t{std::string("ab")};
  const value b{blob{{'a', 'b'}}};
  CHECK(t != b);
  CHECK(value{blob{{1, 2}}} == value{blob{{1, 2}}});
  CHECK(value{blob{{1, 2}}} != value{blob{{2, 1}}});
  CHECK(value{std::int64_t{1}} != value{1.0});
  CHECK(value{std::numeric_limits<std::int64_t>::min()} == value{std::numeric_limits<std::int64_t>::min()});
}
