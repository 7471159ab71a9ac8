// The administrative journal (auth_journal.hpp; docs/operations.md, "Backup and restore").

#include "auth_journal.hpp"

#include <caresync/protocol/errors.hpp>

#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <filesystem>
#include <vector>

namespace caresync::server {

namespace {

// PRAGMA application_id 'CSAJ'.
const sqlite::file_identity k_identity{0x4353414a, 1, "a caresync administrative journal",
                                       "the file beside the server database named <stem>.auth-journal must be its journal",
                                       "upgrade this server"};

/// The tables whose rows say who may sync, and each one's key.
struct journaled {
  const char* table;
  const char* key;
};
constexpr std::array k_tables{journaled{"org_units", "id"}, journaled{"users", "user_id"},
                              journaled{"enrollments", "code_sha256"}, journaled{"enrolled_devices", "device_id"}};

const journaled* find_table(std::string_view name) {
  for (const auto& t : k_tables) {
    if (name == t.table) return &t;
  }
  return nullptr;
}

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::vector<std::string> columns_of(sqlite3* db, const char* table) {
  sqlite::statement q(db, "SELECT name FROM pragma_table_info(?) ORDER BY cid");
  q.bind(1, std::string_view(table));
  std::vector<std::string> out;
  while (q.step()) out.push_back(q.column_text(0));
  return out;
}

/// A SQL string literal ('it''s').
std::string literal(std::string_view s) {
  std::string out = "'";
  for (const char c : s) {
    out += c;
    if (c == '\'') out += '\'';
  }
  return out + "'";
}

/// A value of the database's server_state, or of the journal's journal_state.
std::string state_text(sqlite3* db, const char* key, const char* table = "server_state") {
  sqlite::statement q(db, std::string("SELECT value FROM ") + table + " WHERE key=?");
  q.bind(1, std::string_view(key));
  return q.step() ? q.column_text(0) : std::string();
}

void put_state(sqlite3* db, const char* key, std::string_view value, const char* table = "server_state") {
  sqlite::statement q(db, std::string("INSERT OR REPLACE INTO ") + table + "(key, value) VALUES(?, ?)");
  q.bind(1, std::string_view(key)).bind(2, value).run();
}

std::string random_id() {
  std::array<unsigned char, 16> bytes{};
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) {
    throw error(make_error_code(storage_errc::io_failed), "the system's random source failed");
  }
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  for (const auto b : bytes) {
    out += hex[b >> 4];
    out += hex[b & 15];
  }
  return out;
}

[[noreturn]] void refuse(const std::string& database, const std::string& journal, const std::string& why) {
  throw error(make_error_code(storage_errc::corrupt),
              "the server database '" + database + "' and its administrative journal '" + journal + "' disagree: " + why +
                  ". Users, devices, codes and revocations would not be what the administrator last set, so the server "
                  "refuses to use them (docs/operations.md, \"Backup and restore\"). Put back the journal that belongs "
                  "with this database, or, if it is lost, run `caresync-server reset-auth-journal` with the server "
                  "stopped and then re-apply every revocation, user and code change made since the database's backup");
}

/// Writes one journaled entry's row into the database again: the row's state after the
/// change ('put', by its columns that the table still has) or its removal ('delete').
void apply(sqlite3* db, std::string_view table, std::string_view op, std::string_view row) {
  const journaled* t = find_table(table);
  if (!t) throw error(make_error_code(storage_errc::corrupt), "the administrative journal names an unknown table");
  const auto extract = [](const std::string& column) { return "json_extract(?1, " + literal("$.\"" + column + "\"") + ")"; };
  if (op == "delete") {
    sqlite::statement del(db, "DELETE FROM " + sqlite::quote(t->table) + " WHERE " + sqlite::quote(t->key) + " = " +
                                  extract(t->key));
    del.bind(1, row).run();
    return;
  }
  if (op != "put") throw error(make_error_code(storage_errc::corrupt), "the administrative journal holds an unknown entry");
  sqlite::statement keys(db, "SELECT key FROM json_each(?)");
  keys.bind(1, row);
  std::vector<std::string> present;
  while (keys.step()) present.push_back(keys.column_text(0));
  std::string names;
  std::string values;
  for (const auto& c : columns_of(db, t->table)) {
    if (std::find(present.begin(), present.end(), c) == present.end()) continue;
    names += (names.empty() ? "" : ", ") + sqlite::quote(c);
    values += (values.empty() ? "" : ", ") + extract(c);
  }
  if (names.empty()) throw error(make_error_code(storage_errc::corrupt), "the administrative journal holds an empty row");
  sqlite::statement put(db, "INSERT OR REPLACE INTO " + sqlite::quote(t->table) + "(" + names + ") VALUES(" + values + ")");
  put.bind(1, row).run();
}

/// The TEMP triggers that journal each change of `t` on `db` (TEMP: they live with this
/// connection, so a database file carries no trigger that calls a function it lacks).
void install_triggers(sqlite3* db, const journaled& t) {
  const auto cols = columns_of(db, t.table);
  if (cols.empty()) return;  // no such table in this database
  const auto row_of = [&](const char* which) {
    std::string out = "json_object(";
    for (std::size_t i = 0; i < cols.size(); ++i) {
      out += (i ? ", " : "") + literal(cols[i]) + ", " + which + "." + sqlite::quote(cols[i]);
    }
    return out + ")";
  };
  const std::string key_of_old = std::string("json_object(") + literal(t.key) + ", OLD." + sqlite::quote(t.key) + ")";
  const auto record = [&](const std::string& op, const std::string& row) {
    return "INSERT OR REPLACE INTO server_state(key, value) VALUES('auth_journal_seq', caresync_journal(" +
           literal(t.table) + ", " + literal(op) + ", " + row + "));";
  };
  const std::string on = " ON main." + sqlite::quote(t.table) + " BEGIN ";
  const std::string name = std::string("caresync_journal_") + t.table;
  sqlite::exec(db, ("CREATE TEMP TRIGGER IF NOT EXISTS " + sqlite::quote(name + "_insert") + " AFTER INSERT" + on +
                    record("put", row_of("NEW")) + " END;" + "CREATE TEMP TRIGGER IF NOT EXISTS " +
                    sqlite::quote(name + "_update") + " AFTER UPDATE" + on +
                    // A changed key: the old key's row is gone.
                    "INSERT OR REPLACE INTO server_state(key, value) SELECT 'auth_journal_seq', caresync_journal(" +
                    literal(t.table) + ", 'delete', " + key_of_old + ") WHERE OLD." + sqlite::quote(t.key) +
                    " IS NOT NEW." + sqlite::quote(t.key) + ";" + record("put", row_of("NEW")) + " END;" +
                    "CREATE TEMP TRIGGER IF NOT EXISTS " + sqlite::quote(name + "_delete") + " AFTER DELETE" + on +
                    record("delete", key_of_old) + " END;")
                       .c_str());
}

}  // namespace

std::string auth_journal_path(const std::string& database_path) {
  std::filesystem::path p(database_path);
  p.replace_extension(".auth-journal");
  return p.string();
}

auth_journal::auth_journal(sqlite3* db, const std::string& database_path) : db_(db) {
  const auto path = auth_journal_path(database_path);
  // BEGIN IMMEDIATE on the database: no other process changes it or the journal (which is
  // written only under the database's write lock) until both agree.
  sqlite::transaction tx(db_);
  const auto applied_text = state_text(db_, "auth_journal_seq");
  std::int64_t applied = 0;
  if (!applied_text.empty()) {
    const auto [end, ec] = std::from_chars(applied_text.data(), applied_text.data() + applied_text.size(), applied);
    if (ec != std::errc() || end != applied_text.data() + applied_text.size() || applied < 0) {
      throw error(make_error_code(storage_errc::corrupt),
                  "the server database '" + database_path + "' holds no valid position in its administrative journal");
    }
  }
  auto id = state_text(db_, "database_id");
  std::error_code ec;
  if (!std::filesystem::exists(path, ec) && applied > 0) {
    refuse(database_path, path, "the journal is missing while the database has applied " + std::to_string(applied) +
                                    " of its entries");
  }
  journal_ = sqlite::open(path, k_identity, "FULL");
  std::int64_t last = 0;
  {
    sqlite::transaction jt(journal_.get());
    sqlite::claim(journal_.get(), k_identity);
    sqlite::exec(journal_.get(),
                 "CREATE TABLE IF NOT EXISTS journal_state(key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL) WITHOUT ROWID;"
                 // One change of one row: its table, 'put' (row: all its columns after the
                 // change) or 'delete' (row: its key), as JSON.
                 "CREATE TABLE IF NOT EXISTS entries(seq INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, tbl TEXT NOT NULL,"
                 " op TEXT NOT NULL, row TEXT NOT NULL);");
    const auto journal_id = state_text(journal_.get(), "database_id", "journal_state");
    if (journal_id.empty()) {
      if (id.empty()) id = random_id();
      put_state(journal_.get(), "database_id", id, "journal_state");
    } else if (id.empty()) {
      // A database never journaled (a backup older than the journal): the journal holds
      // every row since it began, so it brings the database up to date.
      id = journal_id;
    } else if (id != journal_id) {
      refuse(database_path, path, "the journal is another database's");
    }
    sqlite::statement q(journal_.get(), "SELECT coalesce(max(seq), 0) FROM entries");
    q.step();
    last = q.column_int64(0);
    jt.commit();
  }
  if (last < applied) {
    refuse(database_path, path,
           "the journal ends at entry " + std::to_string(last) + " but the database has applied " + std::to_string(applied) +
               " (the journal was restored from an older copy)");
  }
  if (last > applied) {
    // A restored database: the changes made after its backup, in their order.
    sqlite::statement q(journal_.get(), "SELECT tbl, op, row FROM entries WHERE seq > ? ORDER BY seq");
    q.bind(1, applied);
    while (q.step()) {
      apply(db_, q.column_text_view(0), q.column_text_view(1), q.column_text_view(2));
      ++replayed_;
    }
  }
  put_state(db_, "database_id", id);
  put_state(db_, "auth_journal_seq", std::to_string(last));

  if (sqlite3_create_function_v2(db_, "caresync_journal", 3, SQLITE_UTF8, this, &auth_journal::append, nullptr, nullptr,
                                 nullptr) != SQLITE_OK) {
    sqlite::fail(db_, sqlite3_errcode(db_), "registering the administrative journal");
  }
  for (const auto& t : k_tables) install_triggers(db_, t);
  sqlite3_commit_hook(db_, &auth_journal::on_commit, this);
  sqlite3_rollback_hook(db_, &auth_journal::on_rollback, this);
  if (last == 0) {
    // A new journal starts with every row as it is (a database made before journals, or
    // one whose journal was reset): touching each row journals it.
    for (const auto& t : k_tables) {
      if (columns_of(db_, t.table).empty()) continue;
      sqlite::exec(db_, ("UPDATE " + sqlite::quote(t.table) + " SET " + sqlite::quote(t.key) + " = " + sqlite::quote(t.key))
                            .c_str());
    }
  }
  tx.commit();
}

auth_journal::~auth_journal() {
  sqlite3_commit_hook(db_, nullptr, nullptr);
  sqlite3_rollback_hook(db_, nullptr, nullptr);
  if (writing_) (void)sqlite3_exec(journal_.get(), "ROLLBACK", nullptr, nullptr, nullptr);
  for (const auto& t : k_tables) {
    for (const char* what : {"_insert", "_update", "_delete"}) {
      const auto sql = "DROP TRIGGER IF EXISTS temp." + sqlite::quote(std::string("caresync_journal_") + t.table + what);
      (void)sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr);
    }
  }
}

void auth_journal::append(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
  auto* self = static_cast<auth_journal*>(sqlite3_user_data(ctx));
  if (argc != 3) {
    sqlite3_result_error(ctx, "caresync_journal takes 3 arguments", -1);
    return;
  }
  try {
    if (!self->writing_) {
      // Opened with the database's transaction, committed just before it (on_commit).
      sqlite::exec(self->journal_.get(), "BEGIN IMMEDIATE");
      self->writing_ = true;
      sqlite::statement q(self->journal_.get(), "SELECT coalesce(max(seq), 0) + 1 FROM entries");
      q.step();
      self->next_seq_ = q.column_int64(0);
    }
    const auto text = [&](int i) {
      const auto* p = reinterpret_cast<const char*>(sqlite3_value_text(argv[i]));
      return std::string_view(p ? p : "", static_cast<std::size_t>(sqlite3_value_bytes(argv[i])));
    };
    sqlite::statement put(self->journal_.get(), "INSERT INTO entries(seq, at_ms, tbl, op, row) VALUES(?,?,?,?,?)");
    put.bind(1, self->next_seq_).bind(2, now_ms()).bind(3, text(0)).bind(4, text(1)).bind(5, text(2)).run();
    sqlite3_result_int64(ctx, self->next_seq_++);
  } catch (const std::exception& e) {
    sqlite3_result_error(ctx, e.what(), -1);
  }
}

int auth_journal::on_commit(void* p) {
  auto* self = static_cast<auth_journal*>(p);
  if (!self->writing_) return 0;
  self->writing_ = false;
  // The journal is on disk before the database commits; if it cannot be, the database's
  // commit becomes a rollback (non-zero).
  if (sqlite3_exec(self->journal_.get(), "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
    (void)sqlite3_exec(self->journal_.get(), "ROLLBACK", nullptr, nullptr, nullptr);
    return 1;
  }
  return 0;
}

void auth_journal::on_rollback(void* p) {
  auto* self = static_cast<auth_journal*>(p);
  if (!self->writing_) return;
  self->writing_ = false;
  (void)sqlite3_exec(self->journal_.get(), "ROLLBACK", nullptr, nullptr, nullptr);
}

std::string reset_auth_journal(sqlite3* db, const std::string& database_path) {
  const auto path = auth_journal_path(database_path);
  sqlite::transaction tx(db);
  sqlite::exec(db, "DELETE FROM server_state WHERE key IN ('auth_journal_seq', 'database_id')");
  std::string moved;
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) {
    moved = path + ".replaced-" + std::to_string(now_ms());
    for (const char* suffix : {"", "-wal", "-shm"}) {
      if (!std::filesystem::exists(path + suffix, ec)) continue;
      std::filesystem::rename(path + suffix, moved + suffix, ec);
      if (ec) {
        throw error(make_error_code(storage_errc::io_failed), "cannot move '" + path + suffix + "' aside: " + ec.message());
      }
    }
  }
  tx.commit();
  return moved;
}

}  // namespace caresync::server
