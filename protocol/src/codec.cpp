// Payload encoding (docs/protocol.md, "Payload encoding"). The bytes are those of cereal's
// portable binary archive with the little-endian option: a leading endianness byte and
// little-endian fixed-width numbers. The reader reads them with that archive; the writer
// writes the same bytes itself, without a stream call for each number. Lengths, counts
// and sequence numbers are LEB128 varints written byte by byte, because cereal's own size
// tags are 8 bytes each and its container loaders trust the length on the wire. Every
// reader call checks the bytes left before it reads or allocates.

#include <caresync/protocol/codec.hpp>
#include <caresync/protocol/errors.hpp>

#include <cereal/archives/portable_binary.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <istream>
#include <limits>
#include <streambuf>
#include <type_traits>
#include <variant>

#include "page_block.hpp"
#include "wire_io.hpp"

namespace caresync::wire {

namespace {

using namespace detail;

// Minimum encoded sizes, used to bound counts before allocating.
constexpr std::size_t k_min_change = 1 + 16 + 8 + 8 + 1 + 1;
// A refusal: index uvarint, code u16, reason text (its length, at least 1 byte),
// restored field count (uvarint).
constexpr std::size_t k_min_refusal = 1 + 2 + 1 + 1;

struct encoder {
  writer& w;
  void operator()(const hello& m) {
    w.u16(m.protocol_version);
    w.text(m.client_name);
    w.text(m.device_id);
    w.text(m.token);
    w.u64(m.node);
    w.u32(m.features);
    w.text(m.app_version);
    w.uvarint(m.outbox);
    w.uvarint(m.quarantined);
    w.uvarint(m.open_conflicts);
  }
  void operator()(const enroll& m) {
    w.u16(m.protocol_version);
    w.text(m.client_name);
    w.text(m.code);
    w.text(m.app_version);
  }
  void operator()(const enrolled& m) {
    w.text(m.device_id);
    w.text(m.token);
    w.text(m.user_id);
    w.text(m.user_name);
  }
  void operator()(const welcome& m) {
    w.u16(m.protocol_version);
    w.text(m.server_name);
    w.u64(m.server_time_ms);
    w.u32(m.features);
    w.u32(m.max_frame_bytes);
    w.u32(m.max_push_changes);
    w.uvarint(m.log_head);
    w.uvarint(m.max_clock_ahead_ms);
    if (m.features & k_feature_token_rotation) w.text(m.new_token);
  }
  void operator()(const push& m) {
    w.batch(m.batch);
    w.uvarint(m.changes.size());
    for (const auto& c : m.changes) w.body(c, false);  // version 7: the node is the pusher's
  }
  void operator()(const push_result& m) {
    w.batch(m.batch);
    w.u32(m.accepted);
    w.uvarint(m.first_seq);
    w.uvarint(m.last_seq);
    w.boolean(m.replayed);
    w.uvarint(m.refused.size());
    for (const auto& f : m.refused) {
      w.uvarint(f.index);
      w.u16(f.code);
      w.text(f.reason);
      w.uvarint(f.restore.size());
      for (const auto& field : f.restore) {
        w.text(field.name);
        w.val(field.val);
        w.u64(field.ver.stamp.value);
        w.u64(field.ver.node);
        w.uvarint(field.conflicts.size());
        for (const auto& c : field.conflicts) {
          w.val(c.val);
          w.u64(c.ver.stamp.value);
          w.u64(c.ver.node);
        }
        w.boolean(field.record_deleted);
      }
    }
  }
  void operator()(const pull& m) {
    w.uvarint(m.cursor);
    w.u32(m.max_changes);
    w.u32(m.max_bytes);
    w.spec(m.prime);
    w.uvarint(m.scope_epoch);  // version 5: scopes
    w.uvarint(m.max_pages);    // version 7
  }
  void operator()(const prime& m) {
    w.spec(m.spec);
    w.uvarint(m.position);
    w.u32(m.max_changes);
    w.u32(m.max_bytes);
  }
  void operator()(const wait& m) {
    w.uvarint(m.cursor);
    w.u32(m.max_wait_ms);
    w.u32(m.max_changes);
    w.u32(m.max_bytes);
  }
  void operator()(const changes_page& m) {
    // The same bytes as a server's page: made by the builder from the changes' rows.
    changes_page_builder page;
    for (const auto& item : m.items) page.add(item.seq, encode_change(item.body));
    for (const auto& p : m.purges) page.add_purge(p.collection, p.id);
    for (const auto& item : m.backfill) page.add_backfill(item.seq, encode_change(item.body));
    page.set_scope_epoch(m.scope_epoch);
    const auto payload = std::move(page).finish(m.next_cursor, m.more, m.remaining_changes, m.remaining_bytes);
    w.raw(payload.data() + 1, payload.size() - 1);  // the marker is written already
  }
  void operator()(const error& m) {
    w.u16(m.code);
    w.boolean(m.transient);
    w.text(m.message);
  }
  void operator()(const ping& m) { w.u64(m.nonce); }
  void operator()(const pong& m) { w.u64(m.nonce); }
};

// --- scopes (protocol version 5; docs/protocol.md, "Scopes")
// A purge: a collection name (1+ bytes with its length) and an id.
constexpr std::size_t k_min_purge = 2 + 16;

/// The scope fields that end a changes page (writer::scope_section). A purge's
/// collection must be a valid name; an epoch of 0 with purges or backfill, or a
/// backfilled change with sequence number 0, is malformed.
void read_scope_section(reader& r, changes_page& m) {
  m.scope_epoch = r.uvarint("scope epoch");
  m.purges.resize(r.count("purge count", k_min_purge));
  for (auto& p : m.purges) {
    p.collection = r.text("purged collection");
    if (!is_valid_name(p.collection)) malformed("a purge names an invalid collection");
    p.id = r.id("purged record id");
  }
  m.backfill = read_block(r);  // version 7: a block
  for (const auto& item : m.backfill) {
    if (item.seq == 0) malformed("a backfilled change has sequence number 0");
  }
  if (m.scope_epoch == 0 && (!m.purges.empty() || !m.backfill.empty())) {
    malformed("a page carries purges or backfilled changes without a scope epoch");
  }
}

/// The protocol version that opens hello, enroll and welcome: any other is refused
/// before the rest is read ("the client speaks protocol version 2; this server speaks 4").
std::uint16_t version(reader& r, const char* peer, const char* self) {
  const auto v = r.u16("protocol version");
  if (v != k_protocol_version) {
    throw protocol_error(protocol_errc::unsupported_version, std::string(peer) + " speaks protocol version " +
                                                                 std::to_string(v) + "; " + self + " speaks version " +
                                                                 std::to_string(k_protocol_version));
  }
  return v;
}

/// A push (version 7: no node id in its changes); with `rebuilt`, also each change in
/// stored form less its marker, with `node` put in (decode_push).
push read_push(reader& r, node_id node, bytes* rebuilt, std::vector<std::span<const std::uint8_t>>* sent) {
  push m;
  m.batch = r.batch("batch id");
  m.changes.resize(r.count("change count", k_min_change - 8));
  std::vector<std::size_t> ends;
  if (rebuilt) {
    rebuilt->clear();
    rebuilt->reserve(r.left() + 8 * m.changes.size());
    ends.reserve(m.changes.size());
  }
  for (auto& c : m.changes) {
    const std::uint8_t* start = r.position();
    const std::uint8_t* after_stamp = nullptr;
    c = r.body(false, &after_stamp);
    c.ver.node = node;
    if (rebuilt) {
      // Up to the stamp as sent (whatever its varints' lengths), the node, then the rest.
      rebuilt->insert(rebuilt->end(), start, after_stamp);
      writer(*rebuilt).u64(node);
      rebuilt->insert(rebuilt->end(), after_stamp, r.position());
      ends.push_back(rebuilt->size());
    }
  }
  if (sent) {
    sent->clear();
    sent->reserve(ends.size());
    std::size_t begin = 0;
    for (const auto end : ends) {
      sent->emplace_back(rebuilt->data() + begin, end - begin);
      begin = end;
    }
  }
  return m;
}

message decode_body(message_type type, reader& r) {
  switch (type) {
    case message_type::hello: {
      hello m;
      m.protocol_version = version(r, "the client", "this server");
      m.client_name = r.text("client name");
      m.device_id = r.text("device id");
      m.token = r.text("token");
      m.node = r.u64("node id");
      m.features = r.u32("features");
      m.app_version = r.text("app version");
      m.outbox = r.uvarint("outbox depth");
      m.quarantined = r.uvarint("quarantined count");
      m.open_conflicts = r.uvarint("open conflict count");
      return m;
    }
    case message_type::enroll: {
      enroll m;
      m.protocol_version = version(r, "the client", "this server");
      m.client_name = r.text("client name");
      m.code = r.text("enrollment code");
      m.app_version = r.text("app version");
      return m;
    }
    case message_type::enrolled: {
      enrolled m;
      m.device_id = r.text("device id");
      m.token = r.text("token");
      m.user_id = r.text("user id");
      m.user_name = r.text("user name");
      return m;
    }
    case message_type::welcome: {
      welcome m;
      m.protocol_version = version(r, "the server", "this library");
      m.server_name = r.text("server name");
      m.server_time_ms = r.u64("server time");
      m.features = r.u32("features");
      m.max_frame_bytes = r.u32("max frame bytes");
      m.max_push_changes = r.u32("max push changes");
      m.log_head = r.uvarint("log head");
      m.max_clock_ahead_ms = r.uvarint("clock bound");
      if (m.features & k_feature_token_rotation) {
        m.new_token = r.text("new token");
        if (m.new_token.empty()) throw protocol_error(protocol_errc::malformed, "a welcome granting token_rotation carries an empty token");
      }
      return m;
    }
    case message_type::push: return read_push(r, 0, nullptr, nullptr);
    case message_type::push_result: {
      push_result m;
      m.batch = r.batch("batch id");
      m.accepted = r.u32("accepted count");
      m.first_seq = r.uvarint("first sequence number");
      m.last_seq = r.uvarint("last sequence number");
      m.replayed = r.boolean("replayed flag");
      m.refused.resize(r.count("refused count", k_min_refusal));
      std::uint64_t next_index = 0;
      for (auto& f : m.refused) {
        const auto index = r.uvarint("refused index");
        // Strictly increasing: no change refused twice, and each index fits a u32.
        if (index < next_index || index > std::numeric_limits<std::uint32_t>::max()) {
          throw protocol_error(protocol_errc::malformed, "push_result refuses change indexes out of order or twice");
        }
        next_index = index + 1;
        f.index = static_cast<std::uint32_t>(index);
        f.code = r.u16("refusal code");
        f.reason = r.text("refusal reason");
        // name (1+), value tag (1), stamp (8), node (8), conflict count (1), deleted flag (1)
        f.restore.resize(r.bounded_count("restored field count", 1 + 1 + 16 + 1 + 1, k_max_list, "restored fields"));
        for (auto& field : f.restore) {
          field.name = r.text("restored field name");
          field.val = r.val();
          field.ver.stamp.value = r.u64("restored stamp");
          field.ver.node = r.u64("restored node id");
          // value tag (1), stamp (8), node (8); ascending, distinct versions
          field.conflicts.resize(r.bounded_count("restored conflict count", 1 + 16, k_max_list, "restored conflicts"));
          for (std::size_t i = 0; i < field.conflicts.size(); ++i) {
            auto& c = field.conflicts[i];
            c.val = r.val();
            c.ver.stamp.value = r.u64("restored conflict stamp");
            c.ver.node = r.u64("restored conflict node id");
            if (i > 0 && !(field.conflicts[i - 1].ver < c.ver)) {
              throw protocol_error(protocol_errc::malformed, "a restored field's conflicts are not in ascending version order");
            }
          }
          field.record_deleted = r.boolean("restored record deleted flag");
          for (const auto& before : f.restore) {
            if (&before == &field) break;
            if (before.name == field.name) throw protocol_error(protocol_errc::malformed, "a refusal restores field '" + field.name + "' twice");
          }
        }
      }
      return m;
    }
    case message_type::pull: {
      pull m;
      m.cursor = r.uvarint("cursor");
      m.max_changes = r.u32("max changes");
      m.max_bytes = r.u32("max bytes");
      m.prime = r.spec();
      m.scope_epoch = r.uvarint("scope epoch");  // version 5: scopes
      m.max_pages = r.uvarint("max pages");      // version 7
      return m;
    }
    case message_type::prime: {
      prime m;
      m.spec = r.spec();
      if (m.spec.tiers.empty()) malformed("a prime message carries no tiers");
      m.position = r.uvarint("prime position");
      m.max_changes = r.u32("max changes");
      m.max_bytes = r.u32("max bytes");
      return m;
    }
    case message_type::changes: {
      changes_page m;
      m.next_cursor = r.uvarint("next cursor");
      m.more = r.boolean("more flag");
      m.remaining_changes = r.uvarint("remaining changes");
      m.remaining_bytes = r.uvarint("remaining bytes");
      m.items = read_block(r);  // version 7: a block
      read_scope_section(r, m);  // version 5: scopes
      return m;
    }
    case message_type::error: {
      error m;
      m.code = r.u16("error code");
      m.transient = r.boolean("transient flag");
      m.message = r.text("error message");
      return m;
    }
    case message_type::wait: {
      wait m;
      m.cursor = r.uvarint("cursor");
      m.max_wait_ms = r.u32("max wait");
      m.max_changes = r.u32("max changes");
      m.max_bytes = r.u32("max bytes");
      return m;
    }
    case message_type::ping: return ping{r.u64("nonce")};
    case message_type::pong: return pong{r.u64("nonce")};
  }
  throw protocol_error(protocol_errc::unknown_message,
                       "message type " + std::to_string(static_cast<int>(type)) + " is unknown");
}

}  // namespace

bytes encode(const message& m) {
  bytes out;
  out.reserve(64);
  auto w = payload_writer(out);
  std::visit(encoder{w}, m);
  return out;
}

message decode(message_type type, std::span<const std::uint8_t> payload) {
  try {
    reader r(payload);
    auto m = decode_body(type, r);
    r.finish();
    return m;
  } catch (const cereal::Exception& e) {
    // Unreachable while every read checks its length first; kept so that a slip can
    // only ever end one connection with a clear error.
    malformed(std::string("payload could not be decoded: ") + e.what());
  }
}

push decode_push(std::span<const std::uint8_t> payload, node_id node, bytes& rebuilt,
                 std::vector<std::span<const std::uint8_t>>& sent) {
  try {
    reader r(payload);
    auto m = read_push(r, node, &rebuilt, &sent);
    r.finish();
    return m;
  } catch (const cereal::Exception& e) {
    malformed(std::string("payload could not be decoded: ") + e.what());
  }
}

push decode_version6_push(std::span<const std::uint8_t> payload) {
  try {
    reader r(payload);
    push m;
    m.batch = r.id("batch id");
    m.changes.resize(r.count("change count", k_min_change));
    for (auto& c : m.changes) c = r.body();
    r.finish();
    return m;
  } catch (const cereal::Exception& e) {
    malformed(std::string("payload could not be decoded: ") + e.what());
  }
}

bytes encode_change(const change& c) {
  bytes out;
  out.reserve(64);
  payload_writer(out).body(c);
  return out;
}

change decode_change(std::span<const std::uint8_t> stored) {
  try {
    reader r(stored);
    auto c = r.body();
    r.finish();
    return c;
  } catch (const cereal::Exception& e) {
    malformed(std::string("stored change could not be decoded: ") + e.what());
  }
}

bool is_prime_operand(const value& v) noexcept {
  const auto kind = kind_of(v);
  return kind == value_kind::integer || kind == value_kind::text ||
         (kind == value_kind::real && !std::isnan(std::get<double>(v)));
}

std::size_t page_item_bytes(std::uint64_t seq, std::span<const std::uint8_t> stored) {
  std::size_t varint = 1;
  for (; seq >= 0x80; seq >>= 7) ++varint;
  return varint + (stored.empty() ? 0 : stored.size() - 1);
}

std::size_t page_item_bytes(const sequenced_change& item) { return page_item_bytes(item.seq, encode_change(item.body)); }

namespace {

/// A stored change (encode_change) less its marker byte, as it goes inside a payload;
/// throws protocol_error (malformed) when it lacks the marker.
std::span<const std::uint8_t> unmarked(std::span<const std::uint8_t> stored_change) {
  if (stored_change.empty() || stored_change[0] != k_little_endian_marker) malformed("stored change lacks its marker byte");
  return stored_change.subspan(1);
}

}  // namespace

void changes_page_builder::add(std::uint64_t seq, std::span<const std::uint8_t> stored_change) {
  // Inside a page the change follows its sequence number.
  const auto change = unmarked(stored_change);
  if (room_ > 0) {
    items_.reserve(room_);
    room_ = 0;
  }
  writer w(items_);
  w.uvarint(seq);
  w.raw(change.data(), change.size());
  item_ends_.push_back(items_.size());
  ++count_;
}

bytes changes_page_builder::finish(std::uint64_t next_cursor, bool more, std::uint64_t remaining_changes,
                                   std::uint64_t remaining_bytes) const {
  bytes out;
  // Laid out in columns the page takes about as many bytes as its rows, and never more
  // than its rows and tables.
  out.reserve(32 + items_.size() + purges_.size() + backfill_.size() + 16 * (item_ends_.size() + backfill_ends_.size()));
  auto w = payload_writer(out);
  w.uvarint(next_cursor);
  w.boolean(more);
  w.uvarint(remaining_changes);
  w.uvarint(remaining_bytes);
  write_block(w, items_, item_ends_);  // version 7: the items as a block
  // Version 5: the scope section, after the items.
  w.uvarint(scope_epoch_);
  w.uvarint(purge_count_);
  w.raw(purges_.data(), purges_.size());
  write_block(w, backfill_, backfill_ends_);
  return out;
}

void changes_page_builder::add_purge(std::string_view collection, const record_id& id) {
  writer w(purges_);
  w.text(collection);
  w.id(id);
  ++purge_count_;
}

void changes_page_builder::add_backfill(std::uint64_t seq, std::span<const std::uint8_t> stored_change) {
  const auto change = unmarked(stored_change);
  writer w(backfill_);
  w.uvarint(seq);
  w.raw(change.data(), change.size());
  backfill_ends_.push_back(backfill_.size());
  ++backfill_count_;
}

void push_builder::add(const change& c) {
  writer(changes_).body(c, false);  // version 7: a push's changes carry no node id
  ++count_;
}

void push_builder::add_upsert(std::string_view collection, const record_id& id, const caresync::version& ver,
                              std::span<const field_view> fields) {
  // Checked before anything is written: the builder holds only whole changes.
  for (std::size_t i = 1; i < fields.size(); ++i) {
    if (!(fields[i - 1].name < fields[i].name)) {
      throw protocol_error(protocol_errc::malformed,
                           "a plain upsert's fields are not in ascending name order, or name one field twice");
    }
  }
  writer(changes_).plain_upsert(collection, id, ver, fields, false);
  ++count_;
}

bytes push_builder::finish(const batch_id& batch) const {
  bytes out;
  // marker, batch (at most 17 bytes), count (a uvarint of at most 10 bytes)
  out.reserve(1 + 17 + 10 + changes_.size());
  auto w = payload_writer(out);
  w.batch(batch);
  w.uvarint(count_);
  w.raw(changes_.data(), changes_.size());
  return out;
}

}  // namespace caresync::wire
