#include "admin.hpp"

#include <caresync/protocol/errors.hpp>

#include "log.hpp"

#include <asio/read_until.hpp>
#include <asio/streambuf.hpp>
#include <asio/write.hpp>
#include <openssl/crypto.h>

#include <algorithm>
#include <cctype>
#include <ctime>
#include <filesystem>
#include <istream>
#include <sstream>
#include <string_view>

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

namespace {

constexpr std::size_t k_max_request = 8192;  // a GET of /metrics is a few hundred bytes
constexpr std::chrono::seconds k_request_timeout{2};
constexpr std::chrono::seconds k_write_timeout{2};

const char* status_text(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
  }
  return "Error";
}

bool starts_with_ignoring_case(std::string_view text, std::string_view prefix) {
  if (text.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(text[i])) != std::tolower(static_cast<unsigned char>(prefix[i]))) return false;
  }
  return true;
}

std::string trimmed(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return std::string(s);
}

}  // namespace

/// One admin HTTP exchange: a request read within k_request_timeout (at most
/// k_max_request bytes of request line and headers), its answer written within
/// k_write_timeout, then the connection closes (Connection: close; one request each).
/// On the listener's thread only.
class admin_connection : public std::enable_shared_from_this<admin_connection> {
 public:
  admin_connection(asio::ip::tcp::socket socket, admin_listener& listener)
      : socket_(std::move(socket)), timer_(socket_.get_executor()), request_(k_max_request), listener_(listener) {}

  void start() {
    arm(k_request_timeout);
    asio::async_read_until(socket_, request_, "\r\n\r\n", [self = shared_from_this()](const std::error_code& ec, std::size_t) {
      if (ec) return self->close();  // closed, timed out, evicted, or a request too large
      self->answering_ = true;
      self->answer();
    });
  }

  /// Its request has arrived: it is being answered, not waiting.
  bool answering() const noexcept { return answering_; }

  void close() {
    if (closed_) return;
    closed_ = true;
    timer_.cancel();
    std::error_code ignored;
    socket_.shutdown(asio::socket_base::shutdown_send, ignored);
    socket_.close(ignored);  // a pending read or write ends with operation_aborted
    listener_.closed(this);
  }

 private:
  void arm(std::chrono::seconds timeout) {
    timer_.expires_after(timeout);
    timer_.async_wait([self = shared_from_this()](const std::error_code& ec) {
      if (!ec) self->close();
    });
  }

  void answer() {
    std::istream in(&request_);
    std::string line;
    std::getline(in, line);
    const std::string request_line = trimmed(line);
    const auto first = request_line.find(' ');
    const auto second = first == std::string::npos ? std::string::npos : request_line.find(' ', first + 1);
    admin_listener::answer a;
    if (second == std::string::npos) {
      a = {400, "text/plain", "bad request\n"};
    } else {
      std::string authorization;
      while (std::getline(in, line) && !trimmed(line).empty()) {
        if (starts_with_ignoring_case(line, "authorization:")) authorization = trimmed(std::string_view(line).substr(14));
      }
      a = listener_.respond(request_line.substr(0, first), request_line.substr(first + 1, second - first - 1), authorization);
    }
    out_ = "HTTP/1.1 " + std::to_string(a.status) + " " + status_text(a.status) + "\r\nContent-Type: " + a.content_type +
           "\r\nContent-Length: " + std::to_string(a.body.size()) + "\r\nConnection: close\r\n" +
           (a.status == 401 ? "WWW-Authenticate: Bearer\r\n" : "") + "\r\n" + a.body;
    arm(k_write_timeout);
    asio::async_write(socket_, asio::buffer(out_), [self = shared_from_this()](const std::error_code&, std::size_t) {
      self->close();
    });
  }

  asio::ip::tcp::socket socket_;
  asio::steady_timer timer_;
  asio::streambuf request_;
  std::string out_;
  admin_listener& listener_;
  bool answering_ = false;
  bool closed_ = false;
};

admin_listener::admin_listener(session_context& context, const listener_counters& listener,
                               std::int64_t certificate_not_after, std::function<bool()> running)
    : context_(context),
      listener_(listener),
      certificate_not_after_(certificate_not_after),
      running_(std::move(running)),
      max_connections_(std::max<std::size_t>(1, context.config.admin_max_connections)),
      acceptor_(io_),
      retry_(io_) {}

admin_listener::~admin_listener() { stop(); }

admin_listener::answer admin_listener::respond(const std::string& method, const std::string& target,
                                               const std::string& authorization) {
  // With admin.bearer_token_file set, every request carries the token.
  const auto& token = context_.config.admin_bearer_token;
  if (!token.empty()) {
    const std::string expected = "Bearer " + token;
    if (authorization.size() != expected.size() ||
        CRYPTO_memcmp(authorization.data(), expected.data(), expected.size()) != 0) {
      return {401, "text/plain", "a bearer token is required (admin.bearer_token_file)\n"};
    }
  }
  const auto path = target.substr(0, target.find('?'));
  if (method == "GET" && path == "/metrics") {
    try {
      std::ostringstream admin;
      metric(admin, "caresync_admin_connections_closed_total", "counter",
             "Admin connections closed for the cap (admin.max_connections): a waiting one for a newer one, or a new one "
             "while all were being answered.");
      admin << "caresync_admin_connections_closed_total{reason=\"waiting\"} " << closed_waiting_ << "\n"
            << "caresync_admin_connections_closed_total{reason=\"full\"} " << closed_full_ << "\n";
      return {200, "text/plain; version=0.0.4", metrics_text(context_, listener_, certificate_not_after_) + admin.str()};
    } catch (const std::exception& e) {
      return {500, "text/plain", std::string("metrics unavailable: ") + e.what() + "\n"};
    }
  }
  if (method == "GET" && path == "/healthz") {
    if (!running_()) return {503, "text/plain", "not serving\n"};
    try {
      (void)context_.store.head();  // the store answers
      return {200, "text/plain", "ok\n"};
    } catch (const std::exception&) {
      return {503, "text/plain", "store unavailable\n"};
    }
  }
  return {404, "text/plain", "not found: GET /metrics or /healthz\n"};
}

bool admin_listener::make_room() {
  if (open_.size() < max_connections_) return true;
  // The oldest connection that has sent no request yet gives way: an idle one costs a
  // monitor its answer, a request on its way is never cut.
  for (const auto& c : open_) {
    if (c->answering()) continue;
    const auto waiting = c;  // close() takes it out of open_
    ++closed_waiting_;
    waiting->close();
    return true;
  }
  return false;
}

void admin_listener::closed(const admin_connection* c) {
  open_.remove_if([c](const std::shared_ptr<admin_connection>& p) { return p.get() == c; });
}

void admin_listener::accept() {
  acceptor_.async_accept([this](const std::error_code& ec, asio::ip::tcp::socket socket) {
    if (ec == asio::error::operation_aborted) return;
    if (ec) {
      // E.g. out of file descriptors: try again shortly rather than spin.
      log::error("admin_accept_failed", {{"reason", ec.message()}}, "accepting an admin connection failed; trying again");
      retry_.expires_after(std::chrono::milliseconds(100));
      retry_.async_wait([this](const std::error_code& e) {
        if (!e) accept();
      });
      return;
    }
    if (make_room()) {
      auto c = std::make_shared<admin_connection>(std::move(socket), *this);
      open_.push_back(c);
      c->start();
    } else {
      ++closed_full_;
      std::error_code ignored;
      socket.close(ignored);
    }
    accept();
  });
}

void admin_listener::start(const std::string& address, std::uint16_t port) {
  std::error_code ec = asio::error::host_not_found;
  asio::ip::tcp::resolver resolver(io_);
  std::error_code resolved;
  const auto found = resolver.resolve(address, std::to_string(port), asio::ip::resolver_base::passive, resolved);
  if (!resolved) {
    for (const auto& entry : found) {
      std::error_code ignored;
      acceptor_.close(ignored);
      ec.clear();
      acceptor_.open(entry.endpoint().protocol(), ec);
      if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
      if (!ec) acceptor_.bind(entry.endpoint(), ec);
      if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
      if (!ec) break;
    }
  }
  if (resolved || ec) {
    std::error_code ignored;
    acceptor_.close(ignored);
    throw error(make_error_code(network_errc::connect_failed),
                "cannot listen for admin requests on " + address + ":" + std::to_string(port) + " (" +
                    (resolved ? resolved : ec).message() + "); check admin.listen_address and admin.port");
  }
  port_ = acceptor_.local_endpoint().port();
  accept();
  thread_ = std::thread([this] {
    for (;;) {
      try {
        io_.run();
        return;
      } catch (const std::exception& e) {
        log::error("admin_failed", {{"reason", e.what()}}, "an admin request failed; the admin listener goes on");
      }
    }
  });
}

void admin_listener::stop() {
  if (!thread_.joinable()) return;
  io_.stop();
  thread_.join();
  // The listener's thread has ended: this thread may touch the connections now.
  std::error_code ignored;
  acceptor_.close(ignored);
  retry_.cancel();
  while (!open_.empty()) {
    const auto c = open_.front();  // close() takes it out of open_
    c->close();
  }
}

}  // namespace caresync::server
