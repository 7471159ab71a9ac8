#pragma once
/// Changes: one write to one record, as stored in outboxes and change logs and sent on
/// the wire. Thread contract: plain values.

#include <caresync/protocol/hlc.hpp>
#include <caresync/protocol/record_id.hpp>
#include <caresync/protocol/value.hpp>

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <string>
#include <vector>

namespace caresync {

/// One field set to one value.
struct field_write {
  std::string name;
  value val;
  friend bool operator==(const field_write&, const field_write&) = default;
};

/// What a change does to its record. Numbered as on the wire.
enum class change_kind : std::uint8_t {
  upsert = 0,  ///< sets the listed fields (creating the record if new)
  remove = 1,  ///< deletes the record: a tombstone, which wins over any field write
};

/// A field written under the keep_both policy (docs/conflicts.md): its earlier writes
/// that this write knowingly replaces, i.e. the values its writer had in front of her.
/// Any other write to the field that is neither replaced nor the newest stays visible
/// as an open conflict.
struct kept_field {
  std::string name;                 ///< one of the change's fields
  std::vector<version> supersedes;  ///< ascending, no duplicates; empty for a first write
  friend bool operator==(const kept_field&, const kept_field&) = default;
};

/// How an item operation merges (docs/conflicts.md).
enum class item_policy : std::uint8_t {
  append = 1,     ///< adds entries to a log; every entry of every replica is kept, ordered by version
  set_union = 2,  ///< adds and removes elements of a set; an add concurrent with a remove wins
};

/// An operation on a field holding items rather than one value: a log (append) or a set
/// (set_union). Each item added carries the change's version as its tag.
struct item_op {
  std::string field;
  item_policy policy = item_policy::append;
  std::vector<std::string> add;  ///< entries (append: exactly one) or elements (set_union) added
  std::vector<version> remove;   ///< set_union: tags of the element adds this write saw and removes; ascending
  friend bool operator==(const item_op&, const item_op&) = default;
};

/// One write: every field in it carries the change's version.
struct change {
  std::string collection;
  record_id id;
  version ver;
  change_kind kind = change_kind::upsert;
  std::vector<field_write> fields;  ///< empty for remove
  std::vector<kept_field> kept{};   ///< the fields written under keep_both, by name; empty for remove
  std::vector<item_op> items{};     ///< operations on append and set_union fields (not in `fields`); empty for remove
  /// A remove's view of the record: the versions of the values its writer had (current
  /// values, open conflicts, items), ascending. An edit of the record not among them was
  /// concurrent with the delete and is kept visible (docs/conflicts.md, "Deletes").
  /// std::nullopt: a delete that does not say (version 2 peers): it covers everything.
  std::optional<std::vector<version>> covers{};
  /// A remove of a collection whose deletes an edit revives (collection_def::deletes,
  /// update_revives): the record is only hidden while every version it holds is covered
  /// by such deletes, and comes back, with its values, when an edit they do not cover
  /// arrives (docs/conflicts.md, "Deletes"). False: the tombstone is final. Set by the
  /// writer from its schema; replicas merge it without knowing the schema.
  bool revivable = false;
  /// An edit that dismisses a revived record's open conflict: the greatest revivable
  /// delete of the record its writer had (record_state::removed). Upserts only.
  std::optional<version> dismisses{};
  friend bool operator==(const change&, const change&) = default;

  /// The kept entry of field `name`, or nullptr (a last-writer-wins write).
  const kept_field* kept_of(std::string_view name) const noexcept;
};

/// A change as accepted by the server, with its global sequence number (1, 2, ...).
struct sequenced_change {
  std::uint64_t seq = 0;
  change body;
  friend bool operator==(const sequenced_change&, const sequenced_change&) = default;
};

}  // namespace caresync

namespace caresync {

/// Bounds a receiver enforces on each change (docs/protocol.md, "Limits").
struct change_limits {
  std::size_t max_fields = 256;
  std::size_t max_value_bytes = 1u << 20;  ///< text or bytes value
  std::size_t max_supersedes = 64;  ///< versions one kept field may replace
};

/// True for collection and field names caresync accepts: 1-63 characters of [a-z0-9_],
/// starting with a letter, not starting with "cs_" (reserved for caresync's own tables).
bool is_valid_name(std::string_view name) noexcept;

/// Checks a change received from a peer: names valid, no duplicate fields, a remove has
/// no fields, no NaN reals, values within `limits`; each kept entry names a field of the
/// change once, with at most `limits.max_supersedes` ascending versions, all older than
/// the change's own; each item op names a field not in `fields` and no other op's, adds
/// only non-empty text within the value limit (append: exactly one entry, no removes),
/// and removes ascending versions older than the change's own. Returns an empty string
/// when it is acceptable, else
/// a one-sentence reason naming the collection and field (never a value).
std::string check_change(const change& c, const change_limits& limits = {});

/// The field part of check_change, for fields not (yet) in a change: names valid, no
/// duplicates, no NaN, values within `limits`. Same return convention.
std::string check_fields(std::string_view collection, std::span<const field_write> fields,
                         const change_limits& limits = {});

}  // namespace caresync
