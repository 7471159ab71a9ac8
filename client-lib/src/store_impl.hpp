#pragma once
// The store's internals, shared by store.cpp and sync_client.cpp (the sync client is a
// friend of store). Not installed.
//
// Tables (docs/store.md):
//   <collection>  id TEXT PRIMARY KEY, one column per declared field (the app's view)
//   cs_meta       (collection, id) -> field clock, tombstone version
//   cs_extra      (collection, id, field) -> value, for undeclared fields / mistyped values
//   cs_outbox     seq -> one encoded change (protocol encode_change), oldest first
//   cs_state      key -> value: node id, hybrid clock, cursor, the pinned push batch

#include "field_clock.hpp"
#include "sqlite.hpp"

#include <caresync/protocol/change.hpp>
#include <caresync/protocol/hlc.hpp>
#include <caresync/protocol/merge.hpp>
#include <caresync/protocol/messages.hpp>
#include <caresync/store.hpp>

#include <map>
#include <type_traits>
#include <optional>
#include <string>
#include <vector>

namespace caresync {

/// Prepared statements of one declared collection's table.
struct table_statements {
  const collection_def* def = nullptr;
  std::string quoted_name;
  std::optional<sqlite::statement> select_row;  // all declared columns, in declaration order
  std::optional<sqlite::statement> delete_row;
  std::optional<sqlite::statement> ensure_row;
  std::map<std::string, sqlite::statement> upserts;  // by comma-joined column list
};

/// A push batch pinned in cs_state until acknowledged, so a resend carries the same id
/// and exactly the same changes.
struct outbox_batch {
  batch_id id;
  std::int64_t last_seq = 0;  ///< outbox rows up to this seq belong to the batch
  std::vector<change> changes;
};

struct store::impl {
  store_options options;
  sqlite::db_handle db;
  node_id node = 0;
  hybrid_clock clock;
  int depth = 0;            // open transaction()/write scopes
  bool doomed = false;      // a write failed inside an outer transaction
  bool clock_dirty = false;

  std::map<std::string, table_statements, std::less<>> tables;
  std::optional<sqlite::statement> meta_select, meta_upsert, outbox_insert, outbox_count,
      outbox_for_record, extra_upsert, extra_delete_field, extra_delete_record, extra_select_record,
      state_get, state_set;

  // --- opening
  void open_database();
  void create_tables();
  void load_state();

  // --- transactions
  void begin();
  void end(bool ok);
  void commit_top();
  /// Runs `body` inside the current transaction, or in a new one.
  template <class Body>
  auto in_transaction(Body&& body) {
    begin();
    try {
      if constexpr (std::is_void_v<decltype(body())>) {
        body();
        end(true);
      } else {
        auto result = body();
        end(true);
        return result;
      }
    } catch (...) {
      end(false);
      throw;
    }
  }

  // --- records
  struct meta_row {
    field_clock clock;
    std::optional<version> deleted;
  };
  std::optional<meta_row> load_meta(std::string_view collection, const record_id& id);
  /// The record's meta row; throws storage_errc::not_found if missing or deleted.
  meta_row load_live_meta(std::string_view collection, const record_id& id);
  void save_meta(std::string_view collection, const record_id& id, const meta_row& meta);
  void append_outbox(const change& c);
  /// A change by this replica, stamped now.
  change local_change(std::string_view collection, const record_id& id, change_kind kind);
  /// Writes `fields` of a record (new when `meta` is empty), its clock and its outbox entry.
  void local_upsert(std::string_view collection, const record_id& id, const std::vector<field_write>& fields,
                    meta_row meta);
  void check_fields(const collection_def& def, const std::vector<field_write>& fields) const;
  table_statements* table(std::string_view collection);
  /// Writes `values` to the record's row and cs_extra, as their clock entries say.
  void write_values(std::string_view collection, const record_id& id, const std::vector<const field_write*>& values,
                    const field_clock& clock);
  void delete_values(std::string_view collection, const record_id& id);
  record_state read_state(std::string_view collection, const record_id& id, const meta_row& meta);

  // --- sync (used by sync_client)
  std::string get_state(std::string_view key);
  void set_state(std::string_view key, std::string_view value);
  std::optional<outbox_batch> next_batch(std::size_t max_changes);
  void ack_batch(const batch_id& id);
  /// Applies a page and moves the cursor, in one transaction. Returns conflicts counted.
  std::size_t apply_page(const wire::changes_page& page);
  std::size_t apply(const change& c);
  std::uint64_t cursor();
};

}  // namespace caresync
