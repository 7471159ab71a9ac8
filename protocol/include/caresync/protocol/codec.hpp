#pragma once
/// Encoding of messages to payload bytes and back (cereal portable binary archive,
/// little-endian, with caresync's compact integers and lengths; docs/protocol.md).
/// Decoding treats its input as hostile: every length is checked against the bytes left,
/// enums and bools must be in range, trailing bytes are refused.
/// Thread contract: free functions, no shared state.

#include <caresync/protocol/messages.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <variant>
#include <vector>

namespace caresync::wire {

using bytes = std::vector<std::uint8_t>;

/// Encodes a message's payload (without the frame header).
bytes encode(const message& m);

/// Decodes the payload of a frame of type `type`.
/// Throws protocol_error (malformed, unknown_message) on any fault; never reads or
/// allocates past `payload`.
message decode(message_type type, std::span<const std::uint8_t> payload);

/// Decodes a push payload as decode() does, gives every change `node` (the pusher's:
/// version 7 sends none), and sets `sent` to each change's stored form (encode_change)
/// less its marker byte, as the device wrote it with the node put in: spans into
/// `rebuilt`, which holds them (so a server can store them without encoding them again).
push decode_push(std::span<const std::uint8_t> payload, node_id node, bytes& rebuilt,
                 std::vector<std::span<const std::uint8_t>>& sent);

/// Decodes the payload of a push as protocol version 6 made it (a 16-byte batch id; each
/// change with its node id): a batch a store pinned before it was upgraded, read to be
/// sent again in this version's form. Throws protocol_error on any fault.
push decode_version6_push(std::span<const std::uint8_t> payload);

/// Encodes one change as stored by outboxes and the server's log: the archive's
/// endianness byte followed by the change (docs/protocol.md, "change").
bytes encode_change(const change& c);

/// Decodes what encode_change made. Throws protocol_error on any fault.
change decode_change(std::span<const std::uint8_t> stored);

/// True for a value a priority tier may compare with (equals, at_least): an integer, a
/// real that is not NaN, or a text.
bool is_prime_operand(const value& v) noexcept;

/// Bytes a change takes as an item of a changes page: its sequence number as a uvarint,
/// then the change as stored without the marker byte. What remaining_bytes counts.
std::size_t page_item_bytes(std::uint64_t seq, std::span<const std::uint8_t> stored);
/// The same for a decoded item (encodes it to measure).
std::size_t page_item_bytes(const sequenced_change& item);

/// Builds a changes payload from changes kept in encode_change form, so a server can
/// serve pages without decoding what it stored; finish() lays them out column by column
/// (version 7, docs/protocol.md, "Change blocks").
/// Thread contract: one thread at a time.
class changes_page_builder {
 public:
  /// Appends a stored change (as made by encode_change) with its sequence number.
  void add(std::uint64_t seq, std::span<const std::uint8_t> stored_change);
  /// Number of changes added so far.
  std::size_t count() const noexcept { return count_; }
  /// Bytes of changes added so far, as page items in row form (page_item_bytes): what
  /// a pull's max_bytes bounds.
  std::size_t size_bytes() const noexcept { return items_.size(); }
  /// Room for `bytes` bytes of changes, so that the page is not moved as it grows; taken
  /// when the first change is added (an empty page takes none).
  void reserve(std::size_t bytes) noexcept { room_ = bytes; }
  /// Returns the payload of a `changes` message. Throws protocol_error (malformed) if a
  /// stored change added does not parse.
  bytes finish(std::uint64_t next_cursor, bool more, std::uint64_t remaining_changes = 0,
               std::uint64_t remaining_bytes = 0) const;

  // --- scopes (protocol version 5): purges and backfilled records, sent after the items.
  /// Appends a purge of one record.
  void add_purge(std::string_view collection, const record_id& id);
  /// Appends a backfilled change (stored form, as add()).
  void add_backfill(std::uint64_t seq, std::span<const std::uint8_t> stored_change);
  /// The page's scope epoch (0 unless it carries purges or backfilled changes).
  void set_scope_epoch(std::uint64_t epoch) noexcept { scope_epoch_ = epoch; }
  std::uint64_t scope_epoch() const noexcept { return scope_epoch_; }
  std::size_t purge_count() const noexcept { return purge_count_; }
  std::size_t backfill_count() const noexcept { return backfill_count_; }
  /// Bytes of purges and backfilled changes added so far.
  std::size_t scope_bytes() const noexcept { return purges_.size() + backfill_.size(); }

 private:
  bytes items_;  ///< rows: each change's seq (uvarint) and stored form less the marker
  std::vector<std::size_t> item_ends_;  ///< where each row of items_ ends
  std::size_t room_ = 0;  ///< reserve()'s bytes, not yet taken
  std::size_t count_ = 0;
  bytes purges_;
  bytes backfill_;
  std::vector<std::size_t> backfill_ends_;
  std::size_t purge_count_ = 0;
  std::size_t backfill_count_ = 0;
  std::uint64_t scope_epoch_ = 0;
};

/// A field value seen where it lies (a database row, a buffer) rather than copied into a
/// `value`: the alternatives are value's, in its order (the index is the wire tag), with
/// text as a string_view and bytes as a span. The viewed bytes must outlive its use.
using value_view = std::variant<std::monostate, std::int64_t, double, std::string_view, std::span<const std::uint8_t>>;

/// One field of a plain upsert given as views (push_builder::add_upsert).
struct field_view {
  std::string_view name;
  value_view val;
};

/// Builds a push payload change by change, byte for byte as encode(push{batch, changes})
/// would, so a device can write a change straight from where it keeps it (its record's
/// row) without first making a `change`.
/// Thread contract: one thread at a time.
class push_builder {
 public:
  /// Appends any change.
  void add(const change& c);
  /// Appends a plain upsert: `fields` (views, read before this returns) and nothing else:
  /// no kept list, no items, no covered or dismissed versions, not revivable. The same
  /// bytes as add() of that change. Throws protocol_error (malformed), appending nothing,
  /// unless the names are in strictly ascending order (as a change's fields are sent).
  void add_upsert(std::string_view collection, const record_id& id, const version& ver,
                  std::span<const field_view> fields);
  /// Number of changes added so far.
  std::size_t count() const noexcept { return count_; }
  /// Bytes of changes added so far.
  std::size_t size_bytes() const noexcept { return changes_.size(); }
  /// Returns the payload of a push message of `batch` with the changes added, in order.
  bytes finish(const batch_id& batch) const;

 private:
  bytes changes_;
  std::size_t count_ = 0;
};

}  // namespace caresync::wire
