#include "wal_checkpointer.hpp"

#include <caresync/protocol/errors.hpp>

#include <algorithm>
#include <cerrno>

#if defined(__linux__)
#include <sys/resource.h>
#include <unistd.h>
#elif defined(__APPLE__)
#include <pthread.h>
#include <sys/qos.h>
#endif

namespace caresync::sqlite {

namespace {

int on_wal_commit(void* checkpointer, sqlite3*, const char*, int wal_pages) {
  static_cast<wal_checkpointer*>(checkpointer)->notify_commit(wal_pages);
  return SQLITE_OK;
}

/// Lowers the calling thread's CPU priority to that of background work. Failing to is
/// harmless: the thread then runs at its normal priority.
void run_in_background() noexcept {
#if defined(__linux__)
  // Linux keeps a nice value per thread: this sets the calling thread's only, relative to
  // the one it started with (the process's own, as the service or app was started).
  const auto tid = static_cast<id_t>(::gettid());
  errno = 0;
  const int now = ::getpriority(PRIO_PROCESS, tid);
  if (errno == 0) (void)::setpriority(PRIO_PROCESS, tid, std::min(now + wal_checkpointer::k_background_nice, 19));
#elif defined(__APPLE__)
  (void)::pthread_set_qos_class_self_np(QOS_CLASS_UTILITY, 0);
#endif
}

}  // namespace

wal_checkpointer::wal_checkpointer(const std::string& path, listener on_trouble, thread_priority priority)
    : on_trouble_(std::move(on_trouble)), priority_(priority) {
  sqlite3* raw = nullptr;
  // The store made the file and put it in WAL mode (a persistent setting) first.
  const int rc = sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
  db_.reset(raw);
  if (rc != SQLITE_OK) {
    throw error(make_error_code(storage_errc::open_failed),
                "cannot open '" + path + "' for checkpoints: " + (raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc)));
  }
  // No busy handler: a checkpoint that meets a writer or a reader gives up at once and
  // is tried again later, rather than holding up the writer. The database file is synced
  // before the WAL is reused, as with the automatic checkpoint.
  exec(db_.get(), "PRAGMA synchronous=FULL");
  thread_ = std::thread([this] { run(); });
}

wal_checkpointer::~wal_checkpointer() {
  // The writer's hook points at this object: removed first.
  if (writer_) sqlite3_wal_hook(writer_, nullptr, nullptr);
  {
    const std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

void wal_checkpointer::attach(sqlite3* writer) {
  // The WAL hook replaces SQLite's automatic checkpoint (itself a WAL hook), so the
  // writer's commits no longer checkpoint. (PRAGMA wal_autocheckpoint would remove
  // this hook again: never set it on `writer`.)
  writer_ = writer;
  sqlite3_wal_hook(writer, on_wal_commit, this);
}

void wal_checkpointer::notify_commit(int wal_pages) noexcept {
  bool wake = false;
  {
    const std::lock_guard lock(mutex_);
    dirty_ = true;
    last_commit_ = std::chrono::steady_clock::now();
    if (wal_pages >= k_wake_pages && !full_) wake = full_ = true;
  }
  if (wake) wake_.notify_one();
}

void wal_checkpointer::run() {
  if (priority_ == thread_priority::background) run_in_background();
  std::unique_lock lock(mutex_);
  while (!stop_) {
    wake_.wait_for(lock, k_idle, [this] { return stop_ || full_; });
    if (stop_) break;
    int mode = 0;
    if (full_) {
      // Copies what it can while writes go on; the next commit after it completed
      // starts the WAL over from its beginning, so the file stops growing.
      full_ = false;
      mode = SQLITE_CHECKPOINT_PASSIVE;
    } else if (dirty_ && std::chrono::steady_clock::now() - last_commit_ >= k_idle) {
      // Quiet: empty the WAL file too (it keeps its largest size otherwise).
      dirty_ = false;
      mode = SQLITE_CHECKPOINT_TRUNCATE;
    } else {
      continue;
    }
    lock.unlock();
    const bool done = checkpoint_now(mode);
    lock.lock();
    if (!done && mode == SQLITE_CHECKPOINT_TRUNCATE) dirty_ = true;  // someone was in the way: at the next quiet tick
  }
}

bool wal_checkpointer::checkpoint_now(int mode) {
  const std::lock_guard lock(checkpoint_mutex_);
  // A passive checkpoint that meets a reader copies what it can and is done; a
  // truncating one that meets a writer or a reader is SQLITE_BUSY.
  const int rc = sqlite3_wal_checkpoint_v2(db_.get(), nullptr, mode, nullptr, nullptr);
  if (rc == SQLITE_BUSY) return false;  // someone was in the way; not a fault
  if (rc != SQLITE_OK) {
    if (!failing_ && on_trouble_) on_trouble_(sqlite3_errmsg(db_.get()));
    failing_ = true;
    return false;
  }
  if (failing_ && on_trouble_) on_trouble_("");
  failing_ = false;
  return true;
}

}  // namespace caresync::sqlite
