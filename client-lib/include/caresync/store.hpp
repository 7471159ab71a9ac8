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
#include <caresync/schema.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace caresync {

/// How hard a commit works to survive power loss.
enum class durability {
  full,    ///< fsync at every commit (SQLite synchronous=FULL): a saved visit survives a dead battery
  normal,  ///< survives an app crash, may lose the last commits on power loss (synchronous=NORMAL)
};

/// How to open a store.
struct store_options {
  std::string path;  ///< the SQLite file; created if missing
  caresync::schema schema;
  caresync::durability durability = durability::full;
};

/// A record's fields by name, including fields the schema does not declare (kept from
/// newer app versions).
using record_fields = std::map<std::string, value>;

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

  /// Receipt: true when every local change to this record has been acknowledged by the
  /// server (it is safe there). False while any is waiting in the outbox.
  bool is_synced(std::string_view collection, const record_id& id) const;

  /// Number of changes waiting in the outbox.
  std::size_t outbox_size() const;

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
