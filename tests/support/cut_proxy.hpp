#pragma once
// A TCP proxy on 127.0.0.1 that forwards to an upstream port and cuts a connection once
// a byte budget from the server to the client is spent. It sees only TLS records, so it
// cuts at an arbitrary byte offset, as a dying mobile link does.
// Thread contract: construct, use port() from any thread; runs its own I/O thread.

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>

namespace caresync::testing {

class cut_proxy {
 public:
  /// Forwards to 127.0.0.1:`upstream_port`; each connection is cut after
  /// `downstream_budget` bytes server -> client (0: never cut).
  cut_proxy(std::uint16_t upstream_port, std::uint64_t downstream_budget);
  ~cut_proxy();

  std::uint16_t port() const noexcept { return port_; }
  /// Connections cut so far.
  std::uint64_t cuts() const noexcept { return cuts_; }
  /// Changes the budget for connections accepted from now on.
  void set_budget(std::uint64_t budget) noexcept { budget_ = budget; }

 private:
  void accept();

  asio::io_context io_;
  asio::ip::tcp::acceptor acceptor_;
  std::uint16_t upstream_port_;
  std::atomic<std::uint64_t> budget_;
  std::atomic<std::uint64_t> cuts_{0};
  std::uint16_t port_ = 0;
  std::thread thread_;
};

}  // namespace caresync::testing
