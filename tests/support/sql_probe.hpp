#pragma once
// Plain read-only SQL on a SQLite file, as an app or an operator reads it: what the tests
// use to look at a store or the server's log from outside the code under test.
// Thread contract: free functions; each call opens and closes its own connection.

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace caresync::testing {

namespace detail {

/// Runs `sql` on `path` (read-only) and calls `row(stmt)` for each result row.
template <class Row>
void sql_rows(const std::string& path, const std::string& sql, Row&& row) {
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READONLY, nullptr);
  const std::unique_ptr<sqlite3, decltype(&sqlite3_close)> db(raw, &sqlite3_close);
  if (rc != SQLITE_OK) throw std::runtime_error("cannot open " + path + " to read it");
  sqlite3_stmt* q = nullptr;
  if (sqlite3_prepare_v2(raw, sql.c_str(), -1, &q, nullptr) != SQLITE_OK) {
    throw std::runtime_error("test SQL failed: " + sql + ": " + sqlite3_errmsg(raw));
  }
  const std::unique_ptr<sqlite3_stmt, decltype(&sqlite3_finalize)> stmt(q, &sqlite3_finalize);
  int step;
  while ((step = sqlite3_step(q)) == SQLITE_ROW) row(q);
  if (step != SQLITE_DONE) throw std::runtime_error("test SQL failed: " + sql + ": " + sqlite3_errmsg(raw));
}

}  // namespace detail

/// The first column of each row, as text ("<null>" for NULL).
inline std::vector<std::string> sql_column(const std::string& path, const std::string& sql) {
  std::vector<std::string> out;
  detail::sql_rows(path, sql, [&](sqlite3_stmt* q) {
    const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(q, 0));
    out.push_back(sqlite3_column_type(q, 0) == SQLITE_NULL ? "<null>" : text);
  });
  return out;
}

/// The one value of a one-row query, as text ("<null>" for NULL). Throws if no row.
inline std::string sql_text(const std::string& path, const std::string& sql) {
  auto rows = sql_column(path, sql);
  if (rows.empty()) throw std::runtime_error("test SQL returned no row: " + sql);
  return rows.front();
}

/// The one value of a one-row query, as an integer. Throws if no row.
inline std::int64_t sql_int(const std::string& path, const std::string& sql) { return std::stoll(sql_text(path, sql)); }

/// Changes a server's log (the file `server_db`) holds more than once: the same node,
/// stamp, collection and record.
inline std::int64_t duplicates_in_log(const std::string& server_db) {
  return sql_int(server_db,
                 "SELECT count(*) FROM (SELECT 1 FROM changes GROUP BY node, stamp, collection, record_id HAVING count(*) > 1)");
}

}  // namespace caresync::testing
