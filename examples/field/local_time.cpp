#include "local_time.hpp"

#include <cctype>
#include <cstdio>
#include <ctime>

namespace caresync::field {

namespace {

/// A left-to-right reader of what a person typed.
class scanner {
 public:
  explicit scanner(std::string_view text) : text_(text) {}

  bool done() const noexcept { return pos_ == text_.size(); }
  void skip_spaces() noexcept {
    while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
  }
  bool accept(char c) noexcept {
    if (pos_ < text_.size() && text_[pos_] == c) return ++pos_, true;
    return false;
  }
  char peek() const noexcept { return pos_ < text_.size() ? text_[pos_] : '\0'; }
  /// A number of `min`-`max` digits; std::nullopt (nothing consumed) otherwise.
  std::optional<int> number(std::size_t min, std::size_t max) {
    std::size_t end = pos_;
    int n = 0;
    while (end < text_.size() && end - pos_ < max && std::isdigit(static_cast<unsigned char>(text_[end]))) {
      n = n * 10 + (text_[end] - '0');
      ++end;
    }
    if (end - pos_ < min || (end < text_.size() && std::isdigit(static_cast<unsigned char>(text_[end])))) return std::nullopt;
    pos_ = end;
    return n;
  }
  std::size_t position() const noexcept { return pos_; }
  void rewind(std::size_t to) noexcept { pos_ = to; }

 private:
  std::string_view text_;
  std::size_t pos_ = 0;
};

struct clock_time {
  int hour = 0, minute = 0, second = 0;
};

bool leap(int y) noexcept { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

bool valid_day(const local_date& d) noexcept {
  static constexpr int k_days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (d.year < 1900 || d.year > 9999 || d.month < 1 || d.month > 12 || d.day < 1) return false;
  return d.day <= k_days[d.month - 1] + (d.month == 2 && leap(d.year) ? 1 : 0);
}

/// "23.11.2026", "23. 11. 2026", "2026-11-23"; leaves the scanner after it.
std::optional<local_date> read_date(scanner& s) {
  const auto start = s.position();
  if (const auto year = s.number(4, 4); year && s.accept('-')) {
    const auto month = s.number(1, 2);
    if (month && s.accept('-')) {
      if (const auto day = s.number(1, 2)) return local_date{*year, *month, *day};
    }
    s.rewind(start);
    return std::nullopt;
  }
  s.rewind(start);
  const auto day = s.number(1, 2);
  if (!day || !s.accept('.')) return s.rewind(start), std::nullopt;
  s.skip_spaces();
  const auto month = s.number(1, 2);
  if (!month || !s.accept('.')) return s.rewind(start), std::nullopt;
  s.skip_spaces();
  const auto year = s.number(4, 4);
  if (!year) return s.rewind(start), std::nullopt;
  s.accept('.');  // "23.11.2026." as some write it
  return local_date{*year, *month, *day};
}

/// "8:00", "08:00:30", "8.00".
std::optional<clock_time> read_time(scanner& s) {
  const auto start = s.position();
  const auto hour = s.number(1, 2);
  if (!hour || !(s.accept(':') || s.accept('.'))) return s.rewind(start), std::nullopt;
  const auto minute = s.number(2, 2);
  if (!minute) return s.rewind(start), std::nullopt;
  clock_time t{*hour, *minute, 0};
  if (s.accept(':')) {
    const auto second = s.number(2, 2);
    if (!second) return s.rewind(start), std::nullopt;
    t.second = *second;
  }
  if (t.hour > 23 || t.minute > 59 || t.second > 59) return std::nullopt;
  return t;
}

std::tm tm_of(const local_date& d, const clock_time& t) {
  std::tm tm{};
  tm.tm_year = d.year - 1900;
  tm.tm_mon = d.month - 1;
  tm.tm_mday = d.day;
  tm.tm_hour = t.hour;
  tm.tm_min = t.minute;
  tm.tm_sec = t.second;
  return tm;
}

std::string utc_text(std::time_t t) {
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

/// The moment a local wall-clock time names, or std::nullopt when the clocks skip it.
/// mktime is tried as summer and as standard time: a time that exists once matches
/// (read back by localtime_r) under one of them; one that happens twice, under both,
/// and the earlier is taken.
std::optional<std::time_t> local_moment(const local_date& d, const clock_time& t) {
  std::optional<std::time_t> best;
  for (const int dst : {1, 0}) {
    std::tm tm = tm_of(d, t);
    tm.tm_isdst = dst;
    const std::time_t when = std::mktime(&tm);
    if (when == static_cast<std::time_t>(-1)) continue;
    std::tm back{};
    localtime_r(&when, &back);
    if (back.tm_year != d.year - 1900 || back.tm_mon != d.month - 1 || back.tm_mday != d.day || back.tm_hour != t.hour ||
        back.tm_min != t.minute || back.tm_sec != t.second) {
      continue;
    }
    if (!best || when < *best) best = when;
  }
  return best;
}

/// "Z", "+01:00", "-0130" after an ISO time: the offset east of UTC in seconds.
std::optional<long> read_zone(scanner& s) {
  if (s.accept('Z') || s.accept('z')) return 0L;
  const char sign = s.peek();
  if (sign != '+' && sign != '-') return std::nullopt;
  s.accept(sign);
  std::optional<int> hours, minutes;
  if (const auto hhmm = s.number(4, 4)) {
    hours = *hhmm / 100;
    minutes = *hhmm % 100;
  } else {
    hours = s.number(2, 2);
    if (!hours || !s.accept(':')) return std::nullopt;
    minutes = s.number(2, 2);
  }
  if (!minutes || *hours > 14 || *minutes > 59) return std::nullopt;
  const long offset = *hours * 3600L + *minutes * 60L;
  return sign == '-' ? -offset : offset;
}

}  // namespace

std::optional<local_date> parse_date(std::string_view text) {
  scanner s(text);
  s.skip_spaces();
  const auto d = read_date(s);
  s.skip_spaces();
  if (!d || !s.done() || !valid_day(*d)) return std::nullopt;
  return d;
}

std::optional<std::string> parse_moment(std::string_view text, const local_date& day) {
  scanner s(text);
  s.skip_spaces();
  local_date d = day;
  const auto date = read_date(s);
  if (date) {
    d = *date;
    const bool iso_t = s.accept('T') || s.accept('t');
    if (!iso_t) s.skip_spaces();
  }
  const auto t = read_time(s);
  if (!t || !valid_day(d)) return std::nullopt;
  std::optional<long> offset;
  if (date && !s.done() && !std::isspace(static_cast<unsigned char>(s.peek()))) {
    offset = read_zone(s);
    if (!offset) return std::nullopt;
  }
  s.skip_spaces();
  if (!s.done()) return std::nullopt;
  if (offset) {
    std::tm tm = tm_of(d, *t);
    return utc_text(timegm(&tm) - *offset);
  }
  const auto when = local_moment(d, *t);
  if (!when) return std::nullopt;
  return utc_text(*when);
}

local_date today() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  return {tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday};
}

namespace {

/// A stored "YYYY-MM-DDTHH:MM:SSZ" as a time_t.
std::optional<std::time_t> stored_moment(std::string_view utc) {
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0;
  char tail = 0;
  const std::string text(utc);
  if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%c", &y, &mo, &d, &h, &mi, &sec, &tail) != 7 || tail != 'Z' ||
      text.size() != 20) {
    return std::nullopt;
  }
  std::tm tm = tm_of({y, mo, d}, {h, mi, sec});
  return timegm(&tm);
}

std::string local_text(std::time_t t, bool time_only) {
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, time_only ? "%H:%M" : "%d.%m.%Y %H:%M", &tm);
  return buf;
}

}  // namespace

std::optional<local_date> day_of(std::string_view utc) {
  const auto t = stored_moment(utc);
  if (!t) return std::nullopt;
  std::tm tm{};
  localtime_r(&*t, &tm);
  return local_date{tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday};
}

std::pair<std::string, std::string> utc_bounds(const local_date& day) {
  // Midnight exists in every zone the tablets use; mktime with tm_isdst = -1 finds
  // whether summer time applies, and normalises the 32nd of a month into the next.
  const auto midnight = [](const local_date& d) {
    std::tm tm = tm_of(d, {});
    tm.tm_isdst = -1;
    return std::mktime(&tm);
  };
  return {utc_text(midnight(day)), utc_text(midnight({day.year, day.month, day.day + 1}))};
}

std::string format_date(const local_date& day) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%02d.%02d.%04d", day.day, day.month, day.year);
  return buf;
}

std::string format_local(std::string_view utc, bool time_only) {
  const auto t = stored_moment(utc);
  if (!t) return std::string(utc);
  return local_text(*t, time_only);
}

std::string format_local_ms(std::uint64_t ms) { return local_text(static_cast<std::time_t>(ms / 1000), false); }

}  // namespace caresync::field
