#include "field_clock.hpp"

#include <caresync/protocol/errors.hpp>

#include <algorithm>

namespace caresync {

namespace {

void put_u64(std::vector<std::uint8_t>& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}

std::uint64_t get_u64(std::span<const std::uint8_t> in, std::size_t at) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<std::uint64_t>(in[at + i]) << (8 * i);
  return v;
}

[[noreturn]] void corrupt() {
  throw error(make_error_code(storage_errc::corrupt), "a record's field clock in the store is damaged");
}

void put_group(std::vector<std::uint8_t>& out, const version& ver, std::size_t n) {
  put_u64(out, ver.stamp.value);
  put_u64(out, ver.node);
  out.push_back(static_cast<std::uint8_t>(n));
}

constexpr std::uint8_t k_extra = 0x80;
constexpr std::uint8_t k_kept = 0x40;
constexpr std::uint8_t k_length = 0x3f;  // names are at most 63 bytes

void put_name(std::vector<std::uint8_t>& out, std::string_view name, bool extra, bool kept) {
  out.push_back(static_cast<std::uint8_t>(name.size() | (extra ? k_extra : 0) | (kept ? k_kept : 0)));
  out.insert(out.end(), name.begin(), name.end());
}

}  // namespace

std::vector<std::uint8_t> encode_field_clock(const field_clock& clock) {
  // Group names by version; most records have one or two groups.
  struct entry {
    const version* ver;
    std::string_view name;
    bool extra;
    bool kept;
  };
  std::vector<entry> entries;
  entries.reserve(clock.size());
  for (const auto& [name, e] : clock) entries.push_back({&e.ver, name, e.extra, e.kept});
  std::stable_sort(entries.begin(), entries.end(), [](const entry& a, const entry& b) { return *a.ver < *b.ver; });
  std::vector<std::uint8_t> out;
  out.reserve(clock.size() * 12 + 17);
  for (std::size_t start = 0; start < entries.size();) {
    std::size_t end = start;
    while (end < entries.size() && end - start < 255 && *entries[end].ver == *entries[start].ver) ++end;
    put_group(out, *entries[start].ver, end - start);
    for (std::size_t i = start; i < end; ++i) put_name(out, entries[i].name, entries[i].extra, entries[i].kept);
    start = end;
  }
  return out;
}

void encode_clock_of_change(std::vector<std::uint8_t>& out, const version& ver, std::span<const field_write> fields,
                            std::span<const kept_field> kept) {
  const auto is_kept = [&](const std::string& name) {
    return std::any_of(kept.begin(), kept.end(), [&](const kept_field& k) { return k.name == name; });
  };
  for (std::size_t start = 0; start < fields.size(); start += 255) {
    const std::size_t n = std::min<std::size_t>(255, fields.size() - start);
    put_group(out, ver, n);
    for (std::size_t i = start; i < start + n; ++i) put_name(out, fields[i].name, false, !kept.empty() && is_kept(fields[i].name));
  }
}

void for_each_clock_entry(std::span<const std::uint8_t> in,
                          const std::function<void(std::string_view, const field_clock_entry&)>& visit) {
  std::size_t at = 0;
  while (at < in.size()) {
    if (in.size() - at < 17) corrupt();
    const version ver{hlc_stamp{get_u64(in, at)}, get_u64(in, at + 8)};
    std::size_t n = in[at + 16];
    at += 17;
    while (n--) {
      if (at >= in.size()) corrupt();
      const std::size_t len = in[at] & k_length;
      const field_clock_entry entry{ver, (in[at] & k_extra) != 0, (in[at] & k_kept) != 0};
      ++at;
      if (len == 0 || in.size() - at < len) corrupt();
      visit(std::string_view(reinterpret_cast<const char*>(in.data() + at), len), entry);
      at += len;
    }
  }
}

field_clock decode_field_clock(std::span<const std::uint8_t> in) {
  field_clock clock;
  for_each_clock_entry(in, [&](std::string_view name, const field_clock_entry& entry) {
    clock.insert_or_assign(std::string(name), entry);
  });
  return clock;
}

}  // namespace caresync
