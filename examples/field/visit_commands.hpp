#pragma once
// caresync-field's visits: record-visit, edit-visit and visits (the visits of a day).
// Times are typed and shown in the tablet's zone (local_time.hpp) and stored UTC.
// Thread contract: the main thread.

#include <caresync/care.hpp>

#include <CLI/CLI.hpp>

#include <optional>
#include <string>
#include <vector>

namespace caresync::field {

class visit_commands {
 public:
  /// Adds the commands to `app`; the object must stay where it is while `app` parses
  /// (the options write into it).
  explicit visit_commands(CLI::App& app);
  visit_commands(const visit_commands&) = delete;
  visit_commands& operator=(const visit_commands&) = delete;

  /// Runs the command given, if it is one of these: its exit status (0; a refused value
  /// throws caresync::error, invalid_argument naming the option). std::nullopt if
  /// another command was given.
  std::optional<int> run(care::records& records);

 private:
  int record(care::records& records);
  int edit(care::records& records);
  int list(care::records& records);

  CLI::App* record_cmd_;
  CLI::App* edit_cmd_;
  CLI::App* list_cmd_;
  std::string client_, worker_, start_, end_, kind_, note_, status_, id_, day_;
  std::vector<std::string> activities_;
};

}  // namespace caresync::field
