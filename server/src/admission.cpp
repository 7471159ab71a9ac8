#include "admission.hpp"

#include "log.hpp"

#include <algorithm>

namespace caresync::server {

namespace {

/// A claimed device id as the throttle keeps it: a hostile hello may claim an id of
/// tens of KiB, and 100,000 of those must not fill the server's memory.
std::string device_key(const std::string& device) { return device.substr(0, 128); }

}  // namespace

bool frame_budget::take(std::uint64_t n) noexcept {
  std::uint64_t held = held_.load(std::memory_order_relaxed);
  do {
    if (n > limit_ || held > limit_ - n) return false;
  } while (!held_.compare_exchange_weak(held, held + n, std::memory_order_relaxed));
  return true;
}

void frame_budget::give_back(std::uint64_t n) noexcept { held_.fetch_sub(n, std::memory_order_relaxed); }

auth_throttle::clock::duration auth_throttle::wait_of(table& t, const std::string& key, clock::time_point now) {
  const auto it = t.find(key);
  if (it == t.end() || it->second.blocked_until <= now) return clock::duration::zero();
  return it->second.blocked_until - now;
}

auth_throttle::clock::duration auth_throttle::address_wait(const std::string& address, clock::time_point now) {
  const std::lock_guard lock(mutex_);
  return wait_of(addresses_, address, now);
}

auth_throttle::clock::duration auth_throttle::device_wait(const std::string& device, clock::time_point now) {
  const std::lock_guard lock(mutex_);
  return wait_of(devices_, device_key(device), now);
}

void auth_throttle::count(key_state& k, clock::time_point now) const {
  const double idle = std::chrono::duration<double>(now - k.last_failure).count();
  k.level = std::max(0.0, k.level - idle * k_leak_per_second) + 1;
  k.last_failure = now;
  if (burst_ == 0 || k.level <= burst_) return;
  // 100 ms past the burst, doubling every `burst` failures more, at most k_max_backoff.
  const double over = std::max(0.0, k.level - burst_ - 1);  // the level is fractional as it leaks
  const auto doublings = std::min<std::uint64_t>(static_cast<std::uint64_t>(over / burst_), 20);
  const auto backoff = std::min<clock::duration>(k_first_backoff * (std::uint64_t{1} << doublings), k_max_backoff);
  k.blocked_until = now + backoff;
}

void auth_throttle::sweep(table& t, clock::time_point now) {
  constexpr std::size_t k_max_keys = 100'000;
  if (t.size() < k_max_keys) return;
  std::erase_if(t, [now](const auto& entry) {
    const double idle = std::chrono::duration<double>(now - entry.second.last_failure).count();
    return entry.second.blocked_until <= now && entry.second.level - idle * k_leak_per_second <= 0;
  });
  // Still full (a flood from as many addresses): forget them all rather than grow;
  // their backoff starts again from nothing.
  if (t.size() >= k_max_keys) t.clear();
}

void auth_throttle::failed(const std::string& address, const std::string& device, clock::time_point now) {
  failures_total_.fetch_add(1, std::memory_order_relaxed);
  const std::lock_guard lock(mutex_);
  sweep(addresses_, now);
  auto& a = addresses_[address];
  count(a, now);
  ++a.unlogged_failures;
  a.last_device = device_key(device);
  if (!device.empty()) {
    sweep(devices_, now);
    count(devices_[device_key(device)], now);
  }
  log_summary(address, a, now);
}

void auth_throttle::succeeded(const std::string& device) {
  const std::lock_guard lock(mutex_);
  devices_.erase(device_key(device));
}

void auth_throttle::shut_out(const std::string& address, clock::time_point now) {
  shut_out_total_.fetch_add(1, std::memory_order_relaxed);
  const std::lock_guard lock(mutex_);
  const auto it = addresses_.find(address);
  if (it == addresses_.end()) return;  // a device shut out from an address without failures
  ++it->second.unlogged_shut_out;
  log_summary(address, it->second, now);
}

void auth_throttle::log_summary(const std::string& address, key_state& k, clock::time_point now) {
  if (k.logged != clock::time_point{} && now - k.logged < k_log_interval) return;
  if (k.unlogged_failures == 0 && k.unlogged_shut_out == 0) return;
  k.logged = now;
  const auto wait = k.blocked_until > now ? std::chrono::duration_cast<std::chrono::milliseconds>(k.blocked_until - now).count() : 0;
  log::info("auth_failures",
            {{"peer", address},
             {"failed", k.unlogged_failures},
             {"shut_out", k.unlogged_shut_out},
             {"device_claimed", k.last_device.empty() ? nullptr : nlohmann::ordered_json(k.last_device)},
             {"failure_level", static_cast<std::uint64_t>(k.level)},
             {"backoff_ms", wait}},
            std::to_string(k.unlogged_failures) + " failed authentication(s) and " + std::to_string(k.unlogged_shut_out) +
                " attempt(s) shut out from " + address + " since the last such line; it may try again in " +
                std::to_string(wait) + " ms");
  k.unlogged_failures = 0;
  k.unlogged_shut_out = 0;
}

}  // namespace caresync::server
