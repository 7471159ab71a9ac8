#include <caresync/server/server.hpp>

#include "admin.hpp"
#include "certificate_watch.hpp"
#include "log.hpp"
#include "session.hpp"

#include <caresync/protocol/errors.hpp>
#include <caresync/server/certificate.hpp>

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <exception>
#include <list>
#include <mutex>
#include <thread>

namespace caresync::server {

namespace {

// TLS 1.2 suites: AEAD with forward secrecy only. TLS 1.3 suites are all AEAD + (EC)DHE.
constexpr const char* k_tls12_ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

/// When the certificate `ctx` serves expires (Unix seconds). Throws caresync::error if
/// it has none or it cannot be read.
std::int64_t served_not_after(SSL_CTX* ctx) {
  X509* cert = SSL_CTX_get0_certificate(ctx);
  std::unique_ptr<BIO, decltype(&BIO_free_all)> bio(BIO_new(BIO_s_mem()), &BIO_free_all);
  if (!cert || !bio || PEM_write_bio_X509(bio.get(), cert) != 1) {
    throw error(make_error_code(storage_errc::invalid_argument), "cannot read the served certificate's validity");
  }
  char* pem = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &pem);
  return describe_certificate(std::string(pem, static_cast<std::size_t>(n))).not_after;
}

}  // namespace

struct server::impl {
  server_config config;
  std::unique_ptr<change_store> store;
  session_context context{config, *store};
  // Declared before io so that sessions still queued in io when it is destroyed
  // (cut at the end of the grace period) free their TLS streams while it exists.
  asio::ssl::context tls{asio::ssl::context::tls_server};
  asio::io_context io;
  // The acceptor lives on a strand: its handler and stop()'s close never run at once.
  asio::ip::tcp::acceptor acceptor{asio::make_strand(io)};
  asio::steady_timer accept_pause{acceptor.get_executor()};  ///< after a failed accept
  std::vector<std::thread> threads;
  std::uint16_t port = 0;
  std::unique_ptr<admin_listener> admin;
  std::int64_t certificate_not_after = 0;  ///< of the served certificate, Unix seconds
  std::unique_ptr<certificate_watch> watch;  ///< after io: destroyed before it

  /// A session and the client address it came from, for limits.max_connections_per_address.
  struct tracked_session {
    asio::ip::address peer;
    std::weak_ptr<session> live;
  };
  std::mutex sessions_mutex;  // guards sessions, stopping
  std::list<tracked_session> sessions;
  bool stopping = false;  ///< set by stop(): no new session starts
  listener_counters counters;

  // Refusals and failed accepts are logged at most once a second each, with how many
  // there were since the last line: a flood must not turn into a flood of log lines.
  // Used on the acceptor's strand only.
  std::chrono::steady_clock::time_point refusal_logged{};
  std::uint64_t refusals_unlogged = 0;
  std::chrono::steady_clock::time_point accept_failure_logged{};
  std::uint64_t accept_failures_unlogged = 0;

  enum class phase { idle, running, stopping, stopped };
  std::mutex phase_mutex;  // guards current_phase
  std::condition_variable stopped_cv;
  phase current_phase = phase::idle;

  impl(server_config c, std::unique_ptr<change_store> s) : config(std::move(c)), store(std::move(s)) {}

  void accept() {
    acceptor.async_accept(asio::make_strand(io), [this](const std::error_code& ec, asio::ip::tcp::socket socket) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
      if (ec) return pause_accepting(ec);
      // Request/response over TLS: without this, Nagle holds each answer's last
      // segment until the device's delayed ACK (~40 ms) arrives.
      std::error_code ignored;
      socket.set_option(asio::ip::tcp::no_delay(true), ignored);
      std::error_code peer_ec;
      const auto peer = socket.remote_endpoint(peer_ec).address();
      // No address: the client has already gone (reset before we got to it).
      if (peer_ec) {
        socket.close(ignored);
        return accept();
      }
      // An address that failed to authenticate too often is shut out for a while
      // (auth_throttle), before any TLS is spent on it.
      if (context.auth.address_wait(peer.to_string()) > std::chrono::steady_clock::duration::zero()) {
        ++counters.connections_throttled;
        context.auth.shut_out(peer.to_string());
        socket.set_option(asio::socket_base::linger(true, 0), ignored);
        socket.close(ignored);
        return accept();
      }
      std::shared_ptr<session> s;
      std::size_t held = 0;
      {
        // Checked under the lock that stop() takes to list the sessions: a session is
        // either listed (and told to stop) or never started.
        const std::lock_guard lock(sessions_mutex);
        if (stopping) return;
        sessions.remove_if([](const auto& t) { return t.live.expired(); });
        const auto limit = config.max_connections_per_address;
        if (limit > 0) {
          held = static_cast<std::size_t>(
              std::count_if(sessions.begin(), sessions.end(), [&peer](const auto& t) { return t.peer == peer; }));
        }
        if (limit == 0 || held < limit) {
          s = std::make_shared<session>(std::move(socket), tls, context);
          sessions.push_back({peer, s});
        }
      }
      if (s) {
        s->start();
      } else {
        refuse_connection(std::move(socket), peer, held);
      }
      accept();
    });
  }

  /// An accept failed: out of file descriptors (EMFILE, ENFILE) or memory, as a flood of
  /// connections can make it. Accepting again at once would fail again at once, a loop
  /// that burns a core for as long as the shortage lasts; wait a little instead, while
  /// sessions that end (handshake and idle timeouts) give descriptors back. The
  /// connections waiting meanwhile stay in the listen backlog. On the acceptor's strand.
  void pause_accepting(const std::error_code& ec) {
    ++accept_failures_unlogged;
    const auto now = std::chrono::steady_clock::now();
    if (now - accept_failure_logged >= std::chrono::seconds(1)) {
      accept_failure_logged = now;
      log::error("accept_failed", {{"reason", ec.message()}, {"failures", accept_failures_unlogged}},
                 "cannot accept connections (" + ec.message() + "); " + std::to_string(accept_failures_unlogged) +
                     " failed since the last such line; trying again every 100 ms. If it says 'Too many open "
                     "files', raise the server's descriptor limit (LimitNOFILE) or lower "
                     "limits.max_connections_per_address");
      accept_failures_unlogged = 0;
    }
    accept_pause.expires_after(std::chrono::milliseconds(100));
    accept_pause.async_wait([this](const std::error_code& wait_ec) {
      if (wait_ec || !acceptor.is_open()) return;
      accept();
    });
  }

  /// Closes a connection over limits.max_connections_per_address at once, before any
  /// TLS: no handshake is spent on it. Runs on the acceptor's strand.
  void refuse_connection(asio::ip::tcp::socket socket, const asio::ip::address& peer, std::size_t held) {
    ++counters.connections_refused;
    std::error_code ignored;
    // An abortive close (RST): the client learns at once, and a flood leaves no
    // TIME_WAIT sockets behind on the server.
    socket.set_option(asio::socket_base::linger(true, 0), ignored);
    socket.close(ignored);
    ++refusals_unlogged;
    const auto now = std::chrono::steady_clock::now();
    if (now - refusal_logged < std::chrono::seconds(1)) return;
    refusal_logged = now;
    log::info("connection_refused",
              {{"peer", peer.to_string()},
               {"held", held},
               {"limit", config.max_connections_per_address},
               {"refused", refusals_unlogged}},
              "closed a connection from " + peer.to_string() + ", which already holds " + std::to_string(held) +
                  " connections (limits.max_connections_per_address); " + std::to_string(refusals_unlogged) +
                  " refused since the last such line");
    refusals_unlogged = 0;
  }

  std::size_t live_sessions() {
    const std::lock_guard lock(sessions_mutex);
    sessions.remove_if([](const auto& t) { return t.live.expired(); });
    return sessions.size();
  }
};

server::server(server_config config, std::unique_ptr<change_store> store) {
  validate(config);
  if (!store) throw error(make_error_code(storage_errc::invalid_argument), "the server needs a change store");
  impl_ = std::make_unique<impl>(std::move(config), std::move(store));
  // The store keeps each record's org units by these rules (docs/security.md).
  impl_->store->set_scope_rules(impl_->config.scopes);
  auto& tls = impl_->tls;
  SSL_CTX* ctx = tls.native_handle();
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  // No session tickets: their key would never rotate, and a stolen one would decrypt
  // recorded sessions (tablets do not resume sessions; a full handshake costs them little).
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_TICKET);
  SSL_CTX_set_num_tickets(ctx, 0);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_cipher_list(ctx, k_tls12_ciphers);
  std::error_code ec;
  tls.use_certificate_chain_file(impl_->config.certificate_file, ec);
  if (ec) {
    throw error(make_error_code(storage_errc::open_failed),
                "cannot load the certificate '" + impl_->config.certificate_file + "' (" + ec.message() +
                    "); check certificate_file, or run 'caresync-server init' to make one");
  }
  tls.use_private_key_file(impl_->config.private_key_file, asio::ssl::context::pem, ec);
  if (ec) {
    throw error(make_error_code(storage_errc::open_failed),
                "cannot load the private key '" + impl_->config.private_key_file + "' (" + ec.message() +
                    "); check private_key_file and that it belongs to the certificate");
  }
  impl_->certificate_not_after = served_not_after(ctx);
}

server::~server() { stop(); }

void server::start() {
  auto& i = *impl_;
  // Held throughout, so that a stop() from another thread waits for start() to finish.
  const std::lock_guard lock(i.phase_mutex);
  if (i.current_phase != impl::phase::idle) {
    throw error(make_error_code(storage_errc::invalid_argument), "the server was started before; make a new one");
  }
  std::error_code ec;
  const auto address = asio::ip::make_address(i.config.listen_address, ec);
  if (ec) {
    throw error(make_error_code(storage_errc::invalid_argument),
                "config key 'listen_address' is not an IP address: '" + i.config.listen_address + "'");
  }
  const asio::ip::tcp::endpoint endpoint(address, i.config.port);
  i.acceptor.open(endpoint.protocol(), ec);
  if (!ec) i.acceptor.set_option(asio::ip::tcp::acceptor::reuse_address(true), ec);
  if (!ec) i.acceptor.bind(endpoint, ec);
  if (!ec) i.acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    std::error_code ignored;
    i.acceptor.close(ignored);
    throw error(make_error_code(network_errc::connect_failed),
                "cannot listen on " + i.config.listen_address + ":" + std::to_string(i.config.port) + ": " + ec.message());
  }
  i.port = i.acceptor.local_endpoint().port();
  if (i.config.admin_enabled) {
    i.admin = std::make_unique<admin_listener>(i.context, i.counters, i.certificate_not_after, [&i] {
      const std::lock_guard lock(i.sessions_mutex);
      return !i.stopping;
    });
    try {
      i.admin->start(i.config.admin_listen_address, i.config.admin_port);
    } catch (...) {
      std::error_code ignored;
      i.acceptor.close(ignored);
      i.admin.reset();
      throw;
    }
  }
  i.accept();
  i.watch = std::make_unique<certificate_watch>(i.io, i.config.certificate_file, i.certificate_not_after);
  i.watch->start();
  for (std::size_t t = 0; t < i.config.threads; ++t) {
    i.threads.emplace_back([&i] {
      // A handler that throws past its own catch must not take the other sessions down
      // with it: note it and keep serving (the session it belonged to is gone).
      for (;;) {
        try {
          i.io.run();
          return;
        } catch (const std::exception& e) {
          log::error("unexpected_failure", {{"reason", e.what()}}, "unexpected failure in a session; serving on");
        }
      }
    });
  }
  i.current_phase = impl::phase::running;
}

std::uint16_t server::port() const { return impl_->port; }

std::uint16_t server::admin_port() const { return impl_->admin ? impl_->admin->port() : 0; }

void server::stop() {
  auto& i = *impl_;
  {
    std::unique_lock lock(i.phase_mutex);
    switch (i.current_phase) {
      case impl::phase::idle:
        i.current_phase = impl::phase::stopped;
        i.stopped_cv.notify_all();
        return;
      case impl::phase::stopping:  // another thread is stopping: return when it is done
        i.stopped_cv.wait(lock, [&i] { return i.current_phase == impl::phase::stopped; });
        return;
      case impl::phase::stopped:
        return;
      case impl::phase::running:
        i.current_phase = impl::phase::stopping;
        break;
    }
  }
  asio::post(i.acceptor.get_executor(), [&i] {
    std::error_code ignored;
    i.acceptor.close(ignored);
    i.accept_pause.cancel();
  });
  if (i.watch) i.watch->stop();
  std::vector<std::shared_ptr<session>> live;
  {
    const std::lock_guard lock(i.sessions_mutex);
    i.stopping = true;
    for (auto& t : i.sessions) {
      if (auto s = t.live.lock()) live.push_back(std::move(s));
    }
  }
  for (auto& s : live) s->shutdown();
  live.clear();
  // Sessions finish the message in hand (a push being stored is stored and answered);
  // a few seconds is plenty, then the rest are cut.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (i.live_sessions() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  i.io.stop();
  for (auto& t : i.threads) {
    if (t.joinable()) t.join();
  }
  i.threads.clear();
  if (i.admin) i.admin->stop();
  {
    const std::lock_guard lock(i.phase_mutex);
    i.current_phase = impl::phase::stopped;
  }
  i.stopped_cv.notify_all();
}

void server::wait() {
  auto& i = *impl_;
  std::unique_lock lock(i.phase_mutex);
  i.stopped_cv.wait(lock, [&i] { return i.current_phase == impl::phase::stopped; });
}

server_stats server::stats() const {
  const auto& c = impl_->context;
  return {c.sessions_accepted.load(), c.sessions_refused.load(), c.changes_accepted.load(), c.batches_replayed.load(),
          c.sessions_waiting.load(), c.changes_refused.load(), impl_->counters.connections_refused.load(),
          c.sessions_enrolled.load()};
}

change_store& server::store() { return *impl_->store; }

}  // namespace caresync::server
