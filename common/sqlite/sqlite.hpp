#pragma once
// A thin RAII layer over the SQLite C API, compiled into both the client library and
// the server (it is internal to each; never installed): every handle in a
// unique_ptr with a deleter, errors mapped to caresync::error (storage category),
// a transaction that rolls back in its destructor.
// Thread contract: as SQLite's connection: one thread at a time per connection.

#include <caresync/protocol/errors.hpp>
#include <caresync/protocol/value.hpp>

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

namespace caresync::sqlite {

struct db_deleter {
  void operator()(sqlite3* db) const noexcept { sqlite3_close_v2(db); }
};
using db_handle = std::unique_ptr<sqlite3, db_deleter>;

/// Which program a database file belongs to: PRAGMA application_id, and the newest
/// format (PRAGMA user_version) this build can read.
struct file_identity {
  std::int64_t application_id;
  std::int64_t format_version;
  const char* description;  ///< "a caresync store"
  const char* wrong_file;   ///< what to do when the file is someone else's
  const char* too_new;      ///< what to do when a newer build wrote it
  /// The oldest format this build reads, and what to do with an older file.
  std::int64_t oldest_format = 1;
  const char* too_old = "";
};

/// Opens (creating if missing) the database at `path`; refuses a file that is not SQLite,
/// belongs to another program or has a format outside [oldest_format, format_version]
/// (storage_errc::corrupt, leaving the file untouched); then sets WAL and `synchronous` ("FULL" or "NORMAL").
/// Throws caresync::error naming the path and what to do.
db_handle open(const std::string& path, const file_identity& identity, const char* synchronous);

/// Makes `path` readable and writable by its owner alone (health data): creates it
/// empty with mode 0600 if it does not exist, whatever the process's umask, and takes
/// group and other permissions away from it and from its -wal and -shm files if it
/// does. SQLite gives the -wal and -shm files it creates the database file's mode.
/// Throws caresync::error (open_failed) if the file cannot be created or changed.
void make_private(const std::string& path);

/// Marks the file as `identity`'s (application_id, user_version); call inside the
/// transaction that creates the tables.
void claim(sqlite3* db, const file_identity& identity);

/// Maps a SQLite result code to caresync's storage error codes.
std::error_code to_error_code(int rc) noexcept;

/// Throws caresync::error for result `rc`, with `what` and SQLite's message.
[[noreturn]] void fail(sqlite3* db, int rc, std::string_view what);

/// Runs SQL without results. Throws caresync::error.
void exec(sqlite3* db, const char* sql);

/// Quotes an identifier for SQL ("name"); names are validated before they get here.
std::string quote(std::string_view name);

/// A prepared statement, reset and reusable.
class statement {
 public:
  statement(sqlite3* db, std::string_view sql);
  statement(statement&&) noexcept = default;
  statement& operator=(statement&&) noexcept = default;

  statement& bind(int index, std::int64_t v);
  statement& bind(int index, std::string_view text);
  statement& bind(int index, std::span<const std::uint8_t> bytes);
  statement& bind(int index, const value& v);
  statement& bind_null(int index);
  /// As bind(), without SQLite copying the bytes: the caller keeps them alive and
  /// unchanged until its last step() with this binding.
  statement& bind_static(int index, std::string_view text);
  statement& bind_static(int index, std::span<const std::uint8_t> bytes);
  statement& bind_static(int index, const value& v);

  /// Steps once: true when a row is available, false when done. Throws on error.
  bool step();
  /// Steps to completion (for statements without rows). Throws on error.
  void run();
  /// Resets and clears bindings, ready to run again.
  void reset() noexcept;

  int column_type(int i) const noexcept { return sqlite3_column_type(stmt_.get(), i); }
  std::int64_t column_int64(int i) const noexcept { return sqlite3_column_int64(stmt_.get(), i); }
  double column_double(int i) const noexcept { return sqlite3_column_double(stmt_.get(), i); }
  std::string column_text(int i) const;
  /// column_text() without a copy: valid until the statement steps, resets or converts the
  /// column (as column_blob()).
  std::string_view column_text_view(int i) const noexcept;
  std::span<const std::uint8_t> column_blob(int i) const noexcept;
  /// The column as a caresync value, by SQLite's storage class.
  value column_value(int i) const;

 private:
  statement& bind_text(int index, std::string_view text, sqlite3_destructor_type lifetime);
  statement& bind_blob(int index, std::span<const std::uint8_t> bytes, sqlite3_destructor_type lifetime);
  statement& bind_value(int index, const value& v, sqlite3_destructor_type lifetime);

  struct stmt_deleter {
    void operator()(sqlite3_stmt* s) const noexcept { sqlite3_finalize(s); }
  };
  sqlite3* db_;
  std::unique_ptr<sqlite3_stmt, stmt_deleter> stmt_;
};

/// Resets a statement when leaving scope, so a thrown error never leaves it mid-step.
class reset_guard {
 public:
  explicit reset_guard(statement& s) noexcept : s_(s) {}
  ~reset_guard() { s_.reset(); }
  reset_guard(const reset_guard&) = delete;
  reset_guard& operator=(const reset_guard&) = delete;

 private:
  statement& s_;
};

/// BEGIN IMMEDIATE on construction; ROLLBACK in the destructor unless commit() ran.
class transaction {
 public:
  explicit transaction(sqlite3* db);
  ~transaction();
  transaction(const transaction&) = delete;
  transaction& operator=(const transaction&) = delete;
  void commit();

 private:
  sqlite3* db_;
  bool open_ = true;
};

}  // namespace caresync::sqlite
