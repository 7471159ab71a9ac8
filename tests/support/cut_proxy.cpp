#include "cut_proxy.hpp"

#include <asio/connect.hpp>
#include <asio/write.hpp>

#include <array>

namespace caresync::testing {

namespace {

struct link : std::enable_shared_from_this<link> {
  asio::ip::tcp::socket client;
  asio::ip::tcp::socket server;
  std::uint64_t budget;  // 0: unlimited
  std::uint64_t down = 0;
  std::atomic<std::uint64_t>& cuts;
  std::array<std::uint8_t, 16384> up_buf{};
  std::array<std::uint8_t, 16384> down_buf{};

  link(asio::ip::tcp::socket c, asio::io_context& io, std::uint64_t b, std::atomic<std::uint64_t>& cut_count)
      : client(std::move(c)), server(io), budget(b), cuts(cut_count) {}

  void close() {
    std::error_code ignored;
    client.close(ignored);
    server.close(ignored);
  }

  void pump_up() {
    client.async_read_some(asio::buffer(up_buf), [self = shared_from_this()](std::error_code ec, std::size_t n) {
      if (ec) return self->close();
      asio::async_write(self->server, asio::buffer(self->up_buf, n), [self](std::error_code wec, std::size_t) {
        if (wec) return self->close();
        self->pump_up();
      });
    });
  }

  void pump_down() {
    server.async_read_some(asio::buffer(down_buf), [self = shared_from_this()](std::error_code ec, std::size_t n) {
      if (ec) return self->close();
      std::size_t pass = n;
      bool cut = false;
      if (self->budget != 0 && self->down + n >= self->budget) {
        pass = static_cast<std::size_t>(self->budget - self->down);
        cut = true;
      }
      self->down += pass;
      asio::async_write(self->client, asio::buffer(self->down_buf, pass), [self, cut](std::error_code wec, std::size_t) {
        if (wec || cut) {
          if (cut) ++self->cuts;
          return self->close();
        }
        self->pump_down();
      });
    });
  }
};

}  // namespace

cut_proxy::cut_proxy(std::uint16_t upstream_port, std::uint64_t downstream_budget)
    : acceptor_(io_, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)),
      upstream_port_(upstream_port),
      budget_(downstream_budget) {
  port_ = acceptor_.local_endpoint().port();
  accept();
  thread_ = std::thread([this] { io_.run(); });
}

cut_proxy::~cut_proxy() {
  io_.stop();
  thread_.join();
}

void cut_proxy::accept() {
  acceptor_.async_accept([this](std::error_code ec, asio::ip::tcp::socket socket) {
    if (ec) return;
    auto l = std::make_shared<link>(std::move(socket), io_, budget_.load(), cuts_);
    l->server.async_connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), upstream_port_),
                            [l](std::error_code cec) {
                              if (cec) return l->close();
                              l->pump_up();
                              l->pump_down();
                            });
    accept();
  });
}

}  // namespace caresync::testing
