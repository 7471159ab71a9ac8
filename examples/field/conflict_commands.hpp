#pragma once
// caresync-field's conflicts: `conflicts` (each open conflict with the client it is
// about, and who wrote each value and when, in local time), `resolve` (keep a value
// given) and `dismiss` (keep the value shown).
// Thread contract: the main thread.

#include <caresync/care.hpp>

#include <CLI/CLI.hpp>

#include <optional>
#include <string>

namespace caresync::field {

class conflict_commands {
 public:
  /// Adds the commands to `app`; the object must stay where it is while `app` parses.
  explicit conflict_commands(CLI::App& app);
  conflict_commands(const conflict_commands&) = delete;
  conflict_commands& operator=(const conflict_commands&) = delete;

  /// Runs the command given, if it is one of these: its exit status; std::nullopt if
  /// another was given. A conflict that is not open throws caresync::error
  /// (invalid_argument, saying so).
  std::optional<int> run(care::records& records);

 private:
  int list(care::records& records);

  CLI::App* list_cmd_;
  CLI::App* resolve_cmd_;
  CLI::App* dismiss_cmd_;
  std::string collection_, id_, field_, value_;
};

}  // namespace caresync::field
