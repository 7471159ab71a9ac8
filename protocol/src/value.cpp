#include <caresync/protocol/value.hpp>

#include <array>

namespace caresync {

namespace {
constexpr std::array<std::string_view, 5> k_kind_names{"null", "integer", "real", "text", "bytes"};
}

std::string_view to_string(value_kind kind) noexcept {
  const auto i = static_cast<std::size_t>(kind);
  return i < k_kind_names.size() ? k_kind_names[i] : std::string_view{"invalid"};
}

bool parse_value_kind(std::string_view name, value_kind& out) noexcept {
  for (std::size_t i = 0; i < k_kind_names.size(); ++i) {
    if (k_kind_names[i] == name) {
      out = static_cast<value_kind>(i);
      return true;
    }
  }
  return false;
}

}  // namespace caresync
