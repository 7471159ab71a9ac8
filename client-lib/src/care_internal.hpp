#pragma once
// What the care repositories share (care_records.cpp, care_registry.cpp). Not installed.

#include <caresync/care.hpp>
#include <caresync/store.hpp>

#include "sqlite.hpp"

#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace caresync::care {

/// The state behind a records object: the store, the role, and helpers every repository
/// uses. Statements are prepared per call, never kept: store::wipe() replaces the
/// store's connection, and a kept statement would outlive it.
struct care_context {
  caresync::store& db_store;
  role who;

  /// The store's SQLite connection (reads only; every write goes through the store).
  sqlite3* db() noexcept;
  /// Now by the store's time source (options.time_source, else the system clock), in
  /// seconds since the epoch.
  std::int64_t now_seconds();
};

[[noreturn]] void fail_invalid(const std::string& what);
[[noreturn]] void fail_not_found(const std::string& what);
[[noreturn]] void fail_constraint(const std::string& what);

/// Throws invalid_argument with `problem` unless it is empty (care_rules' convention).
void require_ok(const std::string& problem);

/// The value of an optional text field: null when empty.
value text_value(const std::string& s);
/// A list as the JSON array the store takes for set_union fields.
std::string json_list(const std::vector<std::string>& items);
/// The value of a list field (set_union, or services.municipalities): its distinct items,
/// sorted, as a JSON array; null when none (the store reads null as the empty set).
value set_value(std::vector<std::string> items);
/// A JSON array of strings read back; entries that are not strings are skipped.
std::vector<std::string> parse_list(const value& v);
/// The text of a field, or "" (null, absent or not text).
std::string text_of(const record_fields& f, const std::string& name);

/// Reads records of `collection` with `where` (SQL after WHERE, may be empty) and
/// `order` (after ORDER BY), binding `bind` (called with the statement). Each row comes
/// as the record's declared care fields (null columns left out) plus "id".
std::vector<record_fields> select_records(care_context& ctx, std::string_view collection, const std::string& where,
                                          const std::string& order,
                                          const std::function<void(sqlite::statement&)>& bind = nullptr,
                                          std::size_t limit = 0);

}  // namespace caresync::care
