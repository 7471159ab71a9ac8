#pragma once
/// caresync-server configuration: defaults, the TOML file, and checks.
/// Thread contract: plain values; load_config may be called from any thread.

#include <caresync/server/scope.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace caresync::server {

/// A device allowed to sync, until enrollment replaces config-listed devices.
/// Only the SHA-256 of the token is kept (lowercase hex, 64 characters).
struct device_credential {
  std::string device_id;
  std::string token_sha256;
  /// A server-side writer (a registry import job, an office tool), not a field tablet:
  /// it may write the server_only fields.
  bool server_side = false;
};

/// Everything the server needs to run. Defaults are safe for a first start.
struct server_config {
  std::string listen_address = "127.0.0.1";
  std::uint16_t port = 7443;               ///< 0: let the OS pick (tests)
  std::string certificate_file;            ///< PEM certificate chain
  std::string private_key_file;            ///< PEM private key
  std::string database_file = "caresync-server.db";
  std::string server_name = "caresync-server";
  std::string log_level = "info";          ///< "info" (a line per session) or "error" (faults only)
  std::vector<device_credential> devices;
  std::size_t threads = 2;                 ///< I/O threads
  std::uint32_t max_frame_bytes = 16u << 20;
  std::uint32_t max_push_changes = 5000;
  std::uint32_t page_max_changes = 2000;   ///< pull page bound used when a pull asks for 0 or more
  std::uint32_t page_max_bytes = 2u << 20;
  std::size_t max_value_bytes = 1u << 20;
  /// A change stamped more than this ahead of the server's clock is refused (clock_ahead)
  /// and re-stamped by its device, so a tablet whose clock runs ahead cannot win every
  /// later edit (docs/conflicts.md, "Clocks").
  std::chrono::milliseconds max_clock_ahead{300'000};
  std::chrono::milliseconds handshake_timeout{10'000};
  std::chrono::milliseconds idle_timeout{120'000};
  /// Most connections one client address may hold at once; a connection over it is
  /// closed when accepted, before the TLS handshake. 0: no limit. Tablets behind one NAT
  /// address share it, so it bounds a flood from one place, not a single device.
  std::uint32_t max_connections_per_address = 64;
  /// Most sessions one device may hold at once. A device's new session over it ends the
  /// device's oldest (a tablet whose link broke may leave a dead session behind until
  /// idle_timeout; it must not lock itself out), so one device's token pins at most
  /// this many frames in the server's memory.
  std::uint32_t max_sessions_per_device = 4;
  /// Bytes of incoming frames all sessions together may hold while the frames arrive,
  /// beyond the first 64 KiB of each. Spent, a session stops reading (TCP pushes back on
  /// its device) until other frames are handled; small messages always go through.
  std::uint64_t max_frame_bytes_in_flight = 64u << 20;
  /// Failed authentications (wrong tokens, wrong enrollment codes) an address or device
  /// id may make at once before each further one shuts it out for a while; the count
  /// leaks away one a second (docs/operations.md, "Guesses"). 0: no throttling.
  std::uint32_t failed_auth_burst = 10;
  /// Token rotation ([auth] token_rotation_days): an enrolled device whose token is at
  /// least this many days old, and whose app can store a new one (hello offers
  /// k_feature_token_rotation), is handed a new token at sync; its old token works until
  /// a hello presents the new one (docs/security.md, "Token rotation"). 0: off. Tokens of
  /// devices listed in [[devices]] are never rotated.
  std::uint32_t token_rotation_days = 30;
  /// Fields only the server side may write, as "collection.field" ([policies]
  /// server_only). A field device's change writing one is refused alone (server_only)
  /// and its device puts back the server's value (docs/conflicts.md, "server_only").
  /// Server-side writers are config devices marked server_side and enrolled users with
  /// the role registry_admin.
  std::vector<std::string> server_only_fields;
  /// Refuse pushed changes that break the care schema's rules (docs/care.md: codes,
  /// dates, times, referral state moves), each alone ([policies] care_rules). Off for
  /// apps with schemas of their own; the packaged config turns it on.
  bool care_rules = false;
  /// The admin HTTP listener: /metrics (Prometheus text) and /healthz. Off unless the
  /// config turns it on ([admin] enabled = true); loopback unless told otherwise.
  bool admin_enabled = false;
  std::string admin_listen_address = "127.0.0.1";
  std::uint16_t admin_port = 7444;         ///< 0: let the OS pick (tests)
  /// A file holding the bearer token every admin request must carry (Authorization:
  /// Bearer ...). Required when admin.listen_address is not a loopback address; with it
  /// set, loopback requests need the token too.
  std::string admin_bearer_token_file;
  /// The token read from admin_bearer_token_file by load_config (never logged).
  std::string admin_bearer_token;
  /// Admin connections open at once ([admin] max_connections, 1-1024). A connection
  /// past it closes the oldest one still waiting for its request, or itself when every
  /// open one is being answered: idle connections cannot keep /healthz out.
  std::uint32_t admin_max_connections = 8;
  /// Scopes of enrolled devices ([scopes]): which fields place each collection's records
  /// in org units, and what each role reads and writes. Devices listed in [[devices]]
  /// have no user and are not scoped (the pre-enrollment mode; docs/security.md).
  scope_rules scopes = scope_rules::care_defaults();
};

/// Reads a TOML config file (see packaging/caresync-server.toml for every key).
/// Relative file paths in it are resolved against the file's directory.
/// Throws caresync::error (storage_errc::invalid_argument) with a message naming the key
/// and what is wrong, or the file and why it cannot be read.
server_config load_config(const std::string& path);

/// Checks a config before serving: files named, limits sane, devices well-formed.
/// Throws caresync::error (storage_errc::invalid_argument) naming the key at fault.
void validate(const server_config& config);

/// Lowercase hex SHA-256 of `token`, as stored in device_credential::token_sha256.
std::string hash_token(const std::string& token);

}  // namespace caresync::server
