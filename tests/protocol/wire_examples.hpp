#pragma once
// The messages whose exact frames docs/protocol.md shows as worked examples. The doc's
// hex dumps are printed by `caresync_protocol_tests "[.dump]"` and asserted in
// codec_test.cpp; change one and the other must change with it.
// Since protocol version 7 a push carries no node id per change: as_decoded() is the
// push a receiver decodes from one of these.

#include <caresync/protocol/messages.hpp>

#include <cstdint>
#include <string>

namespace caresync::testing {

inline wire::ping example_ping() { return wire::ping{0x0123456789abcdefULL}; }

inline wire::push example_push() {
  wire::push p;
  p.batch = *record_id::parse("6f1c2a4e-8b3d-4c5e-9f00-112233445566");
  change c;
  c.collection = "visit";
  c.id = *record_id::parse("0a1b2c3d-4e5f-4a6b-8c7d-8e9fa0b1c2d3");
  c.ver = version{hlc_stamp::make(1'700'000'000'000ULL, 1), 0x1122334455667788ULL};
  c.kind = change_kind::upsert;
  c.fields = {
      {"minutes", value{std::int64_t{45}}},
      {"note", value{std::string("ok")}},
      {"weight_kg", value{72.5}},
  };
  p.changes.push_back(std::move(c));
  return p;
}

/// `p` as wire::decode() gives it back (version 7): every change with node 0, which the
/// receiver replaces with the pusher's (hello.node; wire::decode_push).
inline wire::push as_decoded(wire::push p) {
  for (auto& c : p.changes) c.ver.node = 0;
  return p;
}

/// The change with a kept field of docs/protocol.md: "ok" written under keep_both over
/// the value of version ((1,700,000,000,000 << 16) | 1, 0x0102030405060708).
inline change example_kept_change() {
  change c;
  c.collection = "visit";
  c.id = *record_id::parse("0a1b2c3d-4e5f-4a6b-8c7d-8e9fa0b1c2d3");
  c.ver = version{hlc_stamp::make(1'700'000'000'000ULL, 2), 0x1122334455667788ULL};
  c.kind = change_kind::upsert;
  c.fields = {{"note", value{std::string("ok")}}};
  c.kept = {kept_field{"note", {version{hlc_stamp::make(1'700'000'000'000ULL, 1), 0x0102030405060708ULL}}}};
  return c;
}

/// The changes page of docs/protocol.md, "a page of two changes" (version 7): the change
/// of example_push() as log entry 41 and example_kept_change() as entry 42, in one
/// change block; next cursor 42, nothing more, no scope section.
inline wire::changes_page example_page() {
  wire::changes_page page;
  page.items = {{41, example_push().changes.front()}, {42, example_kept_change()}};
  page.next_cursor = 42;
  return page;
}

}  // namespace caresync::testing
