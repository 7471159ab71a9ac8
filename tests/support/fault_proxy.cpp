#include "fault_proxy.hpp"

#include <asio/steady_timer.hpp>
#include <asio/write.hpp>

#include <array>
#include <deque>
#include <memory>
#include <vector>

namespace caresync::testing {

namespace {

using clock_type = std::chrono::steady_clock;

struct link;

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
  bool down;  // server -> client
  asio::steady_timer timer;
  std::deque<chunk> queue;
  bool writing = false;
  bool ended = false;  // `from` reached end of stream: close once the queue is delivered
  clock_type::time_point line_free{};  // when the (bandwidth-capped) line is free again
  std::array<std::uint8_t, 16384> buf{};

  direction(asio::ip::tcp::socket& f, asio::ip::tcp::socket& t, bool d, asio::io_context& io)
      : from(f), to(t), down(d), timer(io) {}
};

struct link : std::enable_shared_from_this<link> {
  asio::ip::tcp::socket client;
  asio::ip::tcp::socket server;
  link_faults faults;
  std::atomic<std::uint64_t>& cuts;
  std::atomic<std::uint64_t>& forwarded;
  direction up;
  direction down;
  asio::steady_timer cut_timer;
  std::uint64_t total = 0;       // bytes read, both directions
  std::uint64_t total_down = 0;  // bytes read server -> client
  bool cut_planned = false;
  bool closed = false;

  link(asio::ip::tcp::socket c, asio::io_context& io, const link_faults& f, std::atomic<std::uint64_t>& cut_count,
       std::atomic<std::uint64_t>& forwarded_count)
      : client(std::move(c)),
        server(io),
        faults(f),
        cuts(cut_count),
        forwarded(forwarded_count),
        up(client, server, false, io),
        down(server, client, true, io),
        cut_timer(io) {}

  void close(bool as_cut) {
    if (closed) return;
    closed = true;
    if (as_cut) ++cuts;
    std::error_code ignored;
    client.close(ignored);
    server.close(ignored);
    up.timer.cancel();
    down.timer.cancel();
    cut_timer.cancel();
  }

  void start() {
    // No Nagle delay of its own: the proxy adds only the faults it is asked for.
    std::error_code ignored;
    client.set_option(asio::ip::tcp::no_delay(true), ignored);
    server.set_option(asio::ip::tcp::no_delay(true), ignored);
    if (faults.cut_after_time.count() > 0) {
      cut_timer.expires_after(faults.cut_after_time);
      cut_timer.async_wait([self = shared_from_this()](std::error_code ec) {
        if (!ec) self->close(true);
      });
    }
    read(up);
    read(down);
  }

  void read(direction& d) {
    if (cut_planned) return;  // nothing after the cut point is read
    // Small reads under a bandwidth cap, so that pacing is smooth.
    const std::size_t max = faults.bits_per_second ? 512 : d.buf.size();
    d.from.async_read_some(asio::buffer(d.buf.data(), max), [self = shared_from_this(), &d](std::error_code ec, std::size_t n) {
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
    if (faults.bits_per_second) {
      sent += std::chrono::microseconds(pass * 8 * 1'000'000 / faults.bits_per_second);
    }
    d.line_free = sent;
    d.queue.push_back({std::vector<std::uint8_t>(d.buf.begin(), d.buf.begin() + static_cast<std::ptrdiff_t>(pass)),
                       sent + faults.delay, cut});
    if (cut) cut_planned = true;
    write(d);
    read(d);
  }

  void write(direction& d) {
    if (d.writing || closed || faults.stall) return;
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
      self->forwarded += n;
      const bool cut = d.queue.front().cut_after;
      d.queue.pop_front();
      if (cut) return self->close(true);
      self->write(d);
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
    const auto n = ++connections_;
    auto f = faults();
    if (f.only_first != 0 && n > f.only_first) f = link_faults{};
    auto l = std::make_shared<link>(std::move(socket), io_, f, cuts_, forwarded_);
    l->server.async_connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), upstream_port_),
                            [l](std::error_code cec) {
                              if (cec) return l->close(false);
                              l->start();
                            });
    accept();
  });
}

}  // namespace caresync::testing
