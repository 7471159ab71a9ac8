#pragma once
// The store's internals, shared by store.cpp and sync_client.cpp (the sync client is a
// friend of store). Not installed.
//
// Tables (format 2; docs/store.md):
//   <collection>  id TEXT PRIMARY KEY, one column per declared field (the app's view), and
//                 cs_clock: the record's field clock (field_clock.hpp). Live records only.
//   cs_meta       (collection, id) -> field clock, tombstone version: deleted records, and
//                 records of collections this app does not declare (kept for newer apps)
//   cs_extra      (collection, id, field) -> value, for undeclared fields / mistyped values
//   cs_outbox     seq -> (collection, id, stamp, kind) of one local change, oldest first;
//                 the change is rebuilt from the record when a push batch is made
//   cs_batch      push batches sent and not yet acknowledged: id, last outbox seq, frame
//                 (payload alone in rows of older builds: framed = 0)
//   cs_conflict   (collection, id, field, version) -> value: open conflicts of keep_both
//                 fields, the concurrent values that lost to the one in the record
//   cs_pred       (collection, id, field, stamp) -> versions: what a local keep_both
//                 write replaces, or the set_union items it removes, kept until the
//                 server has the write (docs/conflicts.md)
//   cs_item       (collection, id, field, version, value): the live items of append and
//                 set_union fields; the field's column shows them rendered
//   cs_state      key -> value: node id, hybrid clock, cursor
//   cs_removed    (collection, id) -> revivable deletes (update_revives): the greatest
//                 one, the greatest dismissed, the versions they cover, and whether the
//                 record is hidden (its values then wait in cs_extra, and cs_meta's
//                 tombstone is the removal) or revived (an open conflict); removal.cpp

#include "field_clock.hpp"
#include "sqlite.hpp"
#include "wal_checkpointer.hpp"

#include <caresync/protocol/change.hpp>
#include <caresync/protocol/codec.hpp>
#include <caresync/protocol/hlc.hpp>
#include <caresync/protocol/merge.hpp>
#include <caresync/protocol/frame.hpp>
#include <caresync/protocol/messages.hpp>
#include <caresync/store.hpp>

#include <map>
#include <memory>
#include <type_traits>
#include <optional>
#include <string>
#include <vector>

namespace caresync {

/// Prepared statements of one declared collection's table.
struct table_statements {
  const collection_def* def = nullptr;
  std::string quoted_name;
  std::optional<sqlite::statement> select_row;    // declared columns in declaration order
  std::optional<sqlite::statement> select_clock;  // cs_clock
  std::optional<sqlite::statement> select_full;   // cs_clock, then the declared columns
  std::optional<sqlite::statement> delete_row;
  /// Upserts of id, some declared columns and cs_clock, by the columns' indexes.
  std::map<std::vector<std::uint16_t>, sqlite::statement> upserts;
  /// The same, inserting only a record the table does not hold (ON CONFLICT DO NOTHING).
  std::map<std::vector<std::uint16_t>, sqlite::statement> inserts;
  /// Whether cs_meta may hold rows of this collection (tombstones, records kept before
  /// the collection was declared). Checked at open, set by every cs_meta write, never
  /// cleared: while false, a record missing from the table is missing from the store.
  bool meta_rows = true;
};

/// A push batch, pinned in cs_batch from before it is sent until acknowledged, so a
/// resend carries the same id and exactly the same changes. It holds its changes only as
/// the bytes sent: what acknowledging it needs of them is counted when it is made, and the
/// changes themselves are decoded again only when the server refuses some (ack_batch).
struct outbox_batch {
  batch_id id;                 ///< numbered (wire::numbered_batch) unless pinned by a version 6 store
  node_id node = 0;            ///< the store's node: its changes' (a push carries none)
  std::int64_t last_seq = 0;   ///< outbox rows up to this seq belong to the batch
  std::size_t change_count = 0;  ///< changes in the push
  hlc_stamp max_stamp{};         ///< the greatest stamp of its changes
  std::vector<std::uint8_t> payload;  ///< the push message, encoded (wire::encode)
  /// The whole frame as pinned and sent (compressed as pin_batch was told, when that made
  /// it smaller); empty for a batch an older build pinned as its payload alone.
  std::vector<std::uint8_t> frame;
  wire::codec frame_codec = wire::codec::none;  ///< how `frame` is compressed

  /// The batch's changes, decoded from `payload`. Throws caresync::error
  /// (storage_errc::corrupt) when the payload is not a push of this batch.
  std::vector<change> decode_changes() const;
};

/// A page must move forward and hold valid changes above `cursor`, in order. Throws
/// protocol_error (malformed) otherwise.
void check_page(const wire::changes_page& page, std::uint64_t cursor);

struct store::impl {
  store_options options;
  sqlite::db_handle db;
  /// Checkpoints db's WAL on a thread of its own (docs/store.md, "Files"). Declared after
  /// db: stopped before db closes.
  std::unique_ptr<sqlite::wal_checkpointer> checkpointer;
  node_id node = 0;
  hybrid_clock clock;
  int depth = 0;            // open transaction()/write scopes
  bool doomed = false;      // a write failed inside an outer transaction
  bool clock_dirty = false;
  /// The device's time source (options.time_source or the system clock); the hybrid
  /// clock reads it plus clock_offset_ms, the correction learnt from the server when the
  /// device's clock ran ahead (cs_state "clock_offset").
  hybrid_clock::time_source base_time;
  std::int64_t clock_offset_ms = 0;
  /// The greatest stamp of a change received from others, and of an own change the
  /// server acknowledged (cs_state "hlc_remote", "hlc_acked"): a corrected clock never
  /// goes below them.
  hlc_stamp remote_max{}, acked_max{};

  std::map<std::string, table_statements, std::less<>> tables;
  std::optional<sqlite::statement> meta_select, meta_upsert, meta_delete, outbox_insert, outbox_count,
      outbox_for_record, quarantine_for_record, extra_upsert, extra_delete_field, extra_delete_record, extra_select_record, state_get,
      state_set, conflict_select_record, conflict_insert, conflict_delete_field, conflict_delete_record, pred_select,
      pred_insert, pred_delete_write, pred_delete_record, outbox_seq_of, pinned_last_seq, item_select_record,
      item_insert, item_delete_field, item_delete_record, item_select_write, pred_select_write;
  std::optional<sqlite::statement> removal_select, removal_upsert, pred_delete_values;
  /// Whether cs_removed may hold rows (as any_conflicts).
  bool any_removed = true;
  /// Whether cs_conflict may hold rows: checked at open, set by every insert, never
  /// cleared. While false, no record has open conflicts and none are read.
  bool any_conflicts = true;
  /// The same for cs_item.
  bool any_items = true;
  // Scratch buffers reused by every write, so a write allocates little.
  std::vector<std::uint16_t> scratch_columns;
  std::vector<const value*> scratch_values;
  std::vector<std::uint8_t> scratch_clock;
  /// rebuild_from_row()'s fields of one version, in name order before they are made.
  struct written_field {
    std::string_view name;
    const field_def* def;
  };
  std::vector<written_field> scratch_written;
  /// push_from_row()'s fields, as views into the row.
  std::vector<wire::field_view> scratch_views;

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
    // end(true) is outside the try: a commit that fails has rolled back and closed the
    // transaction already, and must not be ended twice.
    if constexpr (std::is_void_v<decltype(body())>) {
      try {
        body();
      } catch (...) {
        end(false);
        throw;
      }
      end(true);
    } else {
      auto result = [&] {
        try {
          return body();
        } catch (...) {
          end(false);
          throw;
        }
      }();
      end(true);
      return result;
    }
  }

  // --- records
  struct meta_row {
    field_clock clock;
    std::optional<version> deleted;
    bool in_meta = false;  ///< read from cs_meta (else from its table, or new)
  };
  std::optional<meta_row> load_meta(std::string_view collection, const record_id& id);
  /// The record's meta row; throws storage_errc::not_found if missing or deleted.
  meta_row load_live_meta(std::string_view collection, const record_id& id);
  /// A change by this replica, stamped now.
  version local_version();
  void append_outbox(std::string_view collection, const record_id& id, const version& ver, change_kind kind);
  void check_fields(const collection_def& def, const std::vector<field_write>& fields) const;
  table_statements* table(std::string_view collection);
  /// Stores a live record: `values` (fields just written, matched by name to the clock),
  /// in its row and cs_extra as their clock entries say, and the clock itself.
  void store_live(std::string_view collection, const record_id& id, const std::vector<const field_write*>& values,
                  const meta_row& meta);
  /// Removes the record's row from its collection's table (when the app declares it).
  void delete_row(std::string_view collection, const record_id& id);
  /// Stores a deleted record's state: its tombstone with each field's greatest version,
  /// the open conflicts of `conflicts_changed` (edits the delete overrode), the items of
  /// `items_changed`; when `was_live`, removes its row and values first.
  void store_deleted(std::string_view collection, const record_id& id, const record_state& state,
                     const std::vector<std::string>& conflicts_changed, const std::vector<std::string>& items_changed,
                     bool was_live);
  // --- revivable deletes (update_revives; removal.cpp)
  /// How a record with revivable deletes shows (cs_removed.shown).
  enum class removal_shown : std::int64_t {
    hidden = 0,   ///< gone for the app; values in cs_extra, cs_meta's tombstone is the removal
    revived = 1,  ///< live, with the delete as an open conflict
    settled = 2,  ///< live with the delete dismissed, or deleted for good
  };
  void prepare_removal_statements();
  /// Adds to `state` its revivable deletes, if any; returns how the record shows, or
  /// std::nullopt when it has none.
  std::optional<removal_shown> load_removal(std::string_view collection, const record_id& id, record_state& state);
  /// Writes the revivable-delete part of `state` (nothing when it has none).
  void store_removal(std::string_view collection, const record_id& id, const record_state& state);
  void put_removal(std::string_view collection, const record_id& id, const record_state& state, removal_shown shown);
  /// Stores a removed record every version of which its revivable deletes cover: out of
  /// its table (`was_live`: it was there), its values kept in cs_extra for a revival, the
  /// open conflicts of `conflicts_changed` and the items of `items_changed`.
  void store_hidden(std::string_view collection, const record_id& id, const record_state& state,
                    const std::vector<std::string>& conflicts_changed, const std::vector<std::string>& items_changed,
                    bool was_live);
  /// After a local write to a live record: keeps in its revivable deletes' covered
  /// versions only those it still holds, as merge() does for a received write.
  void refresh_removal(std::string_view collection, const record_id& id, const meta_row& meta);
  /// Renames version `from` to `to` in the record's revivable deletes (a re-stamp).
  void restamp_removal(std::string_view collection, const record_id& id, const version& from, const version& to);
  /// A local delete of a record this replica holds: merged here, sent with what it covers.
  void delete_locally(std::string_view collection, const record_id& id, const version& ver, meta_row& meta);
  /// How put_row treats a row the table already holds: overwrite the columns written, or
  /// leave it as it is (and report that nothing was written).
  enum class existing_row { overwrite, keep };
  /// Writes the row of `id`: the columns in scratch_columns with scratch_values, and
  /// `clock`. Returns false only when `existing` is keep and the row was there.
  bool put_row(table_statements& t, const record_id& id, std::span<const std::uint8_t> clock,
               existing_row existing = existing_row::overwrite);
  /// Writes a record holding only `fields`, all written by `ver`, each declared in `t`
  /// with a value of its type (checked by the caller), and no duplicates.
  bool put_new_record(table_statements& t, const record_id& id, const version& ver,
                      const std::vector<field_write>& fields, std::span<const kept_field> kept = {},
                      existing_row existing = existing_row::overwrite);
  void put_meta(std::string_view collection, const record_id& id, const meta_row& meta);
  /// A record's state: values, versions, kept flags and open conflicts.
  record_state read_state(std::string_view collection, const record_id& id, const meta_row& meta);

  // --- keep_both (docs/conflicts.md)
  /// Replaces the open conflicts of one field with `conflicts`.
  void store_conflicts(std::string_view collection, const record_id& id, std::string_view field,
                       const std::vector<conflict_value>& conflicts);
  /// The open conflicts of one field, ascending by version.
  std::vector<conflict_value> field_conflicts(std::string_view collection, const record_id& id, std::string_view field);
  /// What a new local write to a field replaces, as other replicas must be told: the
  /// field's current write, or, when that write is this replica's and not yet on its way
  /// to the server (it never will be, being overwritten), what that write replaced.
  std::vector<version> predecessors(std::string_view collection, const record_id& id, std::string_view field,
                                    const field_clock_entry& current);
  /// Records in cs_pred what the local write `ver` of `field` replaces, removes or (field
  /// "") covers, until the server has the write.
  void store_preds(std::string_view collection, const record_id& id, std::string_view field, const version& ver,
                   const std::vector<version>& preds);
  /// Writes local `fields` to a live record at `ver` (values, clock, and for keep_both
  /// fields what each replaces); `resolving` names a field whose open conflicts the write
  /// also replaces (store::resolve_conflict), or is empty.
  void write_fields(table_statements& t, const record_id& id, const version& ver, const std::vector<field_write>& fields,
                    meta_row& meta, std::string_view resolving = {});
  /// Adds to a rebuilt change the kept entry of each of `names` (fields it writes that
  /// were written under keep_both), with what each write replaces.
  void add_kept(change& c, const std::vector<std::string>& names);
  /// Adds to a rebuilt change of a collection declaring item fields its item operations:
  /// the items it added that are still there, and the items it removed.
  void add_item_ops(change& c, const collection_def& def);
  /// The items of one field, ascending by (version, value).
  std::vector<conflict_value> field_items(std::string_view collection, const record_id& id, std::string_view field);
  /// Replaces the items of one field with `items`.
  void store_items(std::string_view collection, const record_id& id, std::string_view field,
                   const std::vector<conflict_value>& items);
  /// Sets the clock entry of a received value `v` of field `name` to `entry`, deciding
  /// whether the value lives in its column or cs_extra (and dropping a cs_extra value it
  /// replaces in the column).
  void place_received(const table_statements* t, const change& c, const std::string& name, const value& v,
                      field_clock_entry entry, meta_row& meta);
  /// apply() for a change to a record with keep_both fields or open conflicts: the full
  /// merge over values and conflicts.
  std::size_t apply_tracked(const change& c, meta_row& meta, bool known_record);
  /// Every record (live or tombstone), ordered by (collection, id bytes).
  std::vector<std::pair<std::pair<std::string, record_id>, meta_row>> all_records();

  // --- sync (used by sync_client)
  std::string get_state(std::string_view key);
  void set_state(std::string_view key, std::string_view value);
  /// Every batch pinned and not yet acknowledged, oldest first (to be resent as they are).
  std::vector<outbox_batch> pinned_batches();
  /// Makes and pins a new batch of at most `max_changes` outbox entries after the last
  /// pinned one, ending after the change that takes its changes past `max_bytes` (the
  /// link's share: sync_client sizes batches to the link); std::nullopt when no entry is
  /// left to send. The batch is numbered: the store's next batch number.
  /// The batch is pinned as its frame, compressed with `compression` (the codec the
  /// server agreed to; it is resent as it is).
  std::optional<outbox_batch> pin_batch(std::size_t max_changes, wire::codec compression = wire::codec::none,
                                        std::size_t max_bytes = SIZE_MAX);
  /// The oldest pinned batch, or else a new one.
  std::optional<outbox_batch> next_batch(std::size_t max_changes, wire::codec compression = wire::codec::none);
  /// Removes the oldest pinned batch and its outbox entries; throws if `batch` is not the
  /// oldest pinned batch. `refusals` are what the server refused of its changes, by
  /// index, ascending (the changes are decoded from the batch's payload only then). A
  /// change refused as clock_ahead is re-stamped and back in the outbox; one the server
  /// stored without its server_only fields shows the server's values of those (the
  /// refusal's restore list); others are quarantined.
  struct ack_result {
    std::size_t requeued = 0;  ///< refused changes re-stamped and back in the outbox (clock_ahead)
    std::size_t reverted = 0;  ///< changes stored without their server_only fields, put back here
  };
  ack_result ack_batch(const outbox_batch& batch, const std::vector<wire::refusal>& refusals = {});
  /// Puts back the server's values (and versions) of the fields a server_only refusal
  /// names, where `c` wrote the value shown or the tombstone's version.
  void revert_server_only(const change& c, const std::vector<wire::restored_field>& restore);
  /// The change an outbox entry stands for: the fields the entry wrote that no later
  /// write has overwritten, with their current values. Empty fields for an upsert
  /// whose every field was overwritten, or whose record was deleted since.
  /// rebuild() for a live record in its table: one row read, no clock map. std::nullopt
  /// in `found` when the record is not in its table.
  std::optional<change> rebuild_from_row(table_statements& t, change c, bool& found);
  /// How push_from_row() fared with an outbox entry.
  enum class row_push {
    written,      ///< the upsert is in the push
    overwritten,  ///< every field it wrote was overwritten since: nothing to send
    not_plain,    ///< not a plain upsert of a row in its table: rebuild() makes it
  };
  /// pin_batch()'s way for the common upsert: when the record is in its table and the
  /// fields `ver` wrote are all in its declared columns (nothing kept, in cs_extra, or in
  /// items; no open conflicts to look for), writes the change into `out` straight from
  /// the row, the same bytes rebuild() and push_builder::add() would make, and no `change`.
  row_push push_from_row(table_statements& t, std::string_view collection, const record_id& id, const version& ver,
                         wire::push_builder& out);
  std::optional<change> rebuild(std::string_view collection, const record_id& id, const version& ver,
                                change_kind kind);
  /// Applies a page and moves the cursor, in one transaction, after check_page() against
  /// the stored cursor. Returns conflicts counted.
  /// Changes the priority phase delivered (cs_primed) are not applied again.
  std::size_t apply_page(const wire::changes_page& page);

  // --- scopes (docs/protocol.md, "Scopes")
  /// Deletes everything the store keeps of a record: its row, clock and tombstone, extra
  /// values, open conflicts, items, what its writes replace, and its outbox entries.
  /// Quarantined changes stay: they are this device's own words, for the app to show.
  void purge_record(std::string_view collection, const record_id& id);
  /// Records purged by the server's instruction since the store was opened (apply_page).
  std::size_t purged_total = 0;
  /// Records deleted here because the server refused a change to them as out of scope
  /// (ack_batch), since the store was opened.
  std::size_t refused_out_of_scope_total = 0;
  /// The scope epoch of the last page that carried purges or backfilled records (0: none).
  std::uint64_t scope_epoch();
  /// Records were purged since the WAL was last emptied.
  bool purged_unflushed = false;
  /// After a purge, outside any transaction: empties the WAL into the database (whose
  /// deleted content secure_delete zeroed), so no old page of a purged record is left.
  void checkpoint_after_purge();

  // --- prioritised initial sync (docs/protocol.md, "Prioritised initial sync")
  /// The priority phase begun and not yet pulled past (spec.until 0: none): how many of
  /// its changes the store holds, and whether that is all of them.
  struct prime_state {
    wire::prime_spec spec;
    std::uint64_t position = 0;
    bool done = false;
  };
  prime_state prime();
  /// Starts a priority phase for `spec`, forgetting any before.
  void begin_prime(const wire::prime_spec& spec);
  /// Applies a page of the priority phase and moves its position, in one transaction,
  /// after checking that it follows the position and stays within spec.until; a change
  /// delivered before is not applied again. Returns conflicts counted.
  std::size_t apply_prime_page(const wire::changes_page& page);
  std::size_t apply(const change& c);
  /// apply() of an upsert to a record the store does not hold, when every value fits its
  /// declared column; false (nothing written) otherwise. Unless `known_absent`, it only
  /// inserts if neither the table nor cs_meta holds the record, and returns false if one does.
  bool apply_new(const change& c, bool known_absent);
  std::uint64_t cursor();

  // --- clocks (docs/conflicts.md, "Clocks")
  /// Called with the welcome: when this device's clock runs more than half of
  /// `bound_ms` ahead of the server's, learns the offset, brings the hybrid clock back
  /// and re-stamps the outbox's unsent writes stamped above the new clock. Returns the
  /// number of writes re-stamped. Does nothing when bound_ms is 0.
  std::size_t correct_clock(std::uint64_t server_time_ms, std::uint64_t bound_ms);
  /// Gives one local write a new version `to` in the record, its tombstone and cs_pred.
  void restamp(std::string_view collection, const record_id& id, const version& from, const version& to,
               change_kind kind);
};

}  // namespace caresync
