#pragma once
// caresync-field's clients: add-client, clients (list, or find by name without regard to
// case and diacritics) and edit-client.
// Thread contract: the main thread.

#include <caresync/care.hpp>

#include <CLI/CLI.hpp>

#include <optional>
#include <string>

namespace caresync::field {

class client_commands {
 public:
  /// Adds the commands to `app`; the object must stay where it is while `app` parses.
  explicit client_commands(CLI::App& app);
  client_commands(const client_commands&) = delete;
  client_commands& operator=(const client_commands&) = delete;

  /// Runs the command given, if it is one of these: its exit status. A refused value
  /// throws caresync::error (invalid_argument, naming the option). std::nullopt if
  /// another command was given.
  std::optional<int> run(care::records& records);

 private:
  int add(care::records& records);
  int list(care::records& records);
  int edit(care::records& records);

  CLI::App* add_cmd_;
  CLI::App* list_cmd_;
  CLI::App* edit_cmd_;
  std::string id_, name_, org_unit_, municipality_, birth_date_, address_, contact_, status_, words_;
};

}  // namespace caresync::field
