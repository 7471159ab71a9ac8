#include "sqlite.hpp"

#include <cerrno>
#include <cstring>
#include <mutex>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace caresync::sqlite {

namespace {

/// SQLite keeps process-wide memory statistics under one global mutex that every
/// allocation of every connection takes; with a server's sessions (or a client and a
/// server in one process) on several threads, that mutex is contended on each step.
/// Nothing in caresync reads the statistics (sqlite3_memory_used), so they are turned
/// off. sqlite3_config only works before SQLite is initialised: if the application
/// initialised it first, its own settings stay and this does nothing.
void configure_process_once() {
  static std::once_flag once;
  std::call_once(once, [] { (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); });
}

}  // namespace

void make_private(const std::string& path) {
  const auto fail = [&path](const std::string& what) {
    throw error(make_error_code(storage_errc::open_failed),
                "cannot " + what + " '" + path + "': " + std::strerror(errno) + "; check that the directory exists and is writable");
  };
  // A new file is created here, 0600 whatever the umask. An existing one is changed by
  // its path only: opening and closing a descriptor of a database this process already
  // has open would drop SQLite's POSIX locks on it (they belong to the process, and any
  // close releases them), and another process could then delete a WAL still in use.
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, S_IRUSR | S_IWUSR);
  if (fd >= 0) {
    const bool ok = ::fchmod(fd, S_IRUSR | S_IWUSR) == 0;
    ::close(fd);
    if (!ok) fail("make private");
    return;
  }
  if (errno != EEXIST) {
    // A directory SQLite may only read (read-only media, another owner's): opening the
    // database reports what is wrong.
    if (errno == EACCES || errno == EROFS || errno == EPERM) return;
    fail("create");
  }
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
    const std::string file = path + suffix;
    struct stat st {};
    // Another owner's file, or one on read-only media, keeps its mode.
    if (::stat(file.c_str(), &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 077) != 0) {
      (void)::chmod(file.c_str(), st.st_mode & 0700);
    }
  }
}

db_handle open(const std::string& path, const file_identity& identity, const char* synchronous) {
  configure_process_once();
  if (path != ":memory:" && !path.empty()) make_private(path);
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  db_handle db(raw);
  if (rc != SQLITE_OK) {
    throw error(make_error_code(storage_errc::open_failed),
                "cannot open '" + path + "': " + (raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc)) +
                    "; check that the directory exists and is writable");
  }
  sqlite3_extended_result_codes(db.get(), 1);
  sqlite3_busy_timeout(db.get(), 5000);
  std::int64_t id = 0;
  std::int64_t format = 0;
  bool empty = false;
  try {
    // The first read tells a non-SQLite file apart (SQLITE_NOTADB).
    statement app_id(db.get(), "PRAGMA application_id");
    app_id.step();
    id = app_id.column_int64(0);
    statement tables(db.get(), "SELECT count(*) FROM sqlite_schema");
    tables.step();
    empty = tables.column_int64(0) == 0;
    statement version(db.get(), "PRAGMA user_version");
    version.step();
    format = version.column_int64(0);
  } catch (const error& e) {
    if (e.code() == storage_errc::corrupt) {
      throw error(e.code(), "'" + path + "' is not " + identity.description + " (" + e.what() + "); " + identity.wrong_file);
    }
    throw;
  }
  if (id != identity.application_id && !(id == 0 && empty)) {
    throw error(make_error_code(storage_errc::corrupt), "'" + path + "' is not " + identity.description + "; " + identity.wrong_file);
  }
  if (!empty && format > identity.format_version) {
    throw error(make_error_code(storage_errc::corrupt), "'" + path + "' was written by a newer caresync; " + identity.too_new);
  }
  if (!empty && format < identity.oldest_format) {
    throw error(make_error_code(storage_errc::corrupt), "'" + path + "' has format " + std::to_string(format) +
                                                            ", older than this build reads; " + identity.too_old);
  }
  exec(db.get(), "PRAGMA journal_mode=WAL");
  exec(db.get(), (std::string("PRAGMA synchronous=") + synchronous).c_str());
  return db;
}

void claim(sqlite3* db, const file_identity& identity) {
  exec(db, ("PRAGMA application_id=" + std::to_string(identity.application_id)).c_str());
  exec(db, ("PRAGMA user_version=" + std::to_string(identity.format_version)).c_str());
}

std::error_code to_error_code(int rc) noexcept {
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return make_error_code(storage_errc::busy);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB: return make_error_code(storage_errc::corrupt);
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
    case SQLITE_READONLY:
    case SQLITE_AUTH: return make_error_code(storage_errc::open_failed);
    case SQLITE_CONSTRAINT: return make_error_code(storage_errc::constraint);
    case SQLITE_MISUSE:
    case SQLITE_RANGE:
    case SQLITE_ERROR: return make_error_code(storage_errc::invalid_argument);
    default: return make_error_code(storage_errc::io_failed);  // FULL, IOERR, NOMEM, ...
  }
}

void fail(sqlite3* db, int rc, std::string_view what) {
  std::string message(what);
  message += ": ";
  message += db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  throw error(to_error_code(rc), message);
}

void exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  const int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    const std::string message = err ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    throw error(to_error_code(rc), std::string("store statement failed: ") + message);
  }
}

std::string quote(std::string_view name) {
  std::string q = "\"";
  for (char c : name) {
    if (c == '"') q.push_back('"');
    q.push_back(c);
  }
  q.push_back('"');
  return q;
}

statement::statement(sqlite3* db, std::string_view sql) : db_(db) {
  sqlite3_stmt* raw = nullptr;
  const int rc = sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT, &raw, nullptr);
  stmt_.reset(raw);
  if (rc != SQLITE_OK) fail(db, rc, "preparing a store statement failed");
}

statement& statement::bind(int index, std::int64_t v) {
  if (const int rc = sqlite3_bind_int64(stmt_.get(), index, v); rc != SQLITE_OK) fail(db_, rc, "bind");
  return *this;
}

statement& statement::bind_text(int index, std::string_view text, sqlite3_destructor_type lifetime) {
  if (const int rc = sqlite3_bind_text64(stmt_.get(), index, text.data(), text.size(), lifetime, SQLITE_UTF8);
      rc != SQLITE_OK) {
    fail(db_, rc, "bind");
  }
  return *this;
}

statement& statement::bind_blob(int index, std::span<const std::uint8_t> bytes, sqlite3_destructor_type lifetime) {
  // A zero-length blob must still be a blob, not null: pass a non-null pointer.
  static const std::uint8_t k_empty = 0;
  const void* p = bytes.empty() ? &k_empty : bytes.data();
  if (const int rc = sqlite3_bind_blob64(stmt_.get(), index, p, bytes.size(), lifetime); rc != SQLITE_OK) {
    fail(db_, rc, "bind");
  }
  return *this;
}

statement& statement::bind_value(int index, const value& v, sqlite3_destructor_type lifetime) {
  switch (kind_of(v)) {
    case value_kind::null: return bind_null(index);
    case value_kind::integer: return bind(index, std::get<std::int64_t>(v));
    case value_kind::real:
      if (const int rc = sqlite3_bind_double(stmt_.get(), index, std::get<double>(v)); rc != SQLITE_OK) {
        fail(db_, rc, "bind");
      }
      return *this;
    case value_kind::text: return bind_text(index, std::get<std::string>(v), lifetime);
    case value_kind::bytes: return bind_blob(index, std::get<blob>(v).bytes, lifetime);
  }
  return *this;
}

statement& statement::bind(int index, std::string_view text) { return bind_text(index, text, SQLITE_TRANSIENT); }
statement& statement::bind(int index, std::span<const std::uint8_t> bytes) {
  return bind_blob(index, bytes, SQLITE_TRANSIENT);
}
statement& statement::bind(int index, const value& v) { return bind_value(index, v, SQLITE_TRANSIENT); }
statement& statement::bind_static(int index, std::string_view text) { return bind_text(index, text, SQLITE_STATIC); }
statement& statement::bind_static(int index, std::span<const std::uint8_t> bytes) {
  return bind_blob(index, bytes, SQLITE_STATIC);
}
statement& statement::bind_static(int index, const value& v) { return bind_value(index, v, SQLITE_STATIC);
}

statement& statement::bind_null(int index) {
  if (const int rc = sqlite3_bind_null(stmt_.get(), index); rc != SQLITE_OK) fail(db_, rc, "bind");
  return *this;
}

bool statement::step() {
  const int rc = sqlite3_step(stmt_.get());
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  fail(db_, rc, "store statement failed");
}

void statement::run() {
  while (step()) {
  }
}

void statement::reset() noexcept {
  sqlite3_reset(stmt_.get());
  sqlite3_clear_bindings(stmt_.get());
}

std::string statement::column_text(int i) const { return std::string(column_text_view(i)); }

std::string_view statement::column_text_view(int i) const noexcept {
  // sqlite3_column_bytes after sqlite3_column_text: the length of the text as converted.
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_.get(), i));
  return p ? std::string_view(p, static_cast<std::size_t>(sqlite3_column_bytes(stmt_.get(), i))) : std::string_view();
}

std::span<const std::uint8_t> statement::column_blob(int i) const noexcept {
  const auto* p = static_cast<const std::uint8_t*>(sqlite3_column_blob(stmt_.get(), i));
  return {p, p ? static_cast<std::size_t>(sqlite3_column_bytes(stmt_.get(), i)) : 0};
}

value statement::column_value(int i) const {
  switch (column_type(i)) {
    case SQLITE_INTEGER: return column_int64(i);
    case SQLITE_FLOAT: return column_double(i);
    case SQLITE_TEXT: return column_text(i);
    case SQLITE_BLOB: {
      const auto b = column_blob(i);
      return blob{std::vector<std::uint8_t>(b.begin(), b.end())};
    }
    default: return std::monostate{};
  }
}

transaction::transaction(sqlite3* db) : db_(db) { exec(db_, "BEGIN IMMEDIATE"); }

transaction::~transaction() {
  if (open_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
}

void transaction::commit() {
  exec(db_, "COMMIT");
  open_ = false;
}

}  // namespace caresync::sqlite
