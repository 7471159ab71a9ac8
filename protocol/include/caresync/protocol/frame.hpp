#pragma once
/// Framing: every message travels as a 5-byte header (payload length, u32 little-endian;
/// type byte whose top bit marks a deflate-compressed payload) followed by the payload.
/// Thread contract: free functions, no shared state.

#include <caresync/protocol/codec.hpp>

#include <array>
#include <cstdint>
#include <span>

namespace caresync::wire {

inline constexpr std::size_t k_frame_header_size = 5;
inline constexpr std::uint8_t k_compressed_flag = 0x80;
/// Default largest frame, compressed or not: 16 MiB.
inline constexpr std::uint32_t k_default_max_frame = 16u << 20;
/// Payloads shorter than this are never compressed: it would not pay.
inline constexpr std::size_t k_compress_threshold = 512;

struct frame_header {
  message_type type{};
  bool compressed = false;
  std::uint32_t length = 0;  ///< payload bytes that follow the header
};

/// Parses and checks a frame header before its payload is read: refuses (protocol_error)
/// a length above `max_frame` (frame_too_large) and an unknown type (unknown_message).
frame_header parse_header(std::span<const std::uint8_t, k_frame_header_size> header,
                          std::uint32_t max_frame);

/// Makes a whole frame (header and payload) for `m`. With `deflate`, a payload of at
/// least k_compress_threshold bytes is compressed when that makes it smaller.
bytes make_frame(const message& m, bool deflate);

/// Makes a frame from an already-encoded payload (see changes_page_builder).
bytes make_frame(message_type type, std::span<const std::uint8_t> payload, bool deflate);

/// Decodes a frame's payload, inflating it first if the header says so; the inflated
/// size may not exceed `max_frame`. Throws protocol_error on any fault.
message read_payload(const frame_header& h, std::span<const std::uint8_t> payload,
                     std::uint32_t max_frame);

}  // namespace caresync::wire
