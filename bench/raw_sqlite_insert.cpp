#include "raw_sqlite_insert.hpp"

#include <caresync/protocol/errors.hpp>

#include <sqlite3.h>

#include <memory>

namespace caresync::bench {
namespace {

struct close_database {
  void operator()(sqlite3* db) const noexcept { sqlite3_close(db); }
};
struct finalize_statement {
  void operator()(sqlite3_stmt* s) const noexcept { sqlite3_finalize(s); }
};
using database = std::unique_ptr<sqlite3, close_database>;
using statement = std::unique_ptr<sqlite3_stmt, finalize_statement>;

[[noreturn]] void fail(sqlite3* db, const std::string& what) {
  throw error(make_error_code(storage_errc::io_failed),
              "raw SQLite baseline: " + what + " failed: " + (db ? sqlite3_errmsg(db) : "out of memory"));
}

void exec(sqlite3* db, const char* sql) {
  if (sqlite3_exec(db, sql, nullptr, nullptr, nullptr) != SQLITE_OK) fail(db, sql);
}

void bind_text(sqlite3* db, sqlite3_stmt* s, int index, const std::string& text) {
  // SQLITE_STATIC: the visits outlive the statement's step.
  if (sqlite3_bind_text(s, index, text.data(), static_cast<int>(text.size()), SQLITE_STATIC) != SQLITE_OK) {
    fail(db, "binding parameter " + std::to_string(index));
  }
}

}  // namespace

std::chrono::nanoseconds raw_sqlite_insert(const std::string& path, const std::vector<visit>& visits,
                                           durability mode) {
  sqlite3* opened = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &opened, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  database db(opened);
  if (rc != SQLITE_OK) fail(db.get(), "opening '" + path + "'");
  exec(db.get(), "PRAGMA journal_mode=WAL");
  exec(db.get(), mode == durability::full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
  exec(db.get(), "PRAGMA foreign_keys=OFF");
  exec(db.get(),
       "CREATE TABLE visits(\"id\" TEXT PRIMARY KEY NOT NULL, \"client_id\" TEXT, \"worker_id\" TEXT,"
       " \"org_unit\" TEXT, \"date\" TEXT, \"duration_min\" INTEGER, \"activity_codes\" TEXT, \"note\" TEXT,"
       " \"status\" TEXT)");

  const char* const insert_sql =
      "INSERT INTO visits(id, client_id, worker_id, org_unit, date, duration_min, activity_codes, note, status)"
      " VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)";
  sqlite3_stmt* prepared = nullptr;
  if (sqlite3_prepare_v3(db.get(), insert_sql, -1, SQLITE_PREPARE_PERSISTENT, &prepared, nullptr) != SQLITE_OK) {
    fail(db.get(), "preparing the INSERT");
  }
  statement insert(prepared);

  const auto start = std::chrono::steady_clock::now();
  exec(db.get(), "BEGIN IMMEDIATE");
  for (const auto& v : visits) {
    bind_text(db.get(), insert.get(), 1, v.id);
    bind_text(db.get(), insert.get(), 2, v.client_id);
    bind_text(db.get(), insert.get(), 3, v.worker_id);
    bind_text(db.get(), insert.get(), 4, v.org_unit);
    bind_text(db.get(), insert.get(), 5, v.date);
    if (sqlite3_bind_int64(insert.get(), 6, v.duration_min) != SQLITE_OK) fail(db.get(), "binding duration_min");
    bind_text(db.get(), insert.get(), 7, v.activity_codes);
    bind_text(db.get(), insert.get(), 8, v.note);
    bind_text(db.get(), insert.get(), 9, v.status);
    if (sqlite3_step(insert.get()) != SQLITE_DONE) fail(db.get(), "inserting a visit");
    sqlite3_reset(insert.get());
  }
  exec(db.get(), "COMMIT");
  return std::chrono::steady_clock::now() - start;
}

}  // namespace caresync::bench
