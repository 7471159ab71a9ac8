#include <caresync/protocol/record_id.hpp>

#include <openssl/rand.h>

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
  id.bytes[6] = static_cast<std::uint8_t>((id.bytes[6] & 0x0f) | 0x40);  // version 4
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
