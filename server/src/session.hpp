#pragma once
// One device's TLS connection to the server and the sync conversation on it
// (docs/protocol.md, "Conversation"). Private to the server.
// Thread contract: every handler runs on the session's strand; shutdown() may be called
// from any thread.

#include "admission.hpp"

#include <caresync/protocol/frame.hpp>
#include <caresync/protocol/frame_stream.hpp>
#include <caresync/server/change_store.hpp>
#include <caresync/server/config.hpp>
#include <caresync/server/server.hpp>

#include <asio/ip/tcp.hpp>
#include <asio/ssl.hpp>
#include <asio/steady_timer.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <vector>
#include <string>
#include <unordered_map>

namespace caresync::server {

class session;

/// A priority phase's changes (change_store::prime_changes), kept for the session.
struct primed {
  wire::prime_spec spec;
  std::vector<prime_item> items;        ///< in the order sent
  std::vector<std::uint64_t> seqs;      ///< the same, ascending: what later pulls leave out
  std::uint64_t bytes = 0;              ///< of all items
  log_extent rest;                      ///< the log after 0 (not the device's own) less the items
};

/// What a session's pulls have left to send, as counted at its first page.
struct pull_estimate {
  std::uint64_t cursor = 0;  ///< valid for a pull from here
  log_extent left;
};

/// What every session shares: read-only config, the store, counters, and the sessions
/// waiting for new changes (live mode).
struct session_context {
  const server_config& config;
  change_store& store;
  std::mutex waiters_mutex{};
  std::vector<std::weak_ptr<session>> waiters{};  // guarded by waiters_mutex
  /// Wakes every waiting session (each answers on its own strand). Any thread.
  void changes_arrived();
  /// Forgets `s` as a waiter, and waiters already gone. Any thread.
  void stop_watching(const session* s);
  /// Lists `s` as a session of `device`; over limits.max_sessions_per_device, the
  /// device's oldest sessions are told to end. Any thread.
  void admit_device(const std::string& device, const std::shared_ptr<session>& s);
  frame_budget frames{config.max_frame_bytes_in_flight};
  auth_throttle auth{config.failed_auth_burst};
  std::mutex devices_mutex{};
  std::unordered_map<std::string, std::vector<std::weak_ptr<session>>> device_sessions{};  // guarded by devices_mutex
  std::atomic<std::uint64_t> sessions_enrolled{0};     ///< enrollment sessions that enrolled a device
  std::atomic<std::uint64_t> sessions_superseded{0};   ///< ended by a newer session of their device
  std::atomic<std::uint64_t> reads_paused{0};          ///< times a session waited for frame budget
  std::atomic<std::uint64_t> sessions_accepted{0};
  std::atomic<std::uint64_t> sessions_refused{0};
  std::atomic<std::uint64_t> changes_accepted{0};
  std::atomic<std::uint64_t> batches_replayed{0};
  std::atomic<std::uint64_t> sessions_waiting{0};
  // For /metrics (docs/operations.md): totals since start, updated as sessions go.
  std::atomic<std::uint64_t> sessions_active{0};
  std::atomic<std::uint64_t> changes_refused{0};
  std::atomic<std::uint64_t> changes_out{0};
  std::atomic<std::uint64_t> bytes_in{0};
  std::atomic<std::uint64_t> bytes_out{0};
  /// error messages sent, by protocol_errc value (index 0: other codes)
  std::array<std::atomic<std::uint64_t>, 17> errors_sent{};
  /// push handling time (checks and durable store), a histogram in seconds
  static constexpr std::array<double, 10> k_push_buckets{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5};
  std::array<std::atomic<std::uint64_t>, k_push_buckets.size()> push_le{};  // cumulative counts
  std::atomic<std::uint64_t> push_count{0};
  std::atomic<std::uint64_t> push_micros{0};
  void observe_push(std::chrono::steady_clock::duration d);
};

class session : public std::enable_shared_from_this<session> {
 public:
  session(asio::ip::tcp::socket socket, asio::ssl::context& tls, session_context& context);
  ~session();

  /// Starts the TLS handshake and the conversation.
  void start();

  /// Asks the session to end after the message it is handling; safe from any thread.
  void shutdown();

  /// New changes were stored: a session holding a wait answers it. Safe from any thread.
  void wake();

  /// A newer session of the same device took this one's place: it ends after the
  /// message in hand. Safe from any thread.
  void supersede();

 private:
  void read_header();
  /// Reads the payload of `h` into payload_ in chunks, then calls on_payload(). Past a
  /// frame's first chunk each chunk takes frame budget first, waiting while none is free.
  void read_payload(const wire::frame_header& h);
  void release_frame();
  void on_payload(const wire::frame_header& h);
  /// `sent`: a push's changes as the device sent them (wire::decode_push), else empty.
  void handle(const wire::message& m, std::span<const std::span<const std::uint8_t>> sent);
  void on_hello(const wire::hello& m);
  void on_enroll(const wire::enroll& m);
  void on_push(const wire::push& m, std::span<const std::span<const std::uint8_t>> sent);
  void on_pull(const wire::pull& m);
  void on_wait(const wire::wait& m);
  void on_prime(const wire::prime& m);
  /// Answers a pull (or a wait) with the page after `cursor`, leaving out the changes of
  /// `prime` (a completed priority phase; until 0: none). A pull's answer goes on as a
  /// stream when the device was granted k_feature_stream (`pull` true), of at most
  /// `max_pages` pages (0: no bound; version 7).
  void answer_page(std::uint64_t cursor, std::uint32_t max_changes, std::uint32_t max_bytes,
                   const wire::prime_spec& prime = {}, bool pull = false, std::uint64_t max_pages = 0);
  /// The changes of `spec`'s priority phase, computed once per session and spec.
  /// Throws caresync::error (storage).
  const primed& primed_for(const wire::prime_spec& spec);
  /// Ends a held wait (answered, timed out or closed), if one is held.
  void stop_waiting();
  /// The frame of a payload, compressed as agreed (through the stream, when granted).
  wire::bytes frame(wire::message_type type, std::span<const std::uint8_t> payload);
  /// Sends a frame; with `last`, ends the session once it is written.
  void send(wire::bytes frame, bool last);
  /// Sends an error message and ends the session.
  void refuse(std::error_code code, const std::string& message);
  void arm_timer(std::chrono::milliseconds timeout);
  void arm_timer(std::chrono::steady_clock::time_point deadline);
  /// The largest frame accepted now: small until hello is accepted, then the config's.
  std::uint32_t frame_limit() const noexcept;
  /// Ends the session with a TLS close_notify; only when no operation is pending.
  void close(const char* outcome);
  /// Ends the session at once, cancelling whatever is pending.
  void abort(const char* outcome);

  asio::ssl::stream<asio::ip::tcp::socket> stream_;
  asio::steady_timer timer_;
  asio::steady_timer pause_;        // a read waiting for frame budget
  std::uint64_t budget_held_ = 0;   // of context_.frames, for the frame being read
  session_context& context_;
  std::array<std::uint8_t, wire::k_frame_header_size> header_{};
  wire::bytes payload_;
  wire::bytes pushed_;  // a push's changes in stored form (wire::decode_push), while it is handled
  wire::bytes out_;
  std::string peer_;          // address:port, for log lines
  std::string peer_address_;  // the address alone, for auth_throttle
  bool guessed_ = false;      // a failed token or enrollment code: no session line of its own
  std::string device_;  // empty until hello is accepted
  std::string claimed_;  // the device id its hello claimed (first 128 bytes), logged while device_ is empty
  node_id node_ = 0;
  /// A server-side writer (a config device marked server_side, a registry_admin's
  /// device): it may write the server_only fields.
  bool server_side_ = false;
  wire::codec compression_ = wire::codec::none;  // agreed in hello/welcome
  std::unique_ptr<wire::stream_compressor> compressor_;  // zstd_stream granted: every compressed frame goes through it
  std::uint32_t granted_ = 0;                    // feature bits granted in welcome
  bool writing_ = false;
  std::optional<wire::wait> waiting_;  // a wait held until changes arrive or it times out
  std::optional<primed> primed_;            // the last priority phase asked for
  unsigned primes_computed_ = 0;            // each costs a read of the log: bounded
  std::optional<pull_estimate> estimate_;   // for the remaining counts of pages
  std::optional<wire::pull> stream_next_;   // a streamed pull's next page, sent once the last is written
  bool closing_ = false;
  bool closed_ = false;
  const char* outcome_ = "closed";
  std::chrono::steady_clock::time_point started_;
  std::uint64_t bytes_in_ = 0;
  std::uint64_t bytes_out_ = 0;
  std::uint64_t changes_in_ = 0;
  std::uint64_t changes_refused_ = 0;
  std::uint64_t changes_out_ = 0;
  device_health health_;  // from hello; recorded when the session ends
  // Scopes (docs/security.md): fixed at hello for the whole session. An enrolled device
  // is always scoped; a device of the config file is not (scope_ empty).
  std::optional<device_scope> scope_;
  requester who_;                      // device, user, and &*scope_ when scoped
  std::uint64_t scope_epoch_ = 0;      // the scope epoch the device claimed in its last pull
  std::uint64_t records_purged_ = 0;   // purges sent, for the session's log line
};

}  // namespace caresync::server
