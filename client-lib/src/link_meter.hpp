#pragma once
// What a sync knows of its link to the server, measured as it goes: the rate each way,
// the round-trip time, and how much the codec shrinks pages and batches. From it the sync
// sizes each pull page to arrive in about a second and each push batch to go up in about
// half of one (docs/durability.md, "Slow and breaking links"), so that a connection that
// lives ten seconds still commits most of what it carried.
// Thread contract: one thread at a time (the sync's).

#include <chrono>
#include <cstddef>

namespace caresync {

class link_meter {
 public:
  using duration = std::chrono::steady_clock::duration;

  /// About how long one pull page should take on the link.
  static constexpr std::chrono::milliseconds k_page_time{1000};
  /// About how long one push batch should take: up to three are on the way at once, and
  /// a cut loses what was not acknowledged.
  static constexpr std::chrono::milliseconds k_batch_time{500};
  /// Pages of a streamed pull before the sync asks again (and may resize its pages).
  static constexpr unsigned k_stream_pages = 8;

  /// `down_rate`, `up_rate`: bytes per second measured by an earlier sync (0: unknown).
  explicit link_meter(double down_rate = 0, double up_rate = 0) noexcept;

  /// A round trip of a small message (hello to welcome): the least one seen counts.
  void round_trip(duration elapsed) noexcept;
  /// A page of `wire_bytes` (`plain_bytes` once decompressed) that took `elapsed` on the
  /// link: from the last page of its stream, or from its request less a round trip.
  void downloaded(std::size_t wire_bytes, std::size_t plain_bytes, duration elapsed) noexcept;
  /// A push batch of `wire_bytes` (`plain_bytes` before compression) that took `elapsed`
  /// to be acknowledged, from when it was sent or when the batch before was acknowledged.
  void uploaded(std::size_t wire_bytes, std::size_t plain_bytes, duration elapsed) noexcept;
  /// The connection was lost: the link is worse than measured (halves both rates).
  void cut() noexcept;

  /// The max_bytes of the next pull page (bytes of changes as the server counts them):
  /// about k_page_time of the link, at most `cap`.
  std::size_t page_bytes(std::size_t cap) const noexcept;
  /// True while pages grow by the slow start rather than by the measured rate: the next
  /// page should be measured before more of its size are asked for.
  bool pages_growing(std::size_t cap) const noexcept;
  /// The bytes of changes of the next push batch: about k_batch_time of the link, at
  /// most `cap`.
  std::size_t batch_bytes(std::size_t cap) const noexcept;

  double down_rate() const noexcept { return down_.rate; }
  double up_rate() const noexcept { return up_.rate; }
  /// The least round trip seen, or zero.
  duration rtt() const noexcept { return rtt_; }
  /// Plain bytes per wire byte of pages (at least 1).
  double down_ratio() const noexcept { return down_.ratio; }

 private:
  struct direction {
    double rate = 0;      ///< bytes per second; 0: unknown
    double ratio = 1;     ///< plain bytes per wire byte
    double largest = 0;   ///< the largest transfer measured, in wire bytes
    void observe(std::size_t wire_bytes, std::size_t plain_bytes, duration elapsed) noexcept;
    /// Plain bytes for a transfer of about `target`, at most `cap`.
    std::size_t budget(std::chrono::milliseconds target, std::size_t cap) const noexcept;
    /// The slow start, not the rate, bounds budget().
    bool growing(std::chrono::milliseconds target, std::size_t cap) const noexcept;
  };

  direction down_;
  direction up_;
  duration rtt_{};
};

}  // namespace caresync
