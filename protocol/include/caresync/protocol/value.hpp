#pragma once
/// Field values: the five kinds a record field may hold.
/// Thread contract: plain values; safe to share read-only between threads.

#include <compare>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace caresync {

/// Raw bytes held in a field (a photo hash, a signature); distinct from text.
struct blob {
  std::vector<std::uint8_t> bytes;
  friend bool operator==(const blob&, const blob&) = default;
  friend auto operator<=>(const blob&, const blob&) = default;
};

/// A field value: null, 64-bit integer, IEEE-754 double, UTF-8 text or bytes.
/// The variant index is the wire tag (see docs/protocol.md, "value").
using value = std::variant<std::monostate, std::int64_t, double, std::string, blob>;

/// The kind of a value, numbered as on the wire.
enum class value_kind : std::uint8_t { null = 0, integer = 1, real = 2, text = 3, bytes = 4 };

/// Returns the kind of `v`.
inline value_kind kind_of(const value& v) noexcept { return static_cast<value_kind>(v.index()); }

/// Returns "null", "integer", "real", "text" or "bytes".
std::string_view to_string(value_kind kind) noexcept;

/// Parses the names returned by to_string; returns false when `name` is none of them.
bool parse_value_kind(std::string_view name, value_kind& out) noexcept;

}  // namespace caresync
