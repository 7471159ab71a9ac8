// Which records a prioritised initial sync sends first (docs/protocol.md,
// "Prioritised initial sync").

#include <caresync/server/change_store.hpp>

#include <compare>
#include <variant>

namespace caresync::server {

namespace {

/// a <=> b when both are numbers (integer or real) or both text; unordered otherwise.
std::partial_ordering compare(const value& a, const value& b) {
  const auto ka = kind_of(a);
  const auto kb = kind_of(b);
  const auto number = [](const value& v, value_kind k) {
    return k == value_kind::integer ? static_cast<double>(std::get<std::int64_t>(v)) : std::get<double>(v);
  };
  if (ka == value_kind::integer && kb == value_kind::integer) {
    return std::get<std::int64_t>(a) <=> std::get<std::int64_t>(b);
  }
  const bool a_number = ka == value_kind::integer || ka == value_kind::real;
  const bool b_number = kb == value_kind::integer || kb == value_kind::real;
  if (a_number && b_number) return number(a, ka) <=> number(b, kb);
  if (ka == value_kind::text && kb == value_kind::text) {
    // By bytes, so ISO dates and times order as they read.
    return std::get<std::string>(a).compare(std::get<std::string>(b)) <=> 0;
  }
  return std::partial_ordering::unordered;
}

}  // namespace

bool matches(const wire::prime_tier& tier, const record_state& state) {
  if (state.deleted) return false;
  if (tier.match == wire::prime_match::all) return true;
  const auto f = state.fields.find(tier.field);
  if (f == state.fields.end()) return false;
  const auto order = compare(f->second.val, tier.operand);
  return tier.match == wire::prime_match::equals ? order == std::partial_ordering::equivalent
                                                 : (order == std::partial_ordering::equivalent ||
                                                    order == std::partial_ordering::greater);
}

}  // namespace caresync::server
