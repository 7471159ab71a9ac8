// Token rotation: see token_rotation.hpp and docs/security.md, "Token rotation".

#include "token_rotation.hpp"

#include <caresync/server/config.hpp>
#include <caresync/server/enrollment.hpp>

#include <openssl/crypto.h>

namespace caresync::server {

namespace {

constexpr std::uint64_t k_ms_per_day = 86'400'000;

bool same_hash(std::string_view expected, std::string_view actual) {
  return expected.size() == actual.size() && CRYPTO_memcmp(expected.data(), actual.data(), actual.size()) == 0;
}

}  // namespace

token_match match_token(const device_tokens& tokens, std::string_view token_sha256) {
  const bool current = same_hash(tokens.current_sha256, token_sha256);
  const bool pending = !tokens.pending_sha256.empty() && same_hash(tokens.pending_sha256, token_sha256);
  return current ? token_match::current : pending ? token_match::pending : token_match::none;
}

token_outcome settle_tokens(change_store& store, std::string_view device_id, const device_tokens& tokens,
                            token_match match, std::string_view token_sha256, bool device_rotates,
                            std::uint32_t rotation_days, std::uint64_t now_ms) {
  token_outcome out;
  if (match == token_match::none) return out;
  std::uint64_t issued_ms = tokens.issued_ms;
  if (match == token_match::pending) {
    // The device stored the token it was handed, and shows it: its confirmation.
    if (!store.promote_token(device_id, token_sha256, now_ms)) {
      // Another session got there first: its promotion of this very token (the device
      // connecting twice at once) leaves it current; a hello with the old token that
      // replaced it leaves it worthless.
      const auto now = store.find_tokens(device_id);
      if (!now || match_token(*now, token_sha256) != token_match::current) return out;
      issued_ms = now->issued_ms;
    } else {
      issued_ms = now_ms;
      out.confirmed = true;
    }
  }
  out.accepted = true;
  if (!device_rotates || rotation_days == 0) return out;
  const std::uint64_t age_ms = now_ms > issued_ms ? now_ms - issued_ms : 0;
  if (age_ms < std::uint64_t{rotation_days} * k_ms_per_day) return out;
  auto token = random_token();
  // Only while the token presented is still the current one: if another session
  // promoted a token meanwhile, this one is on its way out and gets no successor.
  if (store.set_pending_token(device_id, token_sha256, hash_token(token))) out.new_token = std::move(token);
  return out;
}

}  // namespace caresync::server
