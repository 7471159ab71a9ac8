#include <caresync/server/activity_report.hpp>

#include <caresync/protocol/care_rules.hpp>
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
    if (key.first != "caregivers" || is_hidden(r)) continue;
    if (const auto* client = text_field(r, "client_id")) ++caregivers_of[*client];
  }
  std::map<std::tuple<std::string, std::string, std::string>, activity_row> rows;
  std::map<std::tuple<std::string, std::string, std::string>, std::set<std::string>> clients;
  for (const auto& [key, r] : records) {
    if (key.first != "visits" || is_hidden(r)) continue;
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
    // Times as the care schema stores them (care::parse_utc_time), else not counted.
    const auto from_s = care::parse_utc_time(*start);
    const auto to_s = end ? care::parse_utc_time(*end) : std::nullopt;
    if (from_s && to_s && *to_s >= *from_s) {
      row.hours += static_cast<double>(*to_s - *from_s) / 3600.0;
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
