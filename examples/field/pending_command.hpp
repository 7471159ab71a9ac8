#pragma once
// caresync-field's `pending`: what has not reached the server yet (the outbox, by
// record) and what the server refused (the quarantine), with the reason in words and
// what to do; --retry and --drop act on a refused change.
// Thread contract: the main thread.

#include <caresync/care.hpp>

#include <CLI/CLI.hpp>

#include <cstdint>
#include <optional>
#include <string>

namespace caresync::field {

/// What a record is, for a person: "client Marie Vzorová", "visit of Marie Vzorová,
/// 23.11.2026 08:00"; "(deleted)" when it is no longer on the tablet.
std::string describe_record(care::records& records, const std::string& collection, const record_id& id);

class pending_command {
 public:
  /// Adds the command to `app`; the object must stay where it is while `app` parses.
  explicit pending_command(CLI::App& app);
  pending_command(const pending_command&) = delete;
  pending_command& operator=(const pending_command&) = delete;

  /// Runs `pending` if it was given: its exit status; std::nullopt otherwise. Throws
  /// caresync::error (not_found: no refused change with the number given).
  std::optional<int> run(care::records& records);

 private:
  void list_outbox(care::records& records);
  void list_refused(care::records& records);

  CLI::App* cmd_;
  std::int64_t retry_ = 0, drop_ = 0;
};

}  // namespace caresync::field
