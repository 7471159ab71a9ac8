#include "admin.hpp"

#include <caresync/protocol/errors.hpp>

#include <httplib.h>
#include <openssl/crypto.h>

#include <ctime>
#include <filesystem>
#include <sstream>

namespace caresync::server {

namespace {

const char* errc_name(std::size_t code) {
  switch (static_cast<protocol_errc>(code)) {
    case protocol_errc::malformed: return "malformed";
    case protocol_errc::frame_too_large: return "frame_too_large";
    case protocol_errc::unknown_message: return "unknown_message";
    case protocol_errc::unsupported_version: return "unsupported_version";
    case protocol_errc::unexpected_message: return "unexpected_message";
    case protocol_errc::limit_exceeded: return "limit_exceeded";
    case protocol_errc::auth_failed: return "auth_failed";
    case protocol_errc::server_busy: return "server_busy";
    case protocol_errc::storage_failed: return "storage_failed";
    case protocol_errc::shutting_down: return "shutting_down";
    case protocol_errc::timeout: return "timeout";
    case protocol_errc::clock_ahead: return "clock_ahead";
    case protocol_errc::enrollment_refused: return "enrollment_refused";
    case protocol_errc::device_revoked: return "device_revoked";
    case protocol_errc::server_only: return "server_only";
    case protocol_errc::out_of_scope: return "out_of_scope";
  }
  return nullptr;
}

void metric(std::ostringstream& out, const char* name, const char* type, const char* help) {
  out << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n";
}

std::uint64_t file_size_or_zero(const std::string& path) {
  std::error_code ec;
  const auto n = std::filesystem::file_size(path, ec);
  return ec ? 0 : static_cast<std::uint64_t>(n);
}

}  // namespace

std::string metrics_text(session_context& c, const listener_counters& listener, std::int64_t certificate_not_after) {
  std::ostringstream out;
  metric(out, "caresync_build_info", "gauge", "Always 1; its label is the server's version.");
  out << "caresync_build_info{version=\"" << CARESYNC_VERSION << "\"} 1\n";
  metric(out, "caresync_sessions_total", "counter", "Sessions by how the device's hello ended.");
  out << "caresync_sessions_total{result=\"accepted\"} " << c.sessions_accepted << "\n"
      << "caresync_sessions_total{result=\"enrolled\"} " << c.sessions_enrolled << "\n"
      << "caresync_sessions_total{result=\"refused\"} " << c.sessions_refused << "\n";
  metric(out, "caresync_sessions_active", "gauge", "Connections open now.");
  out << "caresync_sessions_active " << c.sessions_active << "\n";
  metric(out, "caresync_connections_refused_total", "counter",
         "Connections closed when accepted, before TLS, by the limit they were over.");
  out << "caresync_connections_refused_total{limit=\"per_address\"} " << listener.connections_refused << "\n"
      << "caresync_connections_refused_total{limit=\"auth_backoff\"} " << listener.connections_throttled << "\n";
  metric(out, "caresync_auth_failures_total", "counter", "Hellos with a wrong token and enrollments with a wrong code.");
  out << "caresync_auth_failures_total " << c.auth.failures_total() << "\n";
  metric(out, "caresync_auth_shut_out_total", "counter",
         "Attempts refused unseen because their address or device id failed too often (backoff).");
  out << "caresync_auth_shut_out_total " << c.auth.shut_out_total() << "\n";
  metric(out, "caresync_sessions_superseded_total", "counter",
         "Sessions ended by a newer session of their device (limits.max_sessions_per_device).");
  out << "caresync_sessions_superseded_total " << c.sessions_superseded << "\n";
  metric(out, "caresync_frame_bytes_in_flight", "gauge",
         "Bytes of incoming frames held while they arrive, beyond each frame's first 64 KiB.");
  out << "caresync_frame_bytes_in_flight " << c.frames.held() << "\n";
  metric(out, "caresync_reads_paused_total", "counter",
         "Times a session stopped reading because limits.max_frame_bytes_in_flight was spent.");
  out << "caresync_reads_paused_total " << c.reads_paused << "\n";
  metric(out, "caresync_sessions_waiting", "gauge", "Sessions holding a live-mode wait now.");
  out << "caresync_sessions_waiting " << c.sessions_waiting << "\n";
  metric(out, "caresync_changes_in_total", "counter", "Changes stored from pushes.");
  out << "caresync_changes_in_total " << c.changes_accepted << "\n";
  metric(out, "caresync_changes_refused_total", "counter", "Pushed changes refused (quarantined on the device).");
  out << "caresync_changes_refused_total " << c.changes_refused << "\n";
  metric(out, "caresync_changes_out_total", "counter", "Changes sent in pulled pages.");
  out << "caresync_changes_out_total " << c.changes_out << "\n";
  metric(out, "caresync_batches_replayed_total", "counter", "Push batches resent and answered from the log.");
  out << "caresync_batches_replayed_total " << c.batches_replayed << "\n";
  metric(out, "caresync_bytes_total", "counter", "TLS application bytes, frame headers included.");
  out << "caresync_bytes_total{direction=\"in\"} " << c.bytes_in << "\n"
      << "caresync_bytes_total{direction=\"out\"} " << c.bytes_out << "\n";
  metric(out, "caresync_errors_total", "counter", "Error messages sent to devices, by code.");
  for (std::size_t code = 1; code < c.errors_sent.size(); ++code) {
    if (const char* name = errc_name(code)) out << "caresync_errors_total{code=\"" << name << "\"} " << c.errors_sent[code] << "\n";
  }
  out << "caresync_errors_total{code=\"other\"} " << c.errors_sent[0] << "\n";
  metric(out, "caresync_push_seconds", "histogram", "Time to check and durably store a push batch.");
  for (std::size_t i = 0; i < session_context::k_push_buckets.size(); ++i) {
    out << "caresync_push_seconds_bucket{le=\"" << session_context::k_push_buckets[i] << "\"} " << c.push_le[i] << "\n";
  }
  const auto count = c.push_count.load();
  out << "caresync_push_seconds_bucket{le=\"+Inf\"} " << count << "\n"
      << "caresync_push_seconds_sum " << static_cast<double>(c.push_micros.load()) / 1e6 << "\n"
      << "caresync_push_seconds_count " << count << "\n";
  metric(out, "caresync_store_bytes", "gauge", "Size of the change store's files (database and WAL).");
  out << "caresync_store_bytes " << file_size_or_zero(c.config.database_file) + file_size_or_zero(c.config.database_file + "-wal")
      << "\n";
  metric(out, "caresync_log_head", "gauge", "Highest sequence number in the change log.");
  out << "caresync_log_head " << c.store.head() << "\n";
  metric(out, "caresync_certificate_expiry_seconds", "gauge",
         "Seconds until the served TLS certificate's notAfter (negative once expired).");
  out << "caresync_certificate_expiry_seconds " << certificate_not_after - static_cast<std::int64_t>(std::time(nullptr))
      << "\n";
  return out.str();
}

admin_listener::admin_listener(session_context& context, const listener_counters& listener,
                               std::int64_t certificate_not_after, std::function<bool()> running)
    : context_(context),
      listener_(listener),
      certificate_not_after_(certificate_not_after),
      running_(std::move(running)),
      http_(std::make_unique<httplib::Server>()) {
  // A connection holds one of the listener's threads while it is open: idle ones are
  // dropped quickly, so a few of them cannot keep /healthz waiting.
  http_->set_keep_alive_timeout(1);
  http_->set_keep_alive_max_count(8);
  http_->set_read_timeout(2, 0);
  http_->set_write_timeout(2, 0);
  http_->set_payload_max_length(8192);
  // With admin.bearer_token_file set, every request carries the token.
  http_->set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    const auto& token = context_.config.admin_bearer_token;
    if (token.empty()) return httplib::Server::HandlerResponse::Unhandled;
    const std::string expected = "Bearer " + token;
    const auto& given = req.get_header_value("Authorization");
    if (given.size() == expected.size() && CRYPTO_memcmp(given.data(), expected.data(), expected.size()) == 0) {
      return httplib::Server::HandlerResponse::Unhandled;
    }
    res.status = 401;
    res.set_header("WWW-Authenticate", "Bearer");
    res.set_content("a bearer token is required (admin.bearer_token_file)\n", "text/plain");
    return httplib::Server::HandlerResponse::Handled;
  });
  http_->Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    try {
      res.set_content(metrics_text(context_, listener_, certificate_not_after_), "text/plain; version=0.0.4");
    } catch (const std::exception& e) {
      res.status = 500;
      res.set_content(std::string("metrics unavailable: ") + e.what() + "\n", "text/plain");
    }
  });
  http_->Get("/healthz", [this](const httplib::Request&, httplib::Response& res) {
    if (!running_()) {
      res.status = 503;
      return res.set_content("not serving\n", "text/plain");
    }
    try {
      (void)context_.store.head();  // the store answers
      res.set_content("ok\n", "text/plain");
    } catch (const std::exception&) {
      res.status = 503;
      res.set_content("store unavailable\n", "text/plain");
    }
  });
}

admin_listener::~admin_listener() { stop(); }

void admin_listener::start(const std::string& address, std::uint16_t port) {
  int bound = -1;
  if (port == 0) {
    bound = http_->bind_to_any_port(address);
  } else if (http_->bind_to_port(address, port)) {
    bound = port;
  }
  if (bound <= 0) {
    throw error(make_error_code(network_errc::connect_failed),
                "cannot listen for admin requests on " + address + ":" + std::to_string(port) +
                    "; check admin.listen_address and admin.port");
  }
  port_ = static_cast<std::uint16_t>(bound);
  thread_ = std::thread([this] { http_->listen_after_bind(); });
}

void admin_listener::stop() {
  if (!thread_.joinable()) return;
  http_->stop();
  thread_.join();
}

}  // namespace caresync::server
