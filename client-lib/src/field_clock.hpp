#pragma once
// The per-field clock of one record, as kept in its row's cs_clock column (or cs_meta.clock
// for a tombstone or a record of an undeclared collection): for each field written,
// the version that wrote it and whether its value lives outside the record's table (in
// cs_extra: fields the schema does not declare, or values of another type than declared).
//
// whether the value was written under keep_both (then the field may have open conflicts
// in cs_conflict, and a value that beats it there is kept as one).
//
// Encoding (little-endian), fields grouped by version since one change writes many:
//   repeat { u64 stamp; u64 node; u8 count; count x { u8 len | 0x80 if extra | 0x40 if kept; name } }

#include <caresync/protocol/change.hpp>
#include <caresync/protocol/hlc.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace caresync {

struct field_clock_entry {
  version ver;
  bool extra = false;
  bool kept = false;  ///< written under keep_both
};

using field_clock = std::map<std::string, field_clock_entry>;

/// Encodes a clock. Field names must be at most 127 bytes (names are at most 63).
std::vector<std::uint8_t> encode_field_clock(const field_clock& clock);

/// Appends the clock of a record written by one change only (a new record): every field
/// of `fields` at `ver`, none extra, kept when named in `kept`. Equals encode_field_clock
/// of that clock up to order.
void encode_clock_of_change(std::vector<std::uint8_t>& out, const version& ver, std::span<const field_write> fields,
                            std::span<const kept_field> kept = {});

/// Calls `visit(name, entry)` for every entry of an encoded clock, in encoded order,
/// without building a map. Throws caresync::error (storage_errc::corrupt) on malformed bytes.
void for_each_clock_entry(std::span<const std::uint8_t> bytes,
                          const std::function<void(std::string_view, const field_clock_entry&)>& visit);

/// Decodes a clock. Throws caresync::error (storage_errc::corrupt) on malformed bytes.
field_clock decode_field_clock(std::span<const std::uint8_t> bytes);

}  // namespace caresync
