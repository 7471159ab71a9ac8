#pragma once
/// Activity figures for the region's planning (issue 5): per org unit, per month, per
/// visit kind, the visits done, their hours, the distinct clients visited and the
/// informal caregivers of those clients. Read from the records' merged state, in the
/// care schema's fields (docs/care.md): visits.org_unit, start_at, end_at, kind,
/// client_id, status; caregivers.client_id. Figures only, never a name or a note.
/// Thread contract: pure functions over plain values.

#include <caresync/protocol/merge.hpp>
#include <caresync/server/change_store.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace caresync::server {

/// Months to report, "YYYY-MM", both included; empty: no bound.
struct activity_range {
  std::string from;
  std::string to;
};

/// One line of the report.
struct activity_row {
  std::string org_unit;
  std::string month;  ///< "YYYY-MM" of the visit's start
  std::string kind;
  std::uint64_t visits = 0;
  double hours = 0;                       ///< of visits with a valid start and end
  std::uint64_t visits_without_times = 0;  ///< done visits whose start or end is missing, not "YYYY-MM-DDTHH:MM:SSZ", or ends first
  std::uint64_t distinct_clients = 0;
  std::uint64_t caregivers_supported = 0;  ///< live caregivers whose client is among those visited
};

/// The report's rows, ordered by org unit, month and kind: done visits (status "done")
/// that are not deleted and start within `range`. Throws caresync::error
/// (storage_errc::invalid_argument) if a bound of `range` is not "YYYY-MM".
std::map<std::tuple<std::string, std::string, std::string>, activity_row> activity_figures(
    const std::map<record_key, record_state>& records, const activity_range& range);

/// The rows as CSV (RFC 4180, a header line, CRLF line ends as the RFC says). A text cell
/// a spreadsheet would run as a formula (starting with = + - @) is prefixed with '.
std::string activity_csv(const std::map<std::tuple<std::string, std::string, std::string>, activity_row>& rows);

}  // namespace caresync::server
