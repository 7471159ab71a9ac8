#pragma once
// A fault-injecting TCP proxy on 127.0.0.1 for tests: it forwards to an upstream port
// and, per connection, adds latency, caps bandwidth, cuts after a number of bytes or a
// time, or stalls. It sees only TLS records, so a cut lands at an arbitrary byte
// offset, as on a dying mobile link.
// Thread contract: construct and call from any thread; runs its own I/O thread.

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <thread>

namespace caresync::testing {

/// What the proxy does to each connection. Zero means "not this fault".
struct link_faults {
  std::uint64_t cut_after_bytes = 0;       ///< cut once this many bytes passed, both directions counted
  std::uint64_t cut_after_down_bytes = 0;  ///< cut once this many bytes passed server -> client
  std::chrono::milliseconds cut_after_time{0};  ///< cut this long after the connection opened
  std::chrono::milliseconds delay{0};      ///< added to each direction (round trip: twice this)
  std::uint64_t bits_per_second = 0;       ///< bandwidth of each direction
  bool stall = false;                      ///< nothing goes through; the connection stays open
  std::uint64_t only_first = 0;            ///< faults for the first this many connections, then none
};

class fault_proxy {
 public:
  /// Forwards to 127.0.0.1:`upstream_port`, with `faults` for each connection.
  explicit fault_proxy(std::uint16_t upstream_port, link_faults faults = {});
  ~fault_proxy();
  fault_proxy(const fault_proxy&) = delete;
  fault_proxy& operator=(const fault_proxy&) = delete;

  std::uint16_t port() const noexcept { return port_; }
  /// Connections cut so far (by bytes or by time).
  std::uint64_t cuts() const noexcept { return cuts_; }
  /// Connections accepted so far.
  std::uint64_t connections() const noexcept { return connections_; }
  /// Bytes delivered so far, both directions.
  std::uint64_t bytes_forwarded() const noexcept { return forwarded_; }
  /// The faults for connections accepted from now on.
  void set_faults(const link_faults& faults);

 private:
  void accept();
  link_faults faults();

  asio::io_context io_;
  asio::ip::tcp::acceptor acceptor_;
  std::uint16_t upstream_port_;
  std::mutex mutex_;
  link_faults faults_;
  std::atomic<std::uint64_t> cuts_{0};
  std::atomic<std::uint64_t> connections_{0};
  std::atomic<std::uint64_t> forwarded_{0};
  std::uint16_t port_ = 0;
  std::thread thread_;
};

}  // namespace caresync::testing
