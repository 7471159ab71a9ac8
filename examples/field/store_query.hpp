#pragma once
// One statement on a read-only connection of its own to a tablet's store: plain SQL, as
// any app reads its store (docs/store.md), for listings the store's API does not give.
// Thread contract: one thread.

#include "messages.hpp"

#include <caresync/protocol/errors.hpp>

#include <sqlite3.h>

#include <memory>
#include <string>

namespace caresync::field {

class store_query {
 public:
  /// Opens `path` read-only and prepares `sql`. Throws caresync::error.
  store_query(const std::string& path, const char* sql) {
    sqlite3* raw = nullptr;
    if (sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
      sqlite3_close(raw);
      throw error(make_error_code(storage_errc::open_failed), fill(tr("cannot open {}"), {path}));
    }
    db_.reset(raw);
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db_.get(), sql, -1, &stmt, nullptr) != SQLITE_OK) {
      throw error(make_error_code(storage_errc::io_failed), sqlite3_errmsg(db_.get()));
    }
    stmt_.reset(stmt);
  }
  sqlite3_stmt* get() const noexcept { return stmt_.get(); }

 private:
  std::unique_ptr<sqlite3, int (*)(sqlite3*)> db_{nullptr, sqlite3_close};
  std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> stmt_{nullptr, sqlite3_finalize};  // finalized first
};

}  // namespace caresync::field
