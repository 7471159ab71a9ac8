#pragma once
// Checkpoints of a WAL database off the request path: SQLite's automatic checkpoint
// runs inside the COMMIT that crosses its threshold, so a push or a pull paid for
// copying the WAL into the database file and its fsyncs. Here a thread of its own, with
// a connection of its own, does it instead (docs/operations.md, "Durability").
// Thread contract: the constructor and destructor on the owner's thread; notify_commit()
// from the writer connection's thread (through the WAL hook installed by attach()).

#include "sqlite.hpp"

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

namespace caresync::server {

class wal_checkpointer {
 public:
  /// A passive checkpoint once the WAL holds this many pages (SQLite's own default).
  static constexpr int k_wake_pages = 1000;
  /// With no commit for this long, a truncating checkpoint empties the WAL file.
  static constexpr std::chrono::milliseconds k_idle{500};

  /// Opens a connection of its own to the WAL database at `path` and starts the thread.
  /// Throws caresync::error (storage_errc::open_failed) when the file cannot be opened.
  explicit wal_checkpointer(const std::string& path);
  /// Stops and joins the thread, then closes its connection.
  ~wal_checkpointer();
  wal_checkpointer(const wal_checkpointer&) = delete;
  wal_checkpointer& operator=(const wal_checkpointer&) = delete;

  /// Turns off `writer`'s automatic checkpoints and has its commits wake this thread.
  /// Call detach() before `writer` is closed or this object destroyed.
  void attach(sqlite3* writer);
  static void detach(sqlite3* writer) noexcept;

  /// Called after each commit with the pages in the WAL: wakes the thread past
  /// k_wake_pages. Any thread; never blocks on a checkpoint.
  void notify_commit(int wal_pages) noexcept;

 private:
  void run();
  /// One checkpoint of `mode`; true when it succeeded. Logs a failure.
  bool checkpoint(int mode);

  sqlite::db_handle db_;  // only the thread uses it once started

  std::mutex mutex_;  // guards the fields below
  std::condition_variable wake_;
  bool stop_ = false;
  bool full_ = false;          ///< the WAL passed k_wake_pages since the last checkpoint
  bool dirty_ = false;         ///< a commit since the last truncating checkpoint
  std::chrono::steady_clock::time_point last_commit_{};

  bool failing_ = false;  ///< the thread's: the last checkpoint failed (logged once per run of failures)

  std::thread thread_;  // last: started once everything above is ready
};

}  // namespace caresync::server
