#include "session.hpp"

#include "log.hpp"
#include "token_rotation.hpp"

#include <caresync/protocol/errors.hpp>
#include <caresync/server/enrollment.hpp>
#include <caresync/server/push_rules.hpp>

#include <asio/dispatch.hpp>
#include <asio/post.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>
#include <openssl/crypto.h>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <utility>

namespace caresync::server {

namespace {

/// The largest frame read before hello is accepted: a hello is a few hundred bytes, and
/// a device that has not authenticated must not make the server hold megabytes.
constexpr std::uint32_t k_max_frame_before_hello = 64u << 10;

/// Priority phases one session may ask for: a device asks for one, and each costs a
/// read of the log up to its position.
constexpr unsigned k_max_primes_per_session = 4;

/// A token hash compared in constant time, also for unknown devices, so that timing
/// tells nothing about which device ids exist.
/// Two hex digests compared in constant time.
bool same_hash(const std::string& expected, const std::string& actual) {
  return expected.size() == actual.size() && CRYPTO_memcmp(expected.data(), actual.data(), actual.size()) == 0;
}

bool token_matches(const server_config& config, const std::string& device_id, const std::string& token) {
  static const std::string k_no_device(64, '0');
  const std::string* expected = &k_no_device;
  bool known = false;
  for (const auto& d : config.devices) {
    if (d.device_id == device_id) {
      expected = &d.token_sha256;
      known = true;
    }
  }
  const std::string actual = hash_token(token);
  const bool same = same_hash(*expected, actual);
  return known && same;
}

}  // namespace

session::session(asio::ip::tcp::socket socket, asio::ssl::context& tls, session_context& context)
    : stream_(std::move(socket), tls),
      timer_(stream_.get_executor()),
      pause_(stream_.get_executor()),
      context_(context),
      started_(std::chrono::steady_clock::now()) {
  ++context_.sessions_active;
  std::error_code ec;
  const auto endpoint = stream_.lowest_layer().remote_endpoint(ec);
  peer_address_ = ec ? "unknown" : endpoint.address().to_string();
  peer_ = ec ? "unknown" : peer_address_ + ":" + std::to_string(endpoint.port());
}

session::~session() {
  --context_.sessions_active;
  context_.frames.give_back(budget_held_);
  if (waiting_) --context_.sessions_waiting;
  // One line per session; never a token or a record's contents. A failed guess has
  // none: auth_throttle sums those up per address (a flood of guesses must not become
  // a flood of log lines).
  if (guessed_) return;
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started_).count();
  nlohmann::ordered_json fields = {{"device", device_.empty() ? nullptr : nlohmann::ordered_json(device_)},
                                   {"peer", peer_},
                                   {"changes_in", changes_in_},
                                   {"changes_refused", changes_refused_},
                                   {"changes_out", changes_out_},
                                   {"records_purged", records_purged_},
                                   {"bytes_in", bytes_in_},
                                   {"bytes_out", bytes_out_},
                                   {"duration_ms", ms},
                                   {"outcome", outcome_}};
  // A hello refused after its token was checked (a revoked device, node id 0): the id it claimed.
  if (device_.empty() && !claimed_.empty()) fields["device_claimed"] = claimed_;
  log::info("session", std::move(fields),
            "session of " + (device_.empty() ? std::string("an unauthenticated peer") : "device " + device_) + " ended: " +
                outcome_);
  // Fleet health: what the device said of itself, and whether this session went well.
  if (!device_.empty()) {
    health_.device = device_;
    health_.last_outcome = outcome_;
    if (std::string(outcome_) == "closed by device") health_.last_ok_ms = system_time_ms();
    try {
      context_.store.record_device(health_);
    } catch (const std::exception& e) {
      log::error("store_write_failed", {{"device", device_}, {"reason", e.what()}}, "recording the device's health failed");
    }
  }
}

void session::start() {
  // The acceptor's handler is not on this session's strand; a shutdown() may already be
  // queued there, so everything starts on the strand.
  asio::dispatch(stream_.get_executor(), [self = shared_from_this()] {
    if (self->closing_ || self->closed_) return;
    // One deadline for the TLS handshake and hello together: a peer that never
    // authenticates holds the connection handshake_timeout, not twice that.
    const auto deadline = std::chrono::steady_clock::now() + self->context_.config.handshake_timeout;
    self->arm_timer(deadline);
    self->stream_.async_handshake(asio::ssl::stream_base::server, [self, deadline](const std::error_code& ec) {
      if (ec) {
        ++self->context_.sessions_refused;
        return self->abort(ec == asio::error::operation_aborted ? "handshake timeout" : "tls handshake failed");
      }
      self->arm_timer(deadline);  // hello must follow within what is left
      self->read_header();
    });
  });
}

void session::shutdown() {
  asio::post(stream_.get_executor(), [self = shared_from_this()] {
    self->closing_ = true;
    self->outcome_ = "server stopping";
    // Waiting for a request: end now. Writing an answer: end once it is written.
    if (!self->writing_) self->abort("server stopping");
  });
}

std::uint32_t session::frame_limit() const noexcept {
  return device_.empty() ? std::min(k_max_frame_before_hello, context_.config.max_frame_bytes) : context_.config.max_frame_bytes;
}

void session::arm_timer(std::chrono::milliseconds timeout) { arm_timer(std::chrono::steady_clock::now() + timeout); }

void session::arm_timer(std::chrono::steady_clock::time_point deadline) {
  timer_.expires_at(deadline);
  timer_.async_wait([self = shared_from_this()](const std::error_code& ec) {
    if (ec == asio::error::operation_aborted) return;  // re-armed or closed
    self->abort(self->device_.empty() ? "handshake timeout" : "idle timeout");
  });
}

void session::read_header() {
  if (closing_) return close(outcome_);
  asio::async_read(stream_, asio::buffer(header_), [self = shared_from_this()](const std::error_code& ec, std::size_t) {
    // A device that finished closes with a TLS close_notify (eof); a link that dropped
    // ends without one (stream_truncated): the fleet list tells them apart.
    if (ec) return self->close(ec == asio::error::eof ? "closed by device" : "connection lost");
    self->bytes_in_ += self->header_.size();
    self->context_.bytes_in += self->header_.size();
    wire::frame_header h;
    try {
      // Checked before a byte of the payload is read: a too-large frame is refused here.
      h = wire::parse_header(self->header_, self->frame_limit());
    } catch (const protocol_error& e) {
      return self->refuse(e.code(), e.what());
    }
    self->payload_.clear();
    self->read_payload(h);
  });
}

void session::read_payload(const wire::frame_header& h) {
  // The buffer grows with the bytes that arrive, a chunk at a time: a device that
  // announces a large frame and sends slowly holds what it sent, not what it announced.
  // Past the first chunk, all sessions together hold at most max_frame_bytes_in_flight:
  // with none free, this one stops reading (its device's TCP window closes) and looks
  // again shortly; its idle timer runs on.
  constexpr std::size_t k_chunk = 64u << 10;
  const std::size_t filled = payload_.size();
  if (filled == h.length) return on_payload(h);
  const std::size_t next = std::min<std::size_t>(h.length - filled, k_chunk);
  if (filled + next > k_chunk) {
    if (!context_.frames.take(next)) {
      ++context_.reads_paused;
      pause_.expires_after(std::chrono::milliseconds(20));
      pause_.async_wait([self = shared_from_this(), h](const std::error_code& ec) {
        if (ec || self->closed_) return;
        self->read_payload(h);
      });
      return;
    }
    budget_held_ += next;
  }
  payload_.resize(filled + next);
  asio::async_read(stream_, asio::buffer(payload_.data() + filled, next),
                   [self = shared_from_this(), h](const std::error_code& ec, std::size_t n) {
                     if (ec) return self->close("connection lost");
                     self->bytes_in_ += n;
                     self->context_.bytes_in += n;
                     self->read_payload(h);
                   });
}

void session::release_frame() {
  payload_.clear();
  payload_.shrink_to_fit();
  pushed_.clear();
  pushed_.shrink_to_fit();
  context_.frames.give_back(std::exchange(budget_held_, 0));
}

void session::on_payload(const wire::frame_header& h) {
  wire::message m;
  wire::bytes plain;                                 // a compressed frame's payload
  std::vector<std::span<const std::uint8_t>> sent;  // a push's changes: spans into payload_ or plain
  try {
    const auto body = wire::plain_payload(h, payload_, frame_limit(), compression_, plain);
    // A push keeps each change's bytes: the store keeps them as they came.
    m = h.type == wire::message_type::push && !device_.empty() ? wire::message{wire::decode_push(body, node_, pushed_, sent)}
                                                                : wire::decode(h.type, body);
  } catch (const protocol_error& e) {
    return refuse(e.code(), e.what());
  }
  try {
    handle(m, sent);
    release_frame();
  } catch (const std::exception& e) {
    release_frame();
    // Not a fault of the device's bytes (those are protocol_errors, answered above) but
    // of this server, e.g. memory: this session ends, the others go on.
    log::error("handler_failed", {{"device", device_}, {"message", wire::to_string(wire::type_of(m))}, {"reason", e.what()}},
               std::string("handling a '") + wire::to_string(wire::type_of(m)) + "' message failed");
    if (writing_) return abort("server failure");
    outcome_ = "server failure";
    refuse(make_error_code(protocol_errc::server_busy), "the server could not handle the request; try again later");
  }
}

void session::handle(const wire::message& m, std::span<const std::span<const std::uint8_t>> sent) {
  if (device_.empty()) {
    if (const auto* hello = std::get_if<wire::hello>(&m)) return on_hello(*hello);
    if (const auto* enroll = std::get_if<wire::enroll>(&m)) return on_enroll(*enroll);
    ++context_.sessions_refused;
    return refuse(make_error_code(protocol_errc::unexpected_message), "the first message must be hello");
  }
  if (const auto* push = std::get_if<wire::push>(&m)) return on_push(*push, sent);
  if (const auto* pull = std::get_if<wire::pull>(&m)) return on_pull(*pull);
  if (const auto* wait = std::get_if<wire::wait>(&m)) return on_wait(*wait);
  if (const auto* prime = std::get_if<wire::prime>(&m)) return on_prime(*prime);
  if (const auto* ping = std::get_if<wire::ping>(&m)) return send(wire::make_frame(wire::pong{ping->nonce}), false);
  refuse(make_error_code(protocol_errc::unexpected_message),
         std::string("a '") + wire::to_string(wire::type_of(m)) + "' message is not expected from a device");
}

void session::on_enroll(const wire::enroll& m) {
  wire::enrolled answer;
  try {
    answer = enroll_device(context_.store, m.code, system_time_ms());
  } catch (const error& e) {
    if (e.code() == make_error_code(protocol_errc::enrollment_refused)) {
      ++context_.sessions_refused;
      outcome_ = "enrollment refused";
      guessed_ = true;
      context_.auth.failed(peer_address_, {});
      return refuse(e.code(), e.what());
    }
    ++context_.sessions_refused;
    log::error("store_write_failed", {{"peer", peer_}, {"reason", e.what()}}, "storing an enrollment failed");
    return refuse(make_error_code(protocol_errc::storage_failed), "the server could not enroll the device; try again later");
  }
  ++context_.sessions_enrolled;
  outcome_ = "enrolled";
  log::info("device_enrolled", {{"peer", peer_}, {"device", answer.device_id}, {"user", answer.user_id}},
            "a device was enrolled");
  send(wire::make_frame(answer), true);
}

void session::on_hello(const wire::hello& m) {
  // Enrolled devices first (their token's hash, compared in constant time), then the
  // devices a config file lists (the core's provisioning, kept for existing set-ups).
  // A device id that failed too often is shut out for a while, its token not looked at.
  claimed_ = m.device_id.substr(0, 128);  // for the session's log line, if it is refused
  if (const auto wait = context_.auth.device_wait(m.device_id); wait > std::chrono::steady_clock::duration::zero()) {
    ++context_.sessions_refused;
    outcome_ = "shut out after failed attempts";
    guessed_ = true;
    context_.auth.shut_out(peer_address_);
    const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(wait).count() + 1;
    return refuse(make_error_code(protocol_errc::server_busy),
                  "too many failed attempts with this device id; try again in " + std::to_string(seconds) + " s");
  }
  std::optional<device_record> enrolled;
  std::optional<device_tokens> tokens;
  try {
    enrolled = context_.store.find_device(m.device_id);
    if (enrolled) tokens = context_.store.find_tokens(m.device_id);
  } catch (const error& e) {
    log::error("store_read_failed", {{"peer", peer_}, {"reason", e.what()}}, "reading the device list failed");
    return refuse(make_error_code(protocol_errc::storage_failed), "the server cannot read its store; try again later");
  }
  // An enrolled device's current token, or (token rotation) the one it was handed last
  // and has not presented yet.
  const auto presented_sha256 = hash_token(m.token);
  const auto match = tokens ? match_token(*tokens, presented_sha256) : token_match::none;
  const bool accepted = enrolled ? match != token_match::none : token_matches(context_.config, m.device_id, m.token);
  bool server_side = false;
  bool user_disabled = false;
  if (accepted && enrolled && !enrolled->user_id.empty()) {
    try {
      const auto user = context_.store.find_user(enrolled->user_id);
      server_side = user && user->role == "registry_admin";
      user_disabled = user && user->disabled_ms != 0;
    } catch (const error& e) {
      log::error("store_read_failed", {{"peer", peer_}, {"reason", e.what()}}, "reading the user failed");
      return refuse(make_error_code(protocol_errc::storage_failed), "the server cannot read its store; try again later");
    }
  } else if (accepted) {
    for (const auto& d : context_.config.devices) server_side = server_side || (d.device_id == m.device_id && d.server_side);
  }
  // A wrong token, or one replaced while this hello was checked: counted as a guess.
  const auto refuse_token = [&] {
    ++context_.sessions_refused;
    outcome_ = "auth refused";
    guessed_ = true;
    context_.auth.failed(peer_address_, m.device_id);
    return refuse(make_error_code(protocol_errc::auth_failed),
                  "device id or token not accepted; check the device's credentials with the administrator");
  };
  if (!accepted) return refuse_token();
  // disable_user revokes her devices; a device whose user is disabled is refused as
  // revoked in any case.
  if (enrolled && (enrolled->revoked_ms != 0 || user_disabled)) {
    ++context_.sessions_refused;
    outcome_ = "revoked";
    try {
      context_.store.told_to_wipe(m.device_id, system_time_ms());
    } catch (const error& e) {
      log::error("store_write_failed", {{"device", m.device_id}, {"reason", e.what()}}, "recording a wipe failed");
    }
    log::info("device_revoked", {{"peer", peer_}, {"device", m.device_id}}, "a revoked device was told to wipe");
    return refuse(make_error_code(protocol_errc::device_revoked),
                  "this device was revoked by an administrator; its local data must be wiped");
  }
  if (m.node == 0) {
    ++context_.sessions_refused;
    return refuse(make_error_code(protocol_errc::malformed), "hello carries node id 0, which no replica may use");
  }
  // Token rotation (enrolled devices only; a config file's tokens are the file's).
  token_outcome rotation;
  if (enrolled) {
    try {
      rotation = settle_tokens(context_.store, m.device_id, *tokens, match, presented_sha256,
                               (m.features & wire::k_feature_token_rotation) != 0, context_.config.token_rotation_days,
                               system_time_ms());
    } catch (const std::exception& e) {
      log::error("store_write_failed", {{"device", m.device_id}, {"reason", e.what()}}, "rotating the device's token failed");
      return refuse(make_error_code(protocol_errc::storage_failed), "the server cannot write its store; try again later");
    }
    // Its token was replaced while this hello was checked: as any wrong token.
    if (!rotation.accepted) return refuse_token();
    if (rotation.confirmed) log::info("token_confirmed", {{"device", m.device_id}}, "a device confirmed its new token");
    if (!rotation.new_token.empty()) log::info("token_rotated", {{"device", m.device_id}}, "a device was handed a new token");
  }
  who_ = requester{m.device_id, {}, nullptr};
  // A device of add-device has no user: not scoped, as a device of the config file.
  if (enrolled && !enrolled->user_id.empty()) {
    // An enrolled device is always scoped, by its user's role and org unit as they are
    // now: a change of either takes effect at the device's next sync.
    try {
      const auto user = context_.store.find_user(enrolled->user_id);
      if (!user) {
        ++context_.sessions_refused;
        outcome_ = "auth refused";
        return refuse(make_error_code(protocol_errc::auth_failed),
                      "the device's user no longer exists; ask the administrator to enroll the device again");
      }
      scope_ = scope_of(user->user_id, user->role, user->org_unit, context_.store.org_units(), context_.config.scopes);
      who_ = requester{m.device_id, user->user_id, &*scope_};
      context_.store.open_scope(who_, m.node);
    } catch (const error& e) {
      log::error("store_read_failed", {{"device", m.device_id}, {"reason", e.what()}}, "reading the device's scope failed");
      return refuse(make_error_code(protocol_errc::storage_failed), "the server cannot read its store; try again later");
    }
  }
  ++context_.sessions_accepted;
  device_ = m.device_id;
  node_ = m.node;
  context_.auth.succeeded(device_);
  context_.admit_device(device_, shared_from_this());
  server_side_ = server_side;
  health_.app_version = m.app_version;
  health_.outbox = m.outbox;
  health_.quarantined = m.quarantined;
  health_.open_conflicts = m.open_conflicts;
  health_.last_seen_ms = system_time_ms();
  // At most one codec: zstd when offered (faster, smaller), else deflate.
  const std::uint32_t granted = (m.features & wire::k_feature_zstd)      ? wire::k_feature_zstd
                                : (m.features & wire::k_feature_deflate) ? wire::k_feature_deflate
                                                                         : 0;
  compression_ = wire::codec_of(granted);
  granted_ = granted | (m.features & (wire::k_feature_wait | wire::k_feature_stream));
  // Version 7: with zstd, the server's frames may be one stream (a page compressed with
  // the pages before it as context).
  if (compression_ == wire::codec::zstd && (m.features & wire::k_feature_zstd_stream)) {
    granted_ |= wire::k_feature_zstd_stream;
    compressor_ = std::make_unique<wire::stream_compressor>();
  }
  wire::welcome w;
  w.server_name = context_.config.server_name;
  w.server_time_ms = system_time_ms();
  w.features = granted_;
  w.max_frame_bytes = context_.config.max_frame_bytes;
  w.max_push_changes = context_.config.max_push_changes;
  w.max_clock_ahead_ms = static_cast<std::uint64_t>(context_.config.max_clock_ahead.count());
  if (!rotation.new_token.empty()) {
    // Granted exactly when the welcome carries a token (docs/protocol.md, "Token rotation").
    w.features |= wire::k_feature_token_rotation;
    w.new_token = std::move(rotation.new_token);
  }
  try {
    w.log_head = context_.store.head();
  } catch (const error& e) {
    log::error("store_read_failed", {{"device", device_}, {"reason", e.what()}}, "reading the log head failed");
    return refuse(make_error_code(protocol_errc::storage_failed), "the server cannot read its store; try again later");
  }
  send(wire::make_frame(w), false);
}

void session::on_push(const wire::push& m, std::span<const std::span<const std::uint8_t>> sent) {
  const auto push_started = std::chrono::steady_clock::now();
  if (m.changes.size() > context_.config.max_push_changes) {
    return refuse(make_error_code(protocol_errc::limit_exceeded),
                  "a push may carry at most " + std::to_string(context_.config.max_push_changes) + " changes");
  }
  // A change breaking a limit is refused alone: the device sets it aside and the rest
  // of its outbox goes on (one bad record never blocks the queue).
  push_rules rules;
  rules.limits.max_value_bytes = context_.config.max_value_bytes;
  rules.max_clock_ahead_ms = static_cast<std::uint64_t>(context_.config.max_clock_ahead.count());
  rules.server_only = server_only_map(context_.config.server_only_fields);
  rules.server_side = server_side_;
  rules.care_rules = context_.config.care_rules;
  auto screen = screen_push(m.changes, node_, rules, system_time_ms());
  if (screen.foreign_node) {
    return refuse(make_error_code(protocol_errc::malformed), "the push was refused: a change carries another replica's node id");
  }
  auto& refused = screen.refused;
  if (rules.care_rules) {
    try {
      refuse_illegal_transitions(context_.store, m.changes, refused);
    } catch (const error& e) {
      log::error("store_read_failed", {{"device", device_}, {"reason", e.what()}}, "reading referrals failed");
      return refuse(make_error_code(protocol_errc::storage_failed), "the server cannot read its store; try again later");
    }
  }
  // A change writing a server_only field is stored without it (a copy only then).
  std::vector<change> stripped;
  std::span<const change> to_store = m.changes;
  std::vector<std::span<const std::uint8_t>> stripped_sent;
  std::span<const std::span<const std::uint8_t>> to_store_sent = sent;
  if (std::any_of(refused.begin(), refused.end(), [](const wire::refusal& r) {
        return r.code == static_cast<std::uint16_t>(protocol_errc::server_only);
      })) {
    stripped = m.changes;
    strip_server_only(stripped, refused);
    to_store = stripped;
    // A change stored without some of its fields is encoded anew.
    stripped_sent.assign(sent.begin(), sent.end());
    for (const auto& r : refused) {
      if (r.code == static_cast<std::uint16_t>(protocol_errc::server_only) && r.index < stripped_sent.size()) {
        stripped_sent[r.index] = {};
      }
    }
    to_store_sent = stripped_sent;
  }
  push_outcome outcome;
  try {
    outcome = context_.store.append_as(who_, batch_key(m.batch, node_), to_store, refused, to_store_sent);
    context_.observe_push(std::chrono::steady_clock::now() - push_started);
  } catch (const error& e) {
    log::error("store_write_failed", {{"device", device_}, {"reason", e.what()}}, "storing a push failed");
    return refuse(make_error_code(protocol_errc::storage_failed), "the server could not store the push; try again later");
  }
  try {
    fill_restores(context_.store, m.changes, outcome.refused, rules);
  } catch (const error& e) {
    log::error("store_read_failed", {{"device", device_}, {"reason", e.what()}}, "reading fields to restore failed");
    return refuse(make_error_code(protocol_errc::storage_failed), "the server cannot read its store; try again later");
  }
  if (outcome.replayed) {
    ++context_.batches_replayed;
  } else {
    context_.changes_accepted += outcome.accepted;
    changes_in_ += outcome.accepted;
    changes_refused_ += outcome.refused.size();
    context_.changes_refused += outcome.refused.size();
    if (outcome.accepted > 0) context_.changes_arrived();
  }
  send(frame(wire::message_type::push_result,
             wire::encode(wire::push_result{m.batch, outcome.accepted, outcome.first_seq, outcome.last_seq, outcome.replayed,
                                            std::move(outcome.refused)})),
       false);
}

void session::on_pull(const wire::pull& m) {
  scope_epoch_ = m.scope_epoch;
  answer_page(m.cursor, m.max_changes, m.max_bytes, m.prime, true, m.max_pages);
}

const primed& session::primed_for(const wire::prime_spec& spec) {
  if (!primed_ || primed_->spec != spec) {
    // A device asks for one priority phase; each new spec reads the log again.
    if (++primes_computed_ > k_max_primes_per_session) {
      throw error(make_error_code(protocol_errc::limit_exceeded),
                  "a session may ask for at most " + std::to_string(k_max_primes_per_session) + " different priority phases");
    }
    primed p;
    p.spec = spec;
    p.items = context_.store.prime_changes_for(who_, spec, node_);
    p.seqs.reserve(p.items.size());
    for (const auto& item : p.items) {
      p.seqs.push_back(item.seq);
      p.bytes += item.bytes;
    }
    std::sort(p.seqs.begin(), p.seqs.end());
    const auto all = context_.store.extent(0, node_);
    p.rest = log_extent{all.changes - std::min(all.changes, p.items.size()), all.bytes - std::min(all.bytes, p.bytes)};
    primed_ = std::move(p);
  }
  return *primed_;
}

void session::on_prime(const wire::prime& m) {
  const auto& c = context_.config;
  const auto max_changes = m.max_changes == 0 ? c.page_max_changes : std::min(m.max_changes, c.page_max_changes);
  const auto max_bytes = m.max_bytes == 0 ? c.page_max_bytes : std::min(m.max_bytes, c.page_max_bytes);
  wire::changes_page_builder page;
  page.reserve(max_bytes);
  std::uint64_t position = m.position;
  log_extent left;
  try {
    const auto& p = primed_for(m.spec);
    if (position > p.items.size()) {
      return refuse(make_error_code(protocol_errc::malformed), "prime asks for a position past the end of its changes");
    }
    // As a pull page: at least one change, then within both bounds.
    auto end = static_cast<std::size_t>(position);
    std::uint64_t bytes = 0;
    while (end < p.items.size() && (end == position || (end - position < max_changes && bytes + p.items[end].bytes <= max_bytes))) {
      bytes += p.items[end].bytes;
      ++end;
    }
    const std::span<const prime_item> items(p.items);
    const auto sent = items.subspan(static_cast<std::size_t>(position), end - static_cast<std::size_t>(position));
    context_.store.read_changes(sent, page);
    context_.store.mark_sent(who_, sent);
    for (std::size_t i = end; i < p.items.size(); ++i) left.bytes += p.items[i].bytes;
    left.changes = p.items.size() - end + p.rest.changes;
    left.bytes += p.rest.bytes;
    position = end;
  } catch (const error& e) {
    if (e.code() == make_error_code(protocol_errc::limit_exceeded)) return refuse(e.code(), e.what());
    log::error("store_read_failed", {{"device", device_}, {"reason", e.what()}}, "reading priority changes failed");
    return refuse(make_error_code(protocol_errc::storage_failed), "the server could not read changes; try again later");
  }
  changes_out_ += page.count();
  context_.changes_out += page.count();
  const bool more = position < primed_->items.size();
  send(frame(wire::message_type::changes, std::move(page).finish(position, more, left.changes, left.bytes)), false);
}

void session::answer_page(std::uint64_t cursor, std::uint32_t max_changes, std::uint32_t max_bytes,
                          const wire::prime_spec& prime, bool pull, std::uint64_t max_pages) {
  const auto& c = context_.config;
  max_changes = max_changes == 0 ? c.page_max_changes : std::min(max_changes, c.page_max_changes);
  max_bytes = max_bytes == 0 ? c.page_max_bytes : std::min(max_bytes, c.page_max_bytes);
  wire::changes_page_builder page;
  page.reserve(max_bytes);  // a full page then never moves (only the memory touched is faulted in)
  page_position pos;
  try {
    std::span<const std::uint64_t> skip;
    const primed* p = nullptr;
    if (prime.until > cursor) {
      p = &primed_for(prime);
      skip = p->seqs;
    }
    if (!estimate_ || estimate_->cursor != cursor) {
      // Counted once per session (and again should the device jump): pages after it
      // subtract what they send.
      pull_estimate e{cursor, context_.store.extent(cursor, node_)};
      if (p) {
        for (const auto& item : p->items) {
          if (item.seq <= cursor) continue;
          e.left.changes -= std::min<std::uint64_t>(e.left.changes, 1);
          e.left.bytes -= std::min(e.left.bytes, item.bytes);
        }
      }
      estimate_ = e;
    }
    pos = context_.store.serve_page(who_, page_request{cursor, node_, skip, max_changes, max_bytes, scope_epoch_}, page);
  } catch (const error& e) {
    if (e.code() == make_error_code(protocol_errc::limit_exceeded)) return refuse(e.code(), e.what());
    log::error("store_read_failed", {{"device", device_}, {"reason", e.what()}}, "reading changes failed");
    return refuse(make_error_code(protocol_errc::storage_failed), "the server could not read changes; try again later");
  }
  auto& left = estimate_->left;
  left.changes -= std::min<std::uint64_t>(left.changes, page.count());
  left.bytes -= std::min<std::uint64_t>(left.bytes, page.size_bytes());
  if (!pos.more) left = {};
  estimate_->cursor = pos.next_cursor;
  changes_out_ += page.count() + page.backfill_count();
  context_.changes_out += page.count() + page.backfill_count();
  records_purged_ += page.purge_count();
  // A stream (docs/protocol.md, "5 pull") goes on with the next page once this one is
  // written, as the device would have asked; it stops where the device must store a
  // page before it asks again (one with a scope epoch), at the end of the log, and
  // after the pages the pull asked for (version 7: the device then resizes its pages).
  if (pull && (granted_ & wire::k_feature_stream) && pos.more && page.scope_epoch() == 0 && max_pages != 1) {
    stream_next_ = wire::pull{pos.next_cursor, max_changes, max_bytes, prime, scope_epoch_, max_pages ? max_pages - 1 : 0};
  }
  send(frame(wire::message_type::changes, std::move(page).finish(pos.next_cursor, pos.more, left.changes, left.bytes)), false);
}

void session::on_wait(const wire::wait& m) {
  if (!(granted_ & wire::k_feature_wait)) {
    return refuse(make_error_code(protocol_errc::unexpected_message), "wait was not agreed in hello and welcome");
  }
  // Listed as a waiter before looking at the log, so a change stored in between still
  // wakes this session.
  {
    const std::lock_guard lock(context_.waiters_mutex);
    context_.waiters.push_back(weak_from_this());
  }
  std::uint64_t head = 0;
  try {
    head = context_.store.head();
  } catch (const error& e) {
    log::error("store_read_failed", {{"device", device_}, {"reason", e.what()}}, "reading the log head failed");
    return refuse(make_error_code(protocol_errc::storage_failed), "the server could not read changes; try again later");
  }
  if (head > m.cursor) {
    context_.stop_watching(this);
    return answer_page(m.cursor, m.max_changes, m.max_bytes);
  }
  // Hold the answer, at most half the idle timeout (the device's idle clock runs too).
  waiting_ = m;
  ++context_.sessions_waiting;
  const auto cap = std::chrono::milliseconds(context_.config.idle_timeout.count() / 2);
  timer_.expires_after(std::min(std::chrono::milliseconds(m.max_wait_ms), cap));
  timer_.async_wait([self = shared_from_this()](const std::error_code& ec) {
    if (ec == asio::error::operation_aborted || !self->waiting_ || self->closed_) return;
    const auto w = *self->waiting_;
    self->stop_waiting();
    self->context_.stop_watching(self.get());
    self->answer_page(w.cursor, w.max_changes, w.max_bytes);  // nothing new: an empty page
  });
}

void session::wake() {
  asio::post(stream_.get_executor(), [self = shared_from_this()] {
    if (!self->waiting_ || self->closed_ || self->closing_) return;
    const auto w = *self->waiting_;
    self->stop_waiting();
    self->timer_.cancel();
    self->answer_page(w.cursor, w.max_changes, w.max_bytes);
  });
}

void session::supersede() {
  asio::post(stream_.get_executor(), [self = shared_from_this()] {
    if (self->closed_) return;
    ++self->context_.sessions_superseded;
    self->closing_ = true;
    self->outcome_ = "superseded by a newer session of the device";
    if (!self->writing_) self->abort(self->outcome_);
  });
}

void session_context::admit_device(const std::string& device, const std::shared_ptr<session>& s) {
  std::vector<std::shared_ptr<session>> oldest;
  {
    const std::lock_guard lock(devices_mutex);
    auto& list = device_sessions[device];
    std::erase_if(list, [](const std::weak_ptr<session>& w) { return w.expired(); });
    list.push_back(s);
    while (list.size() > config.max_sessions_per_device) {
      if (auto old = list.front().lock()) oldest.push_back(std::move(old));
      list.erase(list.begin());
    }
  }
  for (auto& old : oldest) old->supersede();
}

void session::stop_waiting() {
  if (!waiting_) return;
  waiting_.reset();
  --context_.sessions_waiting;
}

void session_context::stop_watching(const session* s) {
  const std::lock_guard lock(waiters_mutex);
  std::erase_if(waiters, [s](const std::weak_ptr<session>& w) {
    const auto p = w.lock();
    return !p || p.get() == s;
  });
}

void session_context::observe_push(std::chrono::steady_clock::duration d) {
  const double seconds = std::chrono::duration<double>(d).count();
  for (std::size_t i = 0; i < k_push_buckets.size(); ++i) {
    if (seconds <= k_push_buckets[i]) ++push_le[i];
  }
  ++push_count;
  push_micros += static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(d).count());
}

void session_context::changes_arrived() {
  std::vector<std::weak_ptr<session>> woken;
  {
    const std::lock_guard lock(waiters_mutex);
    woken.swap(waiters);
  }
  for (auto& w : woken) {
    if (auto s = w.lock()) s->wake();
  }
}

wire::bytes session::frame(wire::message_type type, std::span<const std::uint8_t> payload) {
  if (compressor_) return compressor_->make_frame(type, payload);
  return wire::make_frame(type, payload, compression_);
}

void session::send(wire::bytes frame, bool last) {
  out_ = std::move(frame);
  writing_ = true;
  arm_timer(context_.config.idle_timeout);  // a device that stops reading is cut
  asio::async_write(stream_, asio::buffer(out_), [self = shared_from_this(), last](const std::error_code& ec, std::size_t n) {
    self->writing_ = false;
    self->bytes_out_ += n;
    self->context_.bytes_out += n;
    if (ec) return self->close("connection lost");
    if (last || self->closing_) return self->close(self->outcome_);
    self->arm_timer(self->context_.config.idle_timeout);
    if (auto next = std::exchange(self->stream_next_, std::nullopt)) {
      return self->answer_page(next->cursor, next->max_changes, next->max_bytes, next->prime, true, next->max_pages);
    }
    self->read_header();
  });
}

void session::refuse(std::error_code code, const std::string& message) {
  if (std::string(outcome_) == "closed") outcome_ = "refused";
  const auto slot = code.category() == protocol_category() && code.value() > 0 &&
                            static_cast<std::size_t>(code.value()) < context_.errors_sent.size()
                        ? static_cast<std::size_t>(code.value())
                        : 0;
  ++context_.errors_sent[slot];
  wire::error e;
  e.code = static_cast<std::uint16_t>(code.value());
  e.transient = is_transient(code);
  e.message = message;
  send(wire::make_frame(e), true);
}

void session::abort(const char* outcome) {
  if (closed_) return;
  stop_waiting();
  closed_ = true;
  if (std::string(outcome_) == "closed") outcome_ = outcome;
  timer_.cancel();
  std::error_code ignored;
  stream_.lowest_layer().close(ignored);  // the pending operation ends with an error
}

void session::close(const char* outcome) {
  if (closed_) return;
  stop_waiting();
  closed_ = true;
  if (std::string(outcome_) == "closed") outcome_ = outcome;
  timer_.cancel();
  // A close_notify when the device is still there, then the socket goes; bounded by a
  // short timer so a silent peer cannot hold the session.
  timer_.expires_after(std::chrono::seconds(2));
  timer_.async_wait([self = shared_from_this()](const std::error_code& ec) {
    if (ec == asio::error::operation_aborted) return;
    std::error_code ignored;
    self->stream_.lowest_layer().close(ignored);
  });
  stream_.async_shutdown([self = shared_from_this()](const std::error_code&) {
    std::error_code ignored;
    self->timer_.cancel();
    self->stream_.lowest_layer().close(ignored);
  });
}

}  // namespace caresync::server
