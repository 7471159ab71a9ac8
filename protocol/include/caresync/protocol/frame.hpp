#pragma once
/// Framing: every message travels as a 5-byte header (payload length, u32 little-endian;
/// type byte whose bit 0x80 marks a deflate-compressed payload and bit 0x40 a
/// zstd-compressed one) followed by the payload.
/// Thread contract: free functions, no shared state.

#include <caresync/protocol/codec.hpp>

#include <array>
#include <cstdint>
#include <span>

namespace caresync::wire {

inline constexpr std::size_t k_frame_header_size = 5;
inline constexpr std::uint8_t k_deflate_flag = 0x80;
inline constexpr std::uint8_t k_zstd_flag = 0x40;

/// How a frame's payload is compressed; a session agrees on one in hello/welcome.
enum class codec : std::uint8_t { none, deflate, zstd };

/// The codec granted by welcome.features (none if neither bit is set).
codec codec_of(std::uint32_t features) noexcept;
/// Default largest frame, compressed or not: 16 MiB.
inline constexpr std::uint32_t k_default_max_frame = 16u << 20;
/// Payloads shorter than this are never compressed: it would not pay.
inline constexpr std::size_t k_compress_threshold = 512;

struct frame_header {
  message_type type{};
  codec compression = codec::none;
  std::uint32_t length = 0;  ///< payload bytes that follow the header
};

/// Parses and checks a frame header before its payload is read: refuses (protocol_error)
/// a length above `max_frame` (frame_too_large), an unknown type (unknown_message) and
/// both compression bits at once (malformed).
frame_header parse_header(std::span<const std::uint8_t, k_frame_header_size> header,
                          std::uint32_t max_frame);

/// Makes a whole frame (header and payload) for `m`. With a codec, a payload of at least
/// k_compress_threshold bytes is compressed when that makes it smaller.
bytes make_frame(const message& m, codec compression = codec::none);

/// Makes a frame from an already-encoded payload (see changes_page_builder).
bytes make_frame(message_type type, std::span<const std::uint8_t> payload, codec compression = codec::none);

/// A frame's payload as encoded: `payload` itself, or decompressed into the front of
/// `scratch` if the header says so (the checks and limits of read_payload). A `scratch`
/// reused from an earlier frame is grown only when too small, never shrunk, so it may be
/// longer than the span returned. Throws protocol_error.
std::span<const std::uint8_t> plain_payload(const frame_header& h, std::span<const std::uint8_t> payload,
                                           std::uint32_t max_frame, codec agreed, bytes& scratch);

/// Decodes a frame's payload, decompressing it first if the header says so; the
/// decompressed size may not exceed `max_frame`. A frame compressed with another codec
/// than `agreed` is refused (malformed: "compression was not agreed"). Throws
/// protocol_error on any fault.
message read_payload(const frame_header& h, std::span<const std::uint8_t> payload, std::uint32_t max_frame,
                     codec agreed);

}  // namespace caresync::wire
