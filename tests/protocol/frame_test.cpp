#include "wire_examples.hpp"

#include <caresync/protocol/errors.hpp>
#include <caresync/protocol/frame.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <string>
#include <variant>

using namespace caresync;
using wire::bytes;

namespace {

wire::frame_header header_of(const bytes& frame, std::uint32_t max = wire::k_default_max_frame) {
  REQUIRE(frame.size() >= wire::k_frame_header_size);
  return wire::parse_header(std::span<const std::uint8_t, wire::k_frame_header_size>(frame.data(), 5), max);
}

/// Reads a whole frame as a receiver that agreed on the frame's own codec.
wire::message read_frame(const bytes& frame, std::uint32_t max = wire::k_default_max_frame) {
  const auto h = header_of(frame, max);
  REQUIRE(frame.size() == wire::k_frame_header_size + h.length);
  return wire::read_payload(h, std::span(frame).subspan(wire::k_frame_header_size), max, h.compression);
}

/// `m` as a receiver decodes it: a push (version 7) with its changes' nodes 0.
wire::message as_decoded(const wire::message& m) {
  if (const auto* p = std::get_if<wire::push>(&m)) return testing::as_decoded(*p);
  return m;
}

/// A push whose payload compresses well: many changes that differ little.
wire::push big_push(int changes) {
  wire::push p = testing::example_push();
  for (int i = 1; i < changes; ++i) {
    auto c = p.changes.front();
    c.ver.stamp.value += static_cast<std::uint64_t>(i);
    c.fields[1].val = value{std::string("visit note number ") + std::to_string(i)};
    p.changes.push_back(std::move(c));
  }
  return p;
}

}  // namespace

TEST_CASE("frame: header is length u32 little-endian, then the type byte", "[protocol]") {
  const wire::message m = wire::pull{300, 2, 3};
  const auto payload = wire::encode(m);
  const auto frame = wire::make_frame(m);
  REQUIRE(frame.size() == 5 + payload.size());
  CHECK(frame[0] == payload.size());
  CHECK(frame[1] == 0);
  CHECK(frame[2] == 0);
  CHECK(frame[3] == 0);
  CHECK(frame[4] == 5);
  CHECK(bytes(frame.begin() + 5, frame.end()) == payload);

  const auto h = header_of(frame);
  CHECK(h.type == wire::message_type::pull);
  CHECK(h.compression == wire::codec::none);
  CHECK(h.length == payload.size());
  CHECK(std::get<wire::pull>(read_frame(frame)) == wire::pull{300, 2, 3});
}

TEST_CASE("frame: parse_header reads all four length bytes and the flag", "[protocol]") {
  const bytes raw{0x04, 0x03, 0x02, 0x01, 0x86};
  const auto h = wire::parse_header(std::span<const std::uint8_t, 5>(raw.data(), 5), 0xffffffffu);
  CHECK(h.length == 0x01020304u);
  CHECK(h.compression == wire::codec::deflate);
  CHECK(h.type == wire::message_type::changes);

  SECTION("a frame exactly at the limit is accepted, one byte more is refused") {
    const bytes at{0x00, 0x01, 0x00, 0x00, 0x08};
    CHECK(wire::parse_header(std::span<const std::uint8_t, 5>(at.data(), 5), 256).length == 256);
    const bytes over{0x01, 0x01, 0x00, 0x00, 0x08};
    try {
      (void)wire::parse_header(std::span<const std::uint8_t, 5>(over.data(), 5), 256);
      FAIL("accepted a frame over the limit");
    } catch (const protocol_error& e) {
      CHECK(e.code() == protocol_errc::frame_too_large);
    }
  }
}

TEST_CASE("frame: every message type round trips through a frame", "[protocol]") {
  const std::vector<wire::message> all{
      wire::hello{wire::k_protocol_version, "c", "d", "t", 5, wire::k_feature_deflate, "field-app 1.2", 3, 1},
      wire::welcome{wire::k_protocol_version, "s", 7, 1, 1000, 10, 99},
      testing::example_push(),
      wire::push{numbered_batch(17), testing::example_push().changes},
      wire::push_result{record_id{}, 1, 2, 2, false, {}},
      wire::push_result{record_id{}, 1, 2, 2, false, {{1, 6, "too large"}}},
      wire::push_result{numbered_batch(17), 1, 2, 2, false, {}},
      wire::pull{3, 4, 5},
      wire::pull{3, 4, 5, {}, 6, 8},
      wire::wait{3, 25'000, 4, 5},
      wire::changes_page{{{4, testing::example_push().changes.front()}}, 4, false},
      testing::example_page(),
      wire::error{3, false, "no"},
      wire::ping{1},
      wire::pong{2},
  };
  for (const auto& m : all) {
    for (const auto compression : {wire::codec::none, wire::codec::deflate, wire::codec::zstd}) {
      const auto frame = wire::make_frame(m, compression);
      CHECK(frame[4] == static_cast<std::uint8_t>(wire::type_of(m)));  // small: never compressed
      CHECK(read_frame(frame) == as_decoded(m));
    }
  }
}

TEST_CASE("frame: compression only above the threshold and only when smaller", "[protocol]") {
  SECTION("a payload under 512 bytes is sent plain even when deflate is on") {
    const wire::message m = wire::error{1, false, std::string(400, 'a')};
    REQUIRE(wire::encode(m).size() < wire::k_compress_threshold);
    const auto frame = wire::make_frame(m, wire::codec::deflate);
    CHECK((frame[4] & wire::k_deflate_flag) == 0);
    CHECK(frame.size() == 5 + wire::encode(m).size());
  }
  SECTION("a large compressible payload is compressed when deflate is on") {
    const wire::message m = big_push(200);
    const auto payload = wire::encode(m);
    REQUIRE(payload.size() >= wire::k_compress_threshold);
    const auto plain = wire::make_frame(m);
    CHECK((plain[4] & wire::k_deflate_flag) == 0);
    CHECK(plain.size() == 5 + payload.size());

    const auto packed = wire::make_frame(m, wire::codec::deflate);
    CHECK(packed[4] == (wire::k_deflate_flag | 3));
    CHECK(packed.size() < plain.size() / 4);
    const auto h = header_of(packed);
    CHECK(h.compression == wire::codec::deflate);
    CHECK(h.length == packed.size() - 5);
    CHECK(packed[5] == 0x78);  // a zlib (RFC 1950) stream header
    CHECK(std::get<wire::push>(read_frame(packed)) == testing::as_decoded(std::get<wire::push>(m)));
  }
  SECTION("an incompressible payload stays plain") {
    wire::push p = testing::example_push();
    blob noise;
    std::uint64_t x = 88172645463325252ULL;
    for (int i = 0; i < 4000; ++i) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      noise.bytes.push_back(static_cast<std::uint8_t>(x));
    }
    p.changes.front().fields.push_back({"photo", value{noise}});
    const auto frame = wire::make_frame(p, wire::codec::deflate);
    CHECK((frame[4] & wire::k_deflate_flag) == 0);
    CHECK(std::get<wire::push>(read_frame(frame)) == testing::as_decoded(p));
  }
  SECTION("a prebuilt payload is framed the same way") {
    const wire::message m = big_push(50);
    const auto payload = wire::encode(m);
    CHECK(wire::make_frame(wire::message_type::push, payload, wire::codec::deflate) == wire::make_frame(m, wire::codec::deflate));
    CHECK(wire::make_frame(wire::message_type::push, payload) == wire::make_frame(m));
  }
}

TEST_CASE("frame: a compressed payload may inflate up to the limit, not past it", "[protocol]") {
  const auto compression = GENERATE(wire::codec::deflate, wire::codec::zstd);
  const wire::message m = big_push(100);
  const auto payload = wire::encode(m);
  const auto frame = wire::make_frame(m, compression);
  const auto h = header_of(frame);
  REQUIRE(h.compression == compression);
  const auto body = std::span(frame).subspan(5);
  const auto size = static_cast<std::uint32_t>(payload.size());
  const auto expected = testing::as_decoded(std::get<wire::push>(m));
  CHECK(std::get<wire::push>(wire::read_payload(h, body, size, h.compression)) == expected);
  CHECK(std::get<wire::push>(wire::read_payload(h, body, size + 1, h.compression)) == expected);
  try {
    (void)wire::read_payload(h, body, size - 1, h.compression);
    FAIL("inflated past the limit");
  } catch (const protocol_error& e) {
    CHECK(e.code() == protocol_errc::frame_too_large);
  }
}

TEST_CASE("frame: zstd frames", "[protocol]") {
  const wire::message m = big_push(200);
  const auto payload = wire::encode(m);
  const auto packed = wire::make_frame(m, wire::codec::zstd);
  CHECK(packed[4] == (wire::k_zstd_flag | 3));
  CHECK(packed.size() < wire::make_frame(m, wire::codec::deflate).size());
  const std::vector<std::uint8_t> magic(packed.begin() + 5, packed.begin() + 9);
  CHECK(magic == std::vector<std::uint8_t>{0x28, 0xb5, 0x2f, 0xfd});  // a zstd frame (RFC 8878)
  const auto h = header_of(packed);
  CHECK(h.compression == wire::codec::zstd);
  CHECK(std::get<wire::push>(read_frame(packed)) == testing::as_decoded(std::get<wire::push>(m)));
  const auto prebuilt = wire::make_frame(wire::message_type::push, payload, wire::codec::zstd);
  CHECK(prebuilt == packed);
}

TEST_CASE("frame: frames made and read one after another on a thread do not share bytes", "[protocol]") {
  // The thread keeps its compression and decompression buffers between frames: a large
  // frame, then a smaller one, then the large one again, each reads back as itself.
  const auto compression = GENERATE(wire::codec::zstd, wire::codec::deflate);
  const wire::push large = big_push(400);
  const wire::push small = big_push(30);
  const auto large_frame = wire::make_frame(large, compression);
  const auto small_frame = wire::make_frame(small, compression);
  REQUIRE(header_of(small_frame).compression == compression);
  CHECK(small_frame.size() < large_frame.size() / 4);
  CHECK(header_of(large_frame).length == large_frame.size() - 5);
  CHECK(header_of(small_frame).length == small_frame.size() - 5);
  CHECK(std::get<wire::push>(read_frame(large_frame)) == testing::as_decoded(large));
  CHECK(std::get<wire::push>(read_frame(small_frame)) == testing::as_decoded(small));
  CHECK(std::get<wire::push>(read_frame(large_frame)) == testing::as_decoded(large));
  CHECK(wire::make_frame(small, compression) == small_frame);
  SECTION("plain_payload into a longer scratch gives exactly the payload") {
    wire::bytes scratch(wire::encode(large).size() + 100, 0xee);
    const auto h = header_of(small_frame);
    const auto plain = wire::plain_payload(h, std::span(small_frame).subspan(5), wire::k_default_max_frame, compression, scratch);
    const auto expected = wire::encode(small);
    CHECK(wire::bytes(plain.begin(), plain.end()) == expected);
  }
}

TEST_CASE("frame: a frame compressed with a codec the session did not agree on is refused", "[protocol]") {
  const wire::message m = big_push(200);
  const auto [sent, agreed] = GENERATE(std::pair{wire::codec::zstd, wire::codec::deflate},
                                       std::pair{wire::codec::deflate, wire::codec::zstd},
                                       std::pair{wire::codec::zstd, wire::codec::none},
                                       std::pair{wire::codec::deflate, wire::codec::none});
  const auto frame = wire::make_frame(m, sent);
  const auto h = header_of(frame);
  REQUIRE(h.compression == sent);
  try {
    (void)wire::read_payload(h, std::span(frame).subspan(5), wire::k_default_max_frame, agreed);
    FAIL("a frame in a codec not agreed was read");
  } catch (const protocol_error& e) {
    CHECK(e.code() == protocol_errc::malformed);
    CHECK_THAT(e.what(), Catch::Contains("compression was not agreed"));
  }
  // A plain frame is always fine.
  const auto plain = wire::make_frame(m);
  CHECK(std::get<wire::push>(wire::read_payload(header_of(plain), std::span(plain).subspan(5),
                                                wire::k_default_max_frame, agreed)) ==
        testing::as_decoded(std::get<wire::push>(m)));
}

TEST_CASE("frame: both compression bits at once are refused in the header", "[protocol]") {
  auto frame = wire::make_frame(wire::ping{1});
  frame[4] |= wire::k_deflate_flag | wire::k_zstd_flag;
  try {
    (void)header_of(frame);
    FAIL("a header with both compression bits was accepted");
  } catch (const protocol_error& e) {
    CHECK(e.code() == protocol_errc::malformed);
  }
}
