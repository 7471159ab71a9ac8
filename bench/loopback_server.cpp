#include "loopback_server.hpp"

#include <caresync/server/certificate.hpp>

#include <random>

namespace caresync::bench {
namespace {

std::string device_id(int index) { return "bench-tablet-" + std::to_string(index); }

}  // namespace

loopback_server::loopback_server(const std::filesystem::path& dir, int devices) {
  const auto ca = server::make_certificate_authority("caresync-bench CA");
  const auto leaf = server::make_server_certificate(ca, {"localhost"}, {"127.0.0.1"});
  ca_file_ = (dir / "bench-ca.pem").string();
  server::server_config config;
  config.listen_address = "127.0.0.1";
  config.port = 0;
  config.certificate_file = (dir / "bench-server-cert.pem").string();
  config.private_key_file = (dir / "bench-server-key.pem").string();
  config.database_file = (dir / "server.db").string();
  config.server_name = "caresync-bench";
  server::write_file(ca_file_, ca.certificate_pem, 0644);
  server::write_file(config.certificate_file, leaf.certificate_pem, 0644);
  server::write_file(config.private_key_file, leaf.private_key_pem, 0600);

  // Fresh tokens per run: the server listens only on loopback, but no fixed secret
  // should ever be accepted by a caresync server.
  std::random_device entropy;
  token_prefix_ = "bench-" + std::to_string(entropy()) + std::to_string(entropy()) + "-";
  for (int i = 0; i < devices; ++i) {
    config.devices.push_back({device_id(i), server::hash_token(token_prefix_ + std::to_string(i))});
  }
  server_ = std::make_unique<server::server>(config, server::open_sqlite_change_store(config.database_file));
  server_->start();
}

loopback_server::~loopback_server() { stop(); }

void loopback_server::stop() {
  if (server_) server_->stop();
}

sync_options loopback_server::options(int index) const {
  sync_options o;
  o.host = "127.0.0.1";
  o.port = server_->port();
  o.ca_file = ca_file_;
  o.device_id = device_id(index);
  o.token = token_prefix_ + std::to_string(index);
  return o;
}

}  // namespace caresync::bench
