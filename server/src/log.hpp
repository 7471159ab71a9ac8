#pragma once
// The server's log: one JSON object per line on stderr (journald keeps it as is), so
// that operators can filter and count without parsing prose. Never a token or a
// record's contents: callers pass ids, counts and reasons only.
// Thread contract: write() may be called from any thread; each line is written whole.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

namespace caresync::server::log {

/// `ms` since the Unix epoch as ISO 8601 UTC with milliseconds: 2026-11-23T06:41:03.123Z.
std::string iso_time(std::uint64_t ms);

/// Sets the lowest level written: "info" (default: everything) or "error" (errors, and
/// the start and stop notices that scripts wait for). Any thread.
void set_level(const std::string& level);

/// Writes {"ts": ISO-8601 UTC, "level", "event", ...fields, "msg"} as one line, unless
/// its level is below the one set. `msg` is a sentence for a person and comes last, so a
/// line can also be read by eye.
void write(const char* level, const char* event, nlohmann::ordered_json fields, const std::string& msg);

inline void info(const char* event, nlohmann::ordered_json fields, const std::string& msg) {
  write("info", event, std::move(fields), msg);
}
/// Start and stop: always written, whatever the level.
inline void notice(const char* event, nlohmann::ordered_json fields, const std::string& msg) {
  write("notice", event, std::move(fields), msg);
}
inline void error(const char* event, nlohmann::ordered_json fields, const std::string& msg) {
  write("error", event, std::move(fields), msg);
}

}  // namespace caresync::server::log
