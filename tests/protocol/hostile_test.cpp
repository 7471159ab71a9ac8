// Hostile input: every bad byte sequence ends in caresync::protocol_error, never a
// crash, a hang, or an allocation sized by a length from the wire.
#include "change_block.hpp"
#include "wire_examples.hpp"

#include <caresync/protocol/codec.hpp>
#include <caresync/protocol/errors.hpp>
#include <caresync/protocol/frame.hpp>

#include <catch2/catch.hpp>

#include <zlib.h>
#include <zstd.h>

#include <array>
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

std::array<std::uint8_t, 16> k_id_bytes() {
  std::array<std::uint8_t, 16> a;
  a.fill(0xaa);
  return a;
}

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
  CHECK(wire::decode(message_type::push, payload) == wire::message{testing::as_decoded(testing::example_push())});
}

TEST_CASE("hostile: every truncation of a valid changes page is refused (version 7: change blocks)", "[protocol][security]") {
  auto page = testing::example_page();
  page.scope_epoch = 4;
  page.backfill = page.items;
  page.backfill[0].body.kind = change_kind::remove;
  page.backfill[0].body.fields.clear();
  page.backfill[0].body.covers = std::vector<version>{version{hlc_stamp{5}, 6}};
  page.backfill[0].body.revivable = true;
  const auto payload = wire::encode(page);
  for (std::size_t n = 0; n < payload.size(); ++n) {
    const bytes prefix(payload.begin(), payload.begin() + static_cast<std::ptrdiff_t>(n));
    INFO("prefix of " << n << " bytes");
    CHECK(decode_code(message_type::changes, prefix) == protocol_errc::malformed);
  }
  CHECK(wire::decode(message_type::changes, payload) == wire::message{page});
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
  // pull's two u32, empty prime spec, scope epoch 0 (version 5) and max_pages 0 (version
  // 7) after the cursor
  const bytes tail{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
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
    // Version 7: the batch is a number, or 0 and a 16-byte id.
    CHECK(decode_code(message_type::push, concat({{0x01}, {0x00}, k_id, varint(huge), {0, 0, 0, 0}})) ==
          protocol_errc::malformed);
    CHECK(decode_code(message_type::push, concat({{0x01}, varint(7), varint(huge), {0, 0, 0, 0}})) ==
          protocol_errc::malformed);
    // The same counts of 0 are fine: only the counts are wrong above.
    CHECK(wire::decode(message_type::push, concat({{0x01}, {0x00}, k_id, varint(0)})) ==
          wire::message{wire::push{record_id{k_id_bytes()}, {}}});
    CHECK(wire::decode(message_type::push, concat({{0x01}, varint(7), varint(0)})) ==
          wire::message{wire::push{numbered_batch(7), {}}});
  }
  SECTION("a page claiming 2^40 changes") {
    // Version 7: the count opens the items' change block; and the backfill's.
    CHECK(decode_code(message_type::changes, concat({{0x01}, {0x00, 0x00, 0x00, 0x00}, varint(huge), {0, 0}})) ==
          protocol_errc::malformed);
    CHECK(decode_code(message_type::changes, concat({{0x01}, {0x00, 0x00, 0x00, 0x00}, {0x00, 0x01, 0x00}, varint(huge), {0, 0}})) ==
          protocol_errc::malformed);
    CHECK(wire::decode(message_type::changes, concat({{0x01}, {0x00, 0x00, 0x00, 0x00}, {0x00, 0x01, 0x00, 0x00}})) ==
          wire::message{wire::changes_page{{}, 0, false, 0, 0, 1}});
  }
  SECTION("an error message text of 2^40 bytes") {
    CHECK(decode_code(message_type::error, concat({{0x01, 0x01, 0x00, 0x00}, varint(huge), {'a', 'b'}})) ==
          protocol_errc::malformed);
  }
  SECTION("a push_result claiming 2^40 refusals") {
    // marker, batch (version 7: 0 and an id, or a number), accepted u32, first and last
    // seq, replayed, refused count
    CHECK(decode_code(message_type::push_result, concat({{0x01}, {0x00}, k_id, {0, 0, 0, 0}, {0, 0, 0}, varint(huge), {0, 0}})) ==
          protocol_errc::malformed);
    CHECK(decode_code(message_type::push_result, concat({{0x01}, varint(300), {0, 0, 0, 0}, {0, 0, 0}, varint(huge), {0, 0}})) ==
          protocol_errc::malformed);
  }
  SECTION("the largest u64 as a count") {
    CHECK(decode_code(message_type::push, concat({{0x01}, {0x00}, k_id, varint(~std::uint64_t{0})})) ==
          protocol_errc::malformed);
    CHECK(decode_code(message_type::push, concat({{0x01}, varint(1), varint(~std::uint64_t{0})})) ==
          protocol_errc::malformed);
  }
  SECTION("a push batch cut off, or an overlong batch number") {
    CHECK(decode_code(message_type::push, concat({{0x01}, {0x00}, bytes(15, 0xaa)})) == protocol_errc::malformed);
    CHECK(decode_code(message_type::push, concat({{0x01}, bytes(10, 0xff), {0x00}})) == protocol_errc::malformed);
    CHECK(decode_code(message_type::push_result, concat({{0x01}, {0x00}, bytes(15, 0xaa)})) == protocol_errc::malformed);
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
    REQUIRE(payload[18] == 0x01);  // change count after the marker, 00 and the batch id (version 7)
    payload[18] = 0x02;
    CHECK(decode_code(message_type::push, payload) == protocol_errc::malformed);
    p.batch = numbered_batch(5);
    payload = wire::encode(p);
    REQUIRE(payload[2] == 0x01);  // after the marker and the batch number
    payload[2] = 0x02;
    CHECK(decode_code(message_type::push, payload) == protocol_errc::malformed);
  }
}

TEST_CASE("hostile: a push_result refusing a change twice or out of order is refused", "[protocol][security]") {
  const auto refusal = [](std::uint64_t index) { return concat({varint(index), {0x06, 0x00}, {0x01, 'x'}, {0x00}}); };
  const auto result = [&](std::initializer_list<bytes> refusals) {
    bytes out = concat({{0x01}, {0x00}, k_id, {0, 0, 0, 0}, {0, 0, 0}, varint(refusals.size())});  // batch: 0 and an id
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
    CHECK(std::get<wire::push>(wire::read_payload(h, packed, wire::k_default_max_frame, wire::codec::deflate)) ==
          testing::as_decoded(testing::example_push()));
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
    CHECK(std::get<wire::push>(read(h, packed)) == testing::as_decoded(testing::example_push()));
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
  SECTION("a changes page whose blocks hold every kind of change (version 7)") {
    auto page = testing::example_page();
    change del = page.items[0].body;
    del.kind = change_kind::remove;
    del.fields.clear();
    del.covers = std::vector<version>{del.ver};
    del.revivable = true;
    change items = page.items[1].body;
    items.collection = "client";
    items.ver.node = 7;
    items.items = {item_op{"tags", item_policy::set_union, {"a", "b"}, {version{hlc_stamp{3}, 4}}}};
    items.dismisses = version{hlc_stamp{2}, 9};
    page.items.push_back({43, del});
    page.items.push_back({44, items});
    page.next_cursor = 44;
    page.scope_epoch = 2;
    page.purges = {wire::scope_purge{"visit", record_id{k_id_bytes()}}};
    page.backfill = {{3, items}, {1, del}, {2, page.items[0].body}};
    const auto frame = wire::make_frame(page);
    REQUIRE(std::get<wire::changes_page>(wire::decode(message_type::changes, std::span(frame).subspan(5))) == page);
    CHECK(fuzz(frame, 151617, 20000) > 1000);
    auto compressible = page;
    for (std::uint64_t i = 0; i < 20; ++i) compressible.backfill.push_back({10 + i, page.items[i % 4].body});
    const auto packed = wire::make_frame(compressible, wire::codec::zstd);
    REQUIRE((packed[4] & wire::k_zstd_flag) != 0);
    (void)fuzz(packed, 181920, 20000);
  }
  SECTION("a push of a numbered batch (version 7)") {
    wire::push p = testing::example_push();
    p.batch = numbered_batch(300);
    p.changes.push_back(testing::example_kept_change());
    CHECK(fuzz(wire::make_frame(p), 212223, 20000) > 1000);
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

// Change blocks (protocol version 7; docs/protocol.md, "Change blocks"): the items and the
// backfill of a changes page. Each case breaks one part of a valid block, in the items'
// place and in the backfill's, and must be refused as malformed with little allocated.
namespace {

/// A changes payload with `block` as its items, or (`in_backfill`) as its backfill in
/// scope epoch 5; the other block empty.
bytes page_with(const testing::block_parts& block, bool in_backfill) {
  wire::changes_page head;
  head.next_cursor = 42;
  testing::block_parts empty;
  empty.count = {0x00};
  if (!in_backfill) return testing::changes_payload(head, block.joined(), empty.joined());
  head.scope_epoch = 5;
  return testing::changes_payload(head, empty.joined(), block.joined());
}

/// decode() must refuse `payload` as malformed (saying `what`, when given) without an
/// allocation sized by a count from the wire: nothing larger than a small multiple of the
/// payload (a name table's entry takes 1 byte on the wire and a std::string in memory).
void page_refused(const bytes& payload, const char* what = nullptr) {
  protocol_errc code{};
  std::string message;
  const auto largest = largest_allocation_in([&] {
    try {
      (void)wire::decode(message_type::changes, payload);
    } catch (const protocol_error& e) {
      code = static_cast<protocol_errc>(e.code().value());
      message = e.what();
    }
  });
  CHECK(code == protocol_errc::malformed);
  if (what) CHECK_THAT(message, Catch::Contains(what));
  if (k_probing_allocations) CHECK(largest < 4096 + 48 * payload.size());
}

bool page_decodes(const bytes& payload) {
  try {
    (void)wire::decode(message_type::changes, payload);
    return true;
  } catch (const protocol_error& e) {
    UNSCOPED_INFO("refused: " << e.what());
    return false;
  }
}

}  // namespace

TEST_CASE("hostile: change blocks", "[protocol][security]") {
  const bool in_backfill = GENERATE(false, true);
  CAPTURE(in_backfill);
  // The page of docs/protocol.md: visit/minutes/note/weight_kg, one node, the second
  // change with a kept list.
  const auto good = testing::block_of(testing::example_page().items);
  REQUIRE(good.names.front() == 4);
  REQUIRE(page_decodes(page_with(good, in_backfill)));
  const auto broken = [&](auto&& edit) {
    auto b = good;
    edit(b);
    return page_with(b, in_backfill);
  };

  SECTION("a name listed twice in the table") {
    page_refused(broken([](auto& b) {
                   b.names = concat({{0x04}, {0x05, 'v', 'i', 's', 'i', 't'}, {0x07, 'm', 'i', 'n', 'u', 't', 'e', 's'},
                                     {0x04, 'n', 'o', 't', 'e'}, {0x05, 'v', 'i', 's', 'i', 't'}});
                 }),
                 "lists a name twice");
    // Unused, the second "note" is still refused; an unused new name is not.
    page_refused(broken([](auto& b) {
                   b.names[0] = 0x05;
                   b.names.insert(b.names.end(), {0x04, 'n', 'o', 't', 'e'});
                 }),
                 "lists a name twice");
    CHECK(page_decodes(broken([](auto& b) {
      b.names[0] = 0x05;
      b.names.insert(b.names.end(), {0x04, 'z', 'e', 't', 'a'});
    })));
  }
  SECTION("an index at or past the end of its table") {
    page_refused(broken([](auto& b) { b.collections[1] = 0x04; }), "points past its table");
    CHECK(page_decodes(broken([](auto& b) { b.collections[1] = 0x03; })));  // "weight_kg" is a name too
    page_refused(broken([](auto& b) { b.node_indexes[0] = 0x01; }), "points past its table");
    page_refused(broken([](auto& b) { b.field_names[3] = 0x04; }), "points past its table");
    page_refused(broken([](auto& b) { b.field_names[3] = 0x7f; }), "points past its table");
    page_refused(broken([](auto& b) { b.collections = concat({varint(~std::uint64_t{0}), {0x00}}); }),
                 "points past its table");
    page_refused(broken([](auto& b) { b.node_indexes = concat({varint(std::uint64_t{1} << 32), {0x00}}); }),
                 "points past its table");
  }
  SECTION("a field count above 256") {
    // A change of 257 fields, each present: refused for its count before its fields are read.
    change wide;
    wide.collection = "visit";
    for (int i = 0; i < 257; ++i) wide.fields.push_back({"f" + std::to_string(i), value{}});
    auto items = testing::example_page().items;
    items.push_back({43, wide});
    page_refused(page_with(testing::block_of(items), in_backfill), "more than 256 fields");
    wide.fields.pop_back();
    items.back().body = wide;
    CHECK(page_decodes(page_with(testing::block_of(items), in_backfill)));
  }
  SECTION("field counts whose sum exceeds half the bytes left") {
    // Each at most 256, but 512 field writes cannot fit the ~60 bytes after them.
    page_refused(broken([](auto& b) { b.field_counts = concat({varint(256), varint(256)}); }),
                 "field count claims more fields than the message holds");
    // 3 + 30: 33 field writes, 66 bytes at least, more than the bytes left.
    page_refused(broken([](auto& b) { b.field_counts = {0x03, 0x1e}; }),
                 "field count claims more fields than the message holds");
    // One more field than named and valued: its name index is read from the values.
    page_refused(broken([](auto& b) { b.field_counts = {0x03, 0x02}; }));
  }
  SECTION("a huge change count in a small payload") {
    // One or two more than present: the parts are read shifted, and something breaks.
    page_refused(broken([](auto& b) { b.count = {0x03}; }));
    page_refused(broken([](auto& b) { b.count = {0x04}; }));
    // Beyond 22 bytes a change: refused from the count, before anything is allocated.
    for (const std::uint64_t n : {std::uint64_t{1000}, std::uint64_t{1} << 40, ~std::uint64_t{0}}) {
      INFO("change count " << n);
      page_refused(broken([n](auto& b) { b.count = varint(n); }), "change count claims more items than the message holds");
    }
    // The table counts, likewise.
    page_refused(broken([](auto& b) { b.names = concat({varint(std::uint64_t{1} << 40), {0x00}}); }),
                 "name count claims more items");
    page_refused(broken([](auto& b) { b.nodes = concat({varint(std::uint64_t{1} << 40), bytes(8, 0x11)}); }),
                 "node count claims more items");
    // Two nodes, one present: the second is read from the parts after the table.
    page_refused(broken([](auto& b) { b.nodes = concat({{0x02}, bytes(8, 0x11)}); }));
  }
  SECTION("a name longer than the bytes left") {
    page_refused(broken([](auto& b) { b.names = concat({{0x01}, varint(std::uint64_t{1} << 40), {'v'}}); }));
  }
  SECTION("every rule of a change holds in a block") {
    page_refused(broken([](auto& b) { b.kinds[0] = 0x07; }), "change kind 7");
    page_refused(broken([](auto& b) { b.kinds[0] = 0x01; }), "a delete carries fields");  // a remove with 3 fields
    page_refused(broken([](auto& b) { b.kinds[0] = 0x10; }), "revivable");                // revivable on an upsert
    page_refused(broken([](auto& b) { b.kinds[0] = 0x20; }), "covered versions");         // covers on an upsert
    page_refused(broken([](auto& b) { b.field_names = {0x01, 0x02, 0x01, 0x02}; }), "same field twice");
    page_refused(broken([](auto& b) { b.values[0] = 0x09; }), "value tag 9");
    // The kept flag dropped: its tail is left over, read as the scope section.
    page_refused(broken([](auto& b) { b.kinds[1] = 0x00; }));
    // A kept flag with no tail: the next bytes are read as its list.
    page_refused(broken([](auto& b) {
                   b.kinds = {0x80, 0x00};
                   b.tails = {0x00};  // the first change's kept count: 0
                 }),
                 "lists no field");
    // A tail cut short, or one byte too many.
    page_refused(broken([](auto& b) { b.tails.pop_back(); }));
    page_refused(broken([](auto& b) { b.tails.push_back(0x00); }));
  }
  SECTION("every truncation of the block") {
    const auto payload = page_with(good, in_backfill);
    for (std::size_t n = 0; n < payload.size(); ++n) {
      INFO("prefix of " << n << " bytes");
      page_refused(bytes(payload.begin(), payload.begin() + static_cast<std::ptrdiff_t>(n)));
    }
  }
}

// decode_push rebuilds each change's stored form by putting hello.node in after the
// stamp. A decoder accepts a longer-than-needed varint (docs/protocol.md, "uvarint"), so
// a device may send the collection's length in more bytes than needed; the stored form
// must still be the change that was decoded and checked, with the pusher's node (a head
// measured as if its varints were minimal put the node inside the stamp: a device's
// change was stored with a stamp and node the server never checked).
TEST_CASE("hostile: a pushed change's stored form is the change decoded, whatever its varints' lengths",
          "[protocol][security]") {
  const node_id pusher = 0x0102030405060708ULL;
  for (const std::size_t length_bytes : {std::size_t{1}, std::size_t{2}, std::size_t{9}}) {
    CAPTURE(length_bytes);
    // marker, batch 1, 1 change: "visit" (its length 5 in `length_bytes` bytes), id,
    // stamp (version 7: no node), kind upsert, no field.
    bytes length(length_bytes - 1, 0x80);
    length.insert(length.begin(), length_bytes == 1 ? 0x05 : 0x85);
    if (length_bytes > 1) length.back() = 0x00;
    const bytes stamp{0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x01};
    const auto payload = concat({{0x01, 0x01, 0x01}, length, {'v', 'i', 's', 'i', 't'}, k_id, stamp, {0x00, 0x00}});
    wire::bytes rebuilt;
    std::vector<std::span<const std::uint8_t>> sent;
    const auto decoded = wire::decode_push(payload, pusher, rebuilt, sent);
    REQUIRE(decoded.changes.size() == 1);
    const auto& c = decoded.changes.front();
    CHECK(c.collection == "visit");
    CHECK(c.ver.node == pusher);
    CHECK(c.ver.stamp.value == 0x0117161514131211ULL);
    REQUIRE(sent.size() == 1);
    // What the server stores, read back as its log is read.
    const auto stored = concat({{0x01}, bytes(sent[0].begin(), sent[0].end())});
    CHECK(wire::decode_change(stored) == c);
  }
}
