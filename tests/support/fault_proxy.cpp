#include "fault_proxy.hpp"

#include <asio/socket_base.hpp>
#include <asio/steady_timer.hpp>
#include <asio/write.hpp>

#include <algorithm>
#include <array>
#include <deque>
#include <memory>
#include <vector>

namespace caresync::testing {

namespace {

using clock_type = std::chrono::steady_clock;

/// Bytes read at a time under a bandwidth cap, so that pacing is smooth.
constexpr std::size_t k_capped_read = 512;

/// One direction of a connection: bytes read from `from` wait in `queue` until their
/// delivery time (bandwidth, then delay), then are written to `to` in order.
struct direction {
  struct chunk {
    std::vector<std::uint8_t> bytes;
    clock_type::time_point deliver_at;
    bool cut_after = false;  // the connection is cut once this chunk is delivered
  };
  asio::ip::tcp::socket& from;
  asio::ip::tcp::socket& to;
  bool down;                      // server -> client
  std::uint64_t bits_per_second;  // 0: no cap
  std::uint64_t limit;            // bytes `queue` may hold before reading pauses; 0: no bound
  asio::steady_timer timer;
  std::deque<chunk> queue;
  std::uint64_t queued = 0;  // bytes in `queue`
  bool reading = false;
  bool writing = false;
  bool ended = false;  // `from` reached end of stream: close once the queue is delivered
  clock_type::time_point line_free{};  // when the (bandwidth-capped) line is free again
  std::array<std::uint8_t, 16384> buf{};

  direction(asio::ip::tcp::socket& f, asio::ip::tcp::socket& t, bool d, asio::io_context& io, std::uint64_t bps,
            const link_faults& faults)
      : from(f), to(t), down(d), bits_per_second(bps), limit(queue_limit(bps, faults)), timer(io) {}

  /// The bottleneck's buffer, plus the bytes on their way (bandwidth x delay), plus one
  /// read: what may be read and not yet delivered.
  static std::uint64_t queue_limit(std::uint64_t bps, const link_faults& faults) {
    if (bps == 0 || faults.queue_bytes == 0) return 0;
    const auto in_flight = bps / 8 * static_cast<std::uint64_t>(faults.delay.count()) / 1000;
    return faults.queue_bytes + in_flight + k_capped_read;
  }
};

/// The receive buffer of a proxy socket a capped direction reads from: about the
/// bottleneck queue (the kernel doubles what it is given), so the kernel does not hide
/// megabytes behind the bound (loopback buffers grow to several MB on their own).
int receive_buffer_for(const link_faults& faults) {
  return static_cast<int>(std::clamp<std::uint64_t>(faults.queue_bytes / 2, 8u << 10, 128u << 10));
}

struct link : std::enable_shared_from_this<link> {
  asio::ip::tcp::socket client;
  asio::ip::tcp::socket server;
  link_faults faults;
  fault_proxy::counters& counters;
  direction up;
  direction down;
  asio::steady_timer cut_timer;
  asio::steady_timer stall_timer;
  std::uint64_t total = 0;       // bytes read, both directions
  std::uint64_t total_down = 0;  // bytes read server -> client
  bool cut_planned = false;
  bool stalled = false;  // stall_after passed: nothing is written any more
  bool closed = false;

  link(asio::ip::tcp::socket c, asio::io_context& io, const link_faults& f, fault_proxy::counters& counts)
      : client(std::move(c)),
        server(io),
        faults(f),
        counters(counts),
        up(client, server, false, io, f.bits_per_second_up ? f.bits_per_second_up : f.bits_per_second, f),
        down(server, client, true, io, f.bits_per_second_down ? f.bits_per_second_down : f.bits_per_second, f),
        cut_timer(io),
        stall_timer(io) {}

  /// Opens the upstream socket with its buffer set (before connecting, so the window
  /// the server sees is the small one from the start). Errors surface at connect.
  void prepare_upstream() {
    std::error_code ignored;
    server.open(asio::ip::tcp::v4(), ignored);
    if (down.limit != 0) server.set_option(asio::socket_base::receive_buffer_size(receive_buffer_for(faults)), ignored);
  }

  void close(bool as_cut) {
    if (closed) return;
    closed = true;
    if (as_cut) ++counters.cuts;
    std::error_code ignored;
    client.close(ignored);
    server.close(ignored);
    up.timer.cancel();
    down.timer.cancel();
    cut_timer.cancel();
    stall_timer.cancel();
  }

  void start() {
    // No Nagle delay of its own: the proxy adds only the faults it is asked for.
    std::error_code ignored;
    client.set_option(asio::ip::tcp::no_delay(true), ignored);
    server.set_option(asio::ip::tcp::no_delay(true), ignored);
    if (up.limit != 0) client.set_option(asio::socket_base::receive_buffer_size(receive_buffer_for(faults)), ignored);
    if (faults.cut_after_time.count() > 0) {
      cut_timer.expires_after(faults.cut_after_time);
      cut_timer.async_wait([self = shared_from_this()](std::error_code ec) {
        if (!ec) self->close(true);
      });
    }
    if (faults.stall_after.count() > 0) {
      stall_timer.expires_after(faults.stall_after);
      stall_timer.async_wait([self = shared_from_this()](std::error_code ec) {
        if (ec || self->closed) return;
        self->stalled = true;
        ++self->counters.stalls;
      });
    }
    read(up);
    read(down);
  }

  void read(direction& d) {
    if (cut_planned || closed || d.reading || d.ended) return;  // nothing after the cut point is read
    if (d.limit != 0 && d.queued >= d.limit) return;  // the bottleneck is full: write() reads again
    const std::size_t max = d.bits_per_second ? k_capped_read : d.buf.size();
    d.reading = true;
    d.from.async_read_some(asio::buffer(d.buf.data(), max), [self = shared_from_this(), &d](std::error_code ec, std::size_t n) {
      d.reading = false;
      if (self->closed) return;
      if (ec == asio::error::eof) {
        // Deliver what is still on its way, then close.
        d.ended = true;
        return self->write(d);
      }
      if (ec) return self->close(false);
      self->on_read(d, n);
    });
  }

  void on_read(direction& d, std::size_t n) {
    if (cut_planned) return;  // read by the other direction before its cut was planned
    std::size_t pass = n;
    bool cut = false;
    if (faults.cut_after_bytes && total + n >= faults.cut_after_bytes) {
      pass = static_cast<std::size_t>(faults.cut_after_bytes - total);
      cut = true;
    }
    if (d.down && faults.cut_after_down_bytes && total_down + pass >= faults.cut_after_down_bytes) {
      pass = static_cast<std::size_t>(faults.cut_after_down_bytes - total_down);
      cut = true;
    }
    total += pass;
    if (d.down) total_down += pass;
    const auto now = clock_type::now();
    auto sent = std::max(now, d.line_free);
    if (d.bits_per_second) {
      sent += std::chrono::microseconds(pass * 8 * 1'000'000 / d.bits_per_second);
    }
    d.line_free = sent;
    d.queue.push_back({std::vector<std::uint8_t>(d.buf.begin(), d.buf.begin() + static_cast<std::ptrdiff_t>(pass)),
                       sent + faults.delay, cut});
    d.queued += pass;
    if (cut) cut_planned = true;
    write(d);
    read(d);
  }

  void write(direction& d) {
    if (d.writing || closed || faults.stall || stalled) return;
    if (d.queue.empty()) {
      if (d.ended) close(false);
      return;
    }
    auto& next = d.queue.front();
    d.writing = true;
    if (clock_type::now() < next.deliver_at) {
      d.timer.expires_at(next.deliver_at);
      d.timer.async_wait([self = shared_from_this(), &d](std::error_code ec) {
        d.writing = false;
        if (!ec) self->write(d);
      });
      return;
    }
    asio::async_write(d.to, asio::buffer(next.bytes), [self = shared_from_this(), &d](std::error_code ec, std::size_t n) {
      d.writing = false;
      if (ec) return self->close(false);
      self->counters.forwarded += n;
      (d.down ? self->counters.down : self->counters.up) += n;
      const bool cut = d.queue.front().cut_after;
      d.queued -= d.queue.front().bytes.size();
      d.queue.pop_front();
      if (cut) return self->close(true);
      self->write(d);
      self->read(d);  // room in the bottleneck again
    });
  }
};

}  // namespace

fault_proxy::fault_proxy(std::uint16_t upstream_port, link_faults faults)
    : acceptor_(io_, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)),
      upstream_port_(upstream_port),
      faults_(faults) {
  port_ = acceptor_.local_endpoint().port();
  accept();
  thread_ = std::thread([this] { io_.run(); });
}

fault_proxy::~fault_proxy() {
  io_.stop();
  thread_.join();
}

void fault_proxy::set_faults(const link_faults& faults) {
  const std::lock_guard lock(mutex_);
  faults_ = faults;
}

link_faults fault_proxy::faults() {
  const std::lock_guard lock(mutex_);
  return faults_;
}

void fault_proxy::accept() {
  acceptor_.async_accept([this](std::error_code ec, asio::ip::tcp::socket socket) {
    if (ec) return;
    const auto n = ++counters_.connections;
    auto f = faults();
    if (f.only_first != 0 && n > f.only_first) f = link_faults{};
    auto l = std::make_shared<link>(std::move(socket), io_, f, counters_);
    l->prepare_upstream();
    l->server.async_connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), upstream_port_),
                            [l](std::error_code cec) {
                              if (cec) return l->close(false);
                              l->start();
                            });
    accept();
  });
}

}  // namespace caresync::testing
