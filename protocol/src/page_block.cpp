// The column layout of a page's changes (docs/protocol.md, "Change blocks"). A server keeps
// changes in their row form (encode_change); a page is laid out column by column when it
// is finished, from those rows, without decoding them into values.

#include "page_block.hpp"

#include <algorithm>
#include <string>
#include <string_view>
#include <unordered_map>

namespace caresync::wire::detail {

namespace {

/// The kind-byte flags after which a change has parts beyond its fields.
constexpr std::uint8_t k_tail_flags = k_kept_flag | k_items_flag | k_covers_flag | k_dismisses_flag;

/// Reads the parts of one row (a sequence number and a stored change less its marker)
/// where they lie. The rows are the server's own log, checked when stored; every read is
/// still bounded by the row's end.
class row_cursor {
 public:
  row_cursor(const std::uint8_t* p, const std::uint8_t* end) noexcept : p_(p), end_(end) {}

  const std::uint8_t* position() const noexcept { return p_; }
  const std::uint8_t* take(std::size_t n) {
    if (n > static_cast<std::size_t>(end_ - p_)) malformed("a stored change ends inside one of its parts");
    const auto* at = p_;
    p_ += n;
    return at;
  }
  std::uint8_t u8() { return *take(1); }
  std::uint64_t u64() {
    const auto* b = take(8);
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | b[i];
    return v;
  }
  std::uint64_t uvarint() {
    std::uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      const auto b = u8();
      v |= static_cast<std::uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    malformed("a stored change holds a varint of more than 10 bytes");
  }
  std::string_view text() {
    const auto n = uvarint();
    return {reinterpret_cast<const char*>(take(static_cast<std::size_t>(std::min<std::uint64_t>(n, SIZE_MAX)))),
            static_cast<std::size_t>(n)};
  }
  /// A value's bytes, tag included.
  std::span<const std::uint8_t> value() {
    const auto* start = p_;
    switch (const auto tag = u8(); tag) {
      case 0: break;
      case 1: uvarint(); break;
      case 2: take(8); break;
      case 3:
      case 4: take(static_cast<std::size_t>(std::min<std::uint64_t>(uvarint(), SIZE_MAX))); break;
      default: malformed("a stored change holds value tag " + std::to_string(tag));
    }
    return {start, p_};
  }

 private:
  const std::uint8_t* p_;
  const std::uint8_t* end_;
};

/// One change of a block as its row holds it.
struct row_parts {
  std::uint64_t seq = 0;
  std::string_view collection;
  const std::uint8_t* id = nullptr;  ///< 16 bytes
  std::uint64_t stamp = 0;
  std::uint64_t node = 0;
  std::uint8_t kind = 0;
  std::size_t field_count = 0;
  std::span<const std::uint8_t> tail;  ///< what follows the fields (kept list, covers, ...)
};

struct field_parts {
  std::string_view name;
  std::span<const std::uint8_t> value;  ///< tag and data
};

/// Indexes of distinct values in order of first use.
template <class T>
class first_use_table {
 public:
  std::uint32_t index_of(const T& v) {
    const auto [at, added] = index_.try_emplace(v, static_cast<std::uint32_t>(values_.size()));
    if (added) values_.push_back(v);
    return at->second;
  }
  const std::vector<T>& values() const noexcept { return values_; }

 private:
  std::unordered_map<T, std::uint32_t> index_;
  std::vector<T> values_;
};

/// The difference of two 64-bit numbers, as a signed number (wrapping): what svarint sends.
std::int64_t delta(std::uint64_t now, std::uint64_t before) noexcept { return static_cast<std::int64_t>(now - before); }

}  // namespace

void write_block(writer& w, std::span<const std::uint8_t> rows, std::span<const std::size_t> ends) {
  const std::size_t n = ends.size();
  w.uvarint(n);
  if (n == 0) return;
  std::vector<row_parts> parts(n);
  std::vector<field_parts> fields;
  fields.reserve(n * 8);
  std::size_t start = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (ends[i] < start || ends[i] > rows.size()) malformed("a page's rows are out of order");
    row_cursor c(rows.data() + start, rows.data() + ends[i]);
    auto& p = parts[i];
    p.seq = c.uvarint();
    p.collection = c.text();
    p.id = c.take(16);
    p.stamp = c.u64();
    p.node = c.u64();
    p.kind = c.u8();
    p.field_count = static_cast<std::size_t>(c.uvarint());
    if (p.field_count > k_max_list) malformed("a stored change has more than 256 fields");
    for (std::size_t f = 0; f < p.field_count; ++f) {
      const auto name = c.text();
      fields.push_back({name, c.value()});
    }
    p.tail = {c.position(), rows.data() + ends[i]};
    if (!(p.kind & k_tail_flags) && !p.tail.empty()) malformed("a stored change has bytes after its fields");
    start = ends[i];
  }

  // Names (collections and fields, in order of first use) and node ids, each once.
  first_use_table<std::string_view> names;
  first_use_table<std::uint64_t> nodes;
  std::vector<std::uint32_t> collection_index(n);
  std::vector<std::uint32_t> field_index(fields.size());
  std::vector<std::uint32_t> node_index(n);
  // Changes of a page mostly repeat the last one's collection, fields and node: its
  // indexes are tried first, before the tables are searched.
  std::size_t previous_first = 0;  // where the last change's fields start in `fields`
  for (std::size_t i = 0, f = 0; i < n; ++i) {
    const bool like_last = i > 0 && parts[i].collection == parts[i - 1].collection;
    collection_index[i] = like_last ? collection_index[i - 1] : names.index_of(parts[i].collection);
    const std::size_t first_field = f;
    for (std::size_t k = 0; k < parts[i].field_count; ++k, ++f) {
      const bool same = i > 0 && k < parts[i - 1].field_count && fields[previous_first + k].name == fields[f].name;
      field_index[f] = same ? field_index[previous_first + k] : names.index_of(fields[f].name);
    }
    previous_first = first_field;
    node_index[i] = i > 0 && parts[i].node == parts[i - 1].node ? node_index[i - 1] : nodes.index_of(parts[i].node);
  }
  w.uvarint(names.values().size());
  for (const auto& name : names.values()) w.text(name);
  w.uvarint(nodes.values().size());
  for (const auto node : nodes.values()) w.u64(node);

  std::uint64_t previous = 0;
  for (const auto& p : parts) {
    w.svarint(delta(p.seq, previous));
    previous = p.seq;
  }
  for (const auto c : collection_index) w.uvarint(c);
  for (const auto& p : parts) w.raw(p.id, 16);
  previous = 0;
  for (const auto& p : parts) {
    w.svarint(delta(p.stamp, previous));
    previous = p.stamp;
  }
  for (const auto c : node_index) w.uvarint(c);
  for (const auto& p : parts) w.u8(p.kind);
  for (const auto& p : parts) w.uvarint(p.field_count);
  for (const auto f : field_index) w.uvarint(f);

  // The values, name by name in the table's order, each name's in change order (a stable
  // counting sort of the field writes by name).
  std::vector<std::size_t> first(names.values().size() + 1, 0);
  for (const auto f : field_index) ++first[f + 1];
  for (std::size_t j = 1; j < first.size(); ++j) first[j] += first[j - 1];
  std::vector<std::size_t> order(fields.size());
  for (std::size_t f = 0; f < fields.size(); ++f) order[first[field_index[f]]++] = f;
  for (const auto f : order) w.raw(fields[f].value.data(), fields[f].value.size());

  for (const auto& p : parts) w.raw(p.tail.data(), p.tail.size());
}

std::vector<sequenced_change> read_block(reader& r) {
  // The least a change takes in a block: a byte each for its sequence number,
  // collection, stamp, node, kind and field count, and its 16-byte id.
  constexpr std::size_t k_min_block_change = 6 + 16;
  const auto n = r.count("change count", k_min_block_change);
  std::vector<sequenced_change> out(n);
  if (n == 0) return out;

  // The tables are views into the payload: what they take is bounded by the bytes read.
  const auto name_count = r.count("name count", 1);
  std::vector<std::string_view> names(name_count);
  for (auto& name : names) name = r.text_view("name");
  {
    std::vector<std::string_view> sorted(names.begin(), names.end());
    std::sort(sorted.begin(), sorted.end());
    if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) malformed("a block's name table lists a name twice");
  }
  const auto node_count = r.count("node count", 8);
  std::vector<std::uint64_t> nodes(node_count);
  for (auto& node : nodes) node = r.u64("node id");

  const auto index = [&r](const char* what, std::size_t size) {
    const auto i = r.uvarint(what);
    if (i >= size) malformed(std::string(what) + " points past its table");
    return static_cast<std::size_t>(i);
  };
  std::uint64_t previous = 0;
  for (auto& item : out) item.seq = previous += static_cast<std::uint64_t>(r.svarint("sequence number"));
  for (auto& item : out) item.body.collection = std::string(names[index("collection index", names.size())]);
  for (auto& item : out) item.body.id = r.id("record id");
  previous = 0;
  for (auto& item : out) item.body.ver.stamp.value = previous += static_cast<std::uint64_t>(r.svarint("stamp"));
  for (auto& item : out) item.body.ver.node = nodes[index("node index", nodes.size())];
  std::vector<std::uint8_t> kinds(n);
  for (std::size_t i = 0; i < n; ++i) {
    kinds[i] = r.u8("change kind");
    reader::set_kind(out[i].body, kinds[i]);
  }
  std::vector<std::size_t> field_counts(n);
  std::size_t total = 0;
  for (auto& count : field_counts) {
    count = static_cast<std::size_t>(r.uvarint("field count"));
    if (count > k_max_list) malformed("a change lists more than " + std::to_string(k_max_list) + " fields");
    total += count;
  }
  // Each field write takes at least a name index and a value tag.
  if (total > r.left() / 2) malformed("field count claims more fields than the message holds");

  // Where each field write goes: change and position, and its name.
  std::vector<std::uint32_t> slot_name(total);
  std::vector<field_write*> slot(total);
  for (std::size_t i = 0, s = 0; i < n; ++i) {
    auto& fields = out[i].body.fields;
    fields.resize(field_counts[i]);
    for (auto& f : fields) {
      slot_name[s] = static_cast<std::uint32_t>(index("field name index", names.size()));
      f.name = std::string(names[slot_name[s]]);
      slot[s++] = &f;
    }
  }
  std::vector<std::size_t> first(names.size() + 1, 0);
  for (const auto j : slot_name) ++first[j + 1];
  for (std::size_t j = 1; j < first.size(); ++j) first[j] += first[j - 1];
  std::vector<field_write*> by_name(total);
  for (std::size_t s = 0; s < total; ++s) by_name[first[slot_name[s]]++] = slot[s];
  for (auto* f : by_name) f->val = r.val();

  for (std::size_t i = 0; i < n; ++i) {
    if (kinds[i] & k_tail_flags) r.tail(out[i].body, kinds[i]);
    reader::check(out[i].body);
  }
  return out;
}

}  // namespace caresync::wire::detail
