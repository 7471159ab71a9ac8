#pragma once
/// Registry import (issue 5): the region's services registry, kept in a spreadsheet or
/// exported from the national register, read from CSV into the change log as server-side
/// writes, which every tablet then pulls like any other change.
///
/// The CSV (RFC 4180, UTF-8, a header line): each header cell is a field name, optionally
/// with its type, `capacity:integer` (text when not said; integer, real or text); one
/// column is the key (default `registration_id`), which gives each service a stable
/// record id, so importing the same file again writes nothing and a changed file writes
/// only the fields that changed. An empty cell is null.
/// Thread contract: one import at a time per store; the store may be served meanwhile.

#include <caresync/server/change_store.hpp>

#include <cstdint>
#include <string>

namespace caresync::server {

struct registry_import_options {
  std::string collection = "services";
  std::string key = "registration_id";
  /// Delete the collection's live records whose key is not in the file (a full
  /// replacement of the registry); otherwise they are kept and counted.
  bool delete_missing = false;
  change_limits limits;
  std::uint64_t now_ms = 0;  ///< the import's clock; 0: the system clock
};

struct registry_import_result {
  std::size_t rows = 0;
  std::size_t created = 0;
  std::size_t updated = 0;
  std::size_t unchanged = 0;
  std::size_t deleted = 0;
  std::size_t missing_kept = 0;  ///< live records whose key is not in the file, kept
  std::uint64_t first_seq = 0;   ///< the log positions written (0: nothing written)
  std::uint64_t last_seq = 0;
};

/// The record id of the registry entry with this key: the first 16 bytes of
/// SHA-256("caresync registry\0" collection "\0" key), laid out as the other ids.
record_id registry_record_id(const std::string& collection, const std::string& key);

/// Reads `csv` and appends what differs from the store's current state as one batch
/// (atomic: all rows or none). Throws caresync::error (storage_errc::invalid_argument)
/// naming the line and column of the first mistake (a malformed CSV, a row of another
/// width, a bad name, type or value, a missing or repeated key), before writing anything.
registry_import_result import_registry(change_store& store, const std::string& csv, const registry_import_options& options);

}  // namespace caresync::server
