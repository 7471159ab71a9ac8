#include "log.hpp"

#include <caresync/protocol/hlc.hpp>

#include <atomic>
#include <cstdio>
#include <ctime>
#include <string_view>

namespace caresync::server::log {

namespace {

std::atomic<bool> g_errors_only{false};

}  // namespace

std::string iso_time(std::uint64_t ms) {
  const std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  const auto n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  return std::string(buf, n) + "." + std::to_string(1000 + ms % 1000).substr(1) + "Z";
}

void set_level(const std::string& level) { g_errors_only = level == "error"; }

void write(const char* level, const char* event, nlohmann::ordered_json fields, const std::string& msg) {
  if (g_errors_only && std::string_view(level) == "info") return;
  nlohmann::ordered_json line;
  line["ts"] = iso_time(system_time_ms());
  line["level"] = level;
  line["event"] = event;
  for (auto& [key, v] : fields.items()) line[key] = std::move(v);
  line["msg"] = msg;
  // Replacement characters for any invalid UTF-8 (a peer's address, a SQLite message).
  const auto text = line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
  std::fwrite(text.data(), 1, text.size(), stderr);  // one call: lines do not interleave
  std::fflush(stderr);
}

}  // namespace caresync::server::log
