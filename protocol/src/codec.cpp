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

namespace caresync::wire {

namespace {

/// Bit 7 of a change's kind byte: a kept list (keep_both fields) follows its fields.
constexpr std::uint8_t k_kept_flag = 0x80;
/// Bit 6: an item list (append and set_union operations) follows, after any kept list.
constexpr std::uint8_t k_items_flag = 0x40;
/// Bit 5, on a remove: the versions the delete covers follow its (empty) field list.
constexpr std::uint8_t k_covers_flag = 0x20;
/// Bit 4, on a remove (protocol version 6): the delete is revivable (update_revives).
constexpr std::uint8_t k_revivable_flag = 0x10;
/// Bit 3, on an upsert (protocol version 6): the version of the revivable delete it
/// dismisses follows the covered versions' place (before any item list).
constexpr std::uint8_t k_dismisses_flag = 0x08;

/// Reads from a span; knows how many bytes are left.
class span_source final : public std::streambuf {
 public:
  explicit span_source(std::span<const std::uint8_t> in) {
    // std::streambuf wants non-const pointers; this buffer is only ever read.
    auto* begin = const_cast<char*>(reinterpret_cast<const char*>(in.data()));
    setg(begin, begin, begin + in.size());
  }
  std::size_t left() const noexcept { return static_cast<std::size_t>(egptr() - gptr()); }
  /// The next unread byte; take() moves past `n` of them (the caller checked left()).
  const std::uint8_t* next() const noexcept { return reinterpret_cast<const std::uint8_t*>(gptr()); }
  void take(std::size_t n) noexcept { gbump(static_cast<int>(n)); }
};

// Per-change list limits (docs/protocol.md, "Limits"), enforced while decoding so that
// no list is allocated beyond them.
constexpr std::size_t k_max_list = 256;  // fields, kept fields, item operations
constexpr std::size_t k_max_adds = 64;   // items one operation adds

[[noreturn]] void malformed(const std::string& what) {
  throw protocol_error(protocol_errc::malformed, what);
}

/// The archive's byte-order marker that opens every payload and stored change: 1, little
/// endian (docs/protocol.md, "Payload encoding").
constexpr std::uint8_t k_little_endian_marker = 1;

/// Appends the encoding's parts to a byte vector: what encode(), encode_change() and the
/// builders write with, so every path writes the same bytes. Fixed-width numbers are
/// little-endian, byte for byte as cereal's portable archive writes them with the
/// little-endian option (the reader reads them with it), without a stream call for each
/// (they showed in profiles). Writes no marker byte: a payload's first byte is written
/// by whoever starts the payload (payload_writer()).
class writer {
 public:
  explicit writer(bytes& out) noexcept : out_(out) {}

  void u8(std::uint8_t v) { out_.push_back(v); }
  void u16(std::uint16_t v) { little_endian(v); }
  void u32(std::uint32_t v) { little_endian(v); }
  void u64(std::uint64_t v) { little_endian(v); }
  /// An IEEE-754 double as its bits, little-endian (as the archive writes it on a
  /// little-endian host, and on any other after swapping).
  void f64(double v) { little_endian(std::bit_cast<std::uint64_t>(v)); }
  void boolean(bool v) { u8(v ? 1 : 0); }
  void uvarint(std::uint64_t v) {
    std::uint8_t buf[10];
    std::size_t n = 0;
    while (v >= 0x80) {
      buf[n++] = static_cast<std::uint8_t>(v | 0x80);
      v >>= 7;
    }
    buf[n++] = static_cast<std::uint8_t>(v);
    raw(buf, n);
  }
  void raw(const void* p, std::size_t n) {
    const auto* b = static_cast<const std::uint8_t*>(p);
    out_.insert(out_.end(), b, b + n);
  }
  void text(std::string_view s) {
    uvarint(s.size());
    raw(s.data(), s.size());
  }
  void id(const record_id& r) { raw(r.bytes.data(), r.bytes.size()); }

  /// A value: its tag (the variant's index), then what the kind carries. value and
  /// value_view share the order of alternatives, so both write the same bytes.
  void val(const value& v) {
    u8(static_cast<std::uint8_t>(v.index()));
    std::visit([this](const auto& x) { value_body(x); }, v);
  }
  void val(const value_view& v) {
    u8(static_cast<std::uint8_t>(v.index()));
    std::visit([this](const auto& x) { value_body(x); }, v);
  }

  void body(const change& c) {
    // Bit 7 of the kind byte says a kept list follows the fields (protocol version 3).
    head(c.collection, c.id, c.ver,
         static_cast<std::uint8_t>(static_cast<std::uint8_t>(c.kind) | (c.kept.empty() ? 0 : k_kept_flag) |
                                   (c.items.empty() ? 0 : k_items_flag) | (c.covers ? k_covers_flag : 0) |
                                   (c.revivable ? k_revivable_flag : 0) | (c.dismisses ? k_dismisses_flag : 0)));
    uvarint(c.fields.size());
    for (const auto& f : c.fields) {
      text(f.name);
      val(f.val);
    }
    if (!c.kept.empty()) {
      uvarint(c.kept.size());
      for (const auto& k : c.kept) {
        text(k.name);
        versions(k.supersedes);
      }
    }
    if (c.covers) versions(*c.covers);
    if (c.dismisses) {
      u64(c.dismisses->stamp.value);
      u64(c.dismisses->node);
    }
    if (!c.items.empty()) {
      uvarint(c.items.size());
      for (const auto& op : c.items) {
        text(op.field);
        u8(static_cast<std::uint8_t>(op.policy));
        uvarint(op.add.size());
        for (const auto& a : op.add) text(a);
        versions(op.remove);
      }
    }
  }

  /// body() of an upsert whose only parts are `fields` (push_builder::add_upsert): no
  /// flag set in its kind byte, nothing after the fields.
  void plain_upsert(std::string_view collection, const record_id& r, const version& ver, std::span<const field_view> fields) {
    head(collection, r, ver, static_cast<std::uint8_t>(change_kind::upsert));
    uvarint(fields.size());
    for (const auto& f : fields) {
      text(f.name);
      val(f.val);
    }
  }

  /// A prime spec: uvarint until, uvarint tier count, then each tier as collection
  /// text, match u8, field text, operand value.
  void spec(const prime_spec& p) {
    uvarint(p.until);
    uvarint(p.tiers.size());
    for (const auto& t : p.tiers) {
      text(t.collection);
      u8(static_cast<std::uint8_t>(t.match));
      text(t.field);
      val(t.operand);
    }
  }

  // --- scopes (protocol version 5; docs/protocol.md, "Scopes")
  /// The scope fields that end a changes page: uvarint epoch, uvarint purge count, each
  /// purge as collection text and id, uvarint backfill count, each as uvarint seq and
  /// change.
  void scope_section(const changes_page& m) {
    uvarint(m.scope_epoch);
    uvarint(m.purges.size());
    for (const auto& p : m.purges) {
      text(p.collection);
      id(p.id);
    }
    uvarint(m.backfill.size());
    for (const auto& item : m.backfill) {
      uvarint(item.seq);
      body(item.body);
    }
  }

  /// A version list (kept supersedes, covers, item removes): uvarint count, then each
  /// version as u64 stamp, u64 node.
  void versions(const std::vector<version>& list) {
    uvarint(list.size());
    for (const auto& v : list) {
      u64(v.stamp.value);
      u64(v.node);
    }
  }

 private:
  template <class T>
  void little_endian(T v) {
    std::uint8_t buf[sizeof(T)];
    for (std::size_t i = 0; i < sizeof(T); ++i) buf[i] = static_cast<std::uint8_t>(v >> (8 * i));
    raw(buf, sizeof(T));
  }

  /// A change's collection, id, version and kind byte: how every change begins.
  void head(std::string_view collection, const record_id& r, const version& ver, std::uint8_t kind_byte) {
    text(collection);
    id(r);
    u64(ver.stamp.value);
    u64(ver.node);
    u8(kind_byte);
  }

  // What follows a value's tag, by kind.
  void value_body(std::monostate) {}
  void value_body(std::int64_t i) {
    // zigzag: small negative numbers stay small
    uvarint((static_cast<std::uint64_t>(i) << 1) ^ static_cast<std::uint64_t>(i >> 63));
  }
  void value_body(double d) { f64(d); }
  void value_body(std::string_view s) { text(s); }
  void value_body(const std::string& s) { text(s); }
  void value_body(std::span<const std::uint8_t> b) {
    uvarint(b.size());
    raw(b.data(), b.size());
  }
  void value_body(const blob& b) { value_body(std::span<const std::uint8_t>(b.bytes)); }

  bytes& out_;
};

static_assert(std::variant_size_v<value> == std::variant_size_v<value_view>);
static_assert(std::is_same_v<std::variant_alternative_t<1, value>, std::variant_alternative_t<1, value_view>> &&
                  std::is_same_v<std::variant_alternative_t<2, value>, std::variant_alternative_t<2, value_view>>,
              "value_view's alternatives are value's, in its order: the index is the wire tag");

/// A writer of a new payload or stored change: writes the marker byte first.
writer payload_writer(bytes& out) {
  writer w(out);
  w.u8(k_little_endian_marker);
  return w;
}

class reader {
 public:
  explicit reader(std::span<const std::uint8_t> in) : source_(in), stream_(&source_), ar_(make_archive(in)) {}

  std::size_t left() const noexcept { return source_.left(); }
  /// The next unread byte of the input.
  const std::uint8_t* position() const noexcept { return source_.next(); }
  void need(std::size_t n, const char* what) const {
    if (n > left()) malformed(std::string("message ends inside ") + what);
  }

  // Bytes and byte runs are read straight from the span (see writer::u8).
  std::uint8_t u8(const char* what) {
    need(1, what);
    const std::uint8_t v = *source_.next();
    source_.take(1);
    return v;
  }
  std::uint16_t u16(const char* what) { need(2, what); std::uint16_t v; ar_(v); return v; }
  std::uint32_t u32(const char* what) { need(4, what); std::uint32_t v; ar_(v); return v; }
  std::uint64_t u64(const char* what) { need(8, what); std::uint64_t v; ar_(v); return v; }
  double f64(const char* what) { need(8, what); double v; ar_(v); return v; }
  bool boolean(const char* what) {
    const auto v = u8(what);
    if (v > 1) malformed(std::string(what) + " is not a boolean (0 or 1)");
    return v == 1;
  }
  std::uint64_t uvarint(const char* what) {
    std::uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      const auto b = u8(what);
      if (shift == 63 && b > 1) break;  // would overflow 64 bits
      v |= static_cast<std::uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    malformed(std::string(what) + " is not a valid varint");
  }
  /// A count of items each at least `min_item` bytes long: cannot exceed what is left.
  std::size_t count(const char* what, std::size_t min_item) {
    const auto n = uvarint(what);
    if (n > left() / std::max<std::size_t>(min_item, 1)) {
      malformed(std::string(what) + " claims more items than the message holds");
    }
    return static_cast<std::size_t>(n);
  }
  /// count(), and at most `most` (a protocol limit): more is malformed.
  std::size_t bounded_count(const char* what, std::size_t min_item, std::size_t most, const char* things) {
    const auto n = count(what, min_item);
    if (n > most) malformed("a change lists more than " + std::to_string(most) + " " + things);
    return n;
  }
  void raw(void* p, std::size_t n, const char* what) {
    need(n, what);
    if (n) std::memcpy(p, source_.next(), n);
    source_.take(n);
  }
  std::string text(const char* what) {
    const auto n = count(what, 1);
    std::string s(reinterpret_cast<const char*>(source_.next()), n);
    source_.take(n);
    return s;
  }
  record_id id(const char* what) {
    record_id r;
    raw(r.bytes.data(), r.bytes.size(), what);
    return r;
  }

  value val() {
    switch (const auto tag = u8("value tag"); tag) {
      case 0: return std::monostate{};
      case 1: {
        const auto z = uvarint("integer value");
        return static_cast<std::int64_t>((z >> 1) ^ (~(z & 1) + 1));
      }
      case 2: return f64("real value");
      case 3: return text("text value");
      case 4: {
        blob b;
        b.bytes.resize(count("bytes value", 1));
        raw(b.bytes.data(), b.bytes.size(), "bytes value");
        return b;
      }
      default: malformed("value tag " + std::to_string(tag) + " is not one of 0-4");
    }
  }

  change body() {
    change c;
    c.collection = text("collection name");
    c.id = id("record id");
    c.ver.stamp.value = u64("stamp");
    c.ver.node = u64("node id");
    const auto kind_byte = u8("change kind");
    const auto kind = kind_byte & ~(k_kept_flag | k_items_flag | k_covers_flag | k_revivable_flag | k_dismisses_flag);
    if (kind > 1) malformed("change kind " + std::to_string(kind) + " is not 0 or 1");
    c.kind = static_cast<change_kind>(kind);
    const bool has_kept = (kind_byte & k_kept_flag) != 0;
    const bool has_items = (kind_byte & k_items_flag) != 0;
    if ((has_kept || has_items) && c.kind == change_kind::remove) malformed("a delete carries kept fields or item operations");
    const bool has_covers = (kind_byte & k_covers_flag) != 0;
    if (has_covers && c.kind != change_kind::remove) malformed("an edit carries a delete's covered versions");
    c.revivable = (kind_byte & k_revivable_flag) != 0;
    if (c.revivable && c.kind != change_kind::remove) malformed("an edit is flagged as a revivable delete");
    const bool has_dismisses = (kind_byte & k_dismisses_flag) != 0;
    if (has_dismisses && c.kind != change_kind::upsert) malformed("a delete carries a dismissed delete's version");
    // Each field needs at least 2 bytes: a name length and a value tag. The count is also
    // held to the per-change limit before allocating: a field takes ~36 times its least
    // wire size in memory, so the frame's size alone bounds too little.
    c.fields.resize(bounded_count("field count", 2, k_max_list, "fields"));
    for (auto& f : c.fields) {
      f.name = text("field name");
      f.val = val();
    }
    if (has_kept) {
      // Each kept entry needs at least 3 bytes: a name length, a name byte, a count.
      c.kept.resize(bounded_count("kept field count", 3, k_max_list, "kept fields"));
      if (c.kept.empty()) malformed("a change flags a kept list but lists no field");
      for (auto& k : c.kept) {
        k.name = text("kept field name");
        k.supersedes = versions("superseded version count", "superseded stamp", "superseded node id");
      }
    }
    if (has_covers) {
      c.covers = versions("covered version count", "covered stamp", "covered node id");
    }
    if (has_dismisses) {
      version d;
      d.stamp.value = u64("dismissed stamp");
      d.node = u64("dismissed node id");
      c.dismisses = d;
    }
    if (has_items) {
      // Each op needs at least 4 bytes: a name length, a name byte, the policy, two counts.
      c.items.resize(bounded_count("item operation count", 4, k_max_list, "item operations"));
      if (c.items.empty()) malformed("a change flags an item list but lists no operation");
      for (auto& op : c.items) {
        op.field = text("item field name");
        const auto policy = u8("item policy");
        if (policy != static_cast<std::uint8_t>(item_policy::append) && policy != static_cast<std::uint8_t>(item_policy::set_union)) {
          malformed("item policy " + std::to_string(policy) + " is not 1 or 2");
        }
        op.policy = static_cast<item_policy>(policy);
        op.add.resize(bounded_count("added item count", 1, k_max_adds, "added items"));
        for (auto& a : op.add) a = text("added item");
        op.remove = versions("removed item count", "removed item stamp", "removed item node id");
      }
    }
    if (c.kind == change_kind::remove && !c.fields.empty()) malformed("a delete carries fields");
    // Duplicate names would let one change say two things about one field.
    if (c.fields.size() > 1) {
      std::vector<std::string_view> names;
      names.reserve(c.fields.size());
      for (const auto& f : c.fields) names.push_back(f.name);
      std::sort(names.begin(), names.end());
      if (std::adjacent_find(names.begin(), names.end()) != names.end()) {
        malformed("a change names the same field twice");
      }
    }
    return c;
  }

  /// A prime spec as spec() writes it, checked: until and tiers both given or neither,
  /// at most k_max_prime_tiers, valid names, a field and an integer, real or text
  /// operand exactly when the tier matches on a value.
  prime_spec spec() {
    prime_spec p;
    p.until = uvarint("prime until");
    // Each tier needs at least 5 bytes: a name length and byte, the match, a field
    // length, an operand tag.
    const auto n = count("prime tier count", 5);
    if (n > k_max_prime_tiers) malformed("a prime spec may hold at most " + std::to_string(k_max_prime_tiers) + " tiers");
    if ((p.until == 0) != (n == 0)) malformed("a prime spec gives tiers without a log position, or the reverse");
    p.tiers.resize(n);
    for (auto& t : p.tiers) {
      t.collection = text("prime collection");
      if (!is_valid_name(t.collection)) malformed("a prime tier names an invalid collection");
      const auto match = u8("prime match");
      if (match > static_cast<std::uint8_t>(prime_match::at_least)) {
        malformed("prime match " + std::to_string(match) + " is not one of 0-2");
      }
      t.match = static_cast<prime_match>(match);
      t.field = text("prime field");
      t.operand = val();
      const bool on_value = t.match != prime_match::all;
      if (on_value != is_valid_name(t.field) || (!on_value && !t.field.empty())) {
        malformed("a prime tier's field does not fit its match");
      }
      const bool operand_ok = on_value ? is_prime_operand(t.operand) : kind_of(t.operand) == value_kind::null;
      if (!operand_ok) malformed("a prime tier's operand does not fit its match");
    }
    return p;
  }

  /// A version list as versions() writes it; the labels name its parts in errors.
  std::vector<version> versions(const char* count_what, const char* stamp_what, const char* node_what) {
    std::vector<version> list(count(count_what, 16));
    for (auto& v : list) {
      v.stamp.value = u64(stamp_what);
      v.node = u64(node_what);
    }
    return list;
  }

  void finish() const {
    if (left() != 0) malformed("message has " + std::to_string(left()) + " unexpected trailing bytes");
  }

 private:
  cereal::PortableBinaryInputArchive make_archive(std::span<const std::uint8_t> in) {
    // The archive's first byte says the byte order; caresync senders always write
    // little-endian (1). Check it here: cereal would accept any value.
    if (in.empty()) malformed("empty payload");
    if (in[0] != k_little_endian_marker) malformed("payload does not start with the little-endian marker byte 0x01");
    return cereal::PortableBinaryInputArchive(stream_);
  }

  span_source source_;
  std::istream stream_;
  cereal::PortableBinaryInputArchive ar_;
};

// Minimum encoded sizes, used to bound counts before allocating.
constexpr std::size_t k_min_change = 1 + 16 + 8 + 8 + 1 + 1;
constexpr std::size_t k_min_sequenced_change = 1 + k_min_change;
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
  }
  void operator()(const push& m) {
    w.id(m.batch);
    w.uvarint(m.changes.size());
    for (const auto& c : m.changes) w.body(c);
  }
  void operator()(const push_result& m) {
    w.id(m.batch);
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
    w.uvarint(m.next_cursor);
    w.boolean(m.more);
    w.uvarint(m.remaining_changes);
    w.uvarint(m.remaining_bytes);
    w.uvarint(m.items.size());
    for (const auto& item : m.items) {
      w.uvarint(item.seq);
      w.body(item.body);
    }
    w.scope_section(m);  // version 5: scopes
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
  m.backfill.resize(r.count("backfill count", k_min_sequenced_change));
  for (auto& item : m.backfill) {
    item.seq = r.uvarint("backfill sequence number");
    if (item.seq == 0) malformed("a backfilled change has sequence number 0");
    item.body = r.body();
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

/// A push; with `sent`, also each change's bytes in the input (decode_push).
push read_push(reader& r, std::vector<std::span<const std::uint8_t>>* sent) {
  push m;
  m.batch = r.id("batch id");
  m.changes.resize(r.count("change count", k_min_change));
  if (sent) {
    sent->clear();
    sent->reserve(m.changes.size());
  }
  for (auto& c : m.changes) {
    const std::uint8_t* start = r.position();
    c = r.body();
    if (sent) sent->emplace_back(start, r.position());
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
      return m;
    }
    case message_type::push: return read_push(r, nullptr);
    case message_type::push_result: {
      push_result m;
      m.batch = r.id("batch id");
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
      m.items.resize(r.count("change count", k_min_sequenced_change));
      for (auto& item : m.items) {
        item.seq = r.uvarint("sequence number");
        item.body = r.body();
      }
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

push decode_push(std::span<const std::uint8_t> payload, std::vector<std::span<const std::uint8_t>>& sent) {
  try {
    reader r(payload);
    auto m = read_push(r, &sent);
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
  ++count_;
}

namespace {

/// The part of a changes payload before its items.
bytes page_head(std::uint64_t next_cursor, bool more, std::uint64_t remaining_changes, std::uint64_t remaining_bytes,
                std::size_t count) {
  bytes head;
  auto w = payload_writer(head);
  w.uvarint(next_cursor);
  w.boolean(more);
  w.uvarint(remaining_changes);
  w.uvarint(remaining_bytes);
  w.uvarint(count);
  return head;
}

}  // namespace

void changes_page_builder::write_scope_section(bytes& out) const {
  // Version 5: the scope section, after the items.
  writer w(out);
  w.uvarint(scope_epoch_);
  w.uvarint(purge_count_);
  w.raw(purges_.data(), purges_.size());
  w.uvarint(backfill_count_);
  w.raw(backfill_.data(), backfill_.size());
}

bytes changes_page_builder::finish(std::uint64_t next_cursor, bool more, std::uint64_t remaining_changes,
                                   std::uint64_t remaining_bytes) const& {
  bytes out = page_head(next_cursor, more, remaining_changes, remaining_bytes, count_);
  out.reserve(out.size() + items_.size() + purges_.size() + backfill_.size() + 24);
  out.insert(out.end(), items_.begin(), items_.end());
  write_scope_section(out);
  return out;
}

bytes changes_page_builder::finish(std::uint64_t next_cursor, bool more, std::uint64_t remaining_changes,
                                   std::uint64_t remaining_bytes) && {
  const bytes head = page_head(next_cursor, more, remaining_changes, remaining_bytes, count_);
  bytes out = std::move(items_);
  out.reserve(head.size() + out.size() + purges_.size() + backfill_.size() + 24);
  out.insert(out.begin(), head.begin(), head.end());  // moves the items up within the buffer
  write_scope_section(out);
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
  ++backfill_count_;
}

void push_builder::add(const change& c) {
  writer(changes_).body(c);
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
  writer(changes_).plain_upsert(collection, id, ver, fields);
  ++count_;
}

bytes push_builder::finish(const batch_id& batch) const {
  bytes out;
  // marker, id, count (a uvarint of at most 10 bytes)
  out.reserve(1 + batch.bytes.size() + 10 + changes_.size());
  auto w = payload_writer(out);
  w.id(batch);
  w.uvarint(count_);
  w.raw(changes_.data(), changes_.size());
  return out;
}

}  // namespace caresync::wire
