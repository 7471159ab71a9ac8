#pragma once
/// The server's storage of accepted changes, behind an interface so that a PostgreSQL
/// implementation can serve several stateless server instances later.
/// Thread contract: implementations are safe to call from any number of threads.

#include <caresync/protocol/change.hpp>
#include <caresync/protocol/codec.hpp>
#include <caresync/protocol/merge.hpp>
#include <caresync/protocol/messages.hpp>
#include <caresync/server/scope.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace caresync::server {

/// What a push did: every change of the batch but the refused got a sequence number,
/// all at once.
struct push_outcome {
  std::uint32_t accepted = 0;
  std::uint64_t first_seq = 0;  ///< 0 when nothing was stored
  std::uint64_t last_seq = 0;
  bool replayed = false;        ///< the batch had been stored before; this is its old outcome
  std::vector<wire::refusal> refused;  ///< the changes not stored, as given to append
};

/// One accepted change of a record, as the append-only log keeps it.
struct history_entry {
  std::uint64_t seq = 0;
  std::string device;             ///< the device that pushed it
  std::uint64_t received_ms = 0;  ///< when the server stored it, by the server's clock
  change body;                    ///< the writer's version (stamp, node), kind and fields
};

/// The latest a device told of itself (fleet health), kept per device.
struct device_health {
  std::string device;
  std::string app_version;
  std::uint64_t outbox = 0;        ///< its changes waiting to be pushed, when it last connected
  std::uint64_t quarantined = 0;   ///< its changes refused and not resolved, likewise
  std::uint64_t last_seen_ms = 0;  ///< when it last connected with valid credentials
  std::uint64_t last_ok_ms = 0;    ///< when a session of it last ended cleanly (0: never)
  std::string last_outcome;        ///< how its last session ended
  std::uint64_t open_conflicts = 0;  ///< fields with concurrent values nobody resolved, likewise
};

/// A person who uses devices, as an administrator created her. Her role and org unit
/// decide the scope of her enrolled devices (docs/security.md, "Scopes and roles").
struct user_record {
  std::string user_id;
  std::string name;
  std::string role;      ///< field_worker, coordinator, registry_admin or admin
  std::string org_unit;  ///< e.g. "kraj-stredocesky/orp-benesov/team-2"
  std::uint64_t created_ms = 0;
  std::uint64_t disabled_ms = 0;  ///< 0: enabled; else when disable_user() disabled her
};

/// What disable_user() did, besides marking the user disabled.
struct user_disabled {
  std::size_t devices_revoked = 0;  ///< her devices not revoked before
  std::size_t codes_dropped = 0;    ///< her enrollment codes not used yet (expired ones too)
};

/// An enrolled device. The token itself is never stored.
struct device_record {
  std::string device_id;
  std::string user_id;  ///< empty: a device added by add_device (no user, not scoped)
  std::string token_sha256;
  std::uint64_t enrolled_ms = 0;
  std::uint64_t revoked_ms = 0;       ///< 0: not revoked
  std::uint64_t told_to_wipe_ms = 0;  ///< when a revoked device last connected and was told to wipe
};

/// An enrolled device's tokens, by their SHA-256 only (docs/security.md, "Token
/// rotation"): the current one, and the one handed to the device at a sync that it has
/// not yet presented.
struct device_tokens {
  std::string current_sha256;
  std::string pending_sha256;    ///< empty: none handed out, or the last one was presented
  std::uint64_t issued_ms = 0;   ///< when the current token was issued (enrolled, or its first hello)
};

/// What presenting an enrollment code did.
struct redemption {
  enum class outcome { enrolled, unknown, used, expired } result = outcome::unknown;
  user_record user;  ///< whose code it was (enrolled only)
};

/// Where a page read stopped.
struct page_position {
  std::uint64_t next_cursor = 0;
  bool more = false;
};

/// One change of a priority phase: its sequence number and its size as a page item.
struct prime_item {
  std::uint64_t seq = 0;
  std::uint64_t bytes = 0;
  std::string collection{};  ///< the record it changes (for scopes and the audit)
  record_id id{};
};

/// How much of the log follows a cursor (for progress).
struct log_extent {
  std::uint64_t changes = 0;
  std::uint64_t bytes = 0;  ///< as page items (wire::page_item_bytes)
};

/// True when `state` is live and matches `tier` (docs/protocol.md, "Prioritised initial
/// sync"): match all, or the field's current value equals the operand, or is at least
/// the operand (integers and reals compare as numbers, text by bytes; other kinds never).
bool matches(const wire::prime_tier& tier, const record_state& state);

/// The key of a record in materialised state.
using record_key = std::pair<std::string, record_id>;

// --- scopes and audit (docs/security.md, "Scopes and roles"; docs/operations.md, "Audit")

/// Who asks the store for something, for scope checks and the audit.
struct requester {
  std::string device;
  std::string user;                     ///< empty: a device listed in the config file
  const device_scope* scope = nullptr;  ///< nullptr: not scoped (a device listed in the config file)
};

/// One line of the audit: who did what to which record, by id; never contents.
struct audit_entry {
  std::uint64_t at_ms = 0;
  std::string device;
  std::string user;
  /// push (an accepted change), refused (a pushed change not stored), receive (a record
  /// sent in a page; seq is its last change sent), purge (the device was told to delete
  /// the record), purge_confirmed (the device stored the page that carried the purge)
  std::string action;
  std::string collection;
  record_id record;
  std::uint64_t seq = 0;  ///< the change's sequence number (0: none, e.g. refused or purge)
  /// refused only: why, as a code (docs/operations.md, "Audit": out_of_scope,
  /// limit_exceeded, clock_ahead, care_rule, referral_transition); empty for other actions
  /// and for refused lines written before reasons were kept.
  std::string reason;
};

/// Which audit lines to export.
struct audit_query {
  std::uint64_t from_ms = 0;  ///< inclusive
  std::uint64_t to_ms = 0;    ///< exclusive
  std::string device;         ///< empty: every device
  std::string user;           ///< empty: every user
};

/// A scoped pull: where from, what to leave out, how much, and which scope epoch the
/// device has stored (wire::pull::scope_epoch).
struct page_request {
  std::uint64_t cursor = 0;
  node_id node = 0;                      ///< the puller's own changes are left out
  std::span<const std::uint64_t> skip;   ///< seqs a priority phase delivered, ascending
  std::uint32_t max_changes = 0;
  std::uint32_t max_bytes = 0;
  std::uint64_t scope_epoch = 0;
};

/// An append-only log of accepted changes with global sequence numbers 1, 2, 3, ...
class change_store {
 public:
  virtual ~change_store() = default;

  /// Stores a batch atomically and durably, all of its changes but those `refused` (in
  /// increasing index order; a server_only refusal's change is stored, as given: the
  /// caller has taken the fields out), and remembers the refusals with it; unless (device, batch)
  /// was stored before, in which case nothing is written and the stored outcome, with
  /// its refusals, is returned with replayed set.
  /// Throws caresync::error (storage category, transient for I/O faults).
  virtual push_outcome append(std::string_view device_id, const batch_id& batch, std::span<const change> changes,
                              std::span<const wire::refusal> refused) = 0;
  /// append() with nothing refused.
  push_outcome append(std::string_view device_id, const batch_id& batch, std::span<const change> changes) {
    return append(device_id, batch, changes, {});
  }

  /// Adds changes with seq > cursor to `page`, in order, skipping changes written by
  /// `exclude_node`, until `max_changes` changes or `max_bytes` bytes are in the page
  /// (at least one change when any is there). Throws caresync::error (storage).
  /// Changes whose seq is in `skip` (ascending) are left out like the puller's own.
  virtual page_position read_page(std::uint64_t cursor, node_id exclude_node, std::span<const std::uint64_t> skip,
                                   std::uint32_t max_changes, std::uint32_t max_bytes, wire::changes_page_builder& page) = 0;
  /// read_page() leaving out only the puller's own changes.
  page_position read_page(std::uint64_t cursor, node_id exclude_node, std::uint32_t max_changes, std::uint32_t max_bytes,
                          wire::changes_page_builder& page) {
    return read_page(cursor, exclude_node, {}, max_changes, max_bytes, page);
  }

  /// The changes of a priority phase (docs/protocol.md, "Prioritised initial sync"):
  /// every change with seq <= spec.until, not written by `exclude_node`, of each record
  /// whose state merged from the log up to spec.until matches a tier (matches()); in the
  /// order of the first tier the record matches, then by seq. Reads the log up to
  /// spec.until. Throws caresync::error (storage).
  virtual std::vector<prime_item> prime_changes(const wire::prime_spec& spec, node_id exclude_node) = 0;
  /// Adds the changes `items` name to `page`, in their order. Throws caresync::error
  /// (storage, corrupt when one is missing).
  virtual void read_changes(std::span<const prime_item> items, wire::changes_page_builder& page) = 0;
  /// The changes after `cursor` not written by `exclude_node`, and their bytes as page
  /// items. Reads the log after cursor. Throws caresync::error (storage).
  virtual log_extent extent(std::uint64_t cursor, node_id exclude_node) = 0;

  /// The highest sequence number stored (0 when empty).
  virtual std::uint64_t head() = 0;

  /// Records how a device's session went: `h` replaces what was kept for h.device, except
  /// that last_ok_ms keeps its old value when `h.last_ok_ms` is 0. Durable.
  /// Throws caresync::error (storage).
  virtual void record_device(const device_health& h) = 0;
  /// Every device that ever connected, by device id.
  virtual std::vector<device_health> fleet() = 0;

  /// Every accepted change of one record, oldest first: the log is append-only, so any
  /// earlier value of a field can be shown. Reads the whole log (for admin tools).
  /// Throws caresync::error (storage).
  virtual std::vector<history_entry> history(std::string_view collection, const record_id& id) = 0;

  // --- users, enrollment codes and devices (docs/security.md). Each throws
  // caresync::error (storage; constraint when an id is taken).

  /// Adds a user; constraint if the id exists.
  virtual void add_user(const user_record& user) = 0;
  virtual std::optional<user_record> find_user(std::string_view user_id) = 0;
  /// Every user, by user id.
  virtual std::vector<user_record> users() = 0;
  /// In one transaction: marks the user disabled at `now_ms` (once), deletes her unused
  /// enrollment codes and revokes every device of hers not revoked yet (as
  /// revoke_device). A disabled user's codes no longer enroll. nullopt if there is no
  /// such user (nothing changed).
  virtual std::optional<user_disabled> disable_user(std::string_view user_id, std::uint64_t now_ms) = 0;
  /// Stores a one-time code for an existing user, by its SHA-256 only.
  virtual void add_enrollment(std::string_view code_sha256, std::string_view user_id, std::uint64_t expires_ms) = 0;
  /// Atomically: if the code is known, unused and not expired at `now_ms`, and its user
  /// is not disabled, marks it used and adds `device` (its user_id set to the code's
  /// user). Otherwise changes nothing (a disabled user's code: unknown).
  virtual redemption redeem_enrollment(std::string_view code_sha256, std::uint64_t now_ms, device_record device) = 0;
  /// Adds a device without an enrollment code and without a user (`device.user_id`
  /// empty: not scoped, like a device of the config file; caresync-server add-device),
  /// usable at its next connection. Constraint if the id exists.
  virtual void add_device(const device_record& device) = 0;
  virtual std::optional<device_record> find_device(std::string_view device_id) = 0;
  /// Every enrolled device, by device id.
  virtual std::vector<device_record> devices() = 0;
  /// Marks the device revoked at `now_ms` (once); false if it is not enrolled.
  virtual bool revoke_device(std::string_view device_id, std::uint64_t now_ms) = 0;
  /// Records that a revoked device connected and was told to wipe.
  virtual void told_to_wipe(std::string_view device_id, std::uint64_t now_ms) = 0;

  // --- token rotation (docs/security.md, "Token rotation"). Each throws
  // caresync::error (storage). The decisions are the session's; these only store.

  /// The enrolled device's tokens; nullopt if it is not enrolled.
  virtual std::optional<device_tokens> find_tokens(std::string_view device_id) = 0;
  /// Atomically, if the device's pending token is still `pending_sha256`: makes it the
  /// current one, issued at `now_ms` (the old current one stops working), with none
  /// pending. Else changes nothing and returns false (another session replaced or
  /// promoted it first).
  virtual bool promote_token(std::string_view device_id, std::string_view pending_sha256, std::uint64_t now_ms) = 0;
  /// Atomically, if the device's current token is still `current_sha256`: stores
  /// `pending_sha256` as its pending token, replacing any. Else changes nothing and
  /// returns false (another session promoted a token first).
  virtual bool set_pending_token(std::string_view device_id, std::string_view current_sha256,
                                 std::string_view pending_sha256) = 0;

  // --- scopes and audit. Each throws caresync::error (storage).

  /// Tells the store the placement rules (which fields place each collection's records in
  /// org units). The store keeps an index of each record's units, rebuilt from the log
  /// when the rules differ from those it was built with (the first call after an upgrade
  /// or a config change reads the whole log once).
  virtual void set_scope_rules(const scope_rules& rules) = 0;

  /// append() for a device: the changes `who.scope` does not allow are refused too, as
  /// out_of_scope, each alone (docs/protocol.md, "Scopes"); every stored and refused
  /// change is audited; the device holds what it wrote. A refused change's record is
  /// sent back to the device at its next pull if it may see it (the device deletes the
  /// record when its change is refused). Checked and stored in one transaction.
  /// `sent`: empty, or for each change its bytes as the device sent them (encode_change
  /// form less the marker byte, wire::decode_push), stored as they are; an empty span
  /// for a change the server altered (stored without server_only fields): encoded anew.
  virtual push_outcome append_as(const requester& who, const batch_id& batch, std::span<const change> changes,
                                 std::span<const wire::refusal> refused,
                                 std::span<const std::span<const std::uint8_t>> sent) = 0;
  /// append_as() with every change encoded by the store.
  push_outcome append_as(const requester& who, const batch_id& batch, std::span<const change> changes,
                         std::span<const wire::refusal> refused) {
    return append_as(who, batch, changes, refused, {});
  }

  /// Called at a scoped device's hello: records the scope it is served with; when the
  /// device's store is new (another node id) forgets what it held; when its scope
  /// changed since it was last served, queues purges of the records it may no longer
  /// see and backfills of those it now may.
  virtual void open_scope(const requester& who, node_id node) = 0;

  /// A page for a device. Unscoped: read_page(), audited. Scoped: first settles what the
  /// device confirmed (scope_epoch), then sends queued purges and backfills, else the log
  /// after the cursor with only the records it may see, a purge for each record it holds
  /// that left its scope and the whole history of each record that entered it
  /// (docs/protocol.md, "Scopes"). Audited; in one transaction.
  virtual page_position serve_page(const requester& who, const page_request& request, wire::changes_page_builder& page) = 0;

  /// prime_changes() leaving out the records `who` may not see.
  virtual std::vector<prime_item> prime_changes_for(const requester& who, const wire::prime_spec& spec,
                                                    node_id exclude_node) = 0;
  /// Records that `items` were sent to `who` (audit, and the records it holds).
  virtual void mark_sent(const requester& who, std::span<const prime_item> items) = 0;

  /// Calls `line` for each audit line of `query`, oldest first.
  virtual void audit(const audit_query& query, const std::function<void(const audit_entry&)>& line) = 0;

  /// The org unit tree. add_org_unit throws storage_errc::constraint if the id exists.
  virtual void add_org_unit(const org_unit& unit) = 0;
  virtual std::vector<org_unit> org_units() = 0;
  /// Replaces a user's name, role and org unit; false if there is no such user.
  virtual bool update_user(const user_record& user) = 0;

  /// Folds the whole log through caresync::merge: the current state of every record.
  /// For tests, the demo and admin tools; reads everything.
  virtual std::map<record_key, record_state> materialize() = 0;
};

/// Opens (creating if needed) a SQLite change store in WAL mode with synchronous=FULL,
/// so an acknowledged push survives a crash or power loss. Beside it, the administrative
/// journal `<stem>.auth-journal` (docs/operations.md, "Backup and restore"): a database
/// behind its journal (restored from a backup) is brought up to it at open; a journal
/// behind its database, missing or another database's is refused (storage_errc::corrupt).
/// Throws caresync::error (storage_errc::open_failed / corrupt) with the path and reason.
std::unique_ptr<change_store> open_sqlite_change_store(const std::string& path);

/// Starts the administrative journal of the server database at `path` anew from the
/// database as it is (after open_sqlite_change_store refused a lost or foreign journal):
/// the old journal, if any, is moved aside. Returns its new name (empty if there was
/// none). The server must be stopped. Throws caresync::error.
std::string reset_sqlite_auth_journal(const std::string& path);

/// Where the administrative journal of the server database at `path` is.
std::string auth_journal_file(const std::string& path);

/// What backup_sqlite_store copied.
struct backup_result {
  std::uint64_t log_head = 0;  ///< the highest sequence number in the copy
  std::uint64_t bytes = 0;     ///< size of the copy
};

/// Copies the SQLite change store at `source` to a new file `destination` with SQLite's
/// online backup API, in one read transaction: a consistent snapshot holding every push
/// acknowledged before it began, taken while a server keeps serving. The copy is checked
/// (integrity_check) before it is reported. Refuses an existing destination.
/// Throws caresync::error (storage) naming the file and the reason.
backup_result backup_sqlite_store(const std::string& source, const std::string& destination);

}  // namespace caresync::server
