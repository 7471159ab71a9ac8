// Plain-SQL reads of a store (see plain_sql.hpp).

#include "plain_sql.hpp"

#include <sqlite3.h>

#include <memory>
#include <stdexcept>

namespace caresync::demo {
namespace {

struct connection_closer {
  void operator()(sqlite3* db) const noexcept { sqlite3_close(db); }
};
struct statement_finalizer {
  void operator()(sqlite3_stmt* s) const noexcept { sqlite3_finalize(s); }
};

}  // namespace

std::vector<record_id> query_ids(const std::string& store_path, const std::string& sql, const std::string& param) {
  sqlite3* raw_db = nullptr;
  const int open_rc = sqlite3_open_v2(store_path.c_str(), &raw_db, SQLITE_OPEN_READONLY, nullptr);
  std::unique_ptr<sqlite3, connection_closer> db(raw_db);
  if (open_rc != SQLITE_OK) {
    throw std::runtime_error("cannot open " + store_path + " to read it: " +
                             (db ? sqlite3_errmsg(db.get()) : sqlite3_errstr(open_rc)));
  }
  sqlite3_busy_timeout(db.get(), 5000);
  sqlite3_stmt* raw_statement = nullptr;
  if (sqlite3_prepare_v2(db.get(), sql.c_str(), -1, &raw_statement, nullptr) != SQLITE_OK) {
    throw std::runtime_error("cannot read " + store_path + ": " + sqlite3_errmsg(db.get()));
  }
  std::unique_ptr<sqlite3_stmt, statement_finalizer> statement(raw_statement);
  if (sqlite3_bind_parameter_count(statement.get()) > 0) {
    sqlite3_bind_text(statement.get(), 1, param.data(), static_cast<int>(param.size()), SQLITE_TRANSIENT);
  }
  std::vector<record_id> ids;
  int rc = 0;
  while ((rc = sqlite3_step(statement.get())) == SQLITE_ROW) {
    const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(statement.get(), 0));
    if (text == nullptr) continue;
    if (const auto id = record_id::parse(text)) ids.push_back(*id);
  }
  if (rc != SQLITE_DONE) throw std::runtime_error("cannot read " + store_path + ": " + sqlite3_errmsg(db.get()));
  return ids;
}

}  // namespace caresync::demo
