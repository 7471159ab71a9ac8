#pragma once
/// caresync-server: accepts TLS connections and serves the sync conversation
/// (docs/protocol.md) to many devices at once over a pool of I/O threads.
/// Thread contract: start(), port(), stop() and wait() may be called from any thread;
/// stop() may be called from a signal-handling thread and more than once.

#include <caresync/server/change_store.hpp>
#include <caresync/server/config.hpp>

#include <cstdint>
#include <memory>

namespace caresync::server {

/// Counters since start, for tests and logs.
struct server_stats {
  std::uint64_t sessions_accepted = 0;
  std::uint64_t sessions_refused = 0;   ///< TLS failures, bad tokens, refused codes (docs/operations.md)
  std::uint64_t changes_accepted = 0;
  std::uint64_t batches_replayed = 0;
  std::uint64_t sessions_waiting = 0;   ///< live mode: sessions holding a wait now
  std::uint64_t changes_refused = 0;    ///< pushed changes refused (limits, clocks too far ahead)
  std::uint64_t connections_refused = 0;  ///< closed before TLS: over limits.max_connections_per_address
  std::uint64_t sessions_enrolled = 0;    ///< sessions that enrolled a device
};

class server {
 public:
  /// Takes the config (validated here; throws caresync::error naming a bad key) and the
  /// store. Loads the certificate and key; throws caresync::error if they cannot be read.
  server(server_config config, std::unique_ptr<change_store> store);
  ~server();  ///< stops if running
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  /// Binds the listener and starts the I/O threads; returns once accepting.
  /// Throws caresync::error (network_errc::connect_failed) if the address cannot be bound.
  void start();

  /// The bound port (useful with port 0). Valid after start().
  std::uint16_t port() const;

  /// Stops accepting, ends sessions after the message they are processing (a push being
  /// stored completes and is acknowledged or not at all), joins the threads. Idempotent.
  void stop();

  /// Blocks until stop() has finished (from another thread or a signal).
  void wait();

  server_stats stats() const;
  /// The admin listener's port (0 when it is off).
  std::uint16_t admin_port() const;

  /// The change store, for admin tools and tests.
  change_store& store();

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace caresync::server
