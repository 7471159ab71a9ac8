#pragma once
// Token rotation (docs/security.md, "Token rotation"; docs/protocol.md, "Token
// rotation"): which of an enrolled device's tokens a hello presents, and what that does
// to them. The decisions live here, the store only keeps the hashes. Private to the server.
// Thread contract: free functions over a change_store (itself thread-safe); no I/O but
// the store's.

#include <caresync/server/change_store.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace caresync::server {

/// Which token a hello presented.
enum class token_match { none, current, pending };

/// Compares the SHA-256 of a presented token with both of `tokens`, each in constant
/// time and both always, so that timing tells nothing of which one matched.
token_match match_token(const device_tokens& tokens, std::string_view token_sha256);

/// What an accepted token does to the device's tokens.
struct token_outcome {
  /// false: the token presented stopped working while the hello was checked (another
  /// session promoted or replaced it first); the hello is refused like a wrong token.
  bool accepted = false;
  bool confirmed = false;  ///< the hello presented the pending token, now the current one
  std::string new_token;   ///< not empty: the welcome hands it to the device
};

/// Settles the tokens of an accepted, not revoked, enrolled device at its hello:
/// presenting the pending token promotes it (the old one then fails); then, when the
/// device can store a new token (`device_rotates`: hello offered
/// k_feature_token_rotation), rotation is on (`rotation_days` > 0) and the current token
/// is at least `rotation_days` old at `now_ms`, a new token is made and its hash stored as
/// pending, replacing any pending one. Throws caresync::error (storage), and
/// std::runtime_error if the random source fails.
token_outcome settle_tokens(change_store& store, std::string_view device_id, const device_tokens& tokens,
                            token_match match, std::string_view token_sha256, bool device_rotates,
                            std::uint32_t rotation_days, std::uint64_t now_ms);

}  // namespace caresync::server
