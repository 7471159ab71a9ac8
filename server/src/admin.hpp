#pragma once
// The admin HTTP listener (cpp-httplib): GET /metrics in the Prometheus text format and
// GET /healthz. Private to the server; off unless the config enables it. It serves
// counters only: never a token or a record's contents.
// Thread contract: start() and stop() from the server's start and stop; requests are
// served on the listener's own threads and read only atomics and the store.

#include "session.hpp"

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

namespace httplib {
class Server;
}

namespace caresync::server {

/// What the acceptor counts outside any session (server.cpp). Any thread.
struct listener_counters {
  std::atomic<std::uint64_t> connections_refused{0};  ///< over limits.max_connections_per_address
  std::atomic<std::uint64_t> connections_throttled{0};  ///< from an address shut out after failed attempts
};

/// The /metrics text for the counters in `context` and `listener`, the store, and the
/// served certificate's expiry (`certificate_not_after`, Unix seconds).
std::string metrics_text(session_context& context, const listener_counters& listener, std::int64_t certificate_not_after);

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

  /// Binds address:port (0: any free port) and serves on a thread of its own.
  /// Throws caresync::error (network_errc::connect_failed) if it cannot listen.
  void start(const std::string& address, std::uint16_t port);
  /// Stops serving and joins. Idempotent.
  void stop();
  std::uint16_t port() const noexcept { return port_; }

 private:
  session_context& context_;
  const listener_counters& listener_;
  const std::int64_t certificate_not_after_;
  std::function<bool()> running_;
  std::unique_ptr<httplib::Server> http_;
  std::thread thread_;
  std::uint16_t port_ = 0;
};

}  // namespace caresync::server
