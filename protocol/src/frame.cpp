#include <caresync/protocol/errors.hpp>
#include <caresync/protocol/frame.hpp>

#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <memory>

namespace caresync::wire {

namespace {

bool known_type(std::uint8_t t) noexcept {
  return t >= static_cast<std::uint8_t>(message_type::hello) &&
         t <= static_cast<std::uint8_t>(message_type::enrolled);
}

std::uint8_t flag_of(codec c) noexcept {
  switch (c) {
    case codec::deflate: return k_deflate_flag;
    case codec::zstd: return k_zstd_flag;
    case codec::none: break;
  }
  return 0;
}

void write_header(std::uint8_t* out, message_type type, codec compression, std::size_t length) {
  const auto n = static_cast<std::uint32_t>(length);
  out[0] = static_cast<std::uint8_t>(n);
  out[1] = static_cast<std::uint8_t>(n >> 8);
  out[2] = static_cast<std::uint8_t>(n >> 16);
  out[3] = static_cast<std::uint8_t>(n >> 24);
  out[4] = static_cast<std::uint8_t>(static_cast<std::uint8_t>(type) | flag_of(compression));
}

// zstd level 2: on change pages it compresses about as well as the default level 3 and
// as fast as level 1 (bench/README.md); pages are compressed on the server's hot path.
constexpr int k_zstd_level = 2;

/// A thread's scratch buffer stays allocated between frames, up to this size; one that
/// grew past it (an unusually large frame) is given back once used.
constexpr std::size_t k_scratch_keep = 4u << 20;

/// Gives a scratch buffer's memory back when the scope ends if it grew past k_scratch_keep.
struct reuse_guard {
  bytes& buffer;
  ~reuse_guard() {
    if (buffer.capacity() > k_scratch_keep) bytes().swap(buffer);
  }
};

struct zstd_cctx_deleter {
  void operator()(ZSTD_CCtx* c) const noexcept { ZSTD_freeCCtx(c); }
};
struct zstd_dctx_deleter {
  void operator()(ZSTD_DCtx* d) const noexcept { ZSTD_freeDCtx(d); }
};

/// Compresses `in` into `out` (after its header room); returns the compressed size, or
/// 0 when compressing does not make it smaller.
std::size_t compress_into(bytes& out, std::span<const std::uint8_t> in, codec compression) {
  if (compression == codec::deflate) {
    uLongf packed = compressBound(static_cast<uLong>(in.size()));
    out.resize(k_frame_header_size + packed);
    // Level 1: pages are compressed on the server's hot path; it keeps most of the gain.
    if (compress2(out.data() + k_frame_header_size, &packed, in.data(), static_cast<uLong>(in.size()), Z_BEST_SPEED) !=
        Z_OK) {
      return 0;
    }
    return packed < in.size() ? packed : 0;
  }
  // One context per thread, reused: a context holds a few hundred KiB of tables.
  thread_local const std::unique_ptr<ZSTD_CCtx, zstd_cctx_deleter> cctx(ZSTD_createCCtx());
  if (!cctx) return 0;
  // Compressed into the thread's scratch, sized for the worst case, then copied out at
  // its real size: the frame holds a third of the bytes, and no fresh worst-case buffer
  // is zeroed and faulted in for every page.
  thread_local bytes scratch;
  const reuse_guard keep(scratch);
  const std::size_t bound = ZSTD_compressBound(in.size());
  if (scratch.size() < bound) scratch.resize(bound);
  const std::size_t packed = ZSTD_compressCCtx(cctx.get(), scratch.data(), bound, in.data(), in.size(), k_zstd_level);
  if (ZSTD_isError(packed) || packed >= in.size()) return 0;
  out.reserve(k_frame_header_size + packed);
  out.resize(k_frame_header_size);
  out.insert(out.end(), scratch.begin(), scratch.begin() + static_cast<std::ptrdiff_t>(packed));
  return packed;
}

/// Decompresses one zstd frame into at most `limit` bytes. The frame must state its
/// content size (ours always do), so the output is allocated once and never beyond it.
/// Decompresses into the front of `out`, growing it if needed; returns that part.
std::span<const std::uint8_t> zstd_bounded(std::span<const std::uint8_t> in, std::uint32_t limit, bytes& out) {
  const unsigned long long size = ZSTD_getFrameContentSize(in.data(), in.size());
  if (size == ZSTD_CONTENTSIZE_ERROR) throw protocol_error(protocol_errc::malformed, "compressed frame is not a valid zstd frame");
  if (size == ZSTD_CONTENTSIZE_UNKNOWN) {
    throw protocol_error(protocol_errc::malformed, "zstd frame does not state its size");
  }
  if (size > limit) {
    throw protocol_error(protocol_errc::frame_too_large,
                         "compressed frame inflates beyond the limit of " + std::to_string(limit) + " bytes");
  }
  // Exactly one frame: no second frame or other bytes after it.
  const std::size_t frame_bytes = ZSTD_findFrameCompressedSize(in.data(), in.size());
  if (ZSTD_isError(frame_bytes)) throw protocol_error(protocol_errc::malformed, "compressed frame is truncated");
  if (frame_bytes != in.size()) throw protocol_error(protocol_errc::malformed, "compressed frame has bytes after its end");
  thread_local const std::unique_ptr<ZSTD_DCtx, zstd_dctx_deleter> dctx(ZSTD_createDCtx());
  if (!dctx) throw protocol_error(protocol_errc::malformed, "cannot start decompressing a frame");
  // `out` keeps the room it has: a reused buffer is neither zeroed again nor reallocated.
  const auto n = static_cast<std::size_t>(size);
  if (out.size() < n) out.resize(n);
  const std::size_t produced = ZSTD_decompressDCtx(dctx.get(), out.data(), n, in.data(), in.size());
  if (ZSTD_isError(produced) || produced != n) {
    throw protocol_error(protocol_errc::malformed, "compressed frame is not a valid zstd frame");
  }
  return std::span<const std::uint8_t>(out.data(), n);
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
  const std::uint8_t type = h[4] & static_cast<std::uint8_t>(~(k_deflate_flag | k_zstd_flag));
  if (!known_type(type)) {
    throw protocol_error(protocol_errc::unknown_message, "frame type " + std::to_string(type) + " is unknown");
  }
  const bool deflated = (h[4] & k_deflate_flag) != 0;
  const bool zstd = (h[4] & k_zstd_flag) != 0;
  if (deflated && zstd) throw protocol_error(protocol_errc::malformed, "frame claims two compressions at once");
  out.compression = deflated ? codec::deflate : zstd ? codec::zstd : codec::none;
  out.type = static_cast<message_type>(type);
  if (out.length > max_frame) {
    throw protocol_error(protocol_errc::frame_too_large,
                         "frame of " + std::to_string(out.length) + " bytes exceeds the limit of " +
                             std::to_string(max_frame) + " bytes");
  }
  return out;
}

codec codec_of(std::uint32_t features) noexcept {
  if (features & k_feature_zstd) return codec::zstd;
  if (features & k_feature_deflate) return codec::deflate;
  return codec::none;
}

bytes make_frame(message_type type, std::span<const std::uint8_t> payload, codec compression) {
  bytes out;
  if (compression != codec::none && payload.size() >= k_compress_threshold) {
    if (const std::size_t packed = compress_into(out, payload, compression)) {
      out.resize(k_frame_header_size + packed);
      write_header(out.data(), type, compression, packed);
      return out;
    }
  }
  out.resize(k_frame_header_size + payload.size());
  write_header(out.data(), type, codec::none, payload.size());
  std::copy(payload.begin(), payload.end(), out.begin() + k_frame_header_size);
  return out;
}

bytes make_frame(const message& m, codec compression) { return make_frame(type_of(m), encode(m), compression); }

std::span<const std::uint8_t> plain_payload(const frame_header& h, std::span<const std::uint8_t> payload,
                                           std::uint32_t max_frame, codec agreed, bytes& scratch) {
  if (h.compression == codec::none) return payload;
  if (h.compression != agreed) {
    throw protocol_error(protocol_errc::malformed, "a compressed frame was sent but compression was not agreed");
  }
  if (h.compression == codec::zstd) return zstd_bounded(payload, max_frame, scratch);
  scratch = inflate_bounded(payload, max_frame);
  return scratch;
}

message read_payload(const frame_header& h, std::span<const std::uint8_t> payload, std::uint32_t max_frame,
                     codec agreed) {
  // decode() copies what it keeps: the thread's buffer serves the next frame too.
  thread_local bytes scratch;
  const reuse_guard keep(scratch);
  return decode(h.type, plain_payload(h, payload, max_frame, agreed, scratch));
}

}  // namespace caresync::wire
