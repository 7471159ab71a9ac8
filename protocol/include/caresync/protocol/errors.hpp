#pragma once
/// The error vocabulary shared by both sides: std::error_code values in caresync's own
/// categories, and is_transient() to decide what a retry loop may retry.
/// Thread contract: categories are immutable singletons, safe from any thread.

#include <string>
#include <system_error>

namespace caresync {

/// Faults in bytes received from a peer or read from storage in wire format.
/// Numbered as the `code` of an error message on the wire (docs/protocol.md).
enum class protocol_errc {
  malformed = 1,            ///< bytes do not decode as the message type says
  frame_too_large = 2,      ///< a frame longer than the agreed limit
  unknown_message = 3,      ///< a message type this side does not know
  unsupported_version = 4,  ///< the peer speaks another protocol version
  unexpected_message = 5,   ///< a valid message at the wrong point of the conversation
  limit_exceeded = 6,       ///< too many changes in a push, a value too large, ...
  auth_failed = 7,          ///< device id or token not accepted
  server_busy = 8,          ///< the server cannot serve now; try later (transient)
  storage_failed = 9,       ///< the server could not store or read; try later (transient)
  shutting_down = 10,       ///< the server is stopping; try later (transient)
  timeout = 11,             ///< the peer took too long (transient)
  clock_ahead = 12,         ///< a change stamped too far ahead of the server's clock; the device re-stamps it
  enrollment_refused = 13,  ///< the enrollment code is unknown, used or expired
  device_revoked = 14,      ///< an administrator revoked the device: it must wipe its local data
  server_only = 15,         ///< a change writes a field only the server side may write; the device reverts it
  out_of_scope = 16,        ///< a pushed change touches a record or collection outside the device's scope
};

/// Faults of the link between a device and the server.
enum class network_errc {
  connect_failed = 1,         ///< could not reach the server (transient)
  connection_lost = 2,        ///< the link dropped mid-conversation (transient)
  timeout = 3,                ///< the server did not answer in time (transient)
  tls_failed = 4,             ///< the TLS handshake failed for a reason other than trust
  certificate_untrusted = 5,  ///< the server's certificate is not signed by the trusted CA
                              ///< or does not name the host
  pin_mismatch = 6,           ///< the server's public key differs from the pinned hash
};

/// Faults of a local SQLite store (the tablet's or the server's).
enum class storage_errc {
  open_failed = 1,      ///< the file cannot be opened or created
  corrupt = 2,          ///< the file is not a caresync store or is damaged
  io_failed = 3,        ///< a read or write failed (disk full, I/O error) (transient)
  busy = 4,             ///< another process holds the store (transient)
  schema_mismatch = 5,  ///< the declared schema conflicts with the store's tables
  invalid_argument = 6, ///< a call named an unknown collection or field, or a bad value
  constraint = 7,       ///< the write breaks a rule of the store (e.g. the id exists)
  not_found = 8,        ///< the record to change does not exist or was deleted
};

/// The categories, named "caresync.protocol", "caresync.network", "caresync.storage".
const std::error_category& protocol_category() noexcept;
const std::error_category& network_category() noexcept;
const std::error_category& storage_category() noexcept;

inline std::error_code make_error_code(protocol_errc e) noexcept {
  return {static_cast<int>(e), protocol_category()};
}
inline std::error_code make_error_code(network_errc e) noexcept {
  return {static_cast<int>(e), network_category()};
}
inline std::error_code make_error_code(storage_errc e) noexcept {
  return {static_cast<int>(e), storage_category()};
}

/// True when retrying the same operation later may succeed: a dropped or refused link,
/// a timeout, a busy, stopping or failing server store, local I/O or lock faults.
/// False for refusals that will repeat (bad token, malformed data, version mismatch,
/// untrusted certificate, pin mismatch) and for errors of other categories.
bool is_transient(std::error_code ec) noexcept;

/// Thrown by caresync's libraries: an error code plus a sentence for a person.
/// what() is the sentence alone (std::system_error would append the code's message).
class error : public std::system_error {
 public:
  error(std::error_code code, const std::string& what) : std::system_error(code, what), sentence_(what) {}
  const char* what() const noexcept override { return sentence_.c_str(); }

 private:
  std::string sentence_;
};

/// Thrown by decoders and by the peers when the wire carries something wrong.
class protocol_error : public error {
 public:
  protocol_error(protocol_errc code, const std::string& what) : error(make_error_code(code), what) {}
};

}  // namespace caresync

template <>
struct std::is_error_code_enum<caresync::protocol_errc> : std::true_type {};
template <>
struct std::is_error_code_enum<caresync::network_errc> : std::true_type {};
template <>
struct std::is_error_code_enum<caresync::storage_errc> : std::true_type {};
