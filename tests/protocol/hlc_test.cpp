#include <caresync/protocol/hlc.hpp>

#include <catch2/catch.hpp>

#include <cstdint>

using namespace caresync;

TEST_CASE("hlc stamps pack milliseconds above a 16-bit counter", "[protocol]") {
  const auto s = hlc_stamp::make(1'700'000'000'000ULL, 7);
  CHECK(s.value == (1'700'000'000'000ULL << 16 | 7));
  CHECK(s.wall_ms() == 1'700'000'000'000ULL);
  CHECK(s.counter() == 7);
  CHECK(hlc_stamp::make(10, 0xffff) < hlc_stamp::make(11, 0));
  CHECK(hlc_stamp::make(10, 1) < hlc_stamp::make(10, 2));
}

TEST_CASE("versions order by stamp, then node", "[protocol]") {
  const version a{hlc_stamp::make(100, 0), 9};
  const version b{hlc_stamp::make(100, 1), 1};
  const version c{hlc_stamp::make(100, 1), 2};
  CHECK(a < b);
  CHECK(b < c);
  CHECK(version{hlc_stamp::make(5, 0), 0xffffffffffffffffULL} > version{hlc_stamp::make(5, 0), 1});
  CHECK(version{hlc_stamp::make(5, 0), 3} == version{hlc_stamp::make(5, 0), 3});
}

TEST_CASE("hybrid clock is strictly monotonic", "[protocol]") {
  std::uint64_t wall = 1000;
  hybrid_clock clock([&] { return wall; });

  SECTION("follows wall time when it moves") {
    CHECK(clock.now() == hlc_stamp::make(1000, 0));
    wall = 1005;
    CHECK(clock.now() == hlc_stamp::make(1005, 0));
    CHECK(clock.last() == hlc_stamp::make(1005, 0));
  }
  SECTION("counts within one millisecond") {
    CHECK(clock.now() == hlc_stamp::make(1000, 0));
    CHECK(clock.now() == hlc_stamp::make(1000, 1));
    CHECK(clock.now() == hlc_stamp::make(1000, 2));
  }
  SECTION("time going backwards never makes a smaller stamp") {
    CHECK(clock.now() == hlc_stamp::make(1000, 0));
    wall = 400;
    CHECK(clock.now() == hlc_stamp::make(1000, 1));
    CHECK(clock.now() == hlc_stamp::make(1000, 2));
    wall = 1001;
    CHECK(clock.now() == hlc_stamp::make(1001, 0));
  }
  SECTION("many stamps, with wall time jittering, all increase") {
    hlc_stamp prev = clock.now();
    for (int i = 0; i < 10000; ++i) {
      wall = 1000 + static_cast<std::uint64_t>((i * 7919) % 13);  // jitters up and down
      const auto s = clock.now();
      REQUIRE(prev < s);
      prev = s;
    }
  }
}

TEST_CASE("hybrid clock moves past every stamp it observes", "[protocol]") {
  std::uint64_t wall = 1000;
  hybrid_clock clock([&] { return wall; });
  CHECK(clock.now() == hlc_stamp::make(1000, 0));

  SECTION("a stamp from the future") {
    clock.observe(hlc_stamp::make(5000, 3));
    CHECK(clock.last() == hlc_stamp::make(5000, 3));
    CHECK(clock.now() == hlc_stamp::make(5000, 4));
    wall = 6000;
    CHECK(clock.now() == hlc_stamp::make(6000, 0));
  }
  SECTION("a stamp from the past changes nothing") {
    clock.observe(hlc_stamp::make(10, 9));
    CHECK(clock.last() == hlc_stamp::make(1000, 0));
    CHECK(clock.now() == hlc_stamp::make(1000, 1));
  }
  SECTION("the server's time from welcome") {
    clock.observe(hlc_stamp::make(2000, 0));
    CHECK(clock.now() > hlc_stamp::make(2000, 0));
  }
}

TEST_CASE("hybrid clock counter overflow borrows the next millisecond", "[protocol]") {
  std::uint64_t wall = 1000;
  hybrid_clock clock([&] { return wall; });

  SECTION("by issuing 65,536 stamps in one millisecond") {
    hlc_stamp s;
    for (int i = 0; i <= 0xffff; ++i) s = clock.now();
    CHECK(s == hlc_stamp::make(1000, 0xffff));
    CHECK(clock.now() == hlc_stamp::make(1001, 0));
    CHECK(clock.now() == hlc_stamp::make(1001, 1));
    // wall catching up to the borrowed millisecond does not go back
    wall = 1001;
    CHECK(clock.now() == hlc_stamp::make(1001, 2));
  }
  SECTION("by observing a full counter") {
    clock.observe(hlc_stamp::make(3000, 0xffff));
    CHECK(clock.now() == hlc_stamp::make(3001, 0));
  }
}

TEST_CASE("node ids are random and never zero", "[protocol]") {
  const auto a = generate_node_id();
  const auto b = generate_node_id();
  CHECK(a != 0);
  CHECK(b != 0);
  CHECK(a != b);
  CHECK(system_time_ms() > 1'600'000'000'000ULL);  // after September 2020
}
