// Device enrollment: one-time codes, device ids and tokens (docs/security.md).

#include <caresync/server/enrollment.hpp>

#include <caresync/protocol/errors.hpp>
#include <caresync/protocol/sha256.hpp>
#include <caresync/server/config.hpp>

#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <stdexcept>

namespace caresync::server {

namespace {

constexpr char k_base32[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";  // Crockford: no I, L, O, U

void random_bytes(std::uint8_t* out, std::size_t n) {
  if (RAND_bytes(out, static_cast<int>(n)) != 1) throw std::runtime_error("the system's random source failed");
}

bool printable_id(std::string_view s) {
  return !s.empty() && s.size() <= 128 &&
         std::all_of(s.begin(), s.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

}  // namespace

std::string check_user(const user_record& u) {
  if (!printable_id(u.user_id)) return "a user id is 1-128 printable ASCII characters without spaces";
  if (u.name.empty() || u.name.size() > 200) return "a user's name is 1-200 bytes";
  if (!printable_id(u.org_unit)) return "an org unit is 1-128 printable ASCII characters without spaces";
  if (std::none_of(std::begin(k_roles), std::end(k_roles), [&](const char* r) { return u.role == r; })) {
    return "role '" + u.role + "' is not one of field_worker, coordinator, registry_admin, admin";
  }
  return {};
}

std::string random_token() {
  std::array<std::uint8_t, 32> bytes{};
  random_bytes(bytes.data(), bytes.size());
  return to_hex(bytes);
}

std::string normalize_code(std::string_view typed) {
  std::string out;
  for (const char ch : typed) {
    if (ch == '-' || ch == ' ') continue;
    char c = (ch >= 'a' && ch <= 'z') ? static_cast<char>(ch - 'a' + 'A') : ch;
    if (c == 'O') c = '0';
    if (c == 'I' || c == 'L') c = '1';
    out += c;
  }
  return out;
}

issued_code issue_enrollment_code(change_store& store, std::string_view user_id, std::chrono::seconds valid_for,
                                  std::uint64_t now_ms) {
  const auto user = store.find_user(user_id);
  if (!user) throw error(make_error_code(storage_errc::not_found), "there is no user '" + std::string(user_id) + "'");
  if (user->disabled_ms != 0) {
    throw error(make_error_code(storage_errc::invalid_argument),
                "user '" + std::string(user_id) + "' is disabled; her devices can no longer be enrolled");
  }
  // 16 characters of 5 bits: 80 bits, from 10 random bytes.
  std::array<std::uint8_t, 10> bytes{};
  random_bytes(bytes.data(), bytes.size());
  std::string plain;
  unsigned bits = 0, have = 0;
  for (const auto b : bytes) {
    bits = (bits << 8) | b;
    have += 8;
    while (have >= 5) {
      plain += k_base32[(bits >> (have - 5)) & 31];
      have -= 5;
    }
  }
  issued_code out;
  for (std::size_t i = 0; i < plain.size(); ++i) {
    if (i > 0 && i % 4 == 0) out.code += '-';
    out.code += plain[i];
  }
  out.expires_ms = now_ms + static_cast<std::uint64_t>(std::chrono::milliseconds(valid_for).count());
  store.add_enrollment(sha256_hex(plain), user_id, out.expires_ms);
  return out;
}

wire::enrolled enroll_device(change_store& store, std::string_view code, std::uint64_t now_ms) {
  const auto canonical = normalize_code(code);
  device_record device;
  // "d-" and 12 hex characters: 48 random bits; a clash is refused by the store's key.
  std::array<std::uint8_t, 6> id{};
  random_bytes(id.data(), id.size());
  device.device_id = "d-" + to_hex(id);
  const auto token = random_token();
  device.token_sha256 = hash_token(token);
  const auto r = store.redeem_enrollment(sha256_hex(canonical), now_ms, device);
  switch (r.result) {
    case redemption::outcome::enrolled: break;
    case redemption::outcome::unknown:
      throw error(make_error_code(protocol_errc::enrollment_refused),
                  "this enrollment code is not known; check it with the administrator");
    case redemption::outcome::used:
      throw error(make_error_code(protocol_errc::enrollment_refused),
                  "this enrollment code was used already; ask the administrator for a new one");
    case redemption::outcome::expired:
      throw error(make_error_code(protocol_errc::enrollment_refused),
                  "this enrollment code has expired; ask the administrator for a new one");
  }
  return wire::enrolled{device.device_id, token, r.user.user_id, r.user.name};
}

}  // namespace caresync::server
