#include <caresync/server/activity_report.hpp>

#include <caresync/protocol/errors.hpp>

#include <cstdio>
#include <set>
#include <sstream>

namespace caresync::server {

namespace {

bool digits(const std::string& s, std::size_t at, std::size_t n) {
  if (at + n > s.size()) return false;
  for (std::size_t i = at; i < at + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
  }
  return true;
}

int number(const std::string& s, std::size_t at, std::size_t n) { return std::stoi(s.substr(at, n)); }

bool leap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

int days_in_month(int y, int m) {
  static constexpr int k_days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && leap(y) ? 29 : k_days[m - 1];
}

/// Days since 1970-01-01 of a civil date (H. Hinnant's days_from_civil).
std::int64_t days_from_civil(int y, int m, int d) {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * static_cast<unsigned>(m + (m > 2 ? -3 : 9)) + 2) / 5 + static_cast<unsigned>(d) - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

bool is_month(const std::string& s) {
  return s.size() == 7 && digits(s, 0, 4) && s[4] == '-' && digits(s, 5, 2) && number(s, 5, 2) >= 1 && number(s, 5, 2) <= 12;
}

const std::string* text_field(const record_state& r, const char* name) {
  const auto it = r.fields.find(name);
  if (it == r.fields.end()) return nullptr;
  return std::get_if<std::string>(&it->second.val);
}

std::string csv_cell(const std::string& text) {
  std::string cell = text;
  if (!cell.empty() && (cell[0] == '=' || cell[0] == '+' || cell[0] == '-' || cell[0] == '@')) cell.insert(0, 1, '\'');
  if (cell.find_first_of(",\"\r\n") == std::string::npos) return cell;
  std::string quoted = "\"";
  for (const char c : cell) {
    if (c == '"') quoted += '"';
    quoted += c;
  }
  return quoted + '"';
}

}  // namespace

std::optional<std::int64_t> parse_utc_time(const std::string& s) {
  // YYYY-MM-DDTHH:MM, then :SS and .fff optional, then Z optional.
  if (!(digits(s, 0, 4) && s.size() >= 16 && s[4] == '-' && digits(s, 5, 2) && s[7] == '-' && digits(s, 8, 2) &&
        (s[10] == 'T' || s[10] == ' ') && digits(s, 11, 2) && s[13] == ':' && digits(s, 14, 2))) {
    return std::nullopt;
  }
  const int y = number(s, 0, 4), mo = number(s, 5, 2), d = number(s, 8, 2), h = number(s, 11, 2), mi = number(s, 14, 2);
  int sec = 0;
  std::size_t at = 16;
  if (at < s.size() && s[at] == ':') {
    if (!digits(s, at + 1, 2)) return std::nullopt;
    sec = number(s, at + 1, 2);
    at += 3;
    if (at < s.size() && s[at] == '.') {
      ++at;
      const auto start = at;
      while (at < s.size() && s[at] >= '0' && s[at] <= '9') ++at;
      if (at == start) return std::nullopt;
    }
  }
  if (at < s.size() && s[at] == 'Z') ++at;
  if (at != s.size()) return std::nullopt;
  if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 59) return std::nullopt;
  return ((days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * 60'000 + sec * 1000;
}

std::map<std::tuple<std::string, std::string, std::string>, activity_row> activity_figures(
    const std::map<record_key, record_state>& records, const activity_range& range) {
  for (const auto* bound : {&range.from, &range.to}) {
    if (!bound->empty() && !is_month(*bound)) {
      throw error(make_error_code(storage_errc::invalid_argument),
                  "a report month must be YYYY-MM, e.g. 2026-11, not '" + *bound + "'");
    }
  }
  // Live caregivers by the client they care for.
  std::map<std::string, std::uint64_t> caregivers_of;
  for (const auto& [key, r] : records) {
    if (key.first != "caregivers" || r.deleted) continue;
    if (const auto* client = text_field(r, "client_id")) ++caregivers_of[*client];
  }
  std::map<std::tuple<std::string, std::string, std::string>, activity_row> rows;
  std::map<std::tuple<std::string, std::string, std::string>, std::set<std::string>> clients;
  for (const auto& [key, r] : records) {
    if (key.first != "visits" || r.deleted) continue;
    const auto* status = text_field(r, "status");
    const auto* start = text_field(r, "start_at");
    if (!status || *status != "done" || !start || start->size() < 7 || !is_month(start->substr(0, 7))) continue;
    const auto month = start->substr(0, 7);
    if ((!range.from.empty() && month < range.from) || (!range.to.empty() && month > range.to)) continue;
    const auto* unit = text_field(r, "org_unit");
    const auto* kind = text_field(r, "kind");
    const std::tuple<std::string, std::string, std::string> group{unit ? *unit : "", month, kind ? *kind : ""};
    auto& row = rows[group];
    row.org_unit = std::get<0>(group);
    row.month = month;
    row.kind = std::get<2>(group);
    ++row.visits;
    const auto* end = text_field(r, "end_at");
    const auto from_ms = parse_utc_time(*start);
    const auto to_ms = end ? parse_utc_time(*end) : std::nullopt;
    if (from_ms && to_ms && *to_ms >= *from_ms) {
      row.hours += static_cast<double>(*to_ms - *from_ms) / 3'600'000.0;
    } else {
      ++row.visits_without_times;
    }
    if (const auto* client = text_field(r, "client_id")) clients[group].insert(*client);
  }
  for (auto& [group, row] : rows) {
    const auto& visited = clients[group];
    row.distinct_clients = visited.size();
    for (const auto& c : visited) {
      if (const auto it = caregivers_of.find(c); it != caregivers_of.end()) row.caregivers_supported += it->second;
    }
  }
  return rows;
}

std::string activity_csv(const std::map<std::tuple<std::string, std::string, std::string>, activity_row>& rows) {
  std::ostringstream out;
  out << "org_unit,month,kind,visits,hours,visits_without_times,distinct_clients,caregivers_supported\r\n";
  for (const auto& [group, row] : rows) {
    char hours[32];
    std::snprintf(hours, sizeof hours, "%.2f", row.hours);
    out << csv_cell(row.org_unit) << ',' << row.month << ',' << csv_cell(row.kind) << ',' << row.visits << ',' << hours
        << ',' << row.visits_without_times << ',' << row.distinct_clients << ',' << row.caregivers_supported << "\r\n";
  }
  return out.str();
}

}  // namespace caresync::server
