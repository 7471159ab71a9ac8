#pragma once
/// Synchronises a store with a caresync server over TLS: pushes the outbox in batches,
/// then pulls changes after the store's cursor in pages, each page applied together with
/// the new cursor in one transaction. An interrupted sync loses nothing: run it again.
///
/// Thread contract: sync() runs on the store's thread and blocks until done or failed;
/// one sync at a time per store. While it pulls, sync() applies each page to the store on
/// a thread of its own as it receives the next one (never two at once, and never while
/// on_progress or a resolver runs, which run on the calling thread); a time_source given
/// in store_options may therefore be called on that thread.

#include <caresync/store.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

namespace caresync {

/// How sync() retries after a transient failure (is_transient(code)): at most
/// max_attempts connections in a row that made no progress, pausing before each retry for
/// a random time between 0 and first_backoff, doubled after each failure and capped at
/// max_backoff ("full jitter"), so tablets coming back into coverage together do not retry
/// in step. A connection that stored something (an acknowledged batch, an applied page)
/// before it was lost starts the count and the backoff afresh, and is retried after at
/// most a quarter of first_backoff: a link that breaks every few seconds still gets a sync
/// through, connection after connection. Anything not transient (a wrong token, an
/// untrusted server) is never retried.
struct retry_policy {
  unsigned max_attempts = 3;  ///< 1: no retry
  std::chrono::milliseconds first_backoff{500};
  std::chrono::milliseconds max_backoff{8'000};
};

/// How far a sync has come; reported after each acknowledged push batch and each applied
/// page, on the sync's thread. `held` and `expected` count across reconnects and sync()
/// calls (they are kept in the store), the other counts are this connection's.
struct sync_progress {
  std::size_t pushed = 0;       ///< local changes stored by the server so far
  std::size_t to_push = 0;      ///< outbox entries when the push began (some may send nothing)
  std::size_t pulled = 0;       ///< changes applied so far
  std::uint64_t to_pull = 0;    ///< pulled plus what the server counts as left (an estimate)
  std::uint64_t bytes_sent = 0;  ///< this attempt's, as in sync_report
  std::uint64_t bytes_received = 0;
  /// Change data applied so far and expected in all, in bytes as the server counts them
  /// (uncompressed; compression sends fewer): for a progress bar of an initial sync.
  std::uint64_t pulled_bytes = 0;
  std::uint64_t to_pull_bytes = 0;
  /// The priority phase (sync_options::priority) is complete: every record it picks is
  /// in the store, which the app may use while the rest arrives.
  bool priority_ready = false;
  /// Catching up with the server (an initial sync, or a tablet back after weeks): changes
  /// the store has applied since it was last up to date, across cuts, reconnects and
  /// sync() calls, and those plus what the server counts as left. For a progress bar
  /// that never starts again from zero; both 0 when there is nothing to catch up.
  std::uint64_t held = 0;
  std::uint64_t expected = 0;
  /// The link's measured rate from the server, bytes per second (0: not measured yet).
  double bytes_per_second = 0;
  /// The time the rest of the pull should take at that rate; negative: unknown.
  std::chrono::seconds time_left{-1};
};

/// One tier of a prioritised initial sync (sync_options::priority): the records of a
/// collection to receive first, all of them or those whose field, as the server holds
/// it when the initial sync begins, equals or is at least a value. Integers and reals
/// compare as numbers, text by bytes (so ISO dates order); other kinds never match.
struct priority_tier {
  enum class rule { all, equals, at_least };
  std::string collection;
  rule match = rule::all;
  std::string field;  ///< equals and at_least: the field compared
  value operand;      ///< equals and at_least: an integer, real or text

  static priority_tier all(std::string collection) { return {std::move(collection), rule::all, {}, {}}; }
  static priority_tier equals(std::string collection, std::string field, value v) {
    return {std::move(collection), rule::equals, std::move(field), std::move(v)};
  }
  static priority_tier at_least(std::string collection, std::string field, value v) {
    return {std::move(collection), rule::at_least, std::move(field), std::move(v)};
  }
};

/// Where and how to reach the server.
struct sync_options {
  std::string host = "127.0.0.1";  ///< DNS name or IP address; checked against the certificate
  std::uint16_t port = 7443;
  /// PEM file of the CA that signed the server's certificate. Required unless
  /// pinned_key_sha256 is set.
  std::string ca_file;
  /// Optional lowercase hex SHA-256 of the server certificate's DER SubjectPublicKeyInfo
  /// (what `caresync-server init` prints). With a CA file both must pass; alone, the pin
  /// replaces the CA and host name checks.
  std::string pinned_key_sha256;
  std::string device_id;
  std::string token;  ///< secret; never logged
  /// The app's name and version, e.g. "terenni-app 1.4.2": reported to the server with
  /// the outbox depth and quarantined count at each sync, for the fleet list.
  std::string app_version;
  std::chrono::milliseconds connect_timeout{10'000};
  std::chrono::milliseconds io_timeout{30'000};  ///< per message exchange
  /// The largest push batch and pull page. Within them sync() sizes each batch and page to
  /// the link it measures (about half a second up, a second down), smaller after a cut:
  /// nothing to tune for a slow or breaking link.
  std::uint32_t push_batch_changes = 1000;       ///< capped by the server's limit
  std::uint32_t pull_page_changes = 2000;        ///< 0: the server's default
  std::uint32_t pull_page_bytes = 2u << 20;      ///< 0: the server's default (then not sized to the link)
  /// false: batches of push_batch_changes and pages of pull_page_changes and
  /// pull_page_bytes exactly (within the server's limits), whatever the link; streamed
  /// pulls then stream to the end.
  bool size_to_link = true;
  bool compress = true;                          ///< offer compressed frames (zstd, else deflate)
  /// Offer streamed pulls: the server sends the pages of a pull in a row, each as soon
  /// as the last is written, rather than one per request (docs/protocol.md, "5 pull").
  bool stream_pulls = true;
  caresync::retry_policy retry;                  ///< retries of transient failures
  /// Live mode: after pulling, hold the connection up to this long waiting for new
  /// changes from other devices, and apply them as soon as they arrive (so a coordinator
  /// sees a visit moments after the worker's sync). 0: off. The server may wait less.
  std::chrono::milliseconds live_wait{0};
  /// Called with progress on the sync's thread; must not use the store. Empty: none.
  std::function<void(const sync_progress&)> on_progress;
  /// Called on the sync's thread when a connection failed transiently (the link was lost,
  /// the server was busy) and sync() will try again after `pause`: `why` is the failure,
  /// `kept` the progress as it stands (everything in it is stored; held of expected).
  /// Must not use the store. Empty: none.
  std::function<void(const std::error_code& why, const std::string& message, const sync_progress& kept,
                     std::chrono::milliseconds pause)>
      on_retry;
  /// Prioritised initial sync (docs/protocol.md, "Prioritised initial sync"): while the
  /// store has pulled nothing yet, the records matching these tiers come first, tier by
  /// tier, then the rest of the log without them; sync_progress::priority_ready says
  /// when the first part is in. An
  /// interrupted priority phase resumes where it stopped, with the tiers it began with.
  /// At most 16 tiers. Empty: everything in log order.
  std::vector<priority_tier> priority;
  /// Token rotation (docs/security.md, "Token rotation"). When set, sync() tells the
  /// server it can take a new token, and the server hands one out when the device's
  /// token is due (its policy, e.g. every 30 days). Called on the sync's thread with
  /// the new token; it must make the token durable (the platform's secure storage, in
  /// place of the old one) before it returns, since the server accepts the new one from
  /// now on and, once the device presents it, no longer the old one. After it returns,
  /// the next connections of this sync_client (its retries, later sync() calls) use the
  /// new token. If it throws, nothing else happens: the library keeps the old token,
  /// which stays valid, and the server hands out another at a later sync. Must not use
  /// the store. The library never logs a token. Empty: no rotation, the token never
  /// changes.
  std::function<void(const std::string& new_token)> on_new_token;
};

/// What one sync did.
struct sync_report {
  std::size_t pushed = 0;          ///< local changes the server acknowledged and stored
  std::size_t quarantined = 0;     ///< local changes the server refused (store::quarantined())
  /// local changes writing a server_only field (an app whose schema did not say so): the
  /// server stored them without those fields, and the store shows the server's values again
  std::size_t reverted = 0;
  std::size_t batches = 0;         ///< push batches sent (including resends)
  std::size_t pulled = 0;          ///< changes received and applied
  std::size_t pages = 0;           ///< pages pulled
  std::size_t primed = 0;          ///< of pulled, the changes of the priority phase (sync_options::priority)
  std::size_t conflicts = 0;       ///< incoming field writes that lost to a newer local version, plus values newly kept as open conflicts (keep_both)
  std::uint64_t bytes_sent = 0;    ///< TLS application bytes, frame headers included
  std::uint64_t bytes_received = 0;
  std::chrono::milliseconds duration{0};  ///< all attempts and pauses
  std::uint64_t cursor = 0;        ///< the store's cursor after the sync
  unsigned attempts = 0;           ///< connections made (1 unless transient failures were retried)
  bool woken = false;              ///< live mode: new changes arrived while waiting
  std::size_t resolved = 0;        ///< open conflicts the app's resolvers settled (store_options::resolvers)
  /// Scopes (docs/security.md, "Scopes and roles"): records the server told this device
  /// to delete, because they left its user's scope (a client moved to another unit, the
  /// user was reassigned). Nothing of them is left in the store.
  std::size_t purged = 0;
  /// Records deleted here because the server refused a change to them as outside this
  /// device's scope. The refused change, and any later unsent change of the record, are
  /// in store::quarantined() with code out_of_scope (counted in `quarantined` too), so
  /// the app can show the worker what was not accepted; if the device may still see the
  /// record, the server sends it back at the next pull.
  std::size_t refused_out_of_scope = 0;
  /// New tokens the server handed out that on_new_token stored (token rotation; 0 or 1
  /// per connection). The device's token is now the last of them.
  std::size_t tokens_stored = 0;
};

/// What enrollment gave this device. Keep device_id and token (the token in the
/// platform's secure storage) and put them in sync_options from now on.
struct enrollment {
  std::string device_id;
  std::string token;  ///< secret; never logged
  std::string user_id;
  std::string user_name;
};

/// Presents a one-time enrollment code (what the administrator gave the user; dashes,
/// spaces and case do not matter) to the server `server` names, verified as sync()
/// verifies it (host, port, ca_file or pinned key, timeouts; its device_id and token are
/// not used). Throws caresync::error: protocol_errc::enrollment_refused (the code is
/// unknown, used or expired: the message says which), storage_errc::invalid_argument
/// (no CA file or pin, or an empty code), and the network errors of sync().
enrollment enroll(const sync_options& server, const std::string& code);

class sync_client {
 public:
  /// `local` must outlive this object. Throws caresync::error (storage_errc::invalid_argument)
  /// if neither a CA file nor a pin is given, device id or token is empty, or a priority
  /// tier is not valid (a collection or field name caresync refuses, a missing or NaN
  /// operand, more than 16 tiers).
  sync_client(store& local, sync_options options);
  ~sync_client();
  sync_client(const sync_client&) = delete;
  sync_client& operator=(const sync_client&) = delete;

  /// Connects, authenticates, pushes the whole outbox, pulls until up to date, closes;
  /// retries transient failures as options.retry says (sleeping between attempts).
  /// Counts in the report add up over attempts. Throws caresync::error (the last
  /// attempt's); is_transient(e.code()) says whether a later retry may succeed. Categories: network (connect_failed, connection_lost, timeout, tls_failed,
  /// certificate_untrusted, pin_mismatch), protocol (auth_failed, unsupported_version,
  /// malformed, server_busy, storage_failed, ...), storage (local store faults).
  /// Work done before a failure is kept: acknowledged pushes leave the outbox, pulled
  /// pages stay applied. protocol_errc::device_revoked: an administrator revoked this
  /// device; the store was wiped (store::wipe()) before the error was thrown.
  sync_report sync();

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace caresync
