#pragma once
// Watches the served certificate's expiry: a warning in the log when it expires within
// k_expiry_warning_days, an error once it has expired, at start and then every
// `interval` (12 hours). Private to the server; /metrics shows the same expiry
// (caresync_certificate_expiry_seconds). Logs the file and dates only, never a key.
// Thread contract: start() and stop() from the server's start and stop; the checks run
// on the watch's strand; not_after() from any thread.

#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>

#include <chrono>
#include <cstdint>
#include <string>

namespace caresync::server {

/// Days before expiry from which the watch warns.
inline constexpr std::int64_t k_expiry_warning_days = 30;

/// What the watch says of a certificate valid until `not_after` at `now` (Unix seconds).
enum class certificate_expiry { valid, expiring, expired };
certificate_expiry expiry_at(std::int64_t not_after, std::int64_t now) noexcept;

class certificate_watch {
 public:
  /// Watches the certificate loaded from `file`, valid until `not_after` (Unix seconds).
  certificate_watch(asio::io_context& io, std::string file, std::int64_t not_after,
                    std::chrono::steady_clock::duration interval = std::chrono::hours(12));

  /// Logs the certificate's expiry now (info when valid), then checks every interval.
  void start();
  /// Cancels the next check. Idempotent.
  void stop();
  std::int64_t not_after() const noexcept { return not_after_; }

 private:
  /// Logs a warning or an error if the certificate expires soon or has; `at_start`: an
  /// info line when it is valid too. On the strand.
  void check(bool at_start);
  void arm();

  asio::steady_timer timer_;  // on a strand of its own
  const std::string file_;
  const std::int64_t not_after_;
  const std::chrono::steady_clock::duration interval_;
};

}  // namespace caresync::server
