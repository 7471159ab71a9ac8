// Writes the seed corpus of the frame fuzz target (frame_fuzz.cpp gives the input
// layout): real messages of every type, encoded by the library (protocol version 7:
// numbered and version 6 batches, pages of change blocks holding every kind of change),
// as uncompressed frames and as deflate and zstd frames, a few frames in one input,
// compression bombs that stop at the limit, and stored changes. tests/fuzz/corpus/ was
// made by it:
//
//   caresync-fuzz-seeds tests/fuzz/corpus
//
// CTest also runs it into the build directory and replays what it wrote, so the seeds of
// this build's encoder are replayed even when the checked-in corpus is older.
//
// Empties nothing: files of the same names are overwritten, others are left alone.

#include <caresync/protocol/change.hpp>
#include <caresync/protocol/codec.hpp>
#include <caresync/protocol/errors.hpp>
#include <caresync/protocol/frame.hpp>
#include <caresync/protocol/messages.hpp>

#include <zlib.h>
#include <zstd.h>

#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace {

using namespace caresync;
using wire::bytes;

namespace fs = std::filesystem;

// The mode byte (frame_fuzz.cpp): the agreed codec, or a stored change.
constexpr std::uint8_t k_mode_none = 0;
constexpr std::uint8_t k_mode_deflate = 1;
constexpr std::uint8_t k_mode_zstd = 2;
constexpr std::uint8_t k_mode_stored = 3;

std::uint8_t mode_of(wire::codec c) {
  switch (c) {
    case wire::codec::deflate: return k_mode_deflate;
    case wire::codec::zstd: return k_mode_zstd;
    case wire::codec::none: break;
  }
  return k_mode_none;
}

record_id id_of(std::uint8_t seed) {
  record_id r;
  for (std::size_t i = 0; i < r.bytes.size(); ++i) r.bytes[i] = static_cast<std::uint8_t>(seed + 17 * i);
  r.bytes[6] = static_cast<std::uint8_t>((r.bytes[6] & 0x0f) | 0x40);  // RFC 9562 version 4
  r.bytes[8] = static_cast<std::uint8_t>((r.bytes[8] & 0x3f) | 0x80);
  return r;
}

version ver(std::uint64_t wall_ms, std::uint16_t counter, node_id node) {
  return version{hlc_stamp::make(wall_ms, counter), node};
}

constexpr std::uint64_t k_t0 = 1'700'000'000'000ULL;

/// An edit with every value kind.
change plain_edit() {
  change c;
  c.collection = "visit";
  c.id = id_of(1);
  c.ver = ver(k_t0, 1, 0x1122334455667788ULL);
  c.fields = {{"absent", value{}},
              {"minutes", value{std::int64_t{-45}}},
              {"weight_kg", value{72.5}},
              {"note", value{std::string("client was home")}},
              {"photo_sha", value{blob{{0xde, 0xad, 0xbe, 0xef}}}}};
  return c;
}

/// An edit of a keep_both field and of append and set_union fields.
change kept_and_items_edit() {
  change c;
  c.collection = "visit";
  c.id = id_of(2);
  c.ver = ver(k_t0, 9, 0x0102030405060708ULL);
  c.fields = {{"note", value{std::string("second opinion")}}};
  c.kept = {kept_field{"note", {ver(k_t0, 1, 7), ver(k_t0, 2, 8)}}};
  c.items = {item_op{"log", item_policy::append, {"phoned the GP"}, {}},
             item_op{"tags", item_policy::set_union, {"diabetes", "mobility"}, {ver(k_t0, 3, 9)}}};
  return c;
}

/// A delete that says which versions it saw.
change covering_delete() {
  change c;
  c.collection = "referral";
  c.id = id_of(3);
  c.ver = ver(k_t0 + 5, 0, 42);
  c.kind = change_kind::remove;
  c.covers = std::vector<version>{ver(k_t0, 1, 7), ver(k_t0 + 1, 0, 42)};
  return c;
}

/// A delete of a version 2 peer: no covers.
change plain_delete() {
  change c;
  c.collection = "referral";
  c.id = id_of(4);
  c.ver = ver(k_t0 + 6, 0, 43);
  c.kind = change_kind::remove;
  return c;
}

/// A revivable delete (version 6): a later edit may bring the record back.
change revivable_delete() {
  change c;
  c.collection = "visit";
  c.id = id_of(5);
  c.ver = ver(k_t0 + 7, 0, 0x1122334455667788ULL);
  c.kind = change_kind::remove;
  c.covers = std::vector<version>{ver(k_t0, 1, 0x1122334455667788ULL)};
  c.revivable = true;
  return c;
}

/// An edit that dismisses the revival of a revivable delete (version 6).
change dismissal() {
  change c;
  c.collection = "visit";
  c.id = id_of(5);
  c.ver = ver(k_t0 + 8, 0, 0x0102030405060708ULL);
  c.fields = {{"status", value{std::string("closed")}}};
  c.dismisses = ver(k_t0 + 7, 0, 0x1122334455667788ULL);
  return c;
}

/// Every kind of change the seeds hold.
std::vector<change> every_kind() {
  return {plain_edit(), kept_and_items_edit(), covering_delete(), plain_delete(), revivable_delete(), dismissal()};
}

wire::prime_spec example_spec() {
  wire::prime_spec s;
  s.until = 1234;
  s.tiers = {wire::prime_tier{"client", wire::prime_match::equals, "status", value{std::string("active")}},
             wire::prime_tier{"visit", wire::prime_match::at_least, "date", value{std::string("2026-11-16")}},
             wire::prime_tier{"visit", wire::prime_match::at_least, "minutes", value{std::int64_t{30}}},
             wire::prime_tier{"measure", wire::prime_match::at_least, "weight_kg", value{60.5}},
             wire::prime_tier{"org_unit", wire::prime_match::all, "", value{}}};
  return s;
}

/// A push of a store's 10th batch (version 7: sent as the number; no node per change).
wire::push example_push() {
  wire::push p;
  p.batch = numbered_batch(10);
  p.changes = every_kind();
  return p;
}

wire::changes_page example_page() {
  wire::changes_page page;
  std::uint64_t seq = 100;
  for (const auto& c : every_kind()) page.items.push_back(sequenced_change{seq++, c});
  page.next_cursor = 200;
  page.more = true;
  page.remaining_changes = 57;
  page.remaining_bytes = 6100;
  return page;
}

/// A push large enough (>= k_compress_threshold) for make_frame to compress it.
wire::push large_push() {
  wire::push p;
  p.batch = numbered_batch(11);
  for (std::uint8_t i = 0; i < 6; ++i) {
    change c = plain_edit();
    c.id = id_of(static_cast<std::uint8_t>(20 + i));
    c.ver = ver(k_t0 + i, i, 0x1122334455667788ULL);
    c.fields.push_back({"summary", value{std::string("home visit, medication checked, next visit in two weeks")}});
    p.changes.push_back(std::move(c));
  }
  return p;
}

wire::changes_page large_page() {
  wire::changes_page page;
  const auto p = large_push();
  std::uint64_t seq = 500;
  for (const auto& c : p.changes) page.items.push_back(sequenced_change{seq++, c});
  page.next_cursor = seq;
  return page;
}

bytes header(std::uint8_t type_byte, std::size_t length) {
  const auto n = static_cast<std::uint32_t>(length);
  return {static_cast<std::uint8_t>(n), static_cast<std::uint8_t>(n >> 8), static_cast<std::uint8_t>(n >> 16),
          static_cast<std::uint8_t>(n >> 24), type_byte};
}

bytes deflate(const bytes& plain) {
  uLongf size = compressBound(static_cast<uLong>(plain.size()));
  bytes out(size);
  if (compress2(out.data(), &size, plain.data(), static_cast<uLong>(plain.size()), 9) != Z_OK) {
    throw std::runtime_error("zlib could not compress a seed");
  }
  out.resize(size);
  return out;
}

bytes zstd(const bytes& plain) {
  bytes out(ZSTD_compressBound(plain.size()));
  const std::size_t n = ZSTD_compress(out.data(), out.size(), plain.data(), plain.size(), 19);
  if (ZSTD_isError(n)) throw std::runtime_error("zstd could not compress a seed");
  out.resize(n);
  return out;
}

/// A frame compressed whatever its size (make_frame leaves small payloads alone).
bytes compressed_frame(wire::message_type type, const bytes& payload, wire::codec c) {
  const bytes packed = c == wire::codec::zstd ? zstd(payload) : deflate(payload);
  const auto flag = c == wire::codec::zstd ? wire::k_zstd_flag : wire::k_deflate_flag;
  bytes out = header(static_cast<std::uint8_t>(static_cast<std::uint8_t>(type) | flag), packed.size());
  out.insert(out.end(), packed.begin(), packed.end());
  return out;
}

class corpus_writer {
 public:
  explicit corpus_writer(fs::path dir) : dir_(std::move(dir)) { fs::create_directories(dir_); }

  void write(const std::string& name, std::uint8_t mode, std::initializer_list<bytes> parts) {
    bytes input{mode};
    for (const auto& p : parts) input.insert(input.end(), p.begin(), p.end());
    std::ofstream out(dir_ / name, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(input.data()), static_cast<std::streamsize>(input.size()));
    if (!out) throw std::runtime_error("cannot write " + (dir_ / name).string());
    ++count_;
  }

  /// `m` as the library frames it with codec `c` (compressed only when large enough).
  void frame(const std::string& name, const wire::message& m, wire::codec c = wire::codec::none) {
    write(name, mode_of(c), {wire::make_frame(m, c)});
  }

  int count() const { return count_; }

 private:
  fs::path dir_;
  int count_ = 0;
};

void write_corpus(corpus_writer& w) {
  using wire::codec;
  using wire::message_type;

  wire::hello hello;
  hello.client_name = "caresync-tablet/0.1";
  hello.device_id = "tablet-17";
  hello.token = "not-a-real-token";
  hello.node = 0x0a0b0c0d0e0f1011ULL;
  hello.features = wire::k_feature_deflate | wire::k_feature_zstd | wire::k_feature_wait;
  hello.app_version = "field-app 2.3";
  hello.outbox = 12;
  hello.quarantined = 1;
  hello.open_conflicts = 2;
  w.frame("hello", hello);

  wire::welcome welcome;
  welcome.server_name = "caresync-server/0.1";
  welcome.server_time_ms = k_t0;
  welcome.features = wire::k_feature_zstd | wire::k_feature_wait;
  welcome.max_frame_bytes = wire::k_default_max_frame;
  welcome.max_push_changes = 5000;
  welcome.log_head = 987654;
  welcome.max_clock_ahead_ms = 300000;
  w.frame("welcome", welcome);

  w.frame("push", example_push());
  w.frame("push-empty", wire::push{numbered_batch(12), {}});
  {
    // A batch a version 6 store pinned before it was upgraded: 0, then its 16-byte id.
    auto pinned = example_push();
    pinned.batch = id_of(10);
    w.frame("push-version6-batch", pinned);
  }

  wire::push_result result;
  result.batch = numbered_batch(10);
  result.accepted = 2;
  result.first_seq = 101;
  result.last_seq = 102;
  result.refused = {wire::refusal{1, static_cast<std::uint16_t>(protocol_errc::limit_exceeded), "visit.note is too long"},
                    wire::refusal{3, static_cast<std::uint16_t>(protocol_errc::clock_ahead), "stamped ahead"}};
  w.frame("push_result-refusals", result);
  w.frame("push_result-replayed", wire::push_result{numbered_batch(10), 4, 101, 104, true, {}});
  w.frame("push_result-version6-batch", wire::push_result{id_of(10), 4, 101, 104, false, {}});

  w.frame("pull", wire::pull{4711, 1000, 1u << 20, {}});
  w.frame("pull-max-pages", wire::pull{4711, 1000, 1u << 20, {}, 0, 8});  // version 7
  w.frame("pull-prime-spec", wire::pull{4711, 0, 0, example_spec()});
  w.frame("prime", wire::prime{example_spec(), 17, 500, 1u << 18});

  w.frame("changes", example_page());
  w.frame("changes-empty", wire::changes_page{{}, 3, false, 0, 0});
  {
    // Version 5: a page with purges and backfilled changes, and a pull with a scope epoch.
    auto scoped = example_page();
    scoped.scope_epoch = 12;
    scoped.purges = {wire::scope_purge{"visit", id_of(20)}, wire::scope_purge{"client", id_of(21)}};
    scoped.backfill = example_page().items;
    std::swap(scoped.backfill.front(), scoped.backfill.back());  // seqs going down: negative deltas
    w.frame("changes-scope", scoped);
    w.frame("pull-scope-epoch", wire::pull{4711, 0, 0, {}, 12, 1});
  }

  w.frame("error", wire::error{static_cast<std::uint16_t>(protocol_errc::server_busy), true, "The server is busy; try again in a minute."});
  w.frame("ping", wire::ping{0x0123456789abcdefULL});
  w.frame("pong", wire::pong{0x0123456789abcdefULL});
  w.frame("wait", wire::wait{4711, 25000, 1000, 1u << 20});

  // Compressed by make_frame, as the reference sender does (payloads >= 512 bytes).
  w.frame("push-large-deflate", large_push(), codec::deflate);
  w.frame("push-large-zstd", large_push(), codec::zstd);
  w.frame("changes-large-deflate", large_page(), codec::deflate);
  w.frame("changes-large-zstd", large_page(), codec::zstd);
  // Small payloads compressed anyway: a receiver must accept any size.
  w.write("push-small-deflate", k_mode_deflate, {compressed_frame(message_type::push, wire::encode(example_push()), codec::deflate)});
  w.write("push-small-zstd", k_mode_zstd, {compressed_frame(message_type::push, wire::encode(example_push()), codec::zstd)});
  w.write("prime-zstd", k_mode_zstd, {compressed_frame(message_type::prime, wire::encode(wire::prime{example_spec(), 0, 0, 0}), codec::zstd)});
  w.write("ping-deflate", k_mode_deflate, {compressed_frame(message_type::ping, wire::encode(wire::ping{7}), codec::deflate)});
  // A frame compressed with a codec that was not agreed (malformed).
  w.write("push-deflate-not-agreed", k_mode_zstd, {compressed_frame(message_type::push, wire::encode(example_push()), codec::deflate)});
  // Bombs: 2 MiB of zeros, twice the fuzzing limit; refused when inflating passes the
  // limit (deflate) or from the stated size (zstd).
  const bytes zeros(2u << 20, 0);
  w.write("bomb-deflate", k_mode_deflate, {compressed_frame(message_type::push, zeros, codec::deflate)});
  w.write("bomb-zstd", k_mode_zstd, {compressed_frame(message_type::push, zeros, codec::zstd)});

  // A conversation's frames in one input, as a connection reads them.
  w.write("conversation-client", k_mode_none,
          {wire::make_frame(hello), wire::make_frame(example_push()), wire::make_frame(wire::pull{4711, 0, 0, example_spec()}),
           wire::make_frame(wire::ping{1})});
  w.write("conversation-server", k_mode_zstd,
          {wire::make_frame(welcome), wire::make_frame(wire::push_result{numbered_batch(10), 4, 101, 104, false, {}}),
           wire::make_frame(large_page(), codec::zstd), wire::make_frame(wire::pong{1})});

  // enroll (12) and enrolled (13), written by hand: u16 version, then texts
  // (docs/protocol.md, "Enrollment"). A decoder that does not know the types refuses
  // them from the header.
  const auto text = [](const std::string& s) {
    bytes out{static_cast<std::uint8_t>(s.size())};  // every text here is under 128 bytes
    out.insert(out.end(), s.begin(), s.end());
    return out;
  };
  const auto by_hand = [](std::uint8_t type, std::initializer_list<bytes> fields) {
    bytes payload{0x01};  // the marker byte
    for (const auto& f : fields) payload.insert(payload.end(), f.begin(), f.end());
    bytes out = header(type, payload.size());
    out.insert(out.end(), payload.begin(), payload.end());
    return out;
  };
  w.write("enroll", k_mode_none,
          {by_hand(12, {{static_cast<std::uint8_t>(wire::k_protocol_version), 0x00}, text("caresync-tablet/0.1"),
                        text("7KQ2-9XTR"), text("field-app 2.3")})});
  w.write("enrolled", k_mode_none,
          {by_hand(13, {text("tablet-17"), text("not-a-real-token"), text("u-1002"), text("Amina Diallo")})});

  // Stored changes (outboxes, the server's log).
  w.write("stored-edit", k_mode_stored, {wire::encode_change(plain_edit())});
  w.write("stored-kept-items", k_mode_stored, {wire::encode_change(kept_and_items_edit())});
  w.write("stored-delete-covers", k_mode_stored, {wire::encode_change(covering_delete())});
  w.write("stored-delete", k_mode_stored, {wire::encode_change(plain_delete())});
  w.write("stored-revivable-delete", k_mode_stored, {wire::encode_change(revivable_delete())});
  w.write("stored-dismissal", k_mode_stored, {wire::encode_change(dismissal())});
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\nWrites the frame fuzz target's seed corpus into DIR.\n", argv[0]);
    return 2;
  }
  try {
    corpus_writer w{fs::path(argv[1])};
    write_corpus(w);
    std::printf("wrote %d seeds to %s\n", w.count(), argv[1]);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cannot write the seed corpus: %s\n", e.what());
    return 1;
  }
  return 0;
}
