#pragma once
// A real caresync server in this process for the benchmark: its own CA and certificate
// (SAN IP 127.0.0.1) written to files, a fresh SQLite change store, an OS-chosen port on
// 127.0.0.1, and a few devices whose tokens are made here.
// Thread contract: construct, use and destroy on one thread; the server runs its own
// I/O threads.

#include <caresync/server/server.hpp>
#include <caresync/sync_client.hpp>

#include <filesystem>
#include <memory>
#include <string>

namespace caresync::bench {

class loopback_server {
 public:
  /// Writes the certificates and the change store under `dir` and starts serving
  /// `devices` devices. Throws caresync::error if certificates, store or listener fail.
  loopback_server(const std::filesystem::path& dir, int devices);
  ~loopback_server();  ///< stops the server
  loopback_server(const loopback_server&) = delete;
  loopback_server& operator=(const loopback_server&) = delete;

  /// Options for device `index` (0-based) to sync with this server, trusting its CA.
  sync_options options(int index) const;

  /// Stops accepting and joins the server's threads. Idempotent.
  void stop();

  server::server& get() noexcept { return *server_; }

 private:
  std::string ca_file_;
  std::string token_prefix_;
  std::unique_ptr<server::server> server_;
};

}  // namespace caresync::bench
