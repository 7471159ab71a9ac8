#pragma once
/// The declared shape of a store's data: collections, their fields and field types.
/// Each collection becomes a real SQLite table the app can read with plain SQL.
/// Thread contract: plain values.

#include <caresync/protocol/value.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace caresync {

/// How concurrent writes to one field merge (docs/conflicts.md says which to pick).
enum class merge_policy {
  /// The write with the greatest (clock stamp, node id) wins; the other is dropped.
  last_writer_wins,
  /// The same winner, but a concurrent value that lost is kept as an open conflict,
  /// listed by store::conflicts() on every replica until someone resolves or dismisses
  /// it. For free text people write, such as visit notes.
  keep_both,
  /// A log: each write adds one entry (the text written); entries from every replica are
  /// all kept, ordered by version. The column shows a JSON array of the entries. Text only.
  append,
  /// A set of text elements: a write gives the whole set as a JSON array of strings, and
  /// the store sends the elements added and removed. An add concurrent with a remove
  /// wins. The column shows the elements as a JSON array, sorted. Text only.
  set_union,
};

/// What a delete does against a concurrent edit (docs/conflicts.md, "Deletes"). Either
/// way the other side's change is shown as an open conflict.
enum class delete_policy {
  /// The delete is final: the record stays deleted, and an edit made without seeing the
  /// delete is kept on the tombstone as an open conflict (open_conflict::record_deleted).
  delete_wins,
  /// An edit made without seeing the delete brings the record back with all its values;
  /// the delete is then an open conflict (open_conflict::record_revived) until dismissed.
  update_revives,
};

/// One field of a collection: a column of its table. Every field may also hold null.
struct field_def {
  std::string name;  ///< 1-63 characters of [a-z0-9_], starting with a letter
  value_kind type;   ///< integer, real, text or bytes (not null)
  merge_policy policy = merge_policy::last_writer_wins;
  /// Only the server side (an office tool, a registry import; store_options::server_side)
  /// writes it: on a field device store::create and update refuse it, and the server,
  /// which lists it in its own config, refuses a write that gets through (an older app)
  /// and the store puts back the server's value (docs/conflicts.md). Last-writer-wins only.
  bool server_only = false;
};

/// A collection of records: one table named like the collection, with a TEXT primary
/// key `id` (the record id in canonical UUID form) and one column per field.
struct collection_def {
  std::string name;
  std::vector<field_def> fields;
  /// What this app's deletes do against concurrent edits. Each delete carries it, so
  /// replicas with another app version (or the server) merge it the same way.
  delete_policy deletes = delete_policy::delete_wins;

  /// The field named `name`, or nullptr.
  const field_def* find(std::string_view name) const noexcept;
  /// Whether any field is keep_both.
  bool keeps_conflicts() const noexcept;
  /// Whether any field is append or set_union.
  bool has_items() const noexcept;
};

/// All collections of a store.
struct schema {
  std::vector<collection_def> collections;
  /// SQL statements the store runs at every open (and when wipe() reopens it), in the
  /// transaction that creates the tables, after them: for objects an app or a layer
  /// derives from the collections' tables, such as indexes, triggers and the care
  /// registry's search index (docs/care.md). Each must be idempotent (CREATE ... IF NOT
  /// EXISTS) and must not write the collections' tables; a trigger on them runs inside
  /// the store's own writes, local or synced, so it must never fail. A failing statement
  /// fails store::open (storage_errc, with SQLite's message).
  std::vector<std::string> setup_sql = {};

  /// The collection named `name`, or nullptr.
  const collection_def* find(std::string_view name) const noexcept;
};

/// Checks names (valid, not reserved, unique) and types (not null; `id` is not a field).
/// Throws caresync::error (storage_errc::invalid_argument) saying which name is at fault.
void validate(const schema& s);

}  // namespace caresync
