#include <caresync/protocol/record_id.hpp>

#include <catch2/catch.hpp>

#include <set>

using namespace caresync;

TEST_CASE("generated record ids are version-4 RFC-variant UUIDs and distinct", "[protocol]") {
  std::set<record_id> seen;
  for (int i = 0; i < 1000; ++i) {
    const auto id = record_id::generate();
    CHECK((id.bytes[6] & 0xf0) == 0x40);
    CHECK((id.bytes[8] & 0xc0) == 0x80);
    const auto text = id.to_string();
    CHECK(text[14] == '4');
    CHECK(seen.insert(id).second);
  }
  CHECK(seen.size() == 1000);
}

TEST_CASE("record id text form is canonical lowercase and parses back", "[protocol]") {
  record_id id;
  for (std::size_t i = 0; i < 16; ++i) id.bytes[i] = static_cast<std::uint8_t>(0x10 * (i % 16) + i);
  const auto text = id.to_string();
  CHECK(text == "00112233-4455-6677-8899-aabbccddeeff");
  const auto parsed = record_id::parse(text);
  REQUIRE(parsed);
  CHECK(*parsed == id);

  SECTION("upper case is accepted") {
    const auto upper = record_id::parse("00112233-4455-6677-8899-AABBCCDDEEFF");
    REQUIRE(upper);
    CHECK(*upper == id);
    CHECK(upper->to_string() == text);
  }
  SECTION("anything else is refused") {
    CHECK_FALSE(record_id::parse(""));
    CHECK_FALSE(record_id::parse("00112233445566778899aabbccddeeff"));          // no dashes
    CHECK_FALSE(record_id::parse("00112233-4455-6677-8899-aabbccddeef"));       // short
    CHECK_FALSE(record_id::parse("00112233-4455-6677-8899-aabbccddeeff0"));     // long
    CHECK_FALSE(record_id::parse("0011223-34455-6677-8899-aabbccddeeff"));      // dash misplaced
    CHECK_FALSE(record_id::parse("00112233-4455-6677-8899-aabbccddeefg"));      // not hex
    CHECK_FALSE(record_id::parse("{0112233-4455-6677-8899-aabbccddeeff"));
    CHECK_FALSE(record_id::parse("00112233_4455_6677_8899_aabbccddeeff"));
  }
}

TEST_CASE("record ids order by their bytes", "[protocol]") {
  record_id a;
  record_id b;
  b.bytes[15] = 1;
  record_id c;
  c.bytes[0] = 1;
  CHECK(a < b);
  CHECK(b < c);
  CHECK(a == record_id{});
}
