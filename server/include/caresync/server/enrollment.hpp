#pragma once
/// Device enrollment (docs/security.md): an administrator creates a user and a one-time
/// code that expires; the device presents the code over TLS and receives its device id
/// and a secret token, of which the server keeps only the SHA-256.
/// Thread contract: free functions over a change_store (itself thread-safe).

#include <caresync/protocol/messages.hpp>
#include <caresync/server/change_store.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace caresync::server {

/// The roles a user may have.
inline constexpr const char* k_roles[] = {"field_worker", "coordinator", "registry_admin", "admin"};

/// An empty string when `u` may be added (id and org unit of 1-128 printable ASCII
/// characters without spaces, a name of 1-200 bytes, a known role); else the reason.
std::string check_user(const user_record& u);

/// A code shown once to the administrator, and when it stops working.
struct issued_code {
  std::string code;  ///< "XXXX-XXXX-XXXX-XXXX": 16 characters of Crockford base32, 80 bits
  std::uint64_t expires_ms = 0;
};

/// Makes a one-time code for an existing user, valid for `valid_for`. Throws
/// caresync::error (storage_errc::not_found when the user does not exist,
/// storage_errc::invalid_argument when she is disabled).
issued_code issue_enrollment_code(change_store& store, std::string_view user_id, std::chrono::seconds valid_for,
                                  std::uint64_t now_ms);

/// The canonical form of a typed code: upper case, dashes and spaces dropped, the
/// look-alikes O, I and L read as 0, 1 and 1 (Crockford).
std::string normalize_code(std::string_view typed);

/// Redeems `code` at `now_ms`: a new device id and token for the code's user. Throws
/// caresync::error (protocol_errc::enrollment_refused: unknown, already used or expired,
/// the message says which; storage errors as the store throws them).
wire::enrolled enroll_device(change_store& store, std::string_view code, std::uint64_t now_ms);

/// 32 random bytes as lowercase hex (OpenSSL's generator). Throws std::runtime_error if
/// the system's random source fails.
std::string random_token();

}  // namespace caresync::server
