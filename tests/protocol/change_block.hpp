#pragma once
// The tests' own writer of change blocks (protocol version 7), from the table of
// docs/protocol.md, "Change blocks", written apart from protocol/src/page_block.cpp: the
// tests compare the library's pages with these bytes, and the hostile tests break one
// part of a block at a time. A block is kept in its parts (block_parts) until joined.
// Thread contract: free functions and values, no shared state.

#include <caresync/protocol/codec.hpp>
#include <caresync/protocol/messages.hpp>

#include <bit>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace caresync::testing {

inline void put_uvarint(wire::bytes& out, std::uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<std::uint8_t>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<std::uint8_t>(v));
}

/// zigzag, then uvarint (docs/protocol.md, "svarint").
inline void put_svarint(wire::bytes& out, std::int64_t v) {
  put_uvarint(out, (static_cast<std::uint64_t>(v) << 1) ^ static_cast<std::uint64_t>(v >> 63));
}

inline void put_u64(wire::bytes& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}

inline void put_text(wire::bytes& out, std::string_view s) {
  put_uvarint(out, s.size());
  out.insert(out.end(), s.begin(), s.end());
}

/// A value: its tag, then its data (docs/protocol.md, "Value").
inline void put_value(wire::bytes& out, const value& v) {
  out.push_back(static_cast<std::uint8_t>(v.index()));
  if (const auto* i = std::get_if<std::int64_t>(&v)) put_svarint(out, *i);
  if (const auto* d = std::get_if<double>(&v)) put_u64(out, std::bit_cast<std::uint64_t>(*d));
  if (const auto* s = std::get_if<std::string>(&v)) put_text(out, *s);
  if (const auto* b = std::get_if<blob>(&v)) {
    put_uvarint(out, b->bytes.size());
    out.insert(out.end(), b->bytes.begin(), b->bytes.end());
  }
}

/// What follows a change's fields in its own encoding (kept list, covers, dismissed
/// version, item list): its stored form past the same change without those parts, which
/// is as long up to there (only the kind byte differs).
inline wire::bytes tail_of(const change& c) {
  change bare = c;
  bare.kept.clear();
  bare.items.clear();
  bare.covers.reset();
  bare.dismisses.reset();
  bare.revivable = false;
  const auto full = wire::encode_change(c);
  const auto head = wire::encode_change(bare).size();
  return wire::bytes(full.begin() + static_cast<std::ptrdiff_t>(head), full.end());
}

/// The kind byte of a change (docs/protocol.md, "Change", row 5).
inline std::uint8_t kind_byte_of(const change& c) {
  return static_cast<std::uint8_t>(static_cast<std::uint8_t>(c.kind) | (c.kept.empty() ? 0 : 0x80) |
                                   (c.items.empty() ? 0 : 0x40) | (c.covers ? 0x20 : 0) | (c.revivable ? 0x10 : 0) |
                                   (c.dismisses ? 0x08 : 0));
}

/// A change block's rows 1-13, each as its bytes.
struct block_parts {
  wire::bytes count, names, nodes, seqs, collections, records, stamps, node_indexes, kinds, field_counts, field_names,
      values, tails;

  wire::bytes joined() const {
    wire::bytes out;
    for (const auto* part : {&count, &names, &nodes, &seqs, &collections, &records, &stamps, &node_indexes, &kinds,
                             &field_counts, &field_names, &values, &tails}) {
      out.insert(out.end(), part->begin(), part->end());
    }
    return out;
  }
};

/// The block of `items`, part by part, as docs/protocol.md lays it out.
inline block_parts block_of(const std::vector<sequenced_change>& items) {
  block_parts b;
  put_uvarint(b.count, items.size());
  if (items.empty()) return b;

  // The tables, in order of first use.
  std::vector<std::string> names;
  std::vector<node_id> nodes;
  const auto name_index = [&names](const std::string& n) {
    for (std::size_t i = 0; i < names.size(); ++i) {
      if (names[i] == n) return i;
    }
    names.push_back(n);
    return names.size() - 1;
  };
  const auto node_index = [&nodes](node_id n) {
    for (std::size_t i = 0; i < nodes.size(); ++i) {
      if (nodes[i] == n) return i;
    }
    nodes.push_back(n);
    return nodes.size() - 1;
  };
  std::vector<std::size_t> collection_of, node_of, field_name_of;
  for (const auto& item : items) {
    collection_of.push_back(name_index(item.body.collection));
    for (const auto& f : item.body.fields) field_name_of.push_back(name_index(f.name));
    node_of.push_back(node_index(item.body.ver.node));
  }
  put_uvarint(b.names, names.size());
  for (const auto& n : names) put_text(b.names, n);
  put_uvarint(b.nodes, nodes.size());
  for (const auto n : nodes) put_u64(b.nodes, n);

  std::uint64_t seq = 0, stamp = 0;
  for (std::size_t i = 0; i < items.size(); ++i) {
    const auto& c = items[i].body;
    put_svarint(b.seqs, static_cast<std::int64_t>(items[i].seq - seq));
    seq = items[i].seq;
    put_uvarint(b.collections, collection_of[i]);
    b.records.insert(b.records.end(), c.id.bytes.begin(), c.id.bytes.end());
    put_svarint(b.stamps, static_cast<std::int64_t>(c.ver.stamp.value - stamp));
    stamp = c.ver.stamp.value;
    put_uvarint(b.node_indexes, node_of[i]);
    b.kinds.push_back(kind_byte_of(c));
    put_uvarint(b.field_counts, c.fields.size());
  }
  for (const auto n : field_name_of) put_uvarint(b.field_names, n);
  // The values name by name, in the table's order; each name's in change order.
  for (std::size_t n = 0; n < names.size(); ++n) {
    for (const auto& item : items) {
      for (const auto& f : item.body.fields) {
        if (f.name == names[n]) put_value(b.values, f.val);
      }
    }
  }
  for (const auto& item : items) {
    const auto tail = tail_of(item.body);
    b.tails.insert(b.tails.end(), tail.begin(), tail.end());
  }
  return b;
}

/// A changes payload around the blocks `items` and `backfill` (already joined): the
/// page's head and scope fields as docs/protocol.md, "6 changes", lists them.
inline wire::bytes changes_payload(const wire::changes_page& page, const wire::bytes& items, const wire::bytes& backfill) {
  wire::bytes out{0x01};
  put_uvarint(out, page.next_cursor);
  out.push_back(page.more ? 1 : 0);
  put_uvarint(out, page.remaining_changes);
  put_uvarint(out, page.remaining_bytes);
  out.insert(out.end(), items.begin(), items.end());
  put_uvarint(out, page.scope_epoch);
  put_uvarint(out, page.purges.size());
  for (const auto& p : page.purges) {
    put_text(out, p.collection);
    out.insert(out.end(), p.id.bytes.begin(), p.id.bytes.end());
  }
  out.insert(out.end(), backfill.begin(), backfill.end());
  return out;
}

/// The payload of `page`, written by these functions alone.
inline wire::bytes changes_payload(const wire::changes_page& page) {
  return changes_payload(page, block_of(page.items).joined(), block_of(page.backfill).joined());
}

}  // namespace caresync::testing
