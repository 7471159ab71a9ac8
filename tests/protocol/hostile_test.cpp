// Hostile input: every bad byte sequence ends in caresync::protocol_error, never a
// crash, a hang, or an allocation sized by a length from the wire.
#include "wire_examples.hpp"

#include <caresync/protocol/codec.hpp>
#include <caresync/protocol/errors.hpp>
#include <caresync/protocol/frame.hpp>

#include <catch2/catch.hpp>

#include <zlib.h>
#include <zstd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <random>
#include <string>
#include <vector>

using namespace caresync;
using wire::bytes;
using wire::message_type;

// The largest single allocation made while a test measures (largest_allocation_in). This
// replaces the global operator new of the whole test program; it only observes. Not under
// AddressSanitizer, whose own operator new would meet ours (the checks are then skipped).
#if defined(__SANITIZE_ADDRESS__)
#define CARESYNC_PROBE_ALLOCATIONS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CARESYNC_PROBE_ALLOCATIONS 0
#endif
#endif
#ifndef CARESYNC_PROBE_ALLOCATIONS
#define CARESYNC_PROBE_ALLOCATIONS 1
#endif

namespace {
constexpr bool k_probing_allocations = CARESYNC_PROBE_ALLOCATIONS;
std::atomic<bool> g_measuring{false};
std::atomic<std::size_t> g_largest{0};
}  // namespace

#if CARESYNC_PROBE_ALLOCATIONS
void* operator new(std::size_t n) {
  if (g_measuring.load(std::memory_order_relaxed)) {
    std::size_t seen = g_largest.load(std::memory_order_relaxed);
    while (n > seen && !g_largest.compare_exchange_weak(seen, n, std::memory_order_relaxed)) {
    }
  }
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
// Not inlined: GCC would see free() meet a pointer from operator new and warn.
[[gnu::noinline]] void operator delete(void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, std::size_t) noexcept { std::free(p); }
#endif

namespace {

/// Runs `f` and returns the protocol_errc it threw; fails the test if it threw nothing
/// or anything else.
template <class F>
protocol_errc thrown_code(F&& f) {
  try {
    f();
  } catch (const protocol_error& e) {
    return static_cast<protocol_errc>(e.code().value());
  } catch (const std::exception& e) {
    FAIL("threw something other than protocol_error: " << e.what());
  }
  FAIL("did not throw");
  return protocol_errc{};
}

/// The largest single allocation `f` made (measured on this thread's calls, and any other
/// thread's meanwhile: the tests run on one thread).
template <class F>
std::size_t largest_allocation_in(F&& f) {
  g_largest = 0;
  g_measuring = true;
  f();
  g_measuring = false;
  return g_largest.load();
}

protocol_errc decode_code(message_type type, const bytes& payload) {
  return thrown_code([&] { (void)wire::decode(type, payload); });
}

bytes concat(std::initializer_list<bytes> parts) {
  bytes out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

bytes varint(std::uint64_t v) {
  bytes out;
  while (v >= 0x80) {
    out.push_back(static_cast<std::uint8_t>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<std::uint8_t>(v));
  return out;
}

const bytes k_id(16, 0xaa);

wire::frame_header header_of(const bytes& frame, std::uint32_t max = wire::k_default_max_frame) {
  return wire::parse_header(std::span<const std::uint8_t, wire::k_frame_header_size>(frame.data(), 5), max);
}

bytes zlib_compress(const bytes& plain) {
  uLongf size = compressBound(static_cast<uLong>(plain.size()));
  bytes out(size);
  REQUIRE(compress2(out.data(), &size, plain.data(), static_cast<uLong>(plain.size()), 9) == Z_OK);
  out.resize(size);
  return out;
}

wire::frame_header compressed_header(message_type type, std::size_t length) {
  wire::frame_header h;
  h.type = type;
  h.compression = wire::codec::deflate;
  h.length = static_cast<std::uint32_t>(length);
  return h;
}

}  // namespace

TEST_CASE("hostile: every truncation of a valid push is refused", "[protocol][security]") {
  const auto payload = wire::encode(testing::example_push());
  REQUIRE(payload.size() > 60);
  for (std::size_t n = 0; n < payload.size(); ++n) {
    const bytes prefix(payload.begin(), payload.begin() + static_cast<std::ptrdiff_t>(n));
    INFO("prefix of " << n << " bytes");
    CHECK(decode_code(message_type::push, prefix) == protocol_errc::malformed);
  }
  CHECK(wire::decode(message_type::push, payload) == wire::message{testing::example_push()});
}

TEST_CASE("hostile: every truncation of a stored change is refused", "[protocol][security]") {
  const auto stored = wire::encode_change(testing::example_push().changes.front());
  for (std::size_t n = 0; n < stored.size(); ++n) {
    const bytes prefix(stored.begin(), stored.begin() + static_cast<std::ptrdiff_t>(n));
    CHECK(thrown_code([&] { (void)wire::decode_change(prefix); }) == protocol_errc::malformed);
  }
}

TEST_CASE("hostile: the marker byte must be 0x01", "[protocol][security]") {
  CHECK(decode_code(message_type::ping, {0x00, 1, 0, 0, 0, 0, 0, 0, 0}) == protocol_errc::malformed);
  CHECK(decode_code(message_type::ping, {0x02, 1, 0, 0, 0, 0, 0, 0, 0}) == protocol_errc::malformed);
  CHECK(decode_code(message_type::ping, {}) == protocol_errc::malformed);
  CHECK(decode_code(message_type::ping, {0x01}) == protocol_errc::malformed);
  CHECK(wire::decode(message_type::ping, bytes{0x01, 1, 0, 0, 0, 0, 0, 0, 0}) == wire::message{wire::ping{1}});
  auto stored = wire::encode_change(testing::example_push().changes.front());
  stored[0] = 0x00;
  CHECK(thrown_code([&] { (void)wire::decode_change(stored); }) == protocol_errc::malformed);
}

TEST_CASE("hostile: varints", "[protocol][security]") {
  // pull's two u32, empty prime spec and scope epoch 0 (version 5) after the cursor
  const bytes tail{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  SECTION("the longest valid varint is accepted") {
    const auto m = wire::decode(message_type::pull,
                                concat({{0x01}, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, tail}));
    CHECK(std::get<wire::pull>(m).cursor == 0xffffffffffffffffULL);
  }
  SECTION("a redundant but short enough encoding is read by value") {
    const auto m = wire::decode(message_type::pull, concat({{0x01}, {0x85, 0x80, 0x00}, tail}));
    CHECK(std::get<wire::pull>(m).cursor == 5);
  }
  SECTION("more than 10 bytes") {
    CHECK(decode_code(message_type::pull,
                      concat({{0x01}, bytes(10, 0x80), {0x00}, tail})) == protocol_errc::malformed);
    CHECK(decode_code(message_type::pull, concat({{0x01}, bytes(40, 0xff), tail})) == protocol_errc::malformed);
  }
  SECTION("10 bytes that overflow 64 bits") {
    CHECK(decode_code(message_type::pull,
                      concat({{0x01}, bytes(9, 0xff), {0x02}, tail})) == protocol_errc::malformed);
    CHECK(decode_code(message_type::pull,
                      concat({{0x01}, bytes(9, 0x80), {0x7f}, tail})) == protocol_errc::malformed);
  }
  SECTION("a varint cut off by the end of the payload") {
    CHECK(decode_code(message_type::pull, {0x01, 0x80, 0x80}) == protocol_errc::malformed);
  }
}

TEST_CASE("hostile: counts and lengths beyond the payload throw before allocating", "[protocol][security]") {
  const std::uint64_t huge = std::uint64_t{1} << 40;
  SECTION("a push claiming 2^40 changes") {
    CHECK(decode_code(message_type::push, concat({{0x01}, k_id, varint(huge), {0, 0, 0, 0}})) ==
          protocol_errc::malformed);
  }
  SECTION("a page claiming 2^40 changes") {
    CHECK(decode_code(message_type::changes, concat({{0x01}, {0x00, 0x00, 0x00, 0x00}, varint(huge), {0, 0}})) ==
          protocol_errc::malformed);
  }
  SECTION("an error message text of 2^40 bytes") {
    CHECK(decode_code(message_type::error, concat({{0x01, 0x01, 0x00, 0x00}, varint(huge), {'a', 'b'}})) ==
          protocol_errc::malformed);
  }
  SECTION("a push_result claiming 2^40 refusals") {
    // marker, batch id, accepted u32, first and last seq, replayed, refused count
    CHECK(decode_code(message_type::push_result, concat({{0x01}, k_id, {0, 0, 0, 0}, {0, 0, 0}, varint(huge), {0, 0}})) ==
          protocol_errc::malformed);
  }
  SECTION("the largest u64 as a count") {
    CHECK(decode_code(message_type::push, concat({{0x01}, k_id, varint(~std::uint64_t{0})})) ==
          protocol_errc::malformed);
  }
  SECTION("a change claiming 2^40 fields, and a bytes value of 2^40") {
    change c;
    c.collection = "visit";
    auto stored = wire::encode_change(c);
    stored.pop_back();  // the field count 0
    const auto many_fields = concat({stored, varint(huge), {0x01, 'a', 0x00}});
    CHECK(thrown_code([&] { (void)wire::decode_change(many_fields); }) == protocol_errc::malformed);
    const auto big_blob = concat({stored, {0x01, 0x01, 'a', 0x04}, varint(huge), {1, 2, 3}});
    CHECK(thrown_code([&] { (void)wire::decode_change(big_blob); }) == protocol_errc::malformed);
  }
  SECTION("a count one more than the items present") {
    auto p = testing::example_push();
    auto payload = wire::encode(p);
    REQUIRE(payload[17] == 0x01);  // change count after the marker and the batch id
    payload[17] = 0x02;
    CHECK(decode_code(message_type::push, payload) == protocol_errc::malformed);
  }
}

TEST_CASE("hostile: a push_result refusing a change twice or out of order is refused", "[protocol][security]") {
  const auto refusal = [](std::uint64_t index) { return concat({varint(index), {0x06, 0x00}, {0x01, 'x'}, {0x00}}); };
  const auto result = [&](std::initializer_list<bytes> refusals) {
    bytes out = concat({{0x01}, k_id, {0, 0, 0, 0}, {0, 0, 0}, varint(refusals.size())});
    for (const auto& r : refusals) out.insert(out.end(), r.begin(), r.end());
    return out;
  };
  const auto decoded = wire::decode(message_type::push_result, result({refusal(0), refusal(5)}));
  REQUIRE(std::holds_alternative<wire::push_result>(decoded));
  CHECK(std::get<wire::push_result>(decoded).refused.size() == 2);
  CHECK(decode_code(message_type::push_result, result({refusal(5), refusal(5)})) == protocol_errc::malformed);
  CHECK(decode_code(message_type::push_result, result({refusal(5), refusal(2)})) == protocol_errc::malformed);
  CHECK(decode_code(message_type::push_result, result({refusal(std::uint64_t{1} << 32)})) == protocol_errc::malformed);
}

TEST_CASE("hostile: out-of-range bytes in typed fields", "[protocol][security]") {
  SECTION("bool byte 2") {
    auto payload = wire::encode(wire::push_result{record_id{}, 1, 1, 1, true, {}});
    payload.pop_back();  // the refused count 0: the replayed flag is last
    REQUIRE(payload.back() == 0x01);
    payload.back() = 0x02;
    payload.push_back(0x00);
    CHECK(decode_code(message_type::push_result, payload) == protocol_errc::malformed);
    payload[payload.size() - 2] = 0xff;
    CHECK(decode_code(message_type::push_result, payload) == protocol_errc::malformed);
    auto page = wire::encode(wire::changes_page{{}, 3, false});
    REQUIRE(page[2] == 0x00);
    page[2] = 0x02;
    CHECK(decode_code(message_type::changes, page) == protocol_errc::malformed);
  }
  SECTION("value tag 9") {
    change c;
    c.collection = "visit";
    c.fields = {{"note", value{}}};
    auto stored = wire::encode_change(c);
    REQUIRE(stored.back() == 0x00);
    for (std::uint8_t tag : {5, 9, 0x80, 0xff}) {
      stored.back() = tag;
      CHECK(thrown_code([&] { (void)wire::decode_change(stored); }) == protocol_errc::malformed);
    }
  }
  SECTION("change kind 7") {
    change c;
    c.collection = "visit";
    auto stored = wire::encode_change(c);
    auto& kind = stored[stored.size() - 2];
    REQUIRE(kind == 0x00);
    kind = 7;
    CHECK(thrown_code([&] { (void)wire::decode_change(stored); }) == protocol_errc::malformed);
    kind = 2;
    CHECK(thrown_code([&] { (void)wire::decode_change(stored); }) == protocol_errc::malformed);
  }
  SECTION("a delete that carries fields") {
    change c;
    c.collection = "visit";
    c.kind = change_kind::remove;
    c.fields = {{"note", value{}}};
    CHECK(thrown_code([&] { (void)wire::decode_change(wire::encode_change(c)); }) == protocol_errc::malformed);
  }
  SECTION("duplicate field names") {
    wire::push p = testing::example_push();
    p.changes.front().fields.push_back({"note", value{std::string("second opinion")}});
    CHECK(decode_code(message_type::push, wire::encode(p)) == protocol_errc::malformed);
    change c;
    c.collection = "visit";
    c.fields = {{"a", value{}}, {"b", value{}}, {"a", value{std::int64_t{1}}}};
    CHECK(thrown_code([&] { (void)wire::decode_change(wire::encode_change(c)); }) == protocol_errc::malformed);
  }
}

TEST_CASE("hostile: trailing bytes are refused", "[protocol][security]") {
  auto payload = wire::encode(testing::example_push());
  payload.push_back(0x00);
  CHECK(decode_code(message_type::push, payload) == protocol_errc::malformed);
  auto ping = wire::encode(wire::ping{7});
  ping.push_back(0x01);
  CHECK(decode_code(message_type::ping, ping) == protocol_errc::malformed);
  auto stored = wire::encode_change(testing::example_push().changes.front());
  stored.push_back(0x00);
  CHECK(thrown_code([&] { (void)wire::decode_change(stored); }) == protocol_errc::malformed);
}

TEST_CASE("hostile: a payload read as another message type is refused", "[protocol][security]") {
  const auto ping = wire::encode(wire::ping{7});
  CHECK(decode_code(message_type::push, ping) == protocol_errc::malformed);
  CHECK(decode_code(message_type::welcome, ping) != protocol_errc{});
  CHECK(decode_code(static_cast<message_type>(42), ping) == protocol_errc::unknown_message);
}

TEST_CASE("hostile: frame headers", "[protocol][security]") {
  SECTION("unknown frame types") {
    for (std::uint8_t type : {0x00, 0x0e, 0x7f, 0x80, 0x8e, 0xff}) {
      const bytes h{0x01, 0x00, 0x00, 0x00, type};
      INFO("type byte " << int(type));
      CHECK(thrown_code([&] { (void)header_of(h); }) == protocol_errc::unknown_message);
    }
  }
  SECTION("a frame over the limit is refused from its header alone") {
    const std::uint32_t over = wire::k_default_max_frame + 1;
    const bytes h{static_cast<std::uint8_t>(over), static_cast<std::uint8_t>(over >> 8),
                  static_cast<std::uint8_t>(over >> 16), static_cast<std::uint8_t>(over >> 24), 0x03};
    CHECK(thrown_code([&] { (void)header_of(h); }) == protocol_errc::frame_too_large);
    const bytes max_u32{0xff, 0xff, 0xff, 0xff, 0x86};
    CHECK(thrown_code([&] { (void)header_of(max_u32); }) == protocol_errc::frame_too_large);
    const bytes at{0x00, 0x00, 0x00, 0x01, 0x03};  // exactly 16 MiB
    CHECK(header_of(at).length == wire::k_default_max_frame);
  }
}

TEST_CASE("hostile: compressed frames", "[protocol][security]") {
  SECTION("a zlib bomb stops at the limit") {
    const bytes zeros(24u << 20, 0);  // 24 MiB of zeros compress to about 24 KiB
    const auto bomb = zlib_compress(zeros);
    REQUIRE(bomb.size() < 100'000);
    const auto h = compressed_header(message_type::push, bomb.size());
    CHECK(thrown_code([&] { (void)wire::read_payload(h, bomb, wire::k_default_max_frame, wire::codec::deflate); }) ==
          protocol_errc::frame_too_large);
    CHECK(thrown_code([&] { (void)wire::read_payload(h, bomb, 4096, wire::codec::deflate); }) == protocol_errc::frame_too_large);
  }
  SECTION("garbage is malformed") {
    std::mt19937 rng(7);
    bytes garbage(300);
    for (auto& b : garbage) b = static_cast<std::uint8_t>(rng());
    garbage[0] = 0x12;  // not a zlib header
    const auto h = compressed_header(message_type::push, garbage.size());
    CHECK(thrown_code([&] { (void)wire::read_payload(h, garbage, wire::k_default_max_frame, wire::codec::deflate); }) ==
          protocol_errc::malformed);
    CHECK(thrown_code([&] { (void)wire::read_payload(h, bytes{}, wire::k_default_max_frame, wire::codec::deflate); }) ==
          protocol_errc::malformed);
  }
  SECTION("a truncated or overlong zlib stream is malformed") {
    const auto packed = zlib_compress(wire::encode(testing::example_push()));
    const bytes cut(packed.begin(), packed.end() - 6);
    const auto h = compressed_header(message_type::push, cut.size());
    CHECK(thrown_code([&] { (void)wire::read_payload(h, cut, wire::k_default_max_frame, wire::codec::deflate); }) ==
          protocol_errc::malformed);
    auto longer = packed;
    longer.push_back(0x00);
    CHECK(thrown_code([&] { (void)wire::read_payload(h, longer, wire::k_default_max_frame, wire::codec::deflate); }) ==
          protocol_errc::malformed);
    CHECK(std::get<wire::push>(wire::read_payload(h, packed, wire::k_default_max_frame, wire::codec::deflate)) == testing::example_push());
  }
  SECTION("a valid stream of a bad payload is malformed") {
    const auto packed = zlib_compress(bytes{0x01, 0x02});
    const auto h = compressed_header(message_type::ping, packed.size());
    CHECK(thrown_code([&] { (void)wire::read_payload(h, packed, wire::k_default_max_frame, wire::codec::deflate); }) ==
          protocol_errc::malformed);
  }
}

TEST_CASE("hostile: zstd-compressed frames", "[protocol][security]") {
  const auto zstd_header = [](message_type type, std::size_t length) {
    wire::frame_header h;
    h.type = type;
    h.compression = wire::codec::zstd;
    h.length = static_cast<std::uint32_t>(length);
    return h;
  };
  const auto compress = [](const bytes& plain) {
    bytes out(ZSTD_compressBound(plain.size()));
    const auto n = ZSTD_compress(out.data(), out.size(), plain.data(), plain.size(), 19);
    REQUIRE_FALSE(ZSTD_isError(n));
    out.resize(n);
    return out;
  };
  const auto read = [](const wire::frame_header& h, const bytes& body, std::uint32_t limit = wire::k_default_max_frame) {
    return wire::read_payload(h, body, limit, wire::codec::zstd);
  };
  SECTION("a bomb is refused from its stated size, before anything is allocated") {
    const auto bomb = compress(bytes(24u << 20, 0));
    REQUIRE(bomb.size() < 100'000);
    const auto h = zstd_header(message_type::push, bomb.size());
    CHECK(thrown_code([&] { (void)read(h, bomb); }) == protocol_errc::frame_too_large);
    CHECK(thrown_code([&] { (void)read(h, bomb, 4096); }) == protocol_errc::frame_too_large);
  }
  SECTION("a frame that does not state its size is malformed") {
    const auto plain = wire::encode(testing::example_push());
    const std::unique_ptr<ZSTD_CCtx, decltype(&ZSTD_freeCCtx)> c(ZSTD_createCCtx(), &ZSTD_freeCCtx);
    REQUIRE_FALSE(ZSTD_isError(ZSTD_CCtx_setParameter(c.get(), ZSTD_c_contentSizeFlag, 0)));
    bytes out(ZSTD_compressBound(plain.size()) + 64);
    ZSTD_inBuffer in{plain.data(), plain.size(), 0};
    ZSTD_outBuffer o{out.data(), out.size(), 0};
    REQUIRE(ZSTD_compressStream2(c.get(), &o, &in, ZSTD_e_end) == 0);
    out.resize(o.pos);
    REQUIRE(ZSTD_getFrameContentSize(out.data(), out.size()) == ZSTD_CONTENTSIZE_UNKNOWN);
    CHECK(thrown_code([&] { (void)read(zstd_header(message_type::push, out.size()), out); }) ==
          protocol_errc::malformed);
  }
  SECTION("garbage, truncation, trailing bytes and a second frame are malformed") {
    const auto packed = compress(wire::encode(testing::example_push()));
    const auto h = zstd_header(message_type::push, packed.size());
    CHECK(std::get<wire::push>(read(h, packed)) == testing::example_push());
    std::mt19937 rng(11);
    bytes garbage(300);
    for (auto& b : garbage) b = static_cast<std::uint8_t>(rng());
    CHECK(thrown_code([&] { (void)read(h, garbage); }) == protocol_errc::malformed);
    CHECK(thrown_code([&] { (void)read(h, bytes{}); }) == protocol_errc::malformed);
    const bytes cut(packed.begin(), packed.end() - 3);
    CHECK(thrown_code([&] { (void)read(h, cut); }) == protocol_errc::malformed);
    auto longer = packed;
    longer.push_back(0x00);
    CHECK(thrown_code([&] { (void)read(h, longer); }) == protocol_errc::malformed);
    auto twice = packed;
    twice.insert(twice.end(), packed.begin(), packed.end());
    CHECK(thrown_code([&] { (void)read(h, twice); }) == protocol_errc::malformed);
  }
  SECTION("a valid frame of a bad payload is malformed") {
    const auto packed = compress(bytes{0x01, 0x02});
    CHECK(thrown_code([&] { (void)read(zstd_header(message_type::ping, packed.size()), packed); }) ==
          protocol_errc::malformed);
  }
}

namespace {

/// Feeds `frame` with random mutations to the receiving path; returns how many decoded.
int fuzz(const bytes& frame, std::uint32_t seed, int iterations) {
  std::mt19937 rng(seed);
  int decoded = 0;
  for (int i = 0; i < iterations; ++i) {
    bytes f = frame;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      switch (rng() % 8) {
        case 0: f.resize(rng() % f.size()); break;                           // cut
        case 1: f.push_back(static_cast<std::uint8_t>(rng())); break;          // grow
        case 2: f[rng() % f.size()] ^= static_cast<std::uint8_t>(1u << (rng() % 8)); break;  // bit flip
        default: f[rng() % f.size()] = static_cast<std::uint8_t>(rng()); break;  // byte
      }
      if (f.size() < wire::k_frame_header_size) f.resize(wire::k_frame_header_size, 0);
    }
    // Keep the header's length honest half of the time so payload faults are reached.
    if (rng() % 2) {
      const auto n = static_cast<std::uint32_t>(f.size() - wire::k_frame_header_size);
      for (int b = 0; b < 4; ++b) f[static_cast<std::size_t>(b)] = static_cast<std::uint8_t>(n >> (8 * b));
    }
    try {
      const auto h = header_of(f);
      if (h.length > f.size() - wire::k_frame_header_size) continue;  // a receiver would wait
      (void)wire::read_payload(h, std::span(f).subspan(wire::k_frame_header_size, h.length),
                               wire::k_default_max_frame, h.compression);
      ++decoded;
    } catch (const protocol_error&) {
      // the only acceptable failure
    } catch (const std::exception& e) {
      FAIL("iteration " << i << " threw something other than protocol_error: " << e.what());
    }
  }
  return decoded;
}

}  // namespace

TEST_CASE("hostile: random mutations of valid frames", "[protocol][security]") {
  SECTION("a plain push") {
    const auto frame = wire::make_frame(testing::example_push());
    const int decoded = fuzz(frame, 1234, 20000);
    // Many mutations only change values (a stamp, a letter): the loop reaches the
    // decoder's success path too, not just its first check.
    CHECK(decoded > 1000);
    CHECK(decoded < 20000);
  }
  SECTION("a plain changes page") {
    wire::changes_page page;
    page.items = {{1, testing::example_push().changes.front()}, {2, testing::example_push().changes.front()}};
    page.items[1].body.kind = change_kind::remove;
    page.items[1].body.fields.clear();
    page.next_cursor = 2;
    const auto frame = wire::make_frame(page);
    CHECK(fuzz(frame, 5678, 20000) > 1000);
  }
  SECTION("a compressed push") {
    wire::push p = testing::example_push();
    for (int i = 0; i < 40; ++i) p.changes.push_back(p.changes.front());
    const auto frame = wire::make_frame(p, wire::codec::deflate);
    REQUIRE((frame[4] & wire::k_deflate_flag) != 0);
    (void)fuzz(frame, 91011, 20000);
  }
  SECTION("a zstd-compressed push") {
    wire::push p = testing::example_push();
    for (int i = 0; i < 40; ++i) p.changes.push_back(p.changes.front());
    const auto frame = wire::make_frame(p, wire::codec::zstd);
    REQUIRE((frame[4] & wire::k_zstd_flag) != 0);
    (void)fuzz(frame, 121314, 20000);
  }
}

// Kept fields (protocol version 3): bit 7 of the kind byte, then after the fields a kept
// count and per entry a name, a count and that many 16-byte versions.
namespace {

/// A stored change of visit with field note = "ok" (or no field), its kind byte replaced
/// by `kind_byte`, and nothing after the fields: a kept list is appended by the caller.
bytes stored_with_kind(std::uint8_t kind_byte, bool with_field = true) {
  change c;
  c.collection = "visit";
  c.ver = version{hlc_stamp::make(1'700'000'000'000ULL, 2), 9};
  if (with_field) c.fields = {{"note", value{std::string("ok")}}};
  auto stored = wire::encode_change(c);
  const std::size_t kind_at = 1 + 6 + 16 + 8 + 8;  // marker, "visit", id, stamp, node
  REQUIRE(stored[kind_at] == 0x00);
  stored[kind_at] = kind_byte;
  return stored;
}

const bytes k_note{0x04, 'n', 'o', 't', 'e'};
const bytes k_version(16, 0x01);  // a stamp and a node, 8 bytes each

/// decode_change must throw malformed and allocate little: no allocation driven by a
/// count from the wire beyond what the bytes present can hold.
void refused_small(const bytes& stored) {
  protocol_errc code{};
  const auto largest = largest_allocation_in([&] { code = thrown_code([&] { (void)wire::decode_change(stored); }); });
  CHECK(code == protocol_errc::malformed);
  if (k_probing_allocations) CHECK(largest < 4096);
}

}  // namespace

TEST_CASE("hostile: kept lists", "[protocol][security][keep_both]") {
  // The probe sees allocations, so "allocates little" below means something.
  if (k_probing_allocations) {
    REQUIRE(largest_allocation_in([] { std::vector<std::uint8_t> v(1u << 20); v[5] = 1; }) >= (1u << 20));
  }
  SECTION("the well-formed list these cases break decodes") {
    const auto ok = concat({stored_with_kind(0x80), {0x01}, k_note, {0x01}, k_version});
    const auto c = wire::decode_change(ok);
    REQUIRE(c.kept.size() == 1);
    CHECK(c.kept.front().supersedes.size() == 1);
    CHECK(wire::encode_change(c) == ok);
  }
  SECTION("the flag set, but a kept count of 0") {
    refused_small(concat({stored_with_kind(0x80), {0x00}}));
  }
  SECTION("the flag set, and nothing after the fields") {
    refused_small(stored_with_kind(0x80));
  }
  SECTION("the flag on a delete") {
    refused_small(concat({stored_with_kind(0x81, false), {0x01}, k_note, {0x00}}));
    refused_small(stored_with_kind(0x81, false));
    refused_small(concat({stored_with_kind(0x81, false), {0x00}}));
  }
  SECTION("kind bits beside the flag are still checked") {
    refused_small(concat({stored_with_kind(0x82), {0x01}, k_note, {0x00}}));
    refused_small(concat({stored_with_kind(0xff), {0x01}, k_note, {0x00}}));
  }
  SECTION("a kept count beyond the bytes left") {
    for (const std::uint64_t n : {std::uint64_t{2}, std::uint64_t{1000}, std::uint64_t{1} << 40, ~std::uint64_t{0}}) {
      INFO("kept count " << n);
      refused_small(concat({stored_with_kind(0x80), varint(n), k_note, {0x00}}));
    }
    // 1,000 bytes left hold at most 333 entries (3 bytes each at least), not 1,000.
    refused_small(concat({stored_with_kind(0x80), varint(1000), bytes(1000, 0x00)}));
  }
  SECTION("a superseded count beyond the bytes left") {
    for (const std::uint64_t n : {std::uint64_t{2}, std::uint64_t{1000}, std::uint64_t{1} << 40, ~std::uint64_t{0}}) {
      INFO("superseded count " << n);
      refused_small(concat({stored_with_kind(0x80), {0x01}, k_note, varint(n), k_version}));
    }
    // 1,000 bytes left hold 62 versions, not 1,000: refused before any is allocated.
    refused_small(concat({stored_with_kind(0x80), {0x01}, k_note, varint(1000), bytes(1000, 0x03)}));
    // 31 bytes left are one version and 15 bytes, not two versions.
    refused_small(concat({stored_with_kind(0x80), {0x01}, k_note, {0x02}, k_version, bytes(15, 0x02)}));
  }
  SECTION("a kept name longer than the bytes left") {
    refused_small(concat({stored_with_kind(0x80), {0x01}, varint(std::uint64_t{1} << 40), {'n', 'o', 't', 'e', 0x00}}));
  }
  SECTION("every truncation of a change with kept fields") {
    change c = testing::example_kept_change();
    c.kept.front().supersedes.push_back(version{hlc_stamp::make(1'700'000'000'000ULL, 1), 0x0102030405060709ULL});
    const auto stored = wire::encode_change(c);
    for (std::size_t n = 0; n < stored.size(); ++n) {
      INFO("prefix of " << n << " bytes");
      refused_small(bytes(stored.begin(), stored.begin() + static_cast<std::ptrdiff_t>(n)));
    }
    refused_small(concat({stored, {0x00}}));  // and a trailing byte
    CHECK(wire::decode_change(stored) == c);
  }
  SECTION("inside a push: every truncation, and a kept count beyond the payload") {
    wire::push p;
    p.batch = record_id{};
    p.changes = {testing::example_kept_change(), testing::example_kept_change()};
    const auto payload = wire::encode(p);
    for (std::size_t n = 0; n < payload.size(); ++n) {
      const bytes prefix(payload.begin(), payload.begin() + static_cast<std::ptrdiff_t>(n));
      INFO("prefix of " << n << " bytes");
      CHECK(decode_code(message_type::push, prefix) == protocol_errc::malformed);
    }
  }
}

TEST_CASE("hostile: lists longer than a change may hold are refused before they are allocated", "[protocol][security]") {
  // Each field is 2 bytes on the wire (an empty name and a null) but ~72 in memory: the
  // frame's size alone would let a 1 MB payload make 36 MB. The per-change limits hold
  // the count first.
  const auto with_fields = [](std::uint64_t claimed, std::size_t present) {
    bytes b = stored_with_kind(0x00, false);
    b.pop_back();  // the field count 0
    const auto n = varint(claimed);
    b.insert(b.end(), n.begin(), n.end());
    for (std::size_t i = 0; i < present; ++i) b.insert(b.end(), {0x00, 0x00});
    return b;
  };
  SECTION("256 fields are read (and then refused for their duplicate names)") {
    CHECK(thrown_code([&] { (void)wire::decode_change(with_fields(256, 256)); }) == protocol_errc::malformed);
  }
  SECTION("500,000 fields, all present, are refused without a large allocation") {
    const auto stored = with_fields(500'000, 500'000);
    protocol_errc code{};
    std::string message;
    const auto largest = largest_allocation_in([&] {
      try {
        (void)wire::decode_change(stored);
      } catch (const protocol_error& e) {
        code = static_cast<protocol_errc>(e.code().value());
        message = e.what();
      }
    });
    CHECK(code == protocol_errc::malformed);
    CHECK_THAT(message, Catch::Contains("more than 256 fields"));
    if (k_probing_allocations) CHECK(largest < 4096);
  }
  SECTION("more than 64 added items in one operation") {
    // An upsert with no fields and one set_union operation adding 65 one-byte items.
    bytes b = stored_with_kind(0x40, false);
    b.insert(b.end(), {0x01, 0x05, 'f', 'l', 'a', 'g', 's', 0x02, 65});
    for (int i = 0; i < 65; ++i) b.insert(b.end(), {0x01, 'x'});
    b.push_back(0x00);  // no removes
    refused_small(b);
  }
}
