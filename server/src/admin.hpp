#pragma once
// The admin HTTP listener: GET /metrics in the Prometheus text format and
// GET /healthz. Private to the server; off unless the config enables it. It serves
// counters only: never a token or a record's contents.
// Thread contract: see admin_listener.

#include "session.hpp"

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <thread>

namespace caresync::server {

/// What the acceptor counts outside any session (server.cpp). Any thread.
struct listener_counters {
  std::atomic<std::uint64_t> connections_refused{0};  ///< over limits.max_connections_per_address
  std::atomic<std::uint64_t> connections_throttled{0};  ///< from an address shut out after failed attempts
};

/// The /metrics text for the counters in `context` and `listener`, the store, and the
/// served certificate's expiry (`certificate_not_after`, Unix seconds).
std::string metrics_text(session_context& context, const listener_counters& listener, std::int64_t certificate_not_after);

class admin_connection;

/// The admin listener. Not cpp-httplib's server (0.11, Debian 12): it gives a thread to
/// each connection and has no way to cap them or to close one waiting for its request,
/// so idle connections kept /healthz waiting. Here every connection is asynchronous on
/// one thread, at most admin_max_connections are open, and each has 2 s to send its
/// request and 2 s to take the answer (docs/operations.md, "Metrics and health").
/// Thread contract: construct, start() and stop() from one thread (the server's start
/// and stop); requests are answered on the listener's own thread, which reads only
/// atomics and the store.
class admin_listener {
 public:
  /// `running` says whether the sync server is serving (for /healthz). `context` and
  /// `listener` are the server's and outlive this listener. `certificate_not_after`:
  /// when the served certificate expires (Unix seconds).
  admin_listener(session_context& context, const listener_counters& listener, std::int64_t certificate_not_after,
                 std::function<bool()> running);
  ~admin_listener();
  admin_listener(const admin_listener&) = delete;
  admin_listener& operator=(const admin_listener&) = delete;

  /// Binds address:port (0: any free port; a name is resolved) and serves on a thread of
  /// its own. Throws caresync::error (network_errc::connect_failed) if it cannot listen.
  void start(const std::string& address, std::uint16_t port);
  /// Stops serving, closes every connection and joins. Idempotent.
  void stop();
  std::uint16_t port() const noexcept { return port_; }

  /// The answer to one request: status, content type, body (and 401's challenge).
  struct answer {
    int status = 200;
    std::string content_type = "text/plain";
    std::string body;
  };
  /// Answers `method` `target` with the Authorization header `authorization` (empty:
  /// none). On the listener's thread.
  answer respond(const std::string& method, const std::string& target, const std::string& authorization);
  /// Forgets a connection that ended. On the listener's thread.
  void closed(const admin_connection* c);

 private:
  void accept();
  /// Makes room for one more connection: false when every open one is being answered.
  bool make_room();

  session_context& context_;
  const listener_counters& listener_;
  const std::int64_t certificate_not_after_;
  std::function<bool()> running_;
  std::size_t max_connections_;
  asio::io_context io_;  // declared first: destroyed after the sockets that use it
  asio::ip::tcp::acceptor acceptor_;
  asio::steady_timer retry_;  // accept again after a failed accept (e.g. out of descriptors)
  std::list<std::shared_ptr<admin_connection>> open_;  // oldest first; the listener's thread only
  std::atomic<std::uint64_t> closed_waiting_{0};  ///< connections closed, waiting, for a newer one
  std::atomic<std::uint64_t> closed_full_{0};     ///< connections closed at once: all open ones busy
  std::thread thread_;
  std::uint16_t port_ = 0;
};

}  // namespace caresync::server
