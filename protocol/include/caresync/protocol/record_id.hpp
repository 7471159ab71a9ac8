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
using batch_id = record_id;

}  // namespace caresync
