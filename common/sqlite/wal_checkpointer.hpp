#pragma once
// Checkpoints of a WAL database off the writer's path: SQLite's automatic checkpoint
// runs inside the COMMIT that crosses its threshold, so a push or a pull paid for
// copying the WAL into the database file and its fsyncs. Here a thread of its own, with
// a connection of its own, does it instead (docs/operations.md, "Durability"; the
// tablet's store too, docs/store.md).
// Thread contract: the constructor, checkpoint_now() and the destructor on the owner's
// thread (the writer's); notify_commit() from the writer connection's thread (through
// the WAL hook installed by attach()).

#include "sqlite.hpp"

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace caresync::sqlite {

class wal_checkpointer {
 public:
  /// A passive checkpoint once the WAL holds this many pages (SQLite's own default).
  static constexpr int k_wake_pages = 1000;
  /// With no commit for this long, a truncating checkpoint empties the WAL file.
  static constexpr std::chrono::milliseconds k_idle{500};
  /// Added to the thread's nice value under thread_priority::background (Linux, up to
  /// 19; on Apple platforms the thread takes the utility QoS class instead).
  static constexpr int k_background_nice = 10;

  /// The CPU priority of the checkpoint thread.
  enum class thread_priority {
    /// As the thread that made it: for a server, whose WAL must not grow while its
    /// sessions keep the cores busy (under caresync-load's 1,000 devices a background
    /// checkpoint fell so far behind that the WAL grew to the size of the database).
    normal,
    /// Background work: when the cores are busy the thread yields them, getting about a
    /// tenth of the time of each busy thread it competes with. For a tablet's store, where
    /// the app and its syncs come first and the cores are busy only in bursts: the WAL a
    /// large local transaction leaves is copied after a sync that follows it, not during.
    background,
  };

  /// Told, on the checkpointer's thread, when checkpoints start failing (SQLite's
  /// message) and when one succeeds again after that (an empty string).
  using listener = std::function<void(const std::string& failure)>;

  /// Opens a connection of its own to the WAL database at `path` and starts the thread.
  /// Throws caresync::error (storage_errc::open_failed) when the file cannot be opened.
  explicit wal_checkpointer(const std::string& path, listener on_trouble = {},
                            thread_priority priority = thread_priority::normal);
  /// Detaches from the writer, stops and joins the thread, then closes its connection.
  ~wal_checkpointer();
  wal_checkpointer(const wal_checkpointer&) = delete;
  wal_checkpointer& operator=(const wal_checkpointer&) = delete;

  /// Turns off `writer`'s automatic checkpoints and has its commits wake this thread,
  /// until this object is destroyed (destroy it before `writer` is closed).
  void attach(sqlite3* writer);

  /// Called after each commit with the pages in the WAL: wakes the thread past
  /// k_wake_pages. Any thread; never blocks on a checkpoint.
  void notify_commit(int wal_pages) noexcept;

  /// A checkpoint of `mode` (SQLITE_CHECKPOINT_*) now, on the calling thread, never at
  /// the same time as one of the thread's (SQLite refuses a second checkpoint at once).
  /// False when a reader or writer was in the way (SQLITE_BUSY) or it failed (told to the
  /// listener).
  bool checkpoint_now(int mode);

 private:
  void run();

  db_handle db_;
  listener on_trouble_;
  thread_priority priority_;
  sqlite3* writer_ = nullptr;
  std::mutex checkpoint_mutex_;  // one checkpoint at a time on db_ (the thread's, checkpoint_now)

  mutable std::mutex mutex_;  // guards the fields below
  std::condition_variable wake_;
  bool stop_ = false;
  bool full_ = false;          ///< the WAL passed k_wake_pages since the last checkpoint
  bool dirty_ = false;         ///< a commit since the last truncating checkpoint
  std::chrono::steady_clock::time_point last_commit_{};

  bool failing_ = false;  ///< guarded by checkpoint_mutex_: the last checkpoint failed (told once per run of failures)

  std::thread thread_;  // last: started once everything above is ready
};

}  // namespace caresync::sqlite
