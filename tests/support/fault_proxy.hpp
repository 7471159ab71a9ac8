#pragma once
// A fault-injecting TCP proxy on 127.0.0.1 for tests: it forwards to an upstream port
// and, per connection, adds latency, caps bandwidth (with a bounded bottleneck queue, as
// a real link has), cuts after a number of bytes or a time, or stalls. It sees only TLS
// records, so a cut lands at an arbitrary byte offset, as on a dying mobile link.
// Thread contract: construct and call from any thread; runs its own I/O thread.

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <thread>

namespace caresync::testing {

/// What the proxy does to each connection. Zero means "not this fault". Every fault
/// applies to each connection on its own, from the moment the proxy has connected it
/// upstream: with only_first 0, cut_after_time T is a link "cut every T", each new
/// connection living T again.
struct link_faults {
  std::uint64_t cut_after_bytes = 0;       ///< cut once this many bytes passed, both directions counted
  std::uint64_t cut_after_down_bytes = 0;  ///< cut once this many bytes passed server -> client
  std::chrono::milliseconds cut_after_time{0};  ///< cut this long after the connection opened (each connection)
  std::chrono::milliseconds delay{0};      ///< added to each direction (round trip: twice this)
  std::uint64_t bits_per_second = 0;       ///< bandwidth of each direction (unless overridden below)
  bool stall = false;                      ///< nothing goes through; the connection stays open
  std::uint64_t only_first = 0;            ///< faults for the first this many connections, then none
  std::uint64_t bits_per_second_up = 0;    ///< client -> server bandwidth; 0: bits_per_second
  std::uint64_t bits_per_second_down = 0;  ///< server -> client bandwidth; 0: bits_per_second
  /// This long after the connection opened, nothing more goes through either way and
  /// nothing is closed: a silent stall (a dead radio link the TCP stacks do not notice).
  std::chrono::milliseconds stall_after{0};
  /// The bottleneck's buffer, per direction, under a bandwidth cap: at most this many
  /// bytes wait for the line (plus what is on its way, bandwidth x delay). While it is
  /// full the proxy reads no more from the sender, whose writes then back up in TCP, so
  /// a sender cannot believe megabytes are sent that the link has not carried. The
  /// proxy's own socket receive buffer on that side is kept small for the same reason.
  /// 0: unbounded. Without a bandwidth cap there is no bottleneck and no bound.
  std::uint64_t queue_bytes = 64u << 10;
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
  std::uint64_t cuts() const noexcept { return counters_.cuts; }
  /// Connections that stalled silently so far (link_faults::stall_after).
  std::uint64_t stalls() const noexcept { return counters_.stalls; }
  /// Connections accepted so far.
  std::uint64_t connections() const noexcept { return counters_.connections; }
  /// Bytes delivered so far, both directions.
  std::uint64_t bytes_forwarded() const noexcept { return counters_.forwarded; }
  /// Bytes delivered to clients so far (server -> client), over all connections.
  std::uint64_t bytes_down() const noexcept { return counters_.down; }
  /// Bytes delivered to the server so far (client -> server), over all connections.
  std::uint64_t bytes_up() const noexcept { return counters_.up; }
  /// The faults for connections accepted from now on.
  void set_faults(const link_faults& faults);

  /// What the connections count; written on the proxy's thread, read from any.
  struct counters {
    std::atomic<std::uint64_t> cuts{0};
    std::atomic<std::uint64_t> stalls{0};
    std::atomic<std::uint64_t> connections{0};
    std::atomic<std::uint64_t> forwarded{0};
    std::atomic<std::uint64_t> down{0};
    std::atomic<std::uint64_t> up{0};
  };

 private:
  void accept();
  link_faults faults();

  asio::io_context io_;
  asio::ip::tcp::acceptor acceptor_;
  std::uint16_t upstream_port_;
  std::mutex mutex_;  // guards faults_
  link_faults faults_;
  counters counters_;
  std::uint16_t port_ = 0;
  std::thread thread_;
};

}  // namespace caresync::testing
