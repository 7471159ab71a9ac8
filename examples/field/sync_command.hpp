#pragma once
// caresync-field's `sync`: a sync with a progress bar a field worker can read (what the
// tablet holds of what it expects, the link's rate, the time left), a line of its own
// when the link is lost, and with --until-done a loop that goes on, with backoff, until
// the tablet has everything or a deadline passes.
// Thread contract: runs on the calling thread (the store's).

#include <caresync/store.hpp>
#include <caresync/sync_client.hpp>

#include <chrono>
#include <optional>

namespace caresync::field {

struct sync_command_options {
  /// Keep syncing, pausing with backoff after each failure that trying later may cure,
  /// until one sync completes (or the deadline passes).
  bool until_done = false;
  /// With until_done: give up once this long has passed since the start. Empty: never.
  std::optional<std::chrono::seconds> deadline;
  /// The longest pause between two syncs of until_done.
  std::chrono::seconds max_pause{30};
};

/// Runs the command: progress on stderr, the outcome on stdout. Returns the process exit
/// status: 0 when a sync completed, 1 when it failed (the reason on stderr, with what is
/// kept on the tablet). Throws caresync::error for what is not a sync failure (no server
/// configured: storage_errc::invalid_argument). A token `server.on_new_token` stored
/// (token rotation) is the one the loop's later syncs present.
int run_sync(store& local, sync_options server, const sync_command_options& command);

}  // namespace caresync::field
