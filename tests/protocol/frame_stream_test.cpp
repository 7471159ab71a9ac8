// Stream compression (protocol version 7, feature bit 4): the frames of one connection
// are chunks of one zstd stream, each readable once the ones before it are read.

#include <caresync/protocol/errors.hpp>
#include <caresync/protocol/frame_stream.hpp>

#include <catch2/catch.hpp>

#include <random>
#include <string>

using namespace caresync;
using namespace caresync::wire;

namespace {

/// A payload of words, like a page's notes: repeats across payloads, not within one.
bytes words(std::mt19937_64& rng, std::size_t n) {
  static const char* const vocabulary[] = {"návštěva ", "klientka ", "hygiena ", "nákup ", "léky ", "doprava ",
                                           "pečovatelka ", "oběd ", "procházka ", "lékař "};
  bytes out{0x01};
  while (out.size() < n) {
    const std::string w = vocabulary[rng() % 10];
    out.insert(out.end(), w.begin(), w.end());
  }
  return out;
}

frame_header header_of(const bytes& frame) {
  return parse_header(std::span<const std::uint8_t, k_frame_header_size>(frame.data(), k_frame_header_size), k_default_max_frame);
}

std::span<const std::uint8_t> body_of(const bytes& frame) {
  return std::span<const std::uint8_t>(frame).subspan(k_frame_header_size);
}

}  // namespace

TEST_CASE("frame stream: frames read back in order, later ones smaller for the context", "[protocol]") {
  std::mt19937_64 rng(7);
  stream_compressor out;
  stream_decompressor in;
  bytes scratch;
  std::size_t first = 0, last = 0;
  for (int i = 0; i < 20; ++i) {
    const auto payload = words(rng, 4000);
    const auto frame = out.make_frame(message_type::changes, payload);
    const auto h = header_of(frame);
    CHECK(h.compression == codec::zstd);
    CHECK(h.length == frame.size() - k_frame_header_size);
    const auto plain = in.plain_payload(h, body_of(frame), k_default_max_frame, scratch);
    CHECK(bytes(plain.begin(), plain.end()) == payload);
    (i == 0 ? first : last) = frame.size();
  }
  // The tenth page of the same words compresses with the first nine as context.
  CHECK(last < first);
  // A short payload goes plain, outside the stream, and the stream goes on after it.
  const bytes small{0x01, 0x02};
  const auto plain_frame = out.make_frame(message_type::changes, small);
  CHECK(header_of(plain_frame).compression == codec::none);
  const auto p = in.plain_payload(header_of(plain_frame), body_of(plain_frame), k_default_max_frame, scratch);
  CHECK(bytes(p.begin(), p.end()) == small);
  const auto next = words(rng, 3000);
  const auto f = out.make_frame(message_type::changes, next);
  const auto back = in.plain_payload(header_of(f), body_of(f), k_default_max_frame, scratch);
  CHECK(bytes(back.begin(), back.end()) == next);
}

TEST_CASE("frame stream: a chunk past the limit, a broken chunk, a deflate frame are refused", "[protocol][security]") {
  stream_compressor out;
  const auto frame = out.make_frame(message_type::changes, bytes(100'000, 0x01));  // a small bomb
  bytes scratch;
  SECTION("inflating past the receiver's limit: frame_too_large, without inflating it all") {
    stream_decompressor in;
    try {
      in.plain_payload(header_of(frame), body_of(frame), 10'000, scratch);
      FAIL("a chunk inflating past the limit was read");
    } catch (const protocol_error& e) {
      CHECK(e.code() == protocol_errc::frame_too_large);
    }
    CHECK(scratch.size() <= 10'001);
    // The stream cannot go on after a fault.
    CHECK_THROWS_AS(in.plain_payload(header_of(frame), body_of(frame), k_default_max_frame, scratch), protocol_error);
  }
  SECTION("a garbled chunk: malformed") {
    stream_decompressor in;
    auto bad = frame;
    for (std::size_t i = k_frame_header_size; i < bad.size(); ++i) bad[i] ^= 0x5a;
    CHECK_THROWS_AS(in.plain_payload(header_of(bad), body_of(bad), k_default_max_frame, scratch), protocol_error);
  }
  SECTION("a deflate frame on a zstd stream: malformed") {
    const auto deflated = make_frame(message_type::changes, bytes(2000, 0x01), codec::deflate);
    stream_decompressor in;
    CHECK_THROWS_AS(in.plain_payload(header_of(deflated), body_of(deflated), k_default_max_frame, scratch), protocol_error);
  }
}
