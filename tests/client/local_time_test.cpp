// caresync-field's local times (examples/field/local_time.hpp): the forms people type,
// in Prague's zone with its summer time, converted to and from the UTC the store keeps.

#include "local_time.hpp"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <ctime>
#include <optional>
#include <string>

using namespace caresync::field;

namespace {

/// Sets TZ for the test's duration and puts back what was there.
class zone {
 public:
  explicit zone(const char* tz) {
    if (const char* old = std::getenv("TZ")) old_ = old;
    ::setenv("TZ", tz, 1);
    ::tzset();
  }
  ~zone() {
    if (old_) {
      ::setenv("TZ", old_->c_str(), 1);
    } else {
      ::unsetenv("TZ");
    }
    ::tzset();
  }
  zone(const zone&) = delete;
  zone& operator=(const zone&) = delete;

 private:
  std::optional<std::string> old_;
};

constexpr local_date k_day{2026, 11, 23};

}  // namespace

TEST_CASE("local time: the day forms", "[cli][time]") {
  CHECK(parse_date("23.11.2026") == local_date{2026, 11, 23});
  CHECK(parse_date("23. 11. 2026") == local_date{2026, 11, 23});
  CHECK(parse_date("3.4.1941") == local_date{1941, 4, 3});
  CHECK(parse_date(" 23.11.2026. ") == local_date{2026, 11, 23});
  CHECK(parse_date("2026-11-23") == local_date{2026, 11, 23});
  CHECK(parse_date("29.2.2028") == local_date{2028, 2, 29});
  for (const char* bad : {"", "23.11.", "23.11.26", "31.11.2026", "29.2.2026", "0.1.2026", "2026-13-01", "2026-11-23x",
                          "23/11/2026", "tomorrow", "123.11.2026", "23.11.2026 8:00"}) {
    INFO(bad);
    CHECK_FALSE(parse_date(bad));
  }
  CHECK(format_date({2026, 4, 3}) == "03.04.2026");
}

TEST_CASE("local time: moments in Prague, winter and summer", "[cli][time]") {
  zone prague("Europe/Prague");
  CHECK(parse_moment("23.11.2026 8:00", k_day) == "2026-11-23T07:00:00Z");
  CHECK(parse_moment("23. 11. 2026 8:00", k_day) == "2026-11-23T07:00:00Z");
  CHECK(parse_moment("23.11.2026 08.30", k_day) == "2026-11-23T07:30:00Z");
  CHECK(parse_moment("2026-11-23 08:00", k_day) == "2026-11-23T07:00:00Z");
  CHECK(parse_moment("2026-11-23T08:00:15", k_day) == "2026-11-23T07:00:15Z");
  CHECK(parse_moment("2026-11-23T08:00:00Z", k_day) == "2026-11-23T08:00:00Z");
  CHECK(parse_moment("2026-11-23T08:00+02:00", k_day) == "2026-11-23T06:00:00Z");
  CHECK(parse_moment("2026-11-23T08:00-0130", k_day) == "2026-11-23T09:30:00Z");
  CHECK(parse_moment("8:00", k_day) == "2026-11-23T07:00:00Z");
  CHECK(parse_moment("0:05", k_day) == "2026-11-22T23:05:00Z");
  CHECK(parse_moment("15.7.2026 8:00", k_day) == "2026-07-15T06:00:00Z");
  CHECK(parse_moment("8:00", {2026, 7, 15}) == "2026-07-15T06:00:00Z");
  for (const char* bad : {"", "8", "8:0", "24:00", "8:60", "23.11.2026", "23.11.2026 8", "8:00Z", "23.11.2026 8:00 pm",
                          "2026-11-23T08:00:00+15:00", "31.11.2026 8:00", "at eight"}) {
    INFO(bad);
    CHECK_FALSE(parse_moment(bad, k_day));
  }
}

TEST_CASE("local time: the nights the clocks change", "[cli][time]") {
  zone prague("Europe/Prague");
  // 29.3.2026: 2:00 CET becomes 3:00 CEST; 2:30 does not exist.
  CHECK(parse_moment("29.3.2026 1:59", k_day) == "2026-03-29T00:59:00Z");
  CHECK_FALSE(parse_moment("29.3.2026 2:30", k_day));
  CHECK(parse_moment("29.3.2026 3:00", k_day) == "2026-03-29T01:00:00Z");
  // 25.10.2026: 3:00 CEST becomes 2:00 CET; 2:30 happens twice, the first is taken.
  CHECK(parse_moment("25.10.2026 2:30", k_day) == "2026-10-25T00:30:00Z");
  CHECK(parse_moment("25.10.2026 3:30", k_day) == "2026-10-25T02:30:00Z");
  // Days of 23 and 25 hours.
  CHECK(utc_bounds({2026, 3, 29}) == std::pair<std::string, std::string>{"2026-03-28T23:00:00Z", "2026-03-29T22:00:00Z"});
  CHECK(utc_bounds({2026, 10, 25}) == std::pair<std::string, std::string>{"2026-10-24T22:00:00Z", "2026-10-25T23:00:00Z"});
  CHECK(utc_bounds({2026, 12, 31}) == std::pair<std::string, std::string>{"2026-12-30T23:00:00Z", "2026-12-31T23:00:00Z"});
  CHECK(format_local("2026-10-25T00:30:00Z") == "25.10.2026 02:30");
  CHECK(format_local("2026-10-25T01:30:00Z") == "25.10.2026 02:30");
}

TEST_CASE("local time: stored UTC shown in the zone", "[cli][time]") {
  zone prague("Europe/Prague");
  CHECK(format_local("2026-11-23T07:00:00Z") == "23.11.2026 08:00");
  CHECK(format_local("2026-07-15T06:00:00Z", true) == "08:00");
  CHECK(format_local("2026-11-22T23:30:00Z") == "23.11.2026 00:30");
  CHECK(format_local("not a time") == "not a time");
  CHECK(day_of("2026-11-22T23:30:00Z") == local_date{2026, 11, 23});
  CHECK_FALSE(day_of("2026-11-22"));
  CHECK(format_local_ms(1'795'417'200'000) == "23.11.2026 08:00");  // 2026-11-23T07:00:00Z
  // What is shown parses back to what is stored.
  for (const char* utc : {"2026-11-23T07:00:00Z", "2026-07-15T06:00:00Z", "2026-03-29T01:00:00Z"}) {
    INFO(utc);
    CHECK(parse_moment(format_local(utc), k_day) == utc);
  }
  zone utc("UTC");
  CHECK(format_local("2026-11-23T07:00:00Z") == "23.11.2026 07:00");
  CHECK(parse_moment("23.11.2026 8:00", k_day) == "2026-11-23T08:00:00Z");
}
