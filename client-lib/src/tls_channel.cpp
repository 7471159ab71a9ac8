#include "tls_channel.hpp"

#include <caresync/protocol/codec.hpp>
#include <caresync/protocol/errors.hpp>
#include <caresync/protocol/sha256.hpp>

#include <asio/connect.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <memory>

namespace caresync {

namespace {

// TLS 1.2 suites: AEAD with forward secrecy only. TLS 1.3 suites are all AEAD + (EC)DHE.
constexpr const char* k_tls12_ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

[[noreturn]] void network_failure(network_errc code, const std::string& what) {
  throw error(make_error_code(code), what);
}

bool is_ip_address(const std::string& host) {
  std::error_code ec;
  (void)asio::ip::make_address(host, ec);
  return !ec;
}

}  // namespace

tls_channel::tls_channel(const sync_options& options) : options_(options), tls_(asio::ssl::context::tls_client) {
  SSL_CTX* ctx = tls_.native_handle();
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_cipher_list(ctx, k_tls12_ciphers);
  tls_.set_verify_mode(asio::ssl::verify_peer);
  if (!options_.ca_file.empty()) {
    std::error_code ec;
    tls_.load_verify_file(options_.ca_file, ec);
    if (ec) {
      throw error(make_error_code(storage_errc::invalid_argument),
                  "cannot read the CA file '" + options_.ca_file + "'; give the PEM file of the CA that signed the server's certificate");
    }
  } else {
    // Pin only: the chain is not checked against a CA; check_pin() decides after the
    // handshake, before any byte of ours is sent.
    tls_.set_verify_callback([](bool, asio::ssl::verify_context&) { return true; });
  }
}

tls_channel::~tls_channel() = default;

template <class Start>
std::error_code tls_channel::run(Start&& start, std::chrono::milliseconds timeout, const char* doing) {
  std::optional<std::error_code> result;
  start([&result](const std::error_code& ec, auto&&...) { result = ec; });
  io_.restart();
  io_.run_for(timeout);
  if (!result) {
    std::error_code ignored;
    stream_->lowest_layer().close(ignored);  // cancels the operation
    io_.restart();
    io_.run();
    network_failure(network_errc::timeout, std::string("the server did not answer in time while ") + doing +
                                               "; the sync can be retried");
  }
  return *result;
}

void tls_channel::connect() {
  stream_.emplace(io_, tls_);
  SSL* ssl = stream_->native_handle();
  if (!options_.ca_file.empty()) {
    // OpenSSL's own host check, so a mismatch shows as a verify result with a reason.
    if (is_ip_address(options_.host)) {
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), options_.host.c_str());
    } else {
      SSL_set1_host(ssl, options_.host.c_str());
    }
  }
  if (!is_ip_address(options_.host)) SSL_set_tlsext_host_name(ssl, options_.host.c_str());

  asio::ip::tcp::resolver resolver(io_);
  asio::ip::tcp::resolver::results_type endpoints;
  auto ec = run(
      [&](auto handler) {
        resolver.async_resolve(options_.host, std::to_string(options_.port),
                               [&endpoints, handler](const std::error_code& e, asio::ip::tcp::resolver::results_type r) mutable {
                                 endpoints = std::move(r);
                                 handler(e);
                               });
      },
      options_.connect_timeout, "looking up the server's address");
  if (ec) network_failure(network_errc::connect_failed, "cannot find the server '" + options_.host + "': " + ec.message());

  ec = run([&](auto handler) { asio::async_connect(stream_->lowest_layer(), endpoints, handler); },
           options_.connect_timeout, "connecting");
  if (ec) {
    network_failure(network_errc::connect_failed, "cannot connect to " + options_.host + ":" +
                                                      std::to_string(options_.port) + ": " + ec.message());
  }
  stream_->lowest_layer().set_option(asio::ip::tcp::no_delay(true));

  ec = run([&](auto handler) { stream_->async_handshake(asio::ssl::stream_base::client, handler); },
           options_.connect_timeout, "negotiating TLS");
  if (ec) {
    const long verify = SSL_get_verify_result(ssl);
    if (verify != X509_V_OK) {
      network_failure(network_errc::certificate_untrusted,
                      std::string("the server's certificate was refused: ") + X509_verify_cert_error_string(verify) +
                          "; check the CA file and the host name, or ask the administrator for the right CA");
    }
    if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated || ec == asio::error::connection_reset) {
      network_failure(network_errc::connection_lost, "the server closed the connection during the TLS handshake");
    }
    network_failure(network_errc::tls_failed, "TLS handshake with the server failed: " + ec.message());
  }
  check_pin();
}

void tls_channel::check_pin() {
  if (options_.pinned_key_sha256.empty()) return;
  X509* cert = SSL_get0_peer_certificate(stream_->native_handle());
  if (!cert) network_failure(network_errc::pin_mismatch, "the server presented no certificate to check against the pin");
  unsigned char* der = nullptr;
  const int len = i2d_PUBKEY(X509_get0_pubkey(cert), &der);
  if (len <= 0) network_failure(network_errc::pin_mismatch, "the server's public key cannot be read");
  const std::unique_ptr<unsigned char, void (*)(unsigned char*)> der_guard(der, [](unsigned char* p) { OPENSSL_free(p); });
  const std::string actual = sha256_hex({der, static_cast<std::size_t>(len)});
  if (actual.size() != options_.pinned_key_sha256.size() ||
      CRYPTO_memcmp(actual.data(), options_.pinned_key_sha256.data(), actual.size()) != 0) {
    close();
    network_failure(network_errc::pin_mismatch,
                    "the server's public key does not match the pinned SHA-256; this may not be your server "
                    "(or its key was replaced: ask the administrator for the new pin)");
  }
}

void tls_channel::send(const wire::bytes& frame) {
  const auto ec = run([&](auto handler) { asio::async_write(*stream_, asio::buffer(frame), handler); },
                      options_.io_timeout, "sending");
  if (ec) network_failure(network_errc::connection_lost, "the connection to the server was lost while sending: " + ec.message());
  sent_ += frame.size();
}

wire::message tls_channel::receive(std::uint32_t max_frame, wire::codec agreed) {
  return receive_after(std::chrono::milliseconds(0), max_frame, agreed);
}

wire::message tls_channel::receive_after(std::chrono::milliseconds extra, std::uint32_t max_frame, wire::codec agreed) {
  std::array<std::uint8_t, wire::k_frame_header_size> header{};
  auto ec = run([&](auto handler) { asio::async_read(*stream_, asio::buffer(header), handler); }, options_.io_timeout + extra,
                "waiting for the server's answer");
  if (ec) network_failure(network_errc::connection_lost, "the connection to the server was lost while receiving: " + ec.message());
  const auto h = wire::parse_header(header, max_frame);
  wire::bytes payload(h.length);
  ec = run([&](auto handler) { asio::async_read(*stream_, asio::buffer(payload), handler); }, options_.io_timeout,
           "receiving the server's answer");
  if (ec) network_failure(network_errc::connection_lost, "the connection to the server was lost while receiving: " + ec.message());
  received_ += header.size() + payload.size();
  const auto plain = inflater_ ? inflater_->plain_payload(h, payload, max_frame, scratch_)
                             : wire::plain_payload(h, payload, max_frame, agreed, scratch_);
  last_frame_ = header.size() + payload.size();
  last_plain_ = plain.size();
  return wire::decode(h.type, plain);
}

void tls_channel::close() noexcept {
  if (!stream_) return;
  try {
    stream_->async_shutdown([](const std::error_code&) {});
    io_.restart();
    io_.run_for(std::chrono::milliseconds(500));
    std::error_code ignored;
    stream_->lowest_layer().close(ignored);
    io_.restart();
    io_.poll();  // let the cancelled shutdown's handler run before the stream goes
  } catch (...) {
    // Closing is best effort: the conversation is already complete.
  }
  stream_.reset();
}

}  // namespace caresync
