#pragma once
/// The demo's state directory: a CA and a server certificate made on the first run, a
/// random token per tablet, and the server's config, which holds only the tokens'
/// SHA-256. Later runs reuse all of it, so the tablets' stores and the server's change
/// log carry on from where the last run ended.
/// Thread contract: free function.

#include <map>
#include <ostream>
#include <string>
#include <vector>

namespace caresync::demo {

/// Paths in the state directory and the tablets' secrets.
struct demo_state {
  std::string dir;
  std::string ca_file;        ///< what the tablets trust (sync_options::ca_file)
  std::string config_file;    ///< the server's TOML config
  std::string database_file;  ///< the server's SQLite change log
  std::string log_file;       ///< the server's standard error
  std::string public_key_pin; ///< SHA-256 of the server's public key (not a secret)
  std::map<std::string, std::string> tokens;  ///< tablet name -> token; secret, never printed
};

/// Creates `dir` if needed, then makes or reuses: ca.pem + ca-key.pem, server-cert.pem +
/// server-key.pem (SAN localhost and 127.0.0.1; renewed when it expires within 30 days),
/// tablet-tokens (mode 0600) with a token for each name in `tablets`, and server.toml
/// listing every tablet with its token's hash. Says what it made or reused on `out`,
/// never a token. Throws caresync::error or std::runtime_error on a file or OpenSSL fault.
demo_state prepare_state_directory(const std::string& dir, const std::vector<std::string>& tablets,
                                   std::ostream& out);

/// The tablet's store file in the state directory: "<dir>/tablet-<name>.db".
std::string tablet_store_path(const demo_state& state, const std::string& tablet);

/// Removes the tablets' stores and the server's change log (with their WAL files) for a
/// fresh start, keeping certificates and tokens. Returns how many files it removed.
std::size_t remove_replicas(const demo_state& state);

}  // namespace caresync::demo
