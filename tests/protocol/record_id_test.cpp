#include <caresync/protocol/record_id.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <set>
#include <thread>
#include <vector>

using namespace caresync;

TEST_CASE("generated record ids are version-7 RFC-variant UUIDs, distinct and in the order made", "[protocol]") {
  std::set<record_id> seen;
  std::vector<record_id> made;
  const auto now_ms = [] {
    return static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
  };
  const auto before = now_ms();
  // Far more than one millisecond's worth of sequence numbers (4096): the sequence runs
  // out within a millisecond and the next ids must still sort after the earlier ones.
  for (int i = 0; i < 20000; ++i) made.push_back(record_id::generate());
  const auto after = now_ms();
  for (const auto& id : made) {
    CHECK((id.bytes[6] & 0xf0) == 0x70);
    CHECK((id.bytes[8] & 0xc0) == 0x80);
    CHECK(id.to_string()[14] == '7');
    CHECK(seen.insert(id).second);
  }
  CHECK(seen.size() == made.size());
  CHECK(std::is_sorted(made.begin(), made.end()));
  // The first 48 bits are the Unix time in milliseconds when it was made (a run of ids
  // may borrow a few milliseconds ahead when one millisecond's sequence runs out).
  std::uint64_t first_ms = 0;
  for (int i = 0; i < 6; ++i) first_ms = first_ms << 8 | made.front().bytes[static_cast<std::size_t>(i)];
  CHECK(first_ms >= before);
  CHECK(first_ms <= after);
}

TEST_CASE("record ids made on several threads at once are distinct", "[protocol]") {
  std::vector<std::vector<record_id>> per_thread(4);
  std::vector<std::thread> threads;
  for (auto& out : per_thread) {
    threads.emplace_back([&out] {
      for (int i = 0; i < 5000; ++i) out.push_back(record_id::generate());
    });
  }
  for (auto& t : threads) t.join();
  std::set<record_id> all;
  for (const auto& ids : per_thread) {
    CHECK(std::is_sorted(ids.begin(), ids.end()));
    all.insert(ids.begin(), ids.end());
  }
  CHECK(all.size() == 20000);
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
