#pragma once
/// The merge rule shared by tablets and the server (docs/protocol.md, "Merge rule";
/// docs/conflicts.md): per-field last-writer-wins by version (stamp, then node id); a
/// field written under keep_both also keeps every concurrent value that lost, as an open
/// conflict, until a write that saw it replaces it; a tombstone deletes the record for
/// good and later field writes to it are ignored; a revivable delete only hides the
/// record until an edit it did not cover arrives. Last-writer-wins and tombstones are
/// commutative, associative and idempotent; kept conflicts are a function of the set of
/// changes given that each change arrives after the changes it replaces (which sync
/// guarantees: a replica only replaces what it has received).
/// Thread contract: pure functions over plain values.

#include <caresync/protocol/change.hpp>

#include <map>
#include <memory>
#include <string_view>
#include <optional>
#include <string>
#include <vector>

namespace caresync {

/// A concurrent value of a field that lost to the current one and is kept (keep_both).
struct conflict_value {
  value val;
  version ver;
  friend bool operator==(const conflict_value&, const conflict_value&) = default;
};

/// A field's current value and the version that wrote it.
struct field_state {
  value val;
  version ver;
  bool kept = false;                      ///< the current value was written under keep_both
  std::vector<conflict_value> conflicts{};  ///< open conflicts, ascending by version
  /// append and set_union fields: the live items (entry or element, and the version that
  /// added it), ascending by (version, value); `val` is then their rendering as a JSON
  /// array of strings (append: in version order; set_union: distinct, sorted by bytes)
  /// and `ver` the greatest version of an operation on the field.
  std::vector<conflict_value> items{};
  friend bool operator==(const field_state&, const field_state&) = default;
};

/// The merged state of one record.
struct record_state {
  std::map<std::string, field_state> fields;  ///< values cleared once deleted; kept while only removed
  std::optional<version> deleted;             ///< the greatest final tombstone seen
  /// The greatest revivable delete seen (change::revivable, update_revives).
  std::optional<version> removed{};
  /// The versions held in `fields` (current values, open conflicts, items) that
  /// revivable deletes cover, ascending; empty once deleted.
  std::vector<version> covered{};
  /// The greatest revivable delete dismissed (change::dismisses).
  std::optional<version> dismissed{};
  friend bool operator==(const record_state&, const record_state&) = default;
};

/// Every version the record holds (current values, open conflicts, items), ascending,
/// without repeats: what a delete written now covers.
std::vector<version> held_versions(const record_state& state);

/// Whether the record is gone for the app: it has a final tombstone, or it was removed
/// by revivable deletes and every version it holds is covered by them.
bool is_hidden(const record_state& state) noexcept;

/// Whether the record came back after a revivable delete (an edit the deletes did not
/// cover) and nobody has dismissed that delete yet: the delete is an open conflict.
bool is_revived(const record_state& state) noexcept;

/// What merging one change did.
struct merge_outcome {
  std::vector<std::string> updated;  ///< fields whose value the change set
  std::vector<std::string> conflicts_changed;  ///< fields whose open conflicts changed
  std::vector<std::string> items_changed;      ///< append and set_union fields whose items changed
  std::size_t superseded = 0;        ///< field writes that lost to a newer stored version
  std::size_t conflicts_opened = 0;  ///< values newly kept as open conflicts
  bool deleted_now = false;          ///< the change deleted a live record (a final tombstone)
};

/// Merges `incoming` into `state` by the rule above.
merge_outcome merge(record_state& state, const change& incoming);

/// The value shown for an append or set_union field: its items as a JSON array of
/// strings (append: in the order of `items`; set_union: distinct, sorted by bytes).
std::string render_items(item_policy policy, const std::vector<conflict_value>& items);

}  // namespace caresync

namespace caresync {

/// A canonical SHA-256 over records, equal on two replicas exactly when they hold the
/// same records, fields, values and versions. Used to prove convergence.
/// Thread contract: one thread at a time.
class state_hasher {
 public:
  state_hasher();
  ~state_hasher();
  state_hasher(const state_hasher&) = delete;
  state_hasher& operator=(const state_hasher&) = delete;

  /// Adds one record. Records must be added in (collection, id) order, each once.
  void add(std::string_view collection, const record_id& id, const record_state& state);
  /// Number of records added.
  std::size_t count() const noexcept { return count_; }
  /// The lowercase hex digest. Call once.
  std::string finish();

 private:
  struct ctx_deleter {
    void operator()(void* ctx) const noexcept;
  };
  std::unique_ptr<void, ctx_deleter> ctx_;
  std::size_t count_ = 0;
};

}  // namespace caresync
