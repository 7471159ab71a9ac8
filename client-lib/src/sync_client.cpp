#include <caresync/sync_client.hpp>

#include "link_meter.hpp"
#include "store_impl.hpp"
#include "tls_channel.hpp"

#include <caresync/protocol/errors.hpp>
#include <caresync/protocol/codec.hpp>
#include <caresync/protocol/frame.hpp>

#include <algorithm>
#include <charconv>
#include <deque>
#include <exception>
#include <functional>
#include <future>
#include <optional>
#include <random>
#include <system_error>
#include <type_traits>
#include <utility>
#include <thread>

namespace caresync {

namespace {

constexpr const char* k_client_name = "caresync-client/0.1";
/// Push batches sent before the first one's answer is awaited: the store pins the next
/// batches while the server stores the first (docs/protocol.md, "The conversation").
constexpr std::size_t k_push_window = 3;

/// Turns an error message from the server into an exception with its code.
[[noreturn]] void server_refused(const wire::error& e) {
  const auto code = std::error_code(e.code, protocol_category());
  throw error(code, "the server refused: " + e.message);
}

template <class T>
T expect(wire::message m, const char* what) {
  if (auto* e = std::get_if<wire::error>(&m)) server_refused(*e);
  if (auto* t = std::get_if<T>(&m)) return std::move(*t);
  throw protocol_error(protocol_errc::unexpected_message,
                       std::string("the server sent '") + wire::to_string(wire::type_of(m)) + "' where " + what +
                           " was expected; the server may run an incompatible version");
}

/// The wire form of the app's priority tiers; throws invalid_argument naming the fault.
wire::prime_spec prime_spec_of(const std::vector<priority_tier>& tiers, std::uint64_t until) {
  if (tiers.size() > wire::k_max_prime_tiers) {
    throw error(make_error_code(storage_errc::invalid_argument),
                "sync_options::priority holds more than " + std::to_string(wire::k_max_prime_tiers) + " tiers");
  }
  wire::prime_spec spec{until, {}};
  for (const auto& t : tiers) {
    const auto fault = [&](const std::string& what) {
      throw error(make_error_code(storage_errc::invalid_argument),
                  "sync_options::priority: the tier for '" + t.collection + "' " + what);
    };
    if (!is_valid_name(t.collection)) fault("names an invalid collection");
    wire::prime_tier w{t.collection, wire::prime_match::all, {}, {}};
    if (t.match != priority_tier::rule::all) {
      if (!is_valid_name(t.field)) fault("names an invalid field");
      if (!wire::is_prime_operand(t.operand)) fault("compares with something other than an integer, a number or a text");
      w.match = t.match == priority_tier::rule::equals ? wire::prime_match::equals : wire::prime_match::at_least;
      w.field = t.field;
      w.operand = t.operand;
    }
    spec.tiers.push_back(std::move(w));
  }
  return spec;
}

/// Runs `apply` (the store's part) on a thread of its own while `meanwhile` (the
/// connection's part) runs on this one, and returns what apply returned once both are
/// done; apply's failure is rethrown here. `meanwhile` must not use the store, and must
/// not throw. Without a thread to be had, the two run one after the other.
template <class Apply, class Meanwhile>
auto apply_aside(Apply&& apply, Meanwhile&& meanwhile) {
  std::future<std::invoke_result_t<Apply&>> applied;
  try {
    applied = std::async(std::launch::async, std::ref(apply));
  } catch (const std::system_error&) {
    auto result = apply();
    meanwhile();
    return result;
  }
  meanwhile();
  return applied.get();
}

/// A rate kept in the store's state (a decimal number of bytes per second), or 0.
double stored_rate(store::impl& s, std::string_view key) {
  const auto text = s.get_state(key);
  double rate = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), rate);
  return ec == std::errc{} && end == text.data() + text.size() && rate > 0 ? rate : 0;
}

/// A count kept in the store's state, or 0.
std::uint64_t stored_count(store::impl& s, std::string_view key) {
  const auto text = s.get_state(key);
  std::uint64_t n = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  return ec == std::errc{} && end == text.data() + text.size() ? n : 0;
}

// Keys of the store's state the sync keeps (cs_state).
constexpr std::string_view k_down_rate_key = "link_down_rate";
constexpr std::string_view k_up_rate_key = "link_up_rate";
/// Changes applied since the store was last up to date (sync_progress::held).
constexpr std::string_view k_held_key = "catchup_held";

}  // namespace

struct sync_client::impl {
  store& local;
  sync_options options;
  /// The link as measured by this client's syncs (and, at first, by the store's last).
  std::optional<link_meter> meter;
  /// Progress as the last connection left it, for on_retry.
  sync_progress last_progress;
  /// What the last connection's welcome granted, if a welcome came: only then does the
  /// next connection send its first request with its hello (docs/protocol.md, "The
  /// conversation"). A refused hello may reach a pipelining client as a reset
  /// connection; the connection after it waits for the welcome and hears why.
  std::optional<std::uint32_t> welcomed_features;

  /// One connection: adds what it did to `report`, bytes included, even when it fails.
  void attempt(sync_report& report);
  void converse(tls_channel& channel, sync_report& report);
  /// Keeps the measured rates in the store for the next sync; best effort.
  void remember_link() noexcept;
  /// Token rotation: hands `token` to the app's on_new_token and, once it has stored
  /// it, uses it for the next connections. If the app could not (it threw), the old
  /// token stays in use; the server keeps accepting it.
  void take_new_token(const std::string& token, sync_report& report) noexcept;
};

sync_client::sync_client(store& local, sync_options options)
    : impl_(std::make_unique<impl>(impl{local, std::move(options), std::nullopt, {}, std::nullopt})) {
  const auto& o = impl_->options;
  if (o.ca_file.empty() && o.pinned_key_sha256.empty()) {
    throw error(make_error_code(storage_errc::invalid_argument),
                "sync needs a CA file or a pinned server key hash to know it talks to the real server");
  }
  if (o.device_id.empty() || o.token.empty()) {
    throw error(make_error_code(storage_errc::invalid_argument), "sync needs the device id and token given at enrollment");
  }
  (void)prime_spec_of(o.priority, 1);  // refuses bad tiers now, not mid-sync
}

sync_client::~sync_client() = default;

enrollment enroll(const sync_options& server, const std::string& code) {
  if (server.ca_file.empty() && server.pinned_key_sha256.empty()) {
    throw error(make_error_code(storage_errc::invalid_argument),
                "enrollment needs a CA file or a pinned server key hash to know it talks to the real server");
  }
  if (code.empty()) throw error(make_error_code(storage_errc::invalid_argument), "enrollment needs the code from the administrator");
  tls_channel channel(server);
  channel.connect();
  wire::enroll request;
  request.client_name = k_client_name;
  request.code = code;
  request.app_version = server.app_version;
  channel.send(wire::make_frame(request));
  auto answer = expect<wire::enrolled>(channel.receive(wire::k_default_max_frame), "enrolled");
  channel.close();
  if (answer.device_id.empty() || answer.token.empty()) {
    throw protocol_error(protocol_errc::malformed, "the server's enrollment answer lacks a device id or token");
  }
  return enrollment{std::move(answer.device_id), std::move(answer.token), std::move(answer.user_id),
                    std::move(answer.user_name)};
}

sync_report sync_client::sync() {
  const auto started = std::chrono::steady_clock::now();
  const auto& retry = impl_->options.retry;
  sync_report report;
  auto backoff = retry.first_backoff;
  unsigned fruitless = 0;  // attempts in a row that stored nothing
  for (;;) {
    ++report.attempts;
    ++fruitless;
    const auto stored_before = report.pushed + report.pulled + report.quarantined + report.purged;
    try {
      impl_->attempt(report);
      break;
    } catch (const error& e) {
      if (e.code() == make_error_code(protocol_errc::device_revoked)) {
        // A lost or stolen tablet: its records must not stay on it. The app hears of the
        // revocation even if the wipe fails, and why.
        std::string wiped = "; the local store was wiped";
        try {
          impl_->local.wipe();
        } catch (const error& w) {
          wiped = std::string("; wiping the local store failed: ") + w.what();
        }
        throw error(e.code(), e.what() + wiped);
      }
      const bool progressed = report.pushed + report.pulled + report.quarantined + report.purged > stored_before;
      if (progressed) {
        // The link works, if briefly: go on where this connection stopped, soon.
        fruitless = 0;
        backoff = retry.first_backoff / 4;
      }
      if (!is_transient(e.code()) || retry.max_attempts <= 1 || fruitless >= retry.max_attempts) throw;
      // Full jitter: a random pause up to the current backoff, which doubles up to the cap.
      thread_local std::mt19937_64 rng{std::random_device{}()};
      const auto pause = std::chrono::milliseconds(
          std::uniform_int_distribution<std::int64_t>(0, std::max<std::int64_t>(0, backoff.count()))(rng));
      if (impl_->options.on_retry) impl_->options.on_retry(e.code(), e.what(), impl_->last_progress, pause);
      std::this_thread::sleep_for(pause);
      backoff = progressed ? retry.first_backoff : std::min(backoff * 2, retry.max_backoff);
    }
  }
  report.cursor = impl_->local.cursor();
  report.duration = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
  return report;
}

void sync_client::impl::attempt(sync_report& report) {
  if (!meter) meter.emplace(stored_rate(local.internal(), k_down_rate_key), stored_rate(local.internal(), k_up_rate_key));
  tls_channel channel(options);
  try {
    converse(channel, report);
  } catch (const error& e) {
    report.bytes_sent += channel.bytes_sent();
    report.bytes_received += channel.bytes_received();
    // A link that broke or stalled is worse than measured: the next pages are smaller.
    if (e.code() == network_errc::connection_lost || e.code() == network_errc::timeout) meter->cut();
    remember_link();
    throw;
  } catch (...) {
    report.bytes_sent += channel.bytes_sent();
    report.bytes_received += channel.bytes_received();
    throw;
  }
  report.bytes_sent += channel.bytes_sent();
  report.bytes_received += channel.bytes_received();
  remember_link();
}

void sync_client::impl::remember_link() noexcept {
  try {
    auto& s = local.internal();
    if (meter->down_rate() > 0) s.set_state(k_down_rate_key, std::to_string(meter->down_rate()));
    if (meter->up_rate() > 0) s.set_state(k_up_rate_key, std::to_string(meter->up_rate()));
  } catch (...) {
    // Only a hint for the next sync's first page; the sync's own outcome stands.
  }
}

void sync_client::impl::take_new_token(const std::string& token, sync_report& report) noexcept {
  try {
    options.on_new_token(token);
  } catch (...) {
    return;  // not stored: the old token goes on working, and another comes at a later sync
  }
  try {
    options.token = token;
    ++report.tokens_stored;
  } catch (...) {
    // Out of memory copying 64 characters: this connection goes on with the old token,
    // which stays valid until the new one is presented.
  }
}

void sync_client::impl::converse(tls_channel& channel, sync_report& report) {
  using clock = std::chrono::steady_clock;
  const auto& o = options;
  auto& s = local.internal();
  auto& link = *meter;
  const auto purged_before = s.purged_total;
  const auto refused_before = s.refused_out_of_scope_total;
  sync_progress progress;
  // What earlier connections applied of a catch-up, for a bar that never starts again at
  // zero; kept only when someone watches.
  const bool watched = o.on_progress || o.on_retry;
  if (watched) progress.held = stored_count(s, k_held_key);
  const auto tell = [&] {
    progress.bytes_sent = channel.bytes_sent();
    progress.bytes_received = channel.bytes_received();
    progress.bytes_per_second = link.down_rate();
    last_progress = progress;
    if (o.on_progress) o.on_progress(progress);
  };
  const auto known_features = std::exchange(welcomed_features, std::nullopt);
  // The codec the welcome grants (none until then: requests before it go uncompressed).
  wire::codec compression = wire::codec::none;
  // Page bounds sized to the link (link_meter), asked afresh at each request; with no
  // byte bound configured the server's defaults apply.
  const bool sized = o.size_to_link && o.pull_page_bytes != 0;
  const auto page_bytes = [&] { return sized ? static_cast<std::uint32_t>(link.page_bytes(o.pull_page_bytes)) : o.pull_page_bytes; };
  // Granted by the welcome; until it comes, as the last connection's welcome granted.
  bool streamed = (known_features.value_or(0) & wire::k_feature_stream) != 0;
  clock::time_point asked_at{};    // when the request the next page answers was sent
  clock::time_point arrived_at{};  // when the last page arrived
  bool follows = false;            // the next page follows the last one unasked (a stream)
  std::uint64_t stream_pages = 0;  // the pages the streamed pull asked for (0: no bound)
  std::uint64_t stream_seen = 0;   // and those received so far
  const auto sent_request = [&](const wire::bytes& frame) {
    channel.send(frame);
    asked_at = clock::now();
    follows = false;
  };
  // Receives a page and times it: from the last page if it followed that one unasked,
  // else from its request less a round trip. `answers_pull`: the page answers a pull
  // (not a wait or prime), so it may be followed by the stream's next.
  const auto receive_page = [&](bool answers_pull) {
    auto page = expect<wire::changes_page>(channel.receive(wire::k_default_max_frame, compression), "changes");
    const auto now = clock::now();
    link.downloaded(channel.last_frame_bytes(), channel.last_plain_bytes(), now - (follows ? arrived_at : asked_at + link.rtt()));
    arrived_at = now;
    if (answers_pull) ++stream_seen;
    follows = answers_pull && streamed && page.more && page.scope_epoch == 0 && (stream_pages == 0 || stream_seen < stream_pages);
    return page;
  };

  std::uint64_t cursor = s.cursor();
  auto prime = s.prime();
  // Pulls leave out what the priority phase delivered until past its log position.
  // Each pull also says which scope epoch the store holds (docs/protocol.md, "Scopes").
  // Streamed, a pull asks for a few pages of the link's size and then asks again, so that
  // its pages follow the link; while pages still grow (the link not measured yet, or
  // faster than the pages so far), for one page; pages at their cap need no resizing and
  // stream to the end.
  const auto ask_pull = [&](std::uint64_t from) {
    const auto bytes = page_bytes();
    const std::uint64_t pages = !streamed || !sized                     ? 0
                                : link.pages_growing(o.pull_page_bytes) ? 1
                                : bytes < o.pull_page_bytes             ? link_meter::k_stream_pages
                                                                        : 0;
    stream_pages = pages;
    stream_seen = 0;
    sent_request(wire::make_frame(wire::pull{from, o.pull_page_changes, bytes,
                                             from < prime.spec.until ? prime.spec : wire::prime_spec{}, s.scope_epoch(), pages}));
  };
  const auto ask_prime = [&](std::uint64_t position) {
    sent_request(wire::make_frame(wire::prime{prime.spec, position, o.pull_page_changes, page_bytes()}));
  };
  channel.connect();
  wire::hello hello;
  hello.client_name = k_client_name;
  hello.device_id = o.device_id;
  hello.token = o.token;
  hello.node = s.node;
  hello.features = o.compress ? (wire::k_feature_zstd | wire::k_feature_deflate | wire::k_feature_zstd_stream) : 0;
  if (o.live_wait.count() > 0) hello.features |= wire::k_feature_wait;
  if (o.stream_pulls) hello.features |= wire::k_feature_stream;
  // Only an app that can keep a new token durably may be handed one.
  if (o.on_new_token) hello.features |= wire::k_feature_token_rotation;
  hello.app_version = o.app_version;
  const std::size_t outbox_at_start = local.outbox_size();
  hello.outbox = outbox_at_start;
  hello.quarantined = local.quarantined().size();
  hello.open_conflicts = local.conflict_count();
  const auto hello_sent = clock::now();
  channel.send(wire::make_frame(hello));
  // After a welcomed connection (a reconnect, the next sync) the first request goes with
  // the hello: its answer follows the welcome a round trip sooner. That is a batch pinned
  // by the connection before (resent exactly as it was, in the codec that welcome
  // granted) or, with nothing to push, the first pull or priority page; a priority phase
  // not begun waits, as it starts at the welcome's log head.
  enum class first_request { after_welcome, push, prime, pull };
  auto early = first_request::after_welcome;
  // When each batch on the way was sent, and its size on the wire and before it.
  struct flight {
    clock::time_point at;
    std::size_t wire = 0;
    std::size_t plain = 0;
  };
  std::deque<outbox_batch> pinned_at_hello;  // the pinned batches, the first sent early
  flight early_flight;
  // A batch can stay pinned after its outbox entries went (a purged record's): the push
  // goes first whenever one is pinned, so no pull goes early then.
  bool pinned_none = false;
  if (known_features) {
    try {
      for (auto& b : s.pinned_batches()) pinned_at_hello.push_back(std::move(b));
      pinned_none = pinned_at_hello.empty();
    } catch (const error&) {
      pinned_at_hello.clear();  // the push below meets the damage and says so
    }
  }
  if (const outbox_batch* first = pinned_at_hello.empty() ? nullptr : &pinned_at_hello.front();
      first && !first->frame.empty() &&
      (first->frame_codec == wire::codec::none || first->frame_codec == wire::codec_of(*known_features))) {
    early = first_request::push;
    channel.send(first->frame);
    early_flight = {clock::now(), first->frame.size(), first->payload.size()};
  } else if (known_features && pinned_none && outbox_at_start == 0 && hello.open_conflicts == 0) {
    if (prime.spec.until > 0 && !prime.done) {
      early = first_request::prime;
      ask_prime(prime.position);
    } else if (prime.spec.until > 0 || cursor > 0 || o.priority.empty()) {
      early = first_request::pull;
      ask_pull(cursor);
    }
  }
  const auto welcome = expect<wire::welcome>(channel.receive(wire::k_default_max_frame), "welcome");
  link.round_trip(clock::now() - hello_sent);
  welcomed_features = welcome.features;
  if ((welcome.features & wire::k_feature_token_rotation) && o.on_new_token) take_new_token(welcome.new_token, report);
  streamed = (welcome.features & wire::k_feature_stream) != 0;
  // The client's clock never runs behind the server's, nor far ahead of it: writes
  // stamped too far ahead are re-stamped before they are sent (docs/conflicts.md).
  s.clock.observe(hlc_stamp::make(welcome.server_time_ms, 0));
  s.correct_clock(welcome.server_time_ms, welcome.max_clock_ahead_ms);
  // The server grants at most one codec; a frame compressed otherwise is refused.
  compression = wire::codec_of(welcome.features);
  if (early == first_request::push && pinned_at_hello.front().frame_codec != wire::codec::none &&
      pinned_at_hello.front().frame_codec != compression) {
    // The server changed its codecs since the last connection: the batch sent early will
    // be refused. The next connection, knowing this welcome, sends it after its welcome.
    throw error(make_error_code(network_errc::connection_lost), "the server's compression changed since the last connection");
  }
  // Version 7: the server's compressed frames are one stream, read in order.
  if (compression == wire::codec::zstd && (welcome.features & wire::k_feature_zstd_stream)) channel.read_stream();
  progress.to_push = outbox_at_start;
  progress.to_pull = welcome.log_head > s.cursor() ? welcome.log_head - s.cursor() : 0;
  progress.expected = progress.held + progress.to_pull;
  last_progress = progress;

  // Push: the outbox in batches, oldest first; each acknowledged batch leaves the outbox.
  // Batches pinned by an earlier, interrupted sync go first, exactly as they were. Up to
  // k_push_window batches are on the way at once, so the store makes the next batch
  // while the server stores the last one (pipelining; docs/protocol.md). Each new batch
  // holds about half a second of the link (link_meter), so a cut loses little.
  const std::size_t batch_max = std::max<std::size_t>(1, std::min<std::size_t>(o.push_batch_changes, welcome.max_push_changes));
  // A batch's changes fit half a frame: compressing never lets a push past the limit.
  const std::size_t batch_cap = welcome.max_frame_bytes ? welcome.max_frame_bytes / 2 : wire::k_default_max_frame / 2;
  const auto batch_bytes = [&] { return o.size_to_link ? link.batch_bytes(batch_cap) : batch_cap; };
  bool resent_restamped = false;
  const auto push_outbox = [&] {
    std::deque<outbox_batch> unsent;
    std::deque<outbox_batch> in_flight;
    std::deque<flight> flights;
    if (early == first_request::push) {
      // The first push of this connection: its first batch went with the hello.
      early = first_request::after_welcome;
      unsent = std::move(pinned_at_hello);
      in_flight.push_back(std::move(unsent.front()));
      unsent.pop_front();
      flights.push_back(early_flight);
      ++report.batches;
    } else {
      for (auto& b : s.pinned_batches()) unsent.push_back(std::move(b));
    }
    clock::time_point last_ack{};
    bool outbox_done = false;
    // A batch that cannot be pinned (a damaged outbox entry, a full disk) ends the push,
    // but only once the batches already on the way are answered and acknowledged.
    std::exception_ptr pin_failed;
    const auto stop_pinning = [&] {
      pin_failed = std::current_exception();
      outbox_done = true;
    };
    for (;;) {
      while (in_flight.size() < k_push_window) {
        if (unsent.empty() && !outbox_done) {
          try {
            if (auto b = s.pin_batch(batch_max, compression, batch_bytes())) {
              unsent.push_back(std::move(*b));
            } else {
              outbox_done = true;
            }
          } catch (const error&) {
            stop_pinning();
          }
        }
        if (unsent.empty()) break;
        auto& batch = unsent.front();
        // Sent as pinned; framed again only when pinned by an older build, or compressed
        // with a codec this server did not agree to.
        const bool as_pinned =
            !batch.frame.empty() && (batch.frame_codec == wire::codec::none || batch.frame_codec == compression);
        const auto frame =
            as_pinned ? std::move(batch.frame) : wire::make_frame(wire::message_type::push, batch.payload, compression);
        if (welcome.max_frame_bytes && frame.size() > welcome.max_frame_bytes) {
          throw error(make_error_code(protocol_errc::limit_exceeded),
                      "a push batch of " + std::to_string(batch.change_count) +
                          " changes is larger than the server accepts; lower push_batch_changes");
        }
        channel.send(frame);
        flights.push_back({clock::now(), frame.size(), batch.payload.size()});
        ++report.batches;
        in_flight.push_back(std::move(batch));
        unsent.pop_front();
      }
      if (in_flight.empty()) break;
      const auto result = expect<wire::push_result>(channel.receive(wire::k_default_max_frame, compression), "push_result");
      {
        // The batch went up from when it was sent, or from the last acknowledgement if it
        // waited behind that batch.
        const auto now = clock::now();
        const auto& f = flights.front();
        link.uploaded(f.wire, f.plain, now - std::max(f.at, last_ack));
        last_ack = now;
        flights.pop_front();
      }
      const auto& sent = in_flight.front();
      if (result.batch != sent.id) {
        throw protocol_error(protocol_errc::unexpected_message, "the server acknowledged a different push batch");
      }
      // Every change is either stored or refused (a server_only refusal is of a change
      // stored without those fields); a refusal names a change of the batch.
      const auto stored_without = static_cast<std::size_t>(
          std::count_if(result.refused.begin(), result.refused.end(), [](const wire::refusal& r) {
            return r.code == static_cast<std::uint16_t>(protocol_errc::server_only);
          }));
      if (result.accepted + result.refused.size() - stored_without != sent.change_count ||
          (!result.refused.empty() && result.refused.back().index >= sent.change_count)) {
        throw protocol_error(protocol_errc::malformed, "the server's push_result does not account for the batch sent");
      }
      // The next batch is pinned in the acknowledgement's transaction: one commit (and one
      // fsync) where there were two. Either way the pin is durable before the batch is sent.
      bool pinning = false;
      std::optional<outbox_batch> pinned;  // queued only once its transaction committed
      store::impl::ack_result acked;
      try {
        acked = s.in_transaction([&] {
          const auto a = s.ack_batch(sent, result.refused);
          // The batch's changes follow the cursor directly (their sequence numbers are
          // consecutive, given in one transaction): no other device's change lies
          // between, so the store holds the log up to the batch's last, and the pull
          // after the push need not read this device's own changes back.
          if (result.accepted > 0 && result.first_seq == s.cursor() + 1 && result.last_seq >= result.first_seq &&
              result.last_seq - result.first_seq + 1 == result.accepted) {
            s.set_state("cursor", std::to_string(result.last_seq));
          }
          // Changes re-stamped after a clock_ahead refusal are back in the outbox: send
          // them in this sync too, once.
          if (a.requeued > 0 && !resent_restamped && !pin_failed) {
            resent_restamped = true;
            outbox_done = false;
          }
          if (unsent.empty() && !outbox_done) {
            pinning = true;
            pinned = s.pin_batch(batch_max, compression, batch_bytes());
            if (!pinned) outbox_done = true;
          }
          return a;
        });
        if (pinned) unsent.push_back(std::move(*pinned));
      } catch (const error&) {
        // A pin that failed undid the acknowledgement with it: the acknowledgement is
        // stored alone, as the server has the batch.
        if (!pinning) throw;
        stop_pinning();
        acked = s.ack_batch(sent, result.refused);
      }
      s.checkpoint_after_purge();
      report.pushed += result.accepted;
      report.quarantined += result.refused.size() - acked.requeued - acked.reverted;
      report.reverted += acked.reverted;
      progress.pushed += result.accepted;
      in_flight.pop_front();
      tell();
    }
    if (pin_failed) std::rethrow_exception(pin_failed);
  };
  // Conflicts the app's resolvers settle go out with this push (those opened by the
  // pull below, with the push after it).
  report.resolved += local.run_resolvers();
  push_outbox();

  // Pull: pages after the cursor until the server has no more; each page is applied
  // together with its new cursor, so an interruption resumes exactly where it stopped.
  // The next page is asked for before this one is applied, so the server reads it while
  // the store writes (pipelining; docs/protocol.md, "The conversation").
  cursor = s.cursor();  // a push that followed the cursor moved it
  // Progress of a page: what came, and what the server says is left. `caught_up`: the
  // page ends a pull (not a priority phase) with nothing more.
  const auto count_page = [&](const wire::changes_page& page, bool caught_up) {
    const auto n = page.items.size() + page.backfill.size();
    report.pulled += n;
    ++report.pages;
    progress.pulled += n;
    progress.to_pull = progress.pulled + page.remaining_changes;
    progress.held += n;
    progress.expected = progress.held + page.remaining_changes;
    if (o.on_progress) {
      for (const auto& item : page.items) progress.pulled_bytes += wire::page_item_bytes(item);
      for (const auto& item : page.backfill) progress.pulled_bytes += wire::page_item_bytes(item);
      progress.to_pull_bytes = progress.pulled_bytes + page.remaining_bytes;
    }
    progress.time_left = std::chrono::seconds(-1);
    if (link.down_rate() > 0) {
      const double seconds = static_cast<double>(page.remaining_bytes) / link.down_ratio() / link.down_rate();
      progress.time_left = std::chrono::seconds(static_cast<std::int64_t>(std::ceil(seconds)));
    }
    if (watched) {
      s.set_state(k_held_key, std::to_string(caught_up ? 0 : progress.held));
    }
  };

  // Prioritised initial sync (docs/protocol.md, "Prioritised initial sync"): a store
  // that has pulled nothing yet first receives the records its tiers pick, as of the log
  // head now; then the log without them.
  if (prime.spec.until == 0 && cursor == 0 && !o.priority.empty() && welcome.log_head > 0) {
    s.begin_prime(prime_spec_of(o.priority, welcome.log_head));
    prime = s.prime();
  }
  if (prime.spec.until > 0 && !prime.done) {
    if (early != first_request::prime) ask_prime(prime.position);
    for (;;) {
      const auto page = receive_page(false);
      if (page.more) ask_prime(page.next_cursor);  // pipelined, as pulls are
      report.conflicts += s.apply_prime_page(page);
      report.primed += page.items.size();
      count_page(page, false);
      if (!page.more) break;
      tell();
    }
    prime.done = true;
  }
  progress.priority_ready = prime.spec.until > 0 && prime.done;
  if (progress.priority_ready) tell();
  // Applies a page; the next one, when there is more, comes first (asked for now, unless
  // the stream sends it unasked), but after a page carrying purges or backfilled records
  // only once it is stored: the pull's scope epoch tells the server it was. Coming first,
  // the next page is received and decoded on this thread while the store applies this
  // one on another (apply_aside). Returns the next page, if there is one.
  const auto take = [&](const wire::changes_page& page) -> std::optional<wire::changes_page> {
    std::optional<wire::changes_page> next;
    std::exception_ptr lost;  // the next page did not come: this one still counts
    if (page.more && page.scope_epoch == 0) {
      if (!follows) ask_pull(page.next_cursor);
      report.conflicts += apply_aside([&] { return s.apply_page(page); }, [&] {
        try {
          next = receive_page(true);
        } catch (...) {
          lost = std::current_exception();
        }
      });
    } else {
      report.conflicts += s.apply_page(page);
    }
    count_page(page, !page.more);
    tell();
    cursor = page.next_cursor;
    if (lost) std::rethrow_exception(lost);
    if (page.more && !next) {
      ask_pull(page.next_cursor);
      next = receive_page(true);
    }
    return next;
  };
  bool waited = false;
  if (early != first_request::pull) ask_pull(cursor);
  for (auto page = std::optional(receive_page(true));;) {
    if ((page = take(*page))) continue;
    // Up to date. Live mode: wait, once, for what other devices push next.
    if (waited || o.live_wait.count() <= 0 || !(welcome.features & wire::k_feature_wait)) break;
    waited = true;
    const auto max_wait = static_cast<std::uint32_t>(std::min<std::int64_t>(o.live_wait.count(), 0xffffffff));
    sent_request(wire::make_frame(wire::wait{cursor, max_wait, o.pull_page_changes, page_bytes()}));
    const auto answer =
        expect<wire::changes_page>(channel.receive_after(o.live_wait, wire::k_default_max_frame, compression), "changes");
    arrived_at = clock::now();
    report.woken = !answer.items.empty();
    if (!(page = take(answer))) break;
  }
  if (const auto resolved = local.run_resolvers(); resolved > 0) {
    report.resolved += resolved;
    push_outbox();
  }
  report.purged += s.purged_total - purged_before;
  report.refused_out_of_scope += s.refused_out_of_scope_total - refused_before;
  channel.close();
}

}  // namespace caresync
