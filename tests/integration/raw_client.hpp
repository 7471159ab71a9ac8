#pragma once
// A hostile (or merely raw) client of the test server: a real socket from a chosen
// loopback address, TLS that trusts anything, frames written by hand. For the tests
// that attack the server (hostile_client_test, audit_test).

#include "fixture.hpp"

#include <caresync/protocol/frame.hpp>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/ssl.hpp>
#include <asio/write.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <system_error>

namespace caresync::testing {

/// One hostile connection: a TCP socket from a chosen loopback address, optionally
/// wrapped in TLS that trusts anything (an attacker checks nothing), driven on its own
/// io_context with deadlines. Everything the server sends is collected, and so is the
/// moment the server ended the connection (end of stream, reset or a failed write).
/// Thread contract: one thread at a time.
class raw_client {
 public:
  /// Connects to 127.0.0.1:`port` from `from`. Throws std::system_error.
  raw_client(std::uint16_t port, const std::string& from)
      : started_(std::chrono::steady_clock::now()), tls_context_(asio::ssl::context::tls_client), stream_(io_, tls_context_) {
    stream_.set_verify_mode(asio::ssl::verify_none);
    auto& socket = stream_.next_layer();
    socket.open(asio::ip::tcp::v4());
    socket.bind({asio::ip::make_address(from), 0});
    socket.connect({asio::ip::make_address("127.0.0.1"), port});
    socket.set_option(asio::ip::tcp::no_delay(true));
  }
  ~raw_client() { close(); }
  raw_client(const raw_client&) = delete;
  raw_client& operator=(const raw_client&) = delete;

  /// Completes a TLS handshake; false if the server ended the connection first.
  /// Throws std::runtime_error if neither happens within `limit`.
  bool handshake(std::chrono::milliseconds limit = std::chrono::seconds(20)) {
    std::optional<std::error_code> result;
    stream_.async_handshake(asio::ssl::stream_base::client, [&result](const std::error_code& ec) { result = ec; });
    finish(result, limit, "the TLS handshake");
    if (*result) {
      note_closed();
      return false;
    }
    tls_ = true;
    return true;
  }

  /// Sends `bytes` (through TLS after handshake()); false if the server has ended the
  /// connection. Throws std::runtime_error if the write does not end within `limit`.
  bool send(std::span<const std::uint8_t> bytes, std::chrono::milliseconds limit = std::chrono::seconds(20)) {
    std::optional<std::error_code> result;
    auto done = [&result](const std::error_code& ec, std::size_t) { result = ec; };
    if (tls_) {
      asio::async_write(stream_, asio::buffer(bytes.data(), bytes.size()), done);
    } else {
      asio::async_write(stream_.next_layer(), asio::buffer(bytes.data(), bytes.size()), done);
    }
    finish(result, limit, "a write");
    if (*result) note_closed();
    return !*result;
  }

  /// Sends `pattern` over and over, one byte every `interval`, until the server ends the
  /// connection (true) or `limit` passes (false).
  bool drip(const wire::bytes& pattern, std::chrono::milliseconds interval, std::chrono::milliseconds limit) {
    watch();
    const auto deadline = std::chrono::steady_clock::now() + limit;
    for (std::size_t i = 0; !closed_ && std::chrono::steady_clock::now() < deadline; ++i) {
      if (!send(std::span(&pattern[i % pattern.size()], 1))) break;
      run_until([this] { return closed_.has_value(); }, std::min(deadline, std::chrono::steady_clock::now() + interval));
    }
    return closed_.has_value();
  }

  /// Waits up to `limit` for the server to end the connection; true if it did.
  bool wait_closed(std::chrono::milliseconds limit) {
    watch();
    run_until([this] { return closed_.has_value(); }, std::chrono::steady_clock::now() + limit);
    return closed_.has_value();
  }

  /// Whether the connection is still open, looking for `window` (an end that happened
  /// before is already waiting in the socket, so a short look is enough).
  bool still_open(std::chrono::milliseconds window = std::chrono::milliseconds(200)) { return !wait_closed(window); }

  /// The next whole frame the server sent, waiting up to `limit`; nullopt if the
  /// connection ended without one or the limit passed. Throws protocol_error if the
  /// bytes are not a frame.
  std::optional<wire::message> receive(std::chrono::milliseconds limit = std::chrono::seconds(20)) {
    watch();
    run_until([this] { return frame_ready() || closed_.has_value(); }, std::chrono::steady_clock::now() + limit);
    if (!frame_ready()) return std::nullopt;
    const auto h = wire::parse_header(std::span<const std::uint8_t, wire::k_frame_header_size>(received_.data(), wire::k_frame_header_size),
                                      wire::k_default_max_frame);
    const auto end = received_.begin() + static_cast<std::ptrdiff_t>(wire::k_frame_header_size + h.length);
    auto m = wire::read_payload(h, std::span(received_.begin() + wire::k_frame_header_size, end), wire::k_default_max_frame,
                                wire::codec::none);
    received_.erase(received_.begin(), end);
    return m;
  }

  /// Says hello as device `i` of the test server and returns the answer (nullopt if none).
  std::optional<wire::message> hello(int i) {
    wire::hello h;
    h.client_name = "hostile test client";
    h.device_id = test_server::device(i);
    h.token = test_server::token(i);
    h.node = 0x4000u + static_cast<node_id>(i);
    if (!send(wire::make_frame(h))) return std::nullopt;
    return receive();
  }

  /// Ends the connection from this side.
  void close() noexcept {
    std::error_code ignored;
    stream_.next_layer().close(ignored);
    try {
      io_.restart();
      io_.poll();  // the cancelled handlers run while what they refer to exists
    } catch (...) {
      // Their failures do not matter any more.
    }
  }

  /// Starts the clock again: what lasted() measures from.
  void restart_clock() { started_ = std::chrono::steady_clock::now(); }
  /// From connecting (or restart_clock()) until the server ended the connection.
  std::chrono::milliseconds lasted() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(closed_.value_or(std::chrono::steady_clock::now()) - started_);
  }
  bool closed() const noexcept { return closed_.has_value(); }

 private:
  /// Keeps one read pending while the connection is open, collecting what arrives.
  void watch() {
    if (reading_ || closed_) return;
    reading_ = true;
    auto on_read = [this](const std::error_code& ec, std::size_t n) {
      reading_ = false;
      received_.insert(received_.end(), buffer_.begin(), buffer_.begin() + static_cast<std::ptrdiff_t>(n));
      if (ec) return note_closed();
      watch();
    };
    if (tls_) {
      stream_.async_read_some(asio::buffer(buffer_), on_read);
    } else {
      stream_.next_layer().async_read_some(asio::buffer(buffer_), on_read);
    }
  }

  bool frame_ready() const {
    if (received_.size() < wire::k_frame_header_size) return false;
    const std::uint64_t length = static_cast<std::uint32_t>(received_[0]) | static_cast<std::uint32_t>(received_[1]) << 8 |
                                 static_cast<std::uint32_t>(received_[2]) << 16 | static_cast<std::uint32_t>(received_[3]) << 24;
    return received_.size() >= wire::k_frame_header_size + length;
  }

  void note_closed() {
    if (!closed_) closed_ = std::chrono::steady_clock::now();
  }

  template <class Done>
  void run_until(Done done, std::chrono::steady_clock::time_point deadline) {
    while (!done() && std::chrono::steady_clock::now() < deadline) {
      io_.restart();
      if (io_.run_one_until(deadline) == 0) break;  // the deadline, or nothing pending
    }
  }

  /// Runs until `result` is set; past `limit`, cancels the operation and throws.
  void finish(std::optional<std::error_code>& result, std::chrono::milliseconds limit, const char* what) {
    run_until([&result] { return result.has_value(); }, std::chrono::steady_clock::now() + limit);
    if (result) return;
    std::error_code ignored;
    stream_.next_layer().close(ignored);
    io_.restart();
    io_.run();  // the cancelled operation ends before `result` goes
    throw std::runtime_error(std::string(what) + " neither finished nor failed in time");
  }

  std::chrono::steady_clock::time_point started_;
  asio::io_context io_;
  asio::ssl::context tls_context_;
  asio::ssl::stream<asio::ip::tcp::socket> stream_;
  bool tls_ = false;
  bool reading_ = false;
  std::array<std::uint8_t, 4096> buffer_{};
  wire::bytes received_;
  std::optional<std::chrono::steady_clock::time_point> closed_;
};

/// A frame header alone: `length` bytes of payload of `type` announced, none sent.
inline wire::bytes frame_header(std::uint32_t length, wire::message_type type) {
  return {static_cast<std::uint8_t>(length), static_cast<std::uint8_t>(length >> 8), static_cast<std::uint8_t>(length >> 16),
          static_cast<std::uint8_t>(length >> 24), static_cast<std::uint8_t>(type)};
}

inline wire::bytes concat(wire::bytes a, const wire::bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

inline wire::bytes text(const std::string& s) { return wire::bytes(s.begin(), s.end()); }

/// `n` bytes from a seeded generator: the same garbage on every run.
inline wire::bytes garbage(std::size_t n, std::uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int> byte(0, 255);
  wire::bytes out(n);
  for (auto& b : out) b = static_cast<std::uint8_t>(byte(gen));
  return out;
}

}  // namespace caresync::testing
