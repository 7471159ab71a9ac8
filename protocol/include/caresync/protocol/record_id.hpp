#pragma once
/// 128-bit record identifiers, made offline: time-ordered RFC 9562 version-7 UUIDs with
/// 62 bits from a cryptographic random source (docs/protocol.md, "Record id").
/// Thread contract: plain value; generate() may be called from any thread.

#include <array>
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace caresync {

/// A record's identity: an RFC 9562 version-7 UUID (the time it was made, a sequence,
/// random bits), so two tablets that never talked still never collide, and ids made one
/// after another sort one after another (indexes keyed by them grow at their end).
struct record_id {
  std::array<std::uint8_t, 16> bytes{};

  /// Makes a new id, after every id this process made before (OpenSSL RAND_bytes for
  /// its random bits). Throws std::runtime_error if the system random source fails,
  /// which leaves nothing half-written.
  static record_id generate();

  /// Parses the canonical text form "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" (hex, any case).
  /// Returns std::nullopt for anything else.
  static std::optional<record_id> parse(std::string_view text);

  /// The canonical lowercase text form, 36 characters.
  std::string to_string() const;

  /// The same text without allocating (hot paths bind it to SQL directly).
  std::array<char, 36> to_chars() const noexcept;

  friend auto operator<=>(const record_id&, const record_id&) = default;
};

/// Identifies one push batch; the server answers a resent batch id from what it stored.
/// Since protocol version 7 a store numbers its batches 1, 2, 3, ...: such a batch id has
/// eight zero bytes, then the number big-endian (numbered_batch), and goes on the wire as
/// the number alone. The server keys it by the pushing node too, so two stores of one
/// device never share a batch.
using batch_id = record_id;

/// The batch id of a store's `number`-th batch (number >= 1).
constexpr batch_id numbered_batch(std::uint64_t number) noexcept {
  batch_id b;
  for (int i = 0; i < 8; ++i) b.bytes[15 - i] = static_cast<std::uint8_t>(number >> (8 * i));
  return b;
}

/// The number of a numbered batch id, or 0 when it is not one (a random id, as version 6
/// stores made).
constexpr std::uint64_t batch_number(const batch_id& b) noexcept {
  for (int i = 0; i < 8; ++i) {
    if (b.bytes[i] != 0) return 0;
  }
  std::uint64_t n = 0;
  for (int i = 8; i < 16; ++i) n = (n << 8) | b.bytes[i];
  return n;
}

}  // namespace caresync
