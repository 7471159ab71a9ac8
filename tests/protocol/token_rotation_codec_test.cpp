// Token rotation on the wire (docs/protocol.md, "Token rotation"): the welcome's
// new_token is there exactly when the welcome grants k_feature_token_rotation.

#include <caresync/protocol/codec.hpp>
#include <caresync/protocol/errors.hpp>
#include <caresync/protocol/frame.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdio>
#include <string>

using namespace caresync;

namespace {

std::string to_hex(const wire::bytes& b) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (const auto v : b) {
    out += digits[v >> 4];
    out += digits[v & 15];
  }
  return out;
}

/// The welcome of the worked example in docs/protocol.md, "a welcome with a new token".
wire::welcome example_welcome() {
  wire::welcome w;
  w.server_name = "caresync-server";
  w.server_time_ms = 1'700'000'000'000ULL;
  w.features = wire::k_feature_zstd | wire::k_feature_token_rotation;
  w.max_frame_bytes = 16u << 20;
  w.max_push_changes = 5000;
  w.log_head = 42;
  w.max_clock_ahead_ms = 300'000;
  w.new_token = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
  return w;
}

// Pasted in docs/protocol.md; change one and the other changes with it.
const char* const k_welcome_frame_hex =
    "6c000000" "02"                                     // header: 108 bytes, welcome
    "01" "0700"                                         // marker, protocol version 7
    "0f" "6361726573796e632d736572766572"               // server_name "caresync-server"
    "0068e5cf8b010000"                                  // server_time_ms 1700000000000
    "22000000"                                          // features: zstd (bit 1), token_rotation (bit 5)
    "00000001"                                          // max_frame_bytes 16777216
    "88130000"                                          // max_push_changes 5000
    "2a"                                                // log_head 42
    "e0a712"                                            // max_clock_ahead_ms 300000
    "40" "30303131323233333434353536363737383839396161626263636464656566663030313132323333343435353636373738383939616162626363646465656666";  // new_token, 64 characters

}  // namespace

TEST_CASE("token rotation: the doc's welcome with a new token, byte for byte", "[protocol]") {
  const auto frame = wire::make_frame(example_welcome(), wire::codec::zstd);  // welcome is never compressed
  CHECK(to_hex(frame) == k_welcome_frame_hex);
  CHECK(frame.size() == 113);
  const auto decoded = wire::decode(wire::message_type::welcome, std::span(frame).subspan(wire::k_frame_header_size));
  REQUIRE(std::holds_alternative<wire::welcome>(decoded));
  CHECK(std::get<wire::welcome>(decoded) == example_welcome());
}

TEST_CASE("token rotation: the new token is on the wire exactly when the bit is granted", "[protocol]") {
  auto w = example_welcome();
  const auto with = wire::encode(w);
  SECTION("without the bit, the welcome is as before and ends after max_clock_ahead_ms") {
    w.features = wire::k_feature_zstd;
    w.new_token.clear();
    const auto without = wire::encode(w);
    CHECK(without.size() + 1 + 64 == with.size());
    constexpr std::size_t k_after_features = 1 + 2 + 16 + 8 + 4;  // marker, version, server name, time, features
    CHECK(std::equal(without.begin() + k_after_features, without.end(), with.begin() + k_after_features));
    const auto decoded = std::get<wire::welcome>(wire::decode(wire::message_type::welcome, without));
    CHECK(decoded.new_token.empty());
    CHECK(decoded == w);
  }
  SECTION("a token without the bit is not sent (an older client never sees it)") {
    w.features = wire::k_feature_zstd;
    const auto bytes = wire::encode(w);
    CHECK(std::get<wire::welcome>(wire::decode(wire::message_type::welcome, bytes)).new_token.empty());
    CHECK(bytes.size() + 65 == with.size());
  }
  SECTION("the bit with the token cut off is malformed") {
    auto cut = with;
    cut.resize(cut.size() - 1);
    try {
      (void)wire::decode(wire::message_type::welcome, cut);
      FAIL("decoded a welcome whose new token is cut off");
    } catch (const protocol_error& e) {
      CHECK(e.code() == protocol_errc::malformed);
    }
  }
  SECTION("the bit with an empty token is malformed") {
    w.new_token.clear();
    try {
      (void)wire::decode(wire::message_type::welcome, wire::encode(w));
      FAIL("decoded a welcome granting token_rotation with an empty token");
    } catch (const protocol_error& e) {
      CHECK(e.code() == protocol_errc::malformed);
    }
  }
  SECTION("the bit without the field (a welcome ending early) is malformed") {
    w.features = wire::k_feature_zstd;
    auto bytes = wire::encode(w);
    bytes[1 + 2 + 16 + 8] |= 0x20;  // features' low byte
    try {
      (void)wire::decode(wire::message_type::welcome, bytes);
      FAIL("decoded a welcome granting token_rotation without a token");
    } catch (const protocol_error& e) {
      CHECK(e.code() == protocol_errc::malformed);
    }
  }
}

TEST_CASE("token rotation: print the doc's welcome", "[.dump]") {
  const auto frame = wire::make_frame(example_welcome());
  for (std::size_t i = 0; i < frame.size(); i += 16) {
    std::printf("%04zx ", i);
    for (std::size_t j = i; j < i + 16 && j < frame.size(); ++j) std::printf(" %02x", frame[j]);
    std::printf("\n");
  }
}
