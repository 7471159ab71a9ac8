#pragma once
// What the server admits while under attack (docs/security.md, "Floods and guesses"):
// a budget for the frame bytes all sessions hold while frames arrive, and failure
// budgets for guessed tokens and enrollment codes, by client address and by device id.
// Private to the server. Thread contract: every member function may be called from any
// thread.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

namespace caresync::server {

/// Bytes of incoming frames held beyond each frame's first chunk, bounded by
/// limits.max_frame_bytes_in_flight.
class frame_budget {
 public:
  explicit frame_budget(std::uint64_t limit) : limit_(limit) {}
  /// Takes `n` bytes if they are free; false (nothing taken) if not.
  bool take(std::uint64_t n) noexcept;
  void give_back(std::uint64_t n) noexcept;
  std::uint64_t held() const noexcept { return held_.load(std::memory_order_relaxed); }
  std::uint64_t limit() const noexcept { return limit_; }

 private:
  const std::uint64_t limit_;
  std::atomic<std::uint64_t> held_{0};
};

/// Failed authentications (a hello's token, an enrollment code) counted by client
/// address and by claimed device id, as a level that leaks away one failure a second
/// (a tablet with a wrong token retrying now and then never fills it; tablets behind
/// one NAT address are not shut out for one of them). While the level is at most
/// `burst` a failure costs nothing; above it each failure shuts the key out for a while:
/// 100 ms (so at most ~10 failures a second), doubling with every further `burst`
/// failures, at most k_max_backoff. Failures are logged as one line per address per
/// k_log_interval, never one per attempt.
class auth_throttle {
 public:
  using clock = std::chrono::steady_clock;
  static constexpr std::chrono::milliseconds k_first_backoff{100};
  static constexpr std::chrono::milliseconds k_max_backoff{60'000};
  static constexpr double k_leak_per_second = 1.0;
  static constexpr std::chrono::seconds k_log_interval{10};

  /// `burst` failures cost nothing (limits.failed_auth_burst); 0 turns throttling off.
  explicit auth_throttle(std::uint32_t burst) : burst_(burst) {}

  /// How long `address` (or device `device`) is still shut out; zero when it may try.
  clock::duration address_wait(const std::string& address, clock::time_point now = clock::now());
  clock::duration device_wait(const std::string& device, clock::time_point now = clock::now());

  /// Counts a failed attempt (a token, an enrollment code) from `address`, claiming
  /// `device` (empty for enrollments), and logs the address's summary line when due.
  void failed(const std::string& address, const std::string& device, clock::time_point now = clock::now());
  /// A device authenticated: its own failures are forgiven (its address's are not).
  void succeeded(const std::string& device);
  /// An attempt refused because its key was shut out (counted, logged in the summary).
  void shut_out(const std::string& address, clock::time_point now = clock::now());

  std::uint64_t failures_total() const noexcept { return failures_total_.load(std::memory_order_relaxed); }
  std::uint64_t shut_out_total() const noexcept { return shut_out_total_.load(std::memory_order_relaxed); }

 private:
  struct key_state {
    double level = 0;           ///< failures, less what leaked away since last_failure
    clock::time_point last_failure{};
    clock::time_point blocked_until{};
    // Addresses only: what the next summary line reports.
    std::uint64_t unlogged_failures = 0;
    std::uint64_t unlogged_shut_out = 0;
    std::string last_device;  ///< the device id the last failed attempt claimed
    clock::time_point logged{};
  };
  using table = std::unordered_map<std::string, key_state>;
  static clock::duration wait_of(table& t, const std::string& key, clock::time_point now);
  void count(key_state& k, clock::time_point now) const;
  /// Forgets quiet keys once the table grows, so a flood of addresses cannot grow it
  /// without bound.
  static void sweep(table& t, clock::time_point now);

  const std::uint32_t burst_;
  void log_summary(const std::string& address, key_state& k, clock::time_point now);

  std::mutex mutex_;  // guards addresses_, devices_
  table addresses_;
  table devices_;
  std::atomic<std::uint64_t> failures_total_{0};
  std::atomic<std::uint64_t> shut_out_total_{0};
};

}  // namespace caresync::server
