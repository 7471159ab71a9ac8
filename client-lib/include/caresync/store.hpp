#pragma once
/// The local store on a device: one SQLite file (WAL) with a real table per collection,
/// the per-field clock of every record, and the outbox of changes not yet on the server.
/// Every write goes through this class and lands, in one SQLite transaction, in the
/// table, the clock and the outbox. Apps read the tables with plain SQL on their own
/// read-only connection, or through get().
///
/// Thread contract: a store is used by one thread at a time (the app's data thread);
/// sync_client runs on that same thread. Other processes or connections may read the
/// file concurrently (WAL).

#include <caresync/protocol/change.hpp>
#include <caresync/protocol/merge.hpp>
#include <caresync/schema.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace caresync {

/// How hard a commit works to survive power loss.
enum class durability {
  full,    ///< fsync at every commit (SQLite synchronous=FULL): a saved visit survives a dead battery
  normal,  ///< survives an app crash, may lose the last commits on power loss (synchronous=NORMAL)
};

struct open_conflict;

/// An app's own rule for the open conflicts of one collection (store_options::resolvers):
/// returns the value to resolve with (one of the values or a merge of them), or
/// std::nullopt to leave the conflict to a person. Must not throw.
using conflict_resolver = std::function<std::optional<value>(const open_conflict&)>;

/// How to open a store.
struct store_options {
  std::string path;  ///< the SQLite file; created if missing
  caresync::schema schema;
  caresync::durability durability = durability::full;
  /// Milliseconds since the Unix epoch for the store's hybrid clock; empty means the
  /// system clock. For simulations and tests (a tablet whose clock runs ahead, say).
  std::function<std::uint64_t()> time_source = nullptr;
  /// Resolvers by collection. A conflict is given to its collection's resolver only on
  /// the device that wrote the value shown, so one device settles it and resolutions
  /// do not cross; a device without the resolver (another app version) leaves it open.
  /// They run during sync (store::run_resolvers()); conflicts on deleted records are not
  /// given to them.
  std::map<std::string, conflict_resolver, std::less<>> resolvers = {};
  /// A store of the server side (an office tool, a registry import job), not a field
  /// tablet: it may write server_only fields. The server decides for itself whom it
  /// takes such writes from (its config); this only stops the store refusing them.
  bool server_side = false;
};

/// A record's fields by name, including fields the schema does not declare (kept from
/// newer app versions).
using record_fields = std::map<std::string, value>;

/// A local change the server refused (a value over its size limit, say): set aside with
/// the server's reason so the rest of the outbox goes on. The record keeps the change
/// locally; its receipt (is_synced) stays false while the change is held.
struct quarantined_change {
  std::int64_t id = 0;       ///< the handle for retry_quarantined() and drop_quarantined()
  std::string collection;
  record_id record;
  bool deleted = false;      ///< the change was a delete
  record_fields fields;      ///< the fields it wrote, as sent
  std::error_code code;      ///< why, in caresync's protocol category (e.g. limit_exceeded)
  std::string reason;        ///< the server's words, for a person
  std::uint64_t at_ms = 0;   ///< when it was refused, by this device's clock
};

/// A field with concurrent values nobody has resolved yet (keep_both; docs/conflicts.md).
/// Who wrote a value is its version's node id (one per device store); when, its stamp's
/// wall_ms(). Every replica that received the same changes lists the same conflicts.
struct open_conflict {
  std::string collection;
  record_id record;
  std::string field;
  conflict_value current;               ///< the value the record shows (the greatest version)
  std::vector<conflict_value> others;   ///< the concurrent values that lost, ascending by version
  /// The record was deleted while someone edited it without having seen the delete:
  /// `others` holds that edit's value of the field (`current` is null with the
  /// delete's version). The delete stands (docs/conflicts.md, "Deletes"); to keep the
  /// words, create a new record with them, then dismiss.
  bool record_deleted = false;
  /// The record was deleted (collection_def::deletes is update_revives) and brought back
  /// by an edit made without seeing the delete: `field` is "", `current` is null with
  /// the delete's version, `others` is empty. store::dismiss_conflict(collection, record,
  /// "") accepts the record as it is (on every replica); store::remove deletes it again.
  bool record_revived = false;
};

class store {
 public:
  /// Opens or creates the store at options.path, creating missing tables and columns.
  /// Throws caresync::error: storage_errc::open_failed (path and reason), corrupt (not a
  /// caresync store), schema_mismatch (a column exists with another type), busy.
  static std::unique_ptr<store> open(const store_options& options);

  ~store();
  store(const store&) = delete;
  store& operator=(const store&) = delete;

  /// Creates a record with a new random id and returns the id.
  /// Throws caresync::error (storage_errc::invalid_argument) for an unknown collection or
  /// field or a value of the wrong type; (io_failed) if the write fails.
  record_id create(std::string_view collection, const std::vector<field_write>& fields);

  /// Sets some fields of an existing record.
  /// Throws caresync::error: not_found if the record does not exist or was deleted;
  /// invalid_argument as for create().
  void update(std::string_view collection, const record_id& id, const std::vector<field_write>& fields);

  /// Deletes a record (a tombstone that syncs). Throws not_found if it does not exist.
  void remove(std::string_view collection, const record_id& id);

  /// Runs `body` in one transaction: the writes it makes commit together, or none if it
  /// throws (the exception is rethrown). Nested calls join the outer transaction.
  void transaction(const std::function<void()>& body);

  /// A record's current fields; std::nullopt if it does not exist or was deleted.
  std::optional<record_fields> get(std::string_view collection, const record_id& id) const;

  /// Receipt: true when every local change to this record has been stored by the server
  /// (it is safe there). False while any is waiting in the outbox or held in quarantine;
  /// a quarantined change the app dropped no longer counts.
  bool is_synced(std::string_view collection, const record_id& id) const;

  /// Number of changes waiting in the outbox.
  std::size_t outbox_size() const;

  /// Changes the server refused, oldest first (docs/durability.md, "Quarantine").
  std::vector<quarantined_change> quarantined() const;
  /// Puts a quarantined change back in the outbox, for when what the server refused was
  /// fixed (its limit raised, say). The next push sends the record's current values of
  /// the fields the change wrote. Throws not_found for an unknown id.
  void retry_quarantined(std::int64_t id);
  /// Forgets a quarantined change: it will not be sent. The record keeps its local
  /// values, which the server does not have, until they are written again; to correct
  /// the record, write the right value (a normal update) and then drop the change.
  /// Throws not_found for an unknown id.
  void drop_quarantined(std::int64_t id);

  /// Every open conflict, by collection, record id and field.
  std::vector<open_conflict> conflicts() const;
  /// The open conflicts of one record.
  std::vector<open_conflict> conflicts(std::string_view collection, const record_id& id) const;
  /// Number of fields with open conflicts (a revived record counts once, as field "").
  std::size_t conflict_count() const;
  /// Resolves the open conflict of a field by writing `v` (one of the values, or a merge
  /// of them): a normal change that replaces the current value and every value of the
  /// conflict, so every replica closes it when the change arrives. Throws not_found when
  /// the field has no open conflict or the record was deleted; invalid_argument as for
  /// update().
  void resolve_conflict(std::string_view collection, const record_id& id, std::string_view field, const value& v);
  /// Closes the open conflict of a field keeping the current value (a change like
  /// resolve_conflict with that value); on a deleted record, a delete that covers the
  /// edits it overrode (closes every conflict of the record); field "" of a revived
  /// record (open_conflict::record_revived), an edit saying its delete is dismissed.
  /// Throws not_found when there is none.
  void dismiss_conflict(std::string_view collection, const record_id& id, std::string_view field);

  /// Gives each open conflict to its collection's resolver, when this device wrote the
  /// value shown, and resolves it with the value returned (resolve_conflict). Returns the
  /// number resolved. sync_client calls it; apps may call it after local writes too.
  std::size_t run_resolvers();

  /// The server sequence number up to which changes have been pulled.
  std::uint64_t cursor() const;

  /// This replica's node id (random, made when the store was created).
  node_id node() const noexcept;

  /// Canonical SHA-256 of every record (see caresync::state_hasher); two converged
  /// replicas return the same digest. Reads everything.
  std::string state_digest() const;

  /// Number of live (not deleted) records in a collection.
  std::size_t count(std::string_view collection) const;

  /// The path this store was opened at.
  const std::string& path() const noexcept;

  /// Deletes the store's files (the database, its WAL and shared-memory files) and opens
  /// an empty store in their place, with a new node id and nothing to sync: what was not
  /// synced is lost. sync() does it when the server says the device was revoked (a lost
  /// tablet). Flash storage may keep copies of deleted blocks; docs/security.md says what
  /// this does and does not protect. Throws caresync::error (storage_errc::io_failed) if
  /// a file cannot be deleted; the store then holds what is left.
  void wipe();

  /// The schema in use.
  const caresync::schema& schema() const noexcept;

  /// The implementation, opaque to apps; the library's sync client reaches it through
  /// internal(). Not part of the API.
  struct impl;
  impl& internal() noexcept { return *impl_; }

 private:
  explicit store(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

}  // namespace caresync
