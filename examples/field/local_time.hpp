#pragma once
// Dates and times as a field worker types and reads them: in the tablet's zone (the
// system's, TZ; Europe/Prague for the Czech teams), in the forms Czech people write
// ("23.11.2026", "23. 11. 2026 8:00", "8:00") or ISO ("2026-11-23 08:00",
// "2026-11-23T08:00:00Z"). The store keeps UTC ("YYYY-MM-DDTHH:MM:SSZ", docs/care.md);
// these functions convert at the edge, with the C library's zone rules (localtime_r,
// mktime), so summer time follows the system's tz database.
// Thread contract: any thread; they read the process's zone (TZ), which nothing here sets.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace caresync::field {

/// A calendar day in the tablet's zone.
struct local_date {
  int year = 0;
  int month = 0;  ///< 1-12
  int day = 0;    ///< 1-31
  friend bool operator==(const local_date&, const local_date&) = default;
};

/// Parses a day: "23.11.2026", "23. 11. 2026", "23.11.2026." or "2026-11-23". Returns
/// std::nullopt for anything else or a day that does not exist (31.2.2026).
std::optional<local_date> parse_date(std::string_view text);

/// Parses a moment into UTC "YYYY-MM-DDTHH:MM:SSZ". Accepted: a day as parse_date()
/// takes it followed by a time ("23.11.2026 8:00", "2026-11-23 08:00",
/// "2026-11-23T08:00:00"), local; ISO with "Z" or an offset ("2026-11-23T08:00:00Z",
/// "2026-11-23T09:00+01:00"); a time alone ("8:00", "8.00", "14:30:15"), local, on
/// `day`. Times are H:MM or H:MM:SS (also with '.' between hours and minutes).
/// A local time that does not exist (the hour skipped when summer time starts) is
/// refused; one that happens twice (when it ends) is taken as the first, in summer time.
/// Returns std::nullopt when the text is none of these.
std::optional<std::string> parse_moment(std::string_view text, const local_date& day);

/// Today in the tablet's zone.
local_date today();

/// The day of a stored UTC moment, in the tablet's zone; std::nullopt if `utc` is not
/// "YYYY-MM-DDTHH:MM:SSZ".
std::optional<local_date> day_of(std::string_view utc);

/// The UTC moments at which a local day begins and the next one begins (a day is 23 or
/// 25 hours long when the clocks change), as stored: for `start_at >= first AND
/// start_at < second`.
std::pair<std::string, std::string> utc_bounds(const local_date& day);

/// "23.11.2026".
std::string format_date(const local_date& day);

/// A stored UTC moment in the tablet's zone: "23.11.2026 08:00", or only "08:00" with
/// `time_only`. Text that is not a stored moment comes back as it is.
std::string format_local(std::string_view utc, bool time_only = false);

/// Milliseconds since the epoch (a clock stamp's wall time) in the tablet's zone,
/// as format_local().
std::string format_local_ms(std::uint64_t ms);

}  // namespace caresync::field
