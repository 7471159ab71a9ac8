#include <caresync/protocol/errors.hpp>

namespace caresync {

namespace {

class protocol_category_impl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "caresync.protocol"; }
  std::string message(int ev) const override {
    switch (static_cast<protocol_errc>(ev)) {
      case protocol_errc::malformed: return "malformed message";
      case protocol_errc::frame_too_large: return "frame larger than the agreed limit";
      case protocol_errc::unknown_message: return "unknown message type";
      case protocol_errc::unsupported_version: return "unsupported protocol version";
      case protocol_errc::unexpected_message: return "message not expected at this point";
      case protocol_errc::limit_exceeded: return "limit exceeded";
      case protocol_errc::clock_ahead: return "clock ahead";
      case protocol_errc::enrollment_refused: return "enrollment code not accepted";
      case protocol_errc::device_revoked: return "device revoked";
      case protocol_errc::server_only: return "field written by the server side only";
      case protocol_errc::out_of_scope: return "outside the device's scope";
      case protocol_errc::auth_failed: return "device id or token not accepted";
      case protocol_errc::server_busy: return "server busy";
      case protocol_errc::storage_failed: return "server storage failed";
      case protocol_errc::shutting_down: return "server shutting down";
      case protocol_errc::timeout: return "timed out";
    }
    return "protocol error " + std::to_string(ev);
  }
};

class network_category_impl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "caresync.network"; }
  std::string message(int ev) const override {
    switch (static_cast<network_errc>(ev)) {
      case network_errc::connect_failed: return "could not connect to the server";
      case network_errc::connection_lost: return "connection to the server lost";
      case network_errc::timeout: return "the server did not answer in time";
      case network_errc::tls_failed: return "TLS handshake failed";
      case network_errc::certificate_untrusted: return "server certificate not trusted";
      case network_errc::pin_mismatch: return "server public key does not match the pinned hash";
    }
    return "network error " + std::to_string(ev);
  }
};

class storage_category_impl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "caresync.storage"; }
  std::string message(int ev) const override {
    switch (static_cast<storage_errc>(ev)) {
      case storage_errc::open_failed: return "store cannot be opened";
      case storage_errc::corrupt: return "store is damaged or not a caresync store";
      case storage_errc::io_failed: return "store read or write failed";
      case storage_errc::busy: return "store is busy";
      case storage_errc::schema_mismatch: return "schema does not match the store";
      case storage_errc::invalid_argument: return "invalid argument";
      case storage_errc::constraint: return "write breaks a rule of the store";
      case storage_errc::not_found: return "record not found";
    }
    return "storage error " + std::to_string(ev);
  }
};

}  // namespace

const std::error_category& protocol_category() noexcept {
  static const protocol_category_impl category;
  return category;
}

const std::error_category& network_category() noexcept {
  static const network_category_impl category;
  return category;
}

const std::error_category& storage_category() noexcept {
  static const storage_category_impl category;
  return category;
}

bool is_transient(std::error_code ec) noexcept {
  if (ec.category() == protocol_category()) {
    switch (static_cast<protocol_errc>(ec.value())) {
      case protocol_errc::server_busy:
      case protocol_errc::storage_failed:
      case protocol_errc::shutting_down:
      case protocol_errc::timeout:
        return true;
      default:
        return false;
    }
  }
  if (ec.category() == network_category()) {
    switch (static_cast<network_errc>(ec.value())) {
      case network_errc::connect_failed:
      case network_errc::connection_lost:
      case network_errc::timeout:
        return true;
      default:
        return false;
    }
  }
  if (ec.category() == storage_category()) {
    return ec == storage_errc::io_failed || ec == storage_errc::busy;
  }
  return false;
}

}  // namespace caresync
