#pragma once
/// The messages of the sync conversation (docs/protocol.md is normative).
///   client -> server: hello (or enroll), push, pull, prime, ping
///   server -> client: welcome (or enrolled), push_result, changes_page, error, pong
/// Thread contract: plain values.

#include <caresync/protocol/change.hpp>
#include <caresync/protocol/merge.hpp>

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

namespace caresync::wire {

/// The protocol version this build speaks; sent first in hello. Version 2 added the
/// refused changes of push_result; version 3 the kept fields of a change (keep_both)
/// and the open-conflict count in hello; version 4 the prioritised initial sync (prime,
/// and pull's prime spec) and the remaining counts of a changes page; version 5 the
/// restored fields of a refusal (server_only) and scopes (pull's scope epoch; a changes
/// page's purges and backfilled records); version 6 revivable deletes and the
/// dismissal of a revived record (bits 4 and 3 of a change's kind byte); version 7 pages
/// laid out column by column, pushes without a node id per change and with numbered
/// batches, streamed answers bounded in pages (pull's max_pages) and stream compression
/// (k_feature_zstd_stream).
inline constexpr std::uint16_t k_protocol_version = 7;

/// Feature bits offered in hello and granted in welcome. Of the compression bits the
/// server grants at most one, zstd before deflate.
inline constexpr std::uint32_t k_feature_deflate = 1u << 0;  ///< frames may be deflate-compressed
inline constexpr std::uint32_t k_feature_zstd = 1u << 1;     ///< frames may be zstd-compressed
inline constexpr std::uint32_t k_feature_wait = 1u << 2;     ///< the server answers `wait` (live mode)
/// The server answers a pull with its pages in a row, unasked after the first, until one
/// has more = 0 or a scope epoch (docs/protocol.md, "5 pull").
inline constexpr std::uint32_t k_feature_stream = 1u << 3;
/// Version 7, with zstd: the server's compressed frames are the chunks of one zstd stream
/// per connection (frame_stream.hpp; docs/protocol.md, "Compression").
inline constexpr std::uint32_t k_feature_zstd_stream = 1u << 4;
/// Offered: the device can store a new token the server hands it (its app keeps it
/// durably before the library uses it). Granted exactly when the welcome carries one,
/// welcome::new_token (docs/protocol.md, "Token rotation").
inline constexpr std::uint32_t k_feature_token_rotation = 1u << 5;

/// Message type numbers, the fifth byte of each frame's header.
enum class message_type : std::uint8_t {
  hello = 1,
  welcome = 2,
  push = 3,
  push_result = 4,
  pull = 5,
  changes = 6,
  error = 7,
  ping = 8,
  pong = 9,
  wait = 10,
  prime = 11,
  enroll = 12,
  enrolled = 13,
};

/// First message from a client: who it is and what it speaks.
struct hello {
  std::uint16_t protocol_version = k_protocol_version;
  std::string client_name;  ///< software and version, for the server's logs
  std::string device_id;
  std::string token;        ///< secret; never logged
  node_id node = 0;         ///< the replica's node id; its own changes are not sent back
  std::uint32_t features = 0;
  // Fleet health, as the device stands when it connects (for supervisors: a tablet with a
  // growing queue that never syncs is data at risk).
  std::string app_version;        ///< the app's name and version, for the fleet list
  std::uint64_t outbox = 0;       ///< local changes waiting to be pushed
  std::uint64_t quarantined = 0;  ///< local changes the server refused and the app has not resolved
  std::uint64_t open_conflicts = 0;  ///< fields holding concurrent values nobody has resolved yet
  friend bool operator==(const hello&, const hello&) = default;
};

/// A new device's first and only message: it presents a one-time enrollment code an
/// administrator gave its user, instead of hello (docs/protocol.md, "Enrollment").
struct enroll {
  std::uint16_t protocol_version = k_protocol_version;
  std::string client_name;  ///< software and version, for the server's logs
  std::string code;         ///< secret; never logged
  std::string app_version;
  friend bool operator==(const enroll&, const enroll&) = default;
};

/// The answer to an accepted enroll: the device's credentials for every hello after.
struct enrolled {
  std::string device_id;
  std::string token;      ///< secret: the server keeps only its hash; never logged
  std::string user_id;    ///< whose device it is
  std::string user_name;  ///< for the app to greet its user
  friend bool operator==(const enrolled&, const enrolled&) = default;
};

/// The server's answer to an accepted hello.
struct welcome {
  std::uint16_t protocol_version = k_protocol_version;
  std::string server_name;
  std::uint64_t server_time_ms = 0;    ///< the server's wall clock
  std::uint32_t features = 0;          ///< granted: the intersection with hello's
  std::uint32_t max_frame_bytes = 0;   ///< the largest frame the server accepts
  std::uint32_t max_push_changes = 0;  ///< the most changes one push may carry
  std::uint64_t log_head = 0;          ///< the highest sequence number accepted so far
  std::uint64_t max_clock_ahead_ms = 0;  ///< changes stamped further ahead of server_time_ms are refused (clock_ahead)
  /// Sent (and read) exactly when `features` has k_feature_token_rotation: the device's
  /// next token, never empty; the one in the hello stays valid until a hello presents
  /// this one. Secret; never logged.
  std::string new_token{};
  friend bool operator==(const welcome&, const welcome&) = default;
};

/// A batch of local changes; applied atomically and at most once per (device, batch).
/// Version 7: the wire carries no node id per change (every change is the pushing
/// replica's own, hello.node); decode() leaves each change's node 0 and the receiver sets
/// it, and encode() does not write it. `batch` is sent as a number when it is one
/// (is_numbered_batch), else as its 16 bytes (a batch pinned by a version 6 store).
struct push {
  batch_id batch;
  std::vector<change> changes;
  friend bool operator==(const push&, const push&) = default;
};

/// A field as the server holds it: its newest accepted write (version 0 and null when
/// nothing was accepted). Sent with a server_only refusal, so the device puts back what
/// its refused write replaced.
struct restored_field {
  std::string name;
  value val;
  version ver;
  /// The field's open conflicts on the server, ascending by version (edits of a deleted
  /// record that its delete did not cover; docs/conflicts.md, "Deletes").
  std::vector<conflict_value> conflicts{};
  bool record_deleted = false;  ///< the server holds the record as deleted (a tombstone)
  friend bool operator==(const restored_field&, const restored_field&) = default;
};

/// A change of a push that the server did not store, and why. The device sets it aside
/// (quarantine), re-stamps it (clock_ahead) or reverts the fields named in `restore`
/// (server_only), and the rest of its outbox goes on.
struct refusal {
  std::uint32_t index = 0;  ///< the change's position in the push, from 0
  std::uint16_t code = 0;   ///< a protocol_errc value
  std::string reason;       ///< for a person: the rule or limit broken, never the value
  /// server_only: every field of the change the device may not write, with the server's
  /// value; distinct names. Empty for other codes.
  std::vector<restored_field> restore{};
  friend bool operator==(const refusal&, const refusal&) = default;
};

/// The answer to a push; the same answer is given again for a resent batch.
struct push_result {
  batch_id batch;
  std::uint32_t accepted = 0;   ///< changes stored: all of the batch but the refused
  std::uint64_t first_seq = 0;  ///< sequence number of the first stored (0 if none)
  std::uint64_t last_seq = 0;
  bool replayed = false;        ///< true: this batch was stored before; nothing applied now
  std::vector<refusal> refused;  ///< in increasing index order
  friend bool operator==(const push_result&, const push_result&) = default;
};

/// How a priority tier picks records.
enum class prime_match : std::uint8_t {
  all = 0,       ///< every live record of the collection
  equals = 1,    ///< the field's current value equals the operand
  at_least = 2,  ///< the field's current value is >= the operand (same kind; text by bytes)
};

/// One tier of a prioritised initial sync: which records of a collection come first.
struct prime_tier {
  std::string collection;
  prime_match match = prime_match::all;
  std::string field;  ///< empty when match is all
  value operand;      ///< null when match is all; else integer, real or text
  friend bool operator==(const prime_tier&, const prime_tier&) = default;
};

/// The most tiers a prime spec may hold.
inline constexpr std::size_t k_max_prime_tiers = 16;

/// What a new device asks for first (docs/protocol.md, "Prioritised initial sync"):
/// every change with a sequence number up to `until` of each record whose current state,
/// as of `until`, matches a tier. `until` 0 and no tiers: none.
struct prime_spec {
  std::uint64_t until = 0;
  std::vector<prime_tier> tiers;
  friend bool operator==(const prime_spec&, const prime_spec&) = default;
};

/// Asks for changes with sequence numbers above `cursor`. A pull that carries the prime
/// spec of a completed priority phase leaves out the changes that phase delivered.
struct pull {
  std::uint64_t cursor = 0;
  std::uint32_t max_changes = 0;  ///< 0: the server's default
  std::uint32_t max_bytes = 0;    ///< 0: the server's default
  prime_spec prime{};             ///< protocol version 4; until 0: none
  // --- scopes (protocol version 5; docs/protocol.md, "Scopes"), after every other field.
  /// The scope epoch of the last page carrying purges or backfilled records that the
  /// device has stored (0: none). The server takes it as proof that the device applied
  /// those pages, and sends again what a later, lost page carried.
  std::uint64_t scope_epoch = 0;
  /// Version 7: with k_feature_stream granted, the most pages the streamed answer holds
  /// (0: no bound, every page up to one with more = 0 or a scope epoch). Lets a client
  /// resize its pages to the link between streams (docs/protocol.md, "5 pull").
  std::uint64_t max_pages = 0;
  friend bool operator==(const pull&, const pull&) = default;
};

/// Asks for the changes of a priority phase from `position` (how many of them the device
/// already holds). Answered by a changes page whose next_cursor is the next position;
/// its items come in priority order, so their sequence numbers may go down between
/// records (never within one record).
struct prime {
  prime_spec spec;
  std::uint64_t position = 0;
  std::uint32_t max_changes = 0;  ///< as in pull
  std::uint32_t max_bytes = 0;
  friend bool operator==(const prime&, const prime&) = default;
};

/// Asks for changes above `cursor` as pull does, but when there are none the server
/// holds the answer until some arrive or `max_wait_ms` has passed (live mode; only when
/// welcome granted k_feature_wait). Answered by a changes page, empty on timeout.
struct wait {
  std::uint64_t cursor = 0;
  std::uint32_t max_wait_ms = 0;  ///< the server may wait less (its own cap)
  std::uint32_t max_changes = 0;  ///< as in pull
  std::uint32_t max_bytes = 0;
  friend bool operator==(const wait&, const wait&) = default;
};

/// A record the device must delete: it left the device's scope (docs/protocol.md, "Scopes").
struct scope_purge {
  std::string collection;
  record_id id;
  friend bool operator==(const scope_purge&, const scope_purge&) = default;
};

/// One page of changes in sequence order, and where the next page starts.
struct changes_page {
  std::vector<sequenced_change> items;
  std::uint64_t next_cursor = 0;  ///< pull from here next; covers skipped own changes too
  bool more = false;              ///< true: changes above next_cursor exist now
  /// What is left after this page, as the server counted when the session's first page
  /// (or prime) was asked for: changes, and their bytes as page items (uncompressed).
  /// After a prime page it includes the pull that follows. An estimate for progress.
  std::uint64_t remaining_changes = 0;
  std::uint64_t remaining_bytes = 0;
  // --- scopes (protocol version 5; docs/protocol.md, "Scopes"), after every other field.
  /// Non-zero when the page carries purges or backfilled records: the device stores it
  /// with the page and sends it in its next pull (pull::scope_epoch).
  std::uint64_t scope_epoch = 0;
  /// Records that left the device's scope: delete them and everything kept of them.
  std::vector<scope_purge> purges{};
  /// Records that entered the device's scope: every change of each, record by record and
  /// in sequence order within a record. A backfilled record replaces whatever the device
  /// held of it. Sequence numbers are the log's and may lie at or below the cursor, or
  /// above next_cursor (the server leaves those out of later pages).
  std::vector<sequenced_change> backfill{};
  friend bool operator==(const changes_page&, const changes_page&) = default;
};

/// A refusal or failure; the sender closes the connection after it unless stated.
struct error {
  std::uint16_t code = 0;  ///< a protocol_errc value
  bool transient = false;  ///< retrying later may succeed
  std::string message;     ///< one sentence for a person: what happened, what to do
  friend bool operator==(const error&, const error&) = default;
};

struct ping {
  std::uint64_t nonce = 0;
  friend bool operator==(const ping&, const ping&) = default;
};

struct pong {
  std::uint64_t nonce = 0;
  friend bool operator==(const pong&, const pong&) = default;
};

/// Any message; the index order matches nothing on the wire (use type_of()).
using message =
    std::variant<hello, welcome, push, push_result, pull, changes_page, error, ping, pong, wait, prime, enroll, enrolled>;

/// The wire type number of `m`.
message_type type_of(const message& m) noexcept;

/// A readable name of a message type, for errors and logs ("push", "changes", ...).
const char* to_string(message_type t) noexcept;

}  // namespace caresync::wire
