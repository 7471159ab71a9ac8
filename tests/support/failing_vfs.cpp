#include "failing_vfs.hpp"

#include <sqlite3.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <stdexcept>

namespace caresync::testing::failing_vfs {

namespace {

std::mutex g_mutex;
std::string g_path_part;          // guarded by g_mutex; empty: nothing fails
std::atomic<bool> g_failing{false};
std::atomic<long> g_refused{0};
sqlite3_vfs* g_real = nullptr;
sqlite3_vfs g_vfs;
sqlite3_io_methods g_methods;

/// Our file: the real VFS's file object follows it in the same allocation.
struct wrapped_file {
  sqlite3_file base;
  sqlite3_file* real;
  std::string* path;
};

bool should_fail(const wrapped_file* f) {
  if (!g_failing) return false;
  const std::lock_guard lock(g_mutex);
  if (f->path->find(g_path_part) == std::string::npos) return false;
  ++g_refused;
  return true;
}

wrapped_file* self(sqlite3_file* f) { return reinterpret_cast<wrapped_file*>(f); }

int x_close(sqlite3_file* f) {
  auto* w = self(f);
  const int rc = w->real->pMethods ? w->real->pMethods->xClose(w->real) : SQLITE_OK;
  delete w->path;
  return rc;
}
int x_read(sqlite3_file* f, void* buf, int n, sqlite3_int64 off) {
  return self(f)->real->pMethods->xRead(self(f)->real, buf, n, off);
}
int x_write(sqlite3_file* f, const void* buf, int n, sqlite3_int64 off) {
  if (should_fail(self(f))) return SQLITE_FULL;
  return self(f)->real->pMethods->xWrite(self(f)->real, buf, n, off);
}
int x_truncate(sqlite3_file* f, sqlite3_int64 size) { return self(f)->real->pMethods->xTruncate(self(f)->real, size); }
int x_sync(sqlite3_file* f, int flags) {
  if (should_fail(self(f))) return SQLITE_IOERR_FSYNC;
  return self(f)->real->pMethods->xSync(self(f)->real, flags);
}
int x_file_size(sqlite3_file* f, sqlite3_int64* size) { return self(f)->real->pMethods->xFileSize(self(f)->real, size); }
int x_lock(sqlite3_file* f, int l) { return self(f)->real->pMethods->xLock(self(f)->real, l); }
int x_unlock(sqlite3_file* f, int l) { return self(f)->real->pMethods->xUnlock(self(f)->real, l); }
int x_check_reserved_lock(sqlite3_file* f, int* out) {
  return self(f)->real->pMethods->xCheckReservedLock(self(f)->real, out);
}
int x_file_control(sqlite3_file* f, int op, void* arg) {
  return self(f)->real->pMethods->xFileControl(self(f)->real, op, arg);
}
int x_sector_size(sqlite3_file* f) { return self(f)->real->pMethods->xSectorSize(self(f)->real); }
int x_device_characteristics(sqlite3_file* f) {
  return self(f)->real->pMethods->xDeviceCharacteristics(self(f)->real);
}
int x_shm_map(sqlite3_file* f, int page, int size, int extend, void volatile** out) {
  return self(f)->real->pMethods->xShmMap(self(f)->real, page, size, extend, out);
}
int x_shm_lock(sqlite3_file* f, int offset, int n, int flags) {
  return self(f)->real->pMethods->xShmLock(self(f)->real, offset, n, flags);
}
void x_shm_barrier(sqlite3_file* f) { self(f)->real->pMethods->xShmBarrier(self(f)->real); }
int x_shm_unmap(sqlite3_file* f, int del) { return self(f)->real->pMethods->xShmUnmap(self(f)->real, del); }
int x_fetch(sqlite3_file* f, sqlite3_int64 off, int n, void** out) {
  return self(f)->real->pMethods->xFetch(self(f)->real, off, n, out);
}
int x_unfetch(sqlite3_file* f, sqlite3_int64 off, void* p) {
  return self(f)->real->pMethods->xUnfetch(self(f)->real, off, p);
}

int x_open(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* f, int flags, int* out_flags) {
  auto* w = self(f);
  w->real = reinterpret_cast<sqlite3_file*>(w + 1);
  w->path = new std::string(name ? name : "");
  const int rc = g_real->xOpen(g_real, name, w->real, flags, out_flags);
  // SQLite calls xClose only when xOpen succeeded and set pMethods. The wrapper's
  // methods are version 3 (WAL and mmap), as the unix VFS's are.
  w->base.pMethods = w->real->pMethods && w->real->pMethods->iVersion >= 3 ? &g_methods : nullptr;
  if (w->real->pMethods && !w->base.pMethods) {
    w->real->pMethods->xClose(w->real);
    delete w->path;
    return SQLITE_CANTOPEN;
  }
  if (!w->base.pMethods) {
    delete w->path;
    w->path = nullptr;
  }
  return rc;
}

}  // namespace

void install() {
  static std::once_flag once;
  std::call_once(once, [] {
    g_real = sqlite3_vfs_find(nullptr);
    if (!g_real) throw std::runtime_error("no default SQLite VFS");
    g_vfs = *g_real;
    g_vfs.zName = "caresync-failing";
    g_vfs.szOsFile = static_cast<int>(sizeof(wrapped_file)) + g_real->szOsFile;
    g_vfs.xOpen = x_open;
    g_vfs.pNext = nullptr;
    g_methods = sqlite3_io_methods{3,          x_close,       x_read,       x_write,          x_truncate,
                                   x_sync,     x_file_size,   x_lock,       x_unlock,         x_check_reserved_lock,
                                   x_file_control, x_sector_size, x_device_characteristics, x_shm_map,
                                   x_shm_lock, x_shm_barrier, x_shm_unmap,  x_fetch,          x_unfetch};
    if (sqlite3_vfs_register(&g_vfs, 1) != SQLITE_OK) throw std::runtime_error("cannot register the failing VFS");
  });
}

void fail_writes(const std::string& path_part) {
  const std::lock_guard lock(g_mutex);
  g_path_part = path_part;
  g_failing = true;
}

void heal() { g_failing = false; }

long refused_writes() { return g_refused; }

}  // namespace caresync::testing::failing_vfs
