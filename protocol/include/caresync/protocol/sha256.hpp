#pragma once
/// SHA-256 and hex, as used for token hashes, key pins and state digests.
/// Thread contract: free functions.

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace caresync {

/// Lowercase hex of `bytes`.
std::string to_hex(std::span<const std::uint8_t> bytes);

/// Lowercase hex SHA-256 of `bytes`. Throws caresync::error if OpenSSL fails.
std::string sha256_hex(std::span<const std::uint8_t> bytes);

/// Lowercase hex SHA-256 of the bytes of `text`.
std::string sha256_hex(std::string_view text);

}  // namespace caresync
