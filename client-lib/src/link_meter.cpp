#include "link_meter.hpp"

#include <algorithm>
#include <cmath>

namespace caresync {

namespace {

/// Before anything is measured a transfer takes this many wire bytes: about 1.5 s at
/// 64 kbit/s, a blink on anything faster, which then grows the next ones.
constexpr double k_first_wire_bytes = 12 * 1024;
/// Never smaller: below this a page's framing and round trip outweigh its changes.
constexpr double k_least_wire_bytes = 2 * 1024;
/// A transfer grows at most this many times the largest measured so far (a slow start:
/// one quick small page on a slow link must not ask for a page of minutes).
constexpr double k_growth = 8;
/// The weight of a new sample in the running rate.
constexpr double k_weight = 0.5;
/// Samples of less than this are too quick to time (loopback, a small page).
constexpr auto k_least_elapsed = std::chrono::milliseconds(1);

}  // namespace

link_meter::link_meter(double down_rate, double up_rate) noexcept {
  if (std::isfinite(down_rate) && down_rate > 0) down_.rate = down_rate;
  if (std::isfinite(up_rate) && up_rate > 0) up_.rate = up_rate;
  // A rate remembered from an earlier sync counts as measured, with pages of a second.
  down_.largest = down_.rate * std::chrono::duration<double>(k_page_time).count();
  up_.largest = up_.rate * std::chrono::duration<double>(k_batch_time).count();
}

void link_meter::round_trip(duration elapsed) noexcept {
  if (elapsed.count() <= 0) return;
  if (rtt_.count() == 0 || elapsed < rtt_) rtt_ = elapsed;
}

void link_meter::direction::observe(std::size_t wire_bytes, std::size_t plain_bytes, duration elapsed) noexcept {
  if (wire_bytes == 0) return;
  ratio = std::max(1.0, (1 - k_weight) * ratio + k_weight * static_cast<double>(plain_bytes) / static_cast<double>(wire_bytes));
  largest = std::max(largest, static_cast<double>(wire_bytes));
  const double seconds = std::chrono::duration<double>(std::max<duration>(elapsed, k_least_elapsed)).count();
  const double sample = static_cast<double>(wire_bytes) / seconds;
  rate = rate == 0 ? sample : (1 - k_weight) * rate + k_weight * sample;
}

std::size_t link_meter::direction::budget(std::chrono::milliseconds target, std::size_t cap) const noexcept {
  double wire = rate == 0 ? k_first_wire_bytes : rate * std::chrono::duration<double>(target).count();
  if (largest > 0) wire = std::min(wire, largest * k_growth);
  wire = std::max(wire, k_least_wire_bytes);
  const double plain = wire * ratio;
  return plain >= static_cast<double>(cap) ? cap : static_cast<std::size_t>(plain);
}

bool link_meter::direction::growing(std::chrono::milliseconds target, std::size_t cap) const noexcept {
  if (rate == 0) return true;
  const double wire = rate * std::chrono::duration<double>(target).count();
  return largest > 0 && wire > largest * k_growth && largest * k_growth * ratio < static_cast<double>(cap);
}

void link_meter::downloaded(std::size_t wire_bytes, std::size_t plain_bytes, duration elapsed) noexcept {
  down_.observe(wire_bytes, plain_bytes, elapsed);
}

void link_meter::uploaded(std::size_t wire_bytes, std::size_t plain_bytes, duration elapsed) noexcept {
  up_.observe(wire_bytes, plain_bytes, elapsed);
}

void link_meter::cut() noexcept {
  down_.rate /= 2;
  up_.rate /= 2;
  down_.largest /= 2;
  up_.largest /= 2;
}

std::size_t link_meter::page_bytes(std::size_t cap) const noexcept { return down_.budget(k_page_time, cap); }

bool link_meter::pages_growing(std::size_t cap) const noexcept { return down_.growing(k_page_time, cap); }

std::size_t link_meter::batch_bytes(std::size_t cap) const noexcept { return up_.budget(k_batch_time, cap); }

}  // namespace caresync
