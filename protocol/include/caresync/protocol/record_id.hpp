#pragma once
/// 128-bit record identifiers, made offline from a cryptographic random source.
/// Thread contract: plain value; generate() may be called from any thread.

#include <array>
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace caresync {

/// A record's identity: 16 random bytes laid out as an RFC 9562 version-4 UUID, so two
/// tablets that never talked still never collide.
struct record_id {
  std::array<std::uint8_t, 16> bytes{};

  /// Makes a new random id (OpenSSL RAND_bytes). Throws std::runtime_error if the
  /// system random source fails, which leaves nothing half-written.
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
