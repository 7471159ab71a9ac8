#include <caresync/protocol/record_id.hpp>

#include <openssl/rand.h>

#include <chrono>
#include <mutex>
#include <stdexcept>

namespace caresync {

namespace {
constexpr char k_hex[] = "0123456789abcdef";

int hex_digit(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

constexpr bool is_dash_position(std::size_t i) noexcept { return i == 8 || i == 13 || i == 18 || i == 23; }
}  // namespace

record_id record_id::generate() {
  record_id id;
  if (RAND_bytes(id.bytes.data(), static_cast<int>(id.bytes.size())) != 1) {
    throw std::runtime_error("the system's random source failed; cannot make a record id");
  }
  // RFC 9562 version 7: the Unix time in milliseconds, then a 12-bit sequence that
  // orders ids made in the same millisecond (method 1, "fixed bit-length dedicated
  // counter"), then 62 random bits. Ids made one after another sort one after another,
  // so every index keyed by them grows at its end (see the header).
  static std::mutex m;
  static std::uint64_t last_ms = 0;
  static std::uint32_t sequence = 0;
  // A millisecond's first sequence number: random, below half the range, so that many
  // ids fit after it.
  const std::uint32_t random_start = static_cast<std::uint32_t>(id.bytes[6] & 0x07) << 8 | id.bytes[7];
  std::uint64_t ms = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
  std::uint32_t seq = 0;  // this id's, read under the lock (another thread moves `sequence` on)
  {
    const std::lock_guard lock(m);
    if (ms > last_ms) {
      sequence = random_start;
    } else if (++sequence <= 0xfff) {
      ms = last_ms;  // the same millisecond (or the clock went back): the next number
    } else {
      ms = last_ms + 1;  // this millisecond's numbers are used up: the next one's
      sequence = random_start;
    }
    last_ms = ms;
    seq = sequence;
  }
  for (int i = 0; i < 6; ++i) id.bytes[i] = static_cast<std::uint8_t>(ms >> (8 * (5 - i)));
  id.bytes[6] = static_cast<std::uint8_t>(0x70 | (seq >> 8));  // version 7
  id.bytes[7] = static_cast<std::uint8_t>(seq);
  id.bytes[8] = static_cast<std::uint8_t>((id.bytes[8] & 0x3f) | 0x80);  // RFC variant
  return id;
}

std::optional<record_id> record_id::parse(std::string_view text) {
  if (text.size() != 36) return std::nullopt;
  record_id id;
  std::size_t out = 0;
  for (std::size_t i = 0; i < text.size();) {
    if (is_dash_position(i)) {
      if (text[i] != '-') return std::nullopt;
      ++i;
      continue;
    }
    const int hi = hex_digit(text[i]);
    const int lo = hex_digit(text[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    id.bytes[out++] = static_cast<std::uint8_t>(hi << 4 | lo);
    i += 2;
  }
  return id;
}

std::array<char, 36> record_id::to_chars() const noexcept {
  std::array<char, 36> text{};
  std::size_t out = 0;
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) text[out++] = '-';
    text[out++] = k_hex[bytes[i] >> 4];
    text[out++] = k_hex[bytes[i] & 0x0f];
  }
  return text;
}

std::string record_id::to_string() const {
  const auto text = to_chars();
  return std::string(text.data(), text.size());
}

}  // namespace caresync
