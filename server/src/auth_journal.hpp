#pragma once
// The administrative journal (docs/operations.md, "Backup and restore"): every change to
// who may sync (users, enrollment codes, enrolled devices and their revocations, org
// units) is also written, as the row's new state, to a second SQLite file beside the
// server database, before the database commits it. A database restored from a backup is
// behind its journal; at open the journal's later entries are applied to it again, so a
// restore never un-revokes a tablet nor forgets a user. A journal behind its database
// (restored with it, or lost) is refused: the server will not serve until an
// administrator says what is true (reset_auth_journal).
//
// Thread contract: as the database connection it is attached to (one thread at a time).

#include "sqlite.hpp"

#include <cstdint>
#include <string>

namespace caresync::server {

/// The journal's file for a server database: beside it, `<stem>.auth-journal` (not
/// `<database>-...`, so that moving "the database and its -wal and -shm" aside during a
/// restore leaves the journal in place).
std::string auth_journal_path(const std::string& database_path);

class auth_journal {
 public:
  /// Opens (or creates) the journal of the database `db` (open at `database_path`, its
  /// tables made), brings the database up to the journal, and from then on journals every
  /// change `db` commits to the journaled tables. A new journal starts with the tables'
  /// current rows. Throws caresync::error (storage_errc::corrupt) when the journal is
  /// behind the database, missing while the database was journaled, or another
  /// database's; the message says what to do.
  auth_journal(sqlite3* db, const std::string& database_path);
  ~auth_journal();
  auth_journal(const auth_journal&) = delete;
  auth_journal& operator=(const auth_journal&) = delete;

  /// Entries applied to the database at open (a restore's catch-up); 0 when it was current.
  std::int64_t replayed() const noexcept { return replayed_; }

 private:
  static void append(sqlite3_context* ctx, int argc, sqlite3_value** argv);
  static int on_commit(void* self);
  static void on_rollback(void* self);

  sqlite3* db_;
  sqlite::db_handle journal_;
  bool writing_ = false;       ///< a journal transaction is open with the database's
  std::int64_t next_seq_ = 0;  ///< the next entry's seq, while writing_
  std::int64_t replayed_ = 0;
};

/// Starts a new journal from a database as it is: moves the old journal (if any) aside to
/// `<journal>.replaced-<unix ms>` and forgets the database's journal position, so that the
/// next open journals its current rows anew. For when the journal is lost or is not the
/// database's (refused at open). Returns where the old journal went (empty if none).
/// `db` is the database at `database_path`, opened without a journal; the server must not
/// be running. Throws caresync::error.
std::string reset_auth_journal(sqlite3* db, const std::string& database_path);

}  // namespace caresync::server
