#pragma once
// The byte-level writer and reader every payload is made and read with (docs/protocol.md,
// "Payload encoding"). Internal to protocol/: codec.cpp (messages) and page_block.cpp (the
// column layout of a page's changes) share them, so every path writes the same bytes.
// Thread contract: a writer or reader is used by one thread at a time.

#include <caresync/protocol/codec.hpp>
#include <caresync/protocol/errors.hpp>

#include <cereal/archives/portable_binary.hpp>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <istream>
#include <streambuf>
#include <string>
#include <type_traits>
#include <variant>

namespace caresync::wire::detail {


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

[[noreturn]] inline void malformed(const std::string& what) {
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

  /// A zigzag varint (docs/protocol.md, "svarint").
  void svarint(std::int64_t v) { uvarint((static_cast<std::uint64_t>(v) << 1) ^ static_cast<std::uint64_t>(v >> 63)); }

  /// A push batch (version 7): a numbered batch as its number, any other id as 0 and its
  /// 16 bytes.
  void batch(const batch_id& b) {
    if (const auto n = batch_number(b); n != 0) return uvarint(n);
    u8(0);
    id(b);
  }

  /// The kind byte of a change: its kind and the flags of the parts that follow its fields.
  static std::uint8_t kind_byte(const change& c) noexcept {
    // Bit 7 of the kind byte says a kept list follows the fields (protocol version 3).
    return static_cast<std::uint8_t>(static_cast<std::uint8_t>(c.kind) | (c.kept.empty() ? 0 : k_kept_flag) |
                                     (c.items.empty() ? 0 : k_items_flag) | (c.covers ? k_covers_flag : 0) |
                                     (c.revivable ? k_revivable_flag : 0) | (c.dismisses ? k_dismisses_flag : 0));
  }

  /// A change as stored and paged (`with_node`), or as pushed since version 7 (without
  /// its node id, which is the pusher's).
  void body(const change& c, bool with_node = true) {
    head(c.collection, c.id, c.ver, kind_byte(c), with_node);
    uvarint(c.fields.size());
    for (const auto& f : c.fields) {
      text(f.name);
      val(f.val);
    }
    tail(c);
  }

  /// What follows a change's fields, by the flags of its kind byte: kept list, covered
  /// versions, dismissed version, item operations.
  void tail(const change& c) {
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
  void plain_upsert(std::string_view collection, const record_id& r, const version& ver, std::span<const field_view> fields,
                    bool with_node = true) {
    head(collection, r, ver, static_cast<std::uint8_t>(change_kind::upsert), with_node);
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
  void head(std::string_view collection, const record_id& r, const version& ver, std::uint8_t kind_byte, bool with_node) {
    text(collection);
    id(r);
    u64(ver.stamp.value);
    if (with_node) u64(ver.node);
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
inline writer payload_writer(bytes& out) {
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
  std::int64_t svarint(const char* what) {
    const auto z = uvarint(what);
    return static_cast<std::int64_t>((z >> 1) ^ (~(z & 1) + 1));
  }
  /// A push batch as writer::batch() writes it.
  batch_id batch(const char* what) {
    if (const auto n = uvarint(what); n != 0) return numbered_batch(n);
    return id(what);
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
  std::string text(const char* what) { return std::string(text_view(what)); }
  /// A text as it lies in the input (valid while the input is).
  std::string_view text_view(const char* what) {
    const auto n = count(what, 1);
    std::string_view s(reinterpret_cast<const char*>(source_.next()), n);
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

  /// A change as writer::body() writes it; without `with_node` (a push), its node is 0.
  /// `after_stamp`: set to where the stamp ends in the input (where a push's change
  /// takes its node in stored form).
  change body(bool with_node = true, const std::uint8_t** after_stamp = nullptr) {
    change c;
    c.collection = text("collection name");
    c.id = id("record id");
    c.ver.stamp.value = u64("stamp");
    if (after_stamp) *after_stamp = position();
    if (with_node) c.ver.node = u64("node id");
    const auto kind_byte = u8("change kind");
    set_kind(c, kind_byte);
    // Each field needs at least 2 bytes: a name length and a value tag. The count is also
    // held to the per-change limit before allocating: a field takes ~36 times its least
    // wire size in memory, so the frame's size alone bounds too little.
    c.fields.resize(bounded_count("field count", 2, k_max_list, "fields"));
    for (auto& f : c.fields) {
      f.name = text("field name");
      f.val = val();
    }
    tail(c, kind_byte);
    check(c);
    return c;
  }

  /// Sets a change's kind and revivable flag from its kind byte; refuses an unknown
  /// kind or flags that do not fit it.
  static void set_kind(change& c, std::uint8_t kind_byte) {
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
  }

  /// What follows a change's fields, as its kind byte (already checked by set_kind) says.
  void tail(change& c, std::uint8_t kind_byte) {
    const bool has_kept = (kind_byte & k_kept_flag) != 0;
    const bool has_items = (kind_byte & k_items_flag) != 0;
    const bool has_covers = (kind_byte & k_covers_flag) != 0;
    const bool has_dismisses = (kind_byte & k_dismisses_flag) != 0;
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
  }

  /// The rules a whole change must keep: a delete writes no field; no field twice.
  static void check(const change& c) {
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


}  // namespace caresync::wire::detail
