#pragma once
// What every integration test needs: a CA and server certificate on disk, the real
// server on 127.0.0.1 with an OS-chosen port and a real SQLite change store, and stores
// for tablets in a temporary directory.

#include "../support/temp_dir.hpp"

// The client library's private TLS channel, to speak the protocol message by message.
#include "tls_channel.hpp"

#include <caresync/server/certificate.hpp>
#include <caresync/server/server.hpp>
#include <caresync/store.hpp>
#include <caresync/sync_client.hpp>

#include <memory>
#include <string>
#include <utility>

namespace caresync::testing {

/// The schema the tests use: visits and clients, as a field app would declare them. The
/// org unit places a record for scopes (devices of the config file ignore it).
inline schema care_schema() {
  return schema{{
      collection_def{"clients", {{"name", value_kind::text}, {"municipality", value_kind::text}, {"org_unit", value_kind::text}}},
      collection_def{"visits",
                     {{"client_id", value_kind::text},
                      {"org_unit", value_kind::text},
                      {"worker", value_kind::text},
                      {"date", value_kind::text},
                      {"duration_min", value_kind::integer},
                      {"note", value_kind::text},
                      {"status", value_kind::text},
                      {"score", value_kind::real},
                      {"photo", value_kind::bytes}}},
  }};
}

/// Certificates written to files in `dir`.
struct test_pki {
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  std::string pin;  ///< SHA-256 of the server certificate's public key
  server::pem_identity ca;
  server::pem_identity leaf;

  static test_pki make(const temp_dir& dir, const std::string& prefix = "server") {
    test_pki p;
    p.ca = server::make_certificate_authority("caresync test CA " + prefix);
    p.leaf = server::make_server_certificate(p.ca, {"localhost"}, {"127.0.0.1"});
    p.ca_file = dir.file(prefix + "-ca.pem");
    p.cert_file = dir.file(prefix + "-cert.pem");
    p.key_file = dir.file(prefix + "-key.pem");
    server::write_file(p.ca_file, p.ca.certificate_pem, 0644);
    server::write_file(p.cert_file, p.leaf.certificate_pem, 0644);
    server::write_file(p.key_file, p.leaf.private_key_pem, 0600);
    p.pin = server::public_key_sha256(p.leaf.certificate_pem);
    return p;
  }
};

/// The real server, in this process, over real TLS on loopback.
class test_server {
 public:
  explicit test_server(const temp_dir& dir, int devices = 8) : dir_(dir), pki_(test_pki::make(dir)) {
    config_.listen_address = "127.0.0.1";
    config_.port = 0;
    config_.certificate_file = pki_.cert_file;
    config_.private_key_file = pki_.key_file;
    config_.database_file = dir.file("server.db");
    for (int i = 0; i < devices; ++i) {
      config_.devices.push_back({device(i), server::hash_token(token(i))});
    }
    start();
  }
  ~test_server() { stop(); }

  static std::string device(int i) { return "tablet-" + std::to_string(i); }
  static std::string token(int i) { return "secret-token-of-tablet-" + std::to_string(i); }

  void start() {
    server_ = std::make_unique<server::server>(config_, server::open_sqlite_change_store(config_.database_file));
    server_->start();
    port_ = server_->port();
  }
  void stop() {
    if (server_) server_->stop();
    server_.reset();
  }
  /// Stops and starts again on the same database (the port may change).
  void restart() {
    stop();
    start();
  }

  std::uint16_t port() const noexcept { return port_; }
  server::server& get() { return *server_; }
  server::server_config& config() { return config_; }
  const test_pki& pki() const noexcept { return pki_; }

  /// Options for device `i` to reach this server, trusting its CA.
  sync_options options(int i, std::uint16_t port = 0) const {
    sync_options o;
    o.host = "127.0.0.1";
    o.port = port ? port : port_;
    o.ca_file = pki_.ca_file;
    o.device_id = device(i);
    o.token = token(i);
    o.io_timeout = std::chrono::milliseconds(20'000);
    o.retry.max_attempts = 1;  // tests see each failure; retries are tested on their own
    return o;
  }

  /// The digest of the server's materialised state.
  std::string digest() {
    state_hasher h;
    for (const auto& [key, state] : server_->store().materialize()) h.add(key.first, key.second, state);
    return h.finish();
  }

 private:
  const temp_dir& dir_;
  test_pki pki_;
  server::server_config config_;
  std::unique_ptr<server::server> server_;
  std::uint16_t port_ = 0;
};

/// care_schema() with the visit note declared keep_both, as an app that keeps both of
/// two concurrent notes (docs/conflicts.md). The server's log does not depend on it.
inline schema care_schema_keeping_notes() {
  auto s = care_schema();
  for (auto& c : s.collections) {
    for (auto& f : c.fields) {
      if (c.name == "visits" && f.name == "note") f.policy = merge_policy::keep_both;
    }
  }
  return s;
}

/// A tablet: a store file in the test directory, with care_schema() unless told.
inline std::unique_ptr<store> open_tablet(const temp_dir& dir, const std::string& name, schema s = care_schema()) {
  return store::open(store_options{dir.file(name + ".db"), std::move(s), durability::normal});
}

/// A raw conversation with the server, message by message, for what a modified app could
/// send: hello offering `features`, then requests; each answer decoded.
class raw_session {
 public:
  raw_session(const sync_options& o, node_id node, std::uint32_t features, const std::string& client_name = "raw-test")
      : options_(o), channel_(options_) {
    channel_.connect();
    wire::hello hello;
    hello.client_name = client_name;
    hello.device_id = o.device_id;
    hello.token = o.token;
    hello.node = node;
    hello.features = features;
    channel_.send(wire::make_frame(hello));
    welcome_ = channel_.receive(wire::k_default_max_frame);
  }
  ~raw_session() { channel_.close(); }
  raw_session(const raw_session&) = delete;
  raw_session& operator=(const raw_session&) = delete;
  const wire::message& welcome() const { return welcome_; }
  void send(const wire::message& m) { channel_.send(wire::make_frame(m)); }
  wire::message receive() { return channel_.receive(wire::k_default_max_frame); }
  /// send(), then the answer.
  wire::message ask(const wire::message& m) {
    send(m);
    return receive();
  }

 private:
  sync_options options_;  // the channel keeps a reference: a copy of its own, before it
  tls_channel channel_;
  wire::message welcome_;
};

/// Connects as `o` says, says hello with `node` (offering no features), sends `request`
/// (compressed with `compression` if large enough) and returns the answer. Closes afterwards.
inline wire::message exchange_raw(const sync_options& o, node_id node, const wire::message& request,
                                  wire::codec compression = wire::codec::none) {
  tls_channel ch(o);
  ch.connect();
  wire::hello hello;
  hello.device_id = o.device_id;
  hello.token = o.token;
  hello.node = node;
  ch.send(wire::make_frame(hello));
  auto welcome = ch.receive(wire::k_default_max_frame);
  if (!std::holds_alternative<wire::welcome>(welcome)) return welcome;
  ch.send(wire::make_frame(request, compression));
  auto answer = ch.receive(wire::k_default_max_frame);
  ch.close();
  return answer;
}

}  // namespace caresync::testing
