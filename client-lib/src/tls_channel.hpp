#pragma once
// One TLS connection from a device to the server, with blocking calls bounded by
// deadlines (Asio's "blocking client with timeouts" pattern: start an async operation,
// run the private io_context for at most the timeout, close the socket if it expires).
// Thread contract: one thread at a time.

#include <caresync/protocol/frame.hpp>
#include <caresync/protocol/frame_stream.hpp>
#include <caresync/sync_client.hpp>

#include <asio/ip/tcp.hpp>
#include <asio/ssl.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>

namespace caresync {

class tls_channel {
 public:
  /// Prepares the TLS context: TLS 1.2+, AEAD ciphers with forward secrecy, the CA file.
  /// Throws caresync::error (storage_errc::invalid_argument) if the CA file cannot be read.
  /// Keeps a reference to `options`: they must outlive the channel.
  explicit tls_channel(const sync_options& options);
  ~tls_channel();

  /// Resolves, connects and completes the TLS handshake, verifying the server by CA and
  /// host name and/or by the pinned key hash. Throws caresync::error (network category).
  void connect();

  /// Sends one whole frame. Throws caresync::error (network category).
  void send(const wire::bytes& frame);

  /// Receives one frame and decodes it. Throws caresync::error (network or protocol).
  /// Receives one message; a frame compressed with another codec than `agreed` is refused.
  wire::message receive(std::uint32_t max_frame, wire::codec agreed = wire::codec::none);
  /// receive(), waiting up to `extra` longer than io_timeout for the frame to begin (the
  /// answer to a wait, which the server holds until changes arrive).
  wire::message receive_after(std::chrono::milliseconds extra, std::uint32_t max_frame, wire::codec agreed);

  /// From now on, compressed frames are the chunks of the server's zstd stream
  /// (welcome granted k_feature_zstd_stream).
  void read_stream() { inflater_ = std::make_unique<wire::stream_decompressor>(); }

  /// Closes with a TLS close_notify when the peer answers quickly; never throws.
  void close() noexcept;

  std::uint64_t bytes_sent() const noexcept { return sent_; }
  std::uint64_t bytes_received() const noexcept { return received_; }
  /// The last frame received: its bytes as sent (header included) and its payload's once
  /// decompressed, for the link meter.
  std::size_t last_frame_bytes() const noexcept { return last_frame_; }
  std::size_t last_plain_bytes() const noexcept { return last_plain_; }

 private:
  template <class Start>
  std::error_code run(Start&& start, std::chrono::milliseconds timeout, const char* doing);
  void check_pin();

  const sync_options& options_;
  asio::io_context io_;
  asio::ssl::context tls_;
  std::optional<asio::ssl::stream<asio::ip::tcp::socket>> stream_;
  std::uint64_t sent_ = 0;
  std::uint64_t received_ = 0;
  std::size_t last_frame_ = 0;
  std::size_t last_plain_ = 0;
  wire::bytes scratch_;  // a compressed frame's payload, kept between frames
  std::unique_ptr<wire::stream_decompressor> inflater_;  // see read_stream()
};

}  // namespace caresync
