#pragma once
/// Stream compression (protocol version 7, feature bit 4, `zstd_stream`;
/// docs/protocol.md, "Compression"): once granted, the server's compressed frames of one
/// connection are the chunks of one zstd stream, each flushed at its frame's end, so that
/// a page is compressed with the pages before it as context. Small pages (sized to a slow
/// link) then compress as well as one large one. A cut ends the stream with the
/// connection; the next connection starts a new one.
/// Thread contract: one object per connection and direction, one thread at a time; frames
/// are made (and read) in the order they are sent.

#include <caresync/protocol/frame.hpp>

#include <cstdint>
#include <memory>
#include <span>

namespace caresync::wire {

/// Makes the frames one side sends on a connection with stream compression.
class stream_compressor {
 public:
  stream_compressor();
  ~stream_compressor();
  stream_compressor(const stream_compressor&) = delete;
  stream_compressor& operator=(const stream_compressor&) = delete;

  /// A whole frame: a payload of at least k_compress_threshold bytes goes compressed
  /// (bit 6) as the stream's next chunk, even when that does not make it smaller (the
  /// stream cannot take a chunk back); a shorter one goes plain, outside the stream.
  /// Throws protocol_error (malformed) if the compressor fails, which ends the stream.
  bytes make_frame(message_type type, std::span<const std::uint8_t> payload);
  bytes make_frame(const message& m);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// Reads the frames the other side made with a stream_compressor.
class stream_decompressor {
 public:
  stream_decompressor();
  ~stream_decompressor();
  stream_decompressor(const stream_decompressor&) = delete;
  stream_decompressor& operator=(const stream_decompressor&) = delete;

  /// A frame's payload as plain_payload() gives it, a compressed frame (bit 6) read as
  /// the stream's next chunk: it must decompress, with nothing left over, to at most
  /// `max_frame` bytes (frame_too_large once it would pass them). A deflate frame (bit 7)
  /// is malformed. Throws protocol_error; after a throw the stream cannot go on.
  std::span<const std::uint8_t> plain_payload(const frame_header& h, std::span<const std::uint8_t> payload,
                                             std::uint32_t max_frame, bytes& scratch);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace caresync::wire
