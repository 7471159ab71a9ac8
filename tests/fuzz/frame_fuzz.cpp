// libFuzzer target for the frame decoder (docs/protocol.md, "Framing", "Compression",
// "Payload encoding"). Its input stands for bytes from a hostile peer or a damaged
// store:
//
//   byte 0, bits 0-1   0, 1, 2: the codec the session agreed (none, deflate, zstd); the
//                      rest is a stream of frames, read as a connection reads them:
//                      header (limit 1 MiB), payload, read_payload, next frame.
//                      3: the rest is one change as stored (decode_change).
//   byte 0, bits 2-7   unused.
//
// Every fault must end in caresync::error (in practice protocol_error): any other
// exception, a crash or a sanitizer report is a bug. What decodes must survive a round
// trip (the oracle; a failure aborts): encoded again it decodes to the same message and
// encodes to the same bytes, as a whole frame with the agreed codec too; a changes page
// rebuilt from its stored changes by changes_page_builder is byte for byte the page; a
// stored change served as a page item decodes to the same change.
//
// Built twice (tests/fuzz/CMakeLists.txt): with libFuzzer (clang, CARESYNC_FUZZ) and
// with replay_main.cpp, which CTest runs over the seed corpus with any compiler.

#include <caresync/protocol/change.hpp>
#include <caresync/protocol/codec.hpp>
#include <caresync/protocol/errors.hpp>
#include <caresync/protocol/frame.hpp>
#include <caresync/protocol/messages.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <span>
#include <string>
#include <typeinfo>
#include <variant>

namespace {

using namespace caresync;
using wire::bytes;

/// The receiver's frame limit while fuzzing. Smaller than the 16 MiB default so that
/// inputs that inflate to the limit stay fast; the code paths are the same.
constexpr std::uint32_t k_fuzz_max_frame = 1u << 20;

/// The mode byte's value that selects a stored change instead of frames.
constexpr std::uint8_t k_stored_change_mode = 3;

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "caresync frame fuzz: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

std::string name_of(const wire::message& m) { return wire::to_string(wire::type_of(m)); }

// NaN != NaN, so a message holding a NaN real never compares equal to its copy; for
// those the byte comparison of the encodings is the oracle.
bool is_nan(const value& v) { return std::holds_alternative<double>(v) && std::isnan(std::get<double>(v)); }

bool has_nan(const change& c) {
  return std::any_of(c.fields.begin(), c.fields.end(), [](const field_write& f) { return is_nan(f.val); });
}

bool has_nan(const wire::prime_spec& p) {
  return std::any_of(p.tiers.begin(), p.tiers.end(), [](const wire::prime_tier& t) { return is_nan(t.operand); });
}

struct nan_finder {
  bool operator()(const wire::push& m) const {
    return std::any_of(m.changes.begin(), m.changes.end(), [](const change& c) { return has_nan(c); });
  }
  bool operator()(const wire::changes_page& m) const {
    // The backfilled changes too (a change block since version 7; a NaN there is as
    // unequal to itself as in the items).
    const auto nan = [](const sequenced_change& i) { return has_nan(i.body); };
    return std::any_of(m.items.begin(), m.items.end(), nan) || std::any_of(m.backfill.begin(), m.backfill.end(), nan);
  }
  bool operator()(const wire::pull& m) const { return has_nan(m.prime); }
  bool operator()(const wire::prime& m) const { return has_nan(m.spec); }
  template <class other_message>
  bool operator()(const other_message&) const {
    return false;
  }
};

bool has_nan(const wire::message& m) { return std::visit(nan_finder{}, m); }

/// A decoded change: encoded again, it decodes to itself and encodes to the same bytes.
/// The receiver's check must give an answer, never throw.
void check_change_round_trip(const change& c) {
  const bytes stored = wire::encode_change(c);
  change again;
  try {
    again = wire::decode_change(stored);
  } catch (const caresync::error& e) {
    fail(std::string("a decoded change, encoded again, does not decode: ") + e.what());
  }
  if (wire::encode_change(again) != stored) fail("a decoded change encodes to other bytes after a round trip");
  if (!(again == c) && !has_nan(c)) fail("a decoded change differs from itself after a round trip");
  (void)check_change(c);
}

/// A decoded changes page: rebuilt from its changes in stored form, as the server
/// serves pages, it is byte for byte the page's own encoding.
void check_page_builder(const wire::changes_page& page, const bytes& payload) {
  wire::changes_page_builder builder;
  std::size_t item_bytes = 0;
  for (const auto& item : page.items) {
    builder.add(item.seq, wire::encode_change(item.body));
    item_bytes += wire::page_item_bytes(item);
  }
  if (builder.count() != page.items.size() || builder.size_bytes() != item_bytes) {
    fail("changes_page_builder counts other items or bytes than page_item_bytes");
  }
  // Version 5: the scope section.
  builder.set_scope_epoch(page.scope_epoch);
  for (const auto& p : page.purges) builder.add_purge(p.collection, p.id);
  for (const auto& item : page.backfill) builder.add_backfill(item.seq, wire::encode_change(item.body));
  if (builder.purge_count() != page.purges.size() || builder.backfill_count() != page.backfill.size()) {
    fail("changes_page_builder counts other purges or backfilled changes than the page holds");
  }
  if (builder.finish(page.next_cursor, page.more, page.remaining_changes, page.remaining_bytes) != payload) {
    fail("a changes page rebuilt by changes_page_builder differs from its encoding");
  }
}

/// The oracle for a message read from a frame of type `type`.
void check_round_trip(const wire::message& m, wire::message_type type, wire::codec agreed) {
  if (wire::type_of(m) != type) fail("a frame of type " + std::string(wire::to_string(type)) + " decoded as " + name_of(m));
  const bytes payload = wire::encode(m);
  wire::message again;
  try {
    again = wire::decode(type, payload);
  } catch (const caresync::error& e) {
    fail("a decoded " + name_of(m) + ", encoded again, does not decode: " + e.what());
  }
  if (wire::encode(again) != payload) fail("a decoded " + name_of(m) + " encodes to other bytes after a round trip");
  if (!(again == m) && !has_nan(m)) fail("a decoded " + name_of(m) + " differs from itself after a round trip");

  // The whole frame as this side would send it, compressed with the agreed codec.
  const bytes frame = wire::make_frame(m, agreed);
  try {
    const auto h = wire::parse_header(std::span<const std::uint8_t, wire::k_frame_header_size>(frame.data(),
                                                                                              wire::k_frame_header_size),
                                      k_fuzz_max_frame);
    if (h.type != type || h.length != frame.size() - wire::k_frame_header_size) {
      fail("make_frame wrote a header that does not describe its " + name_of(m));
    }
    const auto back = wire::read_payload(h, std::span(frame).subspan(wire::k_frame_header_size), k_fuzz_max_frame, agreed);
    if (wire::encode(back) != payload) fail("a " + name_of(m) + " sent as a frame comes back as other bytes");
  } catch (const caresync::error& e) {
    fail("a " + name_of(m) + " made into a frame by make_frame is refused: " + e.what());
  }

  if (const auto* push = std::get_if<wire::push>(&m)) {
    for (const auto& c : push->changes) check_change_round_trip(c);
  } else if (const auto* page = std::get_if<wire::changes_page>(&m)) {
    for (const auto& item : page->items) check_change_round_trip(item.body);
    check_page_builder(*page, payload);
  }
}

/// Reads frames as a connection does until the input ends or a header is refused (a
/// receiver cannot resynchronise after that). A refused payload ends only its frame, so
/// that one input can reach several frames.
void read_frames(std::span<const std::uint8_t> in, wire::codec agreed) {
  while (in.size() >= wire::k_frame_header_size) {
    wire::frame_header h;
    try {
      h = wire::parse_header(in.first<wire::k_frame_header_size>(), k_fuzz_max_frame);
    } catch (const caresync::error&) {
      return;
    }
    in = in.subspan(wire::k_frame_header_size);
    if (h.length > in.size()) return;  // the connection ends inside the payload
    const auto payload = in.first(h.length);
    in = in.subspan(h.length);
    wire::message m;
    try {
      m = wire::read_payload(h, payload, k_fuzz_max_frame, agreed);
    } catch (const caresync::error&) {
      continue;
    }
    check_round_trip(m, h.type, agreed);
  }
}

/// A change as stored by an outbox or the server's log.
void read_stored_change(std::span<const std::uint8_t> stored) {
  change c;
  try {
    c = wire::decode_change(stored);
  } catch (const caresync::error&) {
    return;
  }
  check_change_round_trip(c);
  // Served as it is stored: the server copies stored bytes into a page unchanged.
  wire::changes_page_builder builder;
  builder.add(1, stored);
  const bytes page_payload = builder.finish(2, false);
  try {
    const auto page = std::get<wire::changes_page>(wire::decode(wire::message_type::changes, page_payload));
    if (page.items.size() != 1 || page.items.front().seq != 1) fail("a stored change served as a page lost its item");
    if (wire::encode_change(page.items.front().body) != wire::encode_change(c) ||
        (!(page.items.front().body == c) && !has_nan(c))) {
      fail("a stored change served as a page item decodes to another change");
    }
  } catch (const caresync::error& e) {
    fail(std::string("a stored change that decodes is refused as a page item: ") + e.what());
  }
}

void run(std::span<const std::uint8_t> in) {
  if (in.empty()) return;
  const std::uint8_t mode = in.front() & 0x03;
  in = in.subspan(1);
  if (mode == k_stored_change_mode) {
    read_stored_change(in);
  } else {
    read_frames(in, static_cast<wire::codec>(mode));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    run(std::span<const std::uint8_t>(data, size));
  } catch (const caresync::error& e) {
    // Refusals of the input are caught where they are expected, above; this one came
    // from encoding, the page builder or check_change, which must not refuse what
    // decoded.
    fail(std::string("a caresync::error outside decoding: ") + e.what());
  } catch (const std::exception& e) {
    fail(std::string("decoding threw ") + typeid(e).name() + ", not caresync::error: " + e.what());
  } catch (...) {
    fail("decoding threw something that is not a std::exception");
  }
  return 0;
}
