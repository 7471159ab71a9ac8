#include "field_clock.hpp"

#include <caresync/protocol/errors.hpp>

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

}  // namespace

std::vector<std::uint8_t> encode_field_clock(const field_clock& clock) {
  // Group names by version; most records have one or two groups.
  std::map<version, std::vector<std::pair<const std::string*, bool>>> groups;
  for (const auto& [name, entry] : clock) groups[entry.ver].emplace_back(&name, entry.extra);
  std::vector<std::uint8_t> out;
  out.reserve(clock.size() * 12 + groups.size() * 17);
  for (const auto& [ver, names] : groups) {
    for (std::size_t start = 0; start < names.size(); start += 255) {
      const std::size_t n = std::min<std::size_t>(255, names.size() - start);
      put_u64(out, ver.stamp.value);
      put_u64(out, ver.node);
      out.push_back(static_cast<std::uint8_t>(n));
      for (std::size_t i = start; i < start + n; ++i) {
        const auto& [name, extra] = names[i];
        out.push_back(static_cast<std::uint8_t>(name->size() | (extra ? 0x80 : 0)));
        out.insert(out.end(), name->begin(), name->end());
      }
    }
  }
  return out;
}

field_clock decode_field_clock(std::span<const std::uint8_t> in) {
  field_clock clock;
  std::size_t at = 0;
  while (at < in.size()) {
    if (in.size() - at < 17) corrupt();
    const version ver{hlc_stamp{get_u64(in, at)}, get_u64(in, at + 8)};
    std::size_t n = in[at + 16];
    at += 17;
    while (n--) {
      if (at >= in.size()) corrupt();
      const std::size_t len = in[at] & 0x7f;
      const bool extra = (in[at] & 0x80) != 0;
      ++at;
      if (len == 0 || in.size() - at < len) corrupt();
      clock[std::string(reinterpret_cast<const char*>(in.data() + at), len)] = field_clock_entry{ver, extra};
      at += len;
    }
  }
  return clock;
}

}  // namespace caresync
