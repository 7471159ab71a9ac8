// Stream compression (docs/protocol.md, "Compression"): one zstd stream per connection
// and direction, each frame's payload compressed with ZSTD_e_flush so that it decodes on
// its own once the frames before it are read.

#include <caresync/protocol/errors.hpp>
#include <caresync/protocol/frame_stream.hpp>

#include <zstd.h>

#include <cstring>
#include <string>

namespace caresync::wire {

namespace {

/// Level 2, as standalone frames (frame.cpp); a window of 256 KiB keeps a connection's
/// context at about half a megabyte on the server while covering several pages.
constexpr int k_stream_level = 2;
constexpr int k_stream_window_log = 18;

struct cctx_deleter {
  void operator()(ZSTD_CCtx* c) const noexcept { ZSTD_freeCCtx(c); }
};
struct dctx_deleter {
  void operator()(ZSTD_DCtx* d) const noexcept { ZSTD_freeDCtx(d); }
};

void put_header(bytes& out, message_type type, std::size_t length, bool compressed) {
  const auto n = static_cast<std::uint32_t>(length);
  for (int i = 0; i < 4; ++i) out[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(n >> (8 * i));
  out[4] = static_cast<std::uint8_t>(static_cast<std::uint8_t>(type) | (compressed ? k_zstd_flag : 0));
}

}  // namespace

struct stream_compressor::impl {
  std::unique_ptr<ZSTD_CCtx, cctx_deleter> cctx;  // made at the first compressed frame
  bool failed = false;
};

stream_compressor::stream_compressor() : impl_(std::make_unique<impl>()) {}
stream_compressor::~stream_compressor() = default;

bytes stream_compressor::make_frame(const message& m) { return make_frame(type_of(m), encode(m)); }

bytes stream_compressor::make_frame(message_type type, std::span<const std::uint8_t> payload) {
  if (payload.size() > 0xffffffffu) throw protocol_error(protocol_errc::frame_too_large, "a frame payload exceeds 4 GiB");
  if (payload.size() < k_compress_threshold) {
    bytes out(k_frame_header_size + payload.size());
    put_header(out, type, payload.size(), false);
    if (!payload.empty()) std::memcpy(out.data() + k_frame_header_size, payload.data(), payload.size());
    return out;
  }
  bytes out(k_frame_header_size);
  if (impl_->failed) throw protocol_error(protocol_errc::malformed, "the compression stream failed before");
  if (!impl_->cctx) {
    impl_->cctx.reset(ZSTD_createCCtx());
    if (!impl_->cctx || ZSTD_isError(ZSTD_CCtx_setParameter(impl_->cctx.get(), ZSTD_c_compressionLevel, k_stream_level)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(impl_->cctx.get(), ZSTD_c_windowLog, k_stream_window_log))) {
      impl_->failed = true;
      throw protocol_error(protocol_errc::malformed, "cannot start a compression stream");
    }
  }
  out.resize(k_frame_header_size + ZSTD_compressBound(payload.size()) + 16);
  ZSTD_inBuffer in{payload.data(), payload.size(), 0};
  ZSTD_outBuffer dst{out.data() + k_frame_header_size, out.size() - k_frame_header_size, 0};
  for (;;) {
    const std::size_t left = ZSTD_compressStream2(impl_->cctx.get(), &dst, &in, ZSTD_e_flush);
    if (ZSTD_isError(left)) {
      impl_->failed = true;
      throw protocol_error(protocol_errc::malformed, std::string("compressing a frame failed: ") + ZSTD_getErrorName(left));
    }
    if (left == 0) break;
    // More to flush than room: grow and go on.
    out.resize(out.size() * 2);
    dst.dst = out.data() + k_frame_header_size;
    dst.size = out.size() - k_frame_header_size;
  }
  out.resize(k_frame_header_size + dst.pos);
  put_header(out, type, dst.pos, true);
  return out;
}

struct stream_decompressor::impl {
  std::unique_ptr<ZSTD_DCtx, dctx_deleter> dctx;
  bool failed = false;
};

stream_decompressor::stream_decompressor() : impl_(std::make_unique<impl>()) {}
stream_decompressor::~stream_decompressor() = default;

std::span<const std::uint8_t> stream_decompressor::plain_payload(const frame_header& h, std::span<const std::uint8_t> payload,
                                                                std::uint32_t max_frame, bytes& scratch) {
  if (h.compression == codec::none) return payload;
  if (h.compression != codec::zstd) {
    throw protocol_error(protocol_errc::malformed, "a deflate frame on a zstd stream: compression was not agreed");
  }
  if (impl_->failed) throw protocol_error(protocol_errc::malformed, "the compression stream failed before");
  if (!impl_->dctx) {
    impl_->dctx.reset(ZSTD_createDCtx());
    // The window the sender may use, and no more: a peer cannot make this side hold more.
    if (!impl_->dctx || ZSTD_isError(ZSTD_DCtx_setParameter(impl_->dctx.get(), ZSTD_d_windowLogMax, k_stream_window_log))) {
      impl_->failed = true;
      throw protocol_error(protocol_errc::malformed, "cannot start a decompression stream");
    }
  }
  impl_->failed = true;  // until this chunk is read whole
  ZSTD_inBuffer in{payload.data(), payload.size(), 0};
  std::size_t produced = 0;
  // Grown as needed, never past the limit (plus one byte to see it passed).
  const std::size_t cap = static_cast<std::size_t>(max_frame) + 1;
  if (scratch.size() < std::min<std::size_t>(cap, std::max<std::size_t>(payload.size() * 4, 64u << 10))) {
    scratch.resize(std::min<std::size_t>(cap, std::max<std::size_t>(payload.size() * 4, 64u << 10)));
  }
  for (;;) {
    ZSTD_outBuffer out{scratch.data(), std::min(scratch.size(), cap), produced};
    const std::size_t hint = ZSTD_decompressStream(impl_->dctx.get(), &out, &in);
    if (ZSTD_isError(hint)) {
      throw protocol_error(protocol_errc::malformed, std::string("compressed frame is not valid: ") + ZSTD_getErrorName(hint));
    }
    produced = out.pos;
    if (produced > max_frame) {
      throw protocol_error(protocol_errc::frame_too_large,
                           "compressed frame inflates beyond the limit of " + std::to_string(max_frame) + " bytes");
    }
    if (in.pos == in.size && out.pos < out.size) break;  // all read, all flushed out
    if (out.pos == out.size) scratch.resize(std::min(cap, scratch.size() * 2));
  }
  impl_->failed = false;
  if (produced == 0) throw protocol_error(protocol_errc::malformed, "a compressed frame holds no payload");
  return std::span<const std::uint8_t>(scratch.data(), produced);
}

}  // namespace caresync::wire
