#pragma once
/// Hybrid logical clock: stamps that follow wall time yet never go backwards and always
/// move past any stamp a replica has seen. Together with the writer's node id a stamp
/// orders every write totally and identically on every replica.
/// Thread contract: hybrid_clock is not thread-safe; its owner serialises calls.

#include <compare>
#include <cstdint>
#include <functional>

namespace caresync {

/// Identifies one replica (one local store, or the server): 64 random bits.
using node_id = std::uint64_t;

/// A clock reading: milliseconds since the Unix epoch in the high 48 bits and a counter
/// in the low 16 bits, so that comparing `value` compares (time, counter).
struct hlc_stamp {
  std::uint64_t value = 0;

  static constexpr hlc_stamp make(std::uint64_t wall_ms, std::uint16_t counter) noexcept {
    return hlc_stamp{(wall_ms << 16) | counter};
  }
  constexpr std::uint64_t wall_ms() const noexcept { return value >> 16; }
  constexpr std::uint16_t counter() const noexcept { return static_cast<std::uint16_t>(value & 0xffff); }

  friend auto operator<=>(const hlc_stamp&, const hlc_stamp&) = default;
};

/// The version of a write: stamp first, node id as the tie-breaker. Greater wins.
struct version {
  hlc_stamp stamp;
  node_id node = 0;
  friend auto operator<=>(const version&, const version&) = default;
};

/// Milliseconds since the Unix epoch from the system clock.
std::uint64_t system_time_ms() noexcept;

/// Makes a random node id (never 0). Throws std::runtime_error if the random source fails.
node_id generate_node_id();

/// A hybrid logical clock (Kulkarni et al., 2014) with a replaceable time source for tests.
class hybrid_clock {
 public:
  using time_source = std::function<std::uint64_t()>;

  /// `source` returns milliseconds since the epoch; defaults to the system clock.
  explicit hybrid_clock(time_source source = system_time_ms);

  /// Returns a stamp greater than every stamp returned or observed before.
  hlc_stamp now();

  /// Takes note of a stamp seen from another replica, so later now() stamps exceed it.
  void observe(hlc_stamp seen) noexcept;

  /// The greatest stamp issued or observed so far (persist it; see restore()).
  hlc_stamp last() const noexcept { return last_; }

  /// Sets the greatest stamp, even backwards: only for bringing back a clock that ran
  /// ahead of the server's, once no stamp above `to` remains in use (docs/conflicts.md).
  void reset(hlc_stamp to) noexcept { last_ = to; }

 private:
  time_source source_;
  hlc_stamp last_{};
};

}  // namespace caresync
