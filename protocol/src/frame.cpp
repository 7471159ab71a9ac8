#include <caresync/protocol/errors.hpp>
#include <caresync/protocol/frame.hpp>

#include <zlib.h>

#include <algorithm>
#include <memory>

namespace caresync::wire {

namespace {

bool known_type(std::uint8_t t) noexcept {
  return t >= static_cast<std::uint8_t>(message_type::hello) &&
         t <= static_cast<std::uint8_t>(message_type::pong);
}

void put_header(bytes& out, message_type type, bool compressed, std::size_t length) {
  const auto n = static_cast<std::uint32_t>(length);
  out.push_back(static_cast<std::uint8_t>(n));
  out.push_back(static_cast<std::uint8_t>(n >> 8));
  out.push_back(static_cast<std::uint8_t>(n >> 16));
  out.push_back(static_cast<std::uint8_t>(n >> 24));
  out.push_back(static_cast<std::uint8_t>(static_cast<std::uint8_t>(type) | (compressed ? k_compressed_flag : 0)));
}

/// Inflates a zlib stream (RFC 1950) into at most `limit` bytes.
bytes inflate_bounded(std::span<const std::uint8_t> in, std::uint32_t limit) {
  z_stream zs{};
  if (inflateInit(&zs) != Z_OK) throw protocol_error(protocol_errc::malformed, "cannot start inflating a frame");
  const std::unique_ptr<z_stream, int (*)(z_stream*)> guard(&zs, inflateEnd);
  zs.next_in = const_cast<Bytef*>(in.data());
  zs.avail_in = static_cast<uInt>(in.size());
  bytes out(std::min<std::size_t>(limit, std::max<std::size_t>(in.size() * 4, 4096)));
  std::size_t produced = 0;
  for (;;) {
    zs.next_out = out.data() + produced;
    zs.avail_out = static_cast<uInt>(out.size() - produced);
    const int rc = inflate(&zs, Z_NO_FLUSH);
    produced = out.size() - zs.avail_out;
    if (rc == Z_STREAM_END) {
      if (zs.avail_in != 0) {
        throw protocol_error(protocol_errc::malformed, "compressed frame has bytes after its end");
      }
      out.resize(produced);
      return out;
    }
    if (rc != Z_OK && rc != Z_BUF_ERROR) {
      throw protocol_error(protocol_errc::malformed, "compressed frame is not a valid zlib stream");
    }
    if (zs.avail_out == 0) {
      if (out.size() >= limit) {
        throw protocol_error(protocol_errc::frame_too_large,
                             "compressed frame inflates beyond the limit of " + std::to_string(limit) + " bytes");
      }
      out.resize(std::min<std::size_t>(limit, out.size() * 2));
    } else if (zs.avail_in == 0) {
      throw protocol_error(protocol_errc::malformed, "compressed frame is truncated");
    }
  }
}

}  // namespace

frame_header parse_header(std::span<const std::uint8_t, k_frame_header_size> h, std::uint32_t max_frame) {
  frame_header out;
  out.length = static_cast<std::uint32_t>(h[0]) | static_cast<std::uint32_t>(h[1]) << 8 |
               static_cast<std::uint32_t>(h[2]) << 16 | static_cast<std::uint32_t>(h[3]) << 24;
  const std::uint8_t type = h[4] & static_cast<std::uint8_t>(~k_compressed_flag);
  out.compressed = (h[4] & k_compressed_flag) != 0;
  if (!known_type(type)) {
    throw protocol_error(protocol_errc::unknown_message, "frame type " + std::to_string(type) + " is unknown");
  }
  out.type = static_cast<message_type>(type);
  if (out.length > max_frame) {
    throw protocol_error(protocol_errc::frame_too_large,
                         "frame of " + std::to_string(out.length) + " bytes exceeds the limit of " +
                             std::to_string(max_frame) + " bytes");
  }
  return out;
}

bytes make_frame(message_type type, std::span<const std::uint8_t> payload, bool deflate) {
  bytes out;
  if (deflate && payload.size() >= k_compress_threshold) {
    uLongf packed_size = compressBound(static_cast<uLong>(payload.size()));
    out.resize(k_frame_header_size + packed_size);
    // Level 1: pages are compressed on the server's hot path; it keeps most of the gain.
    if (compress2(out.data() + k_frame_header_size, &packed_size, payload.data(),
                  static_cast<uLong>(payload.size()), Z_BEST_SPEED) == Z_OK &&
        packed_size < payload.size()) {
      out.resize(k_frame_header_size + packed_size);
      bytes header;
      put_header(header, type, true, packed_size);
      std::copy(header.begin(), header.end(), out.begin());
      return out;
    }
    out.clear();
  }
  out.reserve(k_frame_header_size + payload.size());
  put_header(out, type, false, payload.size());
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

bytes make_frame(const message& m, bool deflate) {
  return make_frame(type_of(m), encode(m), deflate);
}

message read_payload(const frame_header& h, std::span<const std::uint8_t> payload, std::uint32_t max_frame) {
  if (!h.compressed) return decode(h.type, payload);
  const bytes plain = inflate_bounded(payload, max_frame);
  return decode(h.type, plain);
}

}  // namespace caresync::wire
