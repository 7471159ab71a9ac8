// Which records a prioritised initial sync sends first (docs/protocol.md,
// "Prioritised initial sync").

#include <caresync/server/change_store.hpp>

#include <cmath>
#include <compare>
#include <cstdint>
#include <variant>

namespace caresync::server {

namespace {

/// An integer against a real, exactly (a conversion to double rounds above 2^53).
std::partial_ordering compare_exact(std::int64_t i, double d) {
  if (std::isnan(d)) return std::partial_ordering::unordered;
  constexpr double k_two_63 = 9223372036854775808.0;
  if (d >= k_two_63) return std::partial_ordering::less;
  if (d < -k_two_63) return std::partial_ordering::greater;
  const double whole = std::trunc(d);  // within int64 here, so exactly convertible
  const auto t = static_cast<std::int64_t>(whole);
  if (i != t) return i <=> t;
  return 0.0 <=> (d - whole);  // same whole part: the fraction decides
}

/// a <=> b when both are numbers (integer or real) or both text; unordered otherwise.
std::partial_ordering compare(const value& a, const value& b) {
  const auto ka = kind_of(a);
  const auto kb = kind_of(b);
  if (ka == value_kind::integer && kb == value_kind::integer) {
    return std::get<std::int64_t>(a) <=> std::get<std::int64_t>(b);
  }
  if (ka == value_kind::real && kb == value_kind::real) return std::get<double>(a) <=> std::get<double>(b);
  if (ka == value_kind::integer && kb == value_kind::real) return compare_exact(std::get<std::int64_t>(a), std::get<double>(b));
  if (ka == value_kind::real && kb == value_kind::integer) {
    const auto o = compare_exact(std::get<std::int64_t>(b), std::get<double>(a));
    return o == std::partial_ordering::less ? std::partial_ordering::greater
           : o == std::partial_ordering::greater ? std::partial_ordering::less
                                                 : o;
  }
  if (ka == value_kind::text && kb == value_kind::text) {
    // By bytes, so ISO dates and times order as they read.
    return std::get<std::string>(a).compare(std::get<std::string>(b)) <=> 0;
  }
  return std::partial_ordering::unordered;
}

}  // namespace

bool matches(const wire::prime_tier& tier, const record_state& state) {
  if (is_hidden(state)) return false;
  if (tier.match == wire::prime_match::all) return true;
  const auto f = state.fields.find(tier.field);
  if (f == state.fields.end()) return false;
  const auto order = compare(f->second.val, tier.operand);
  return tier.match == wire::prime_match::equals ? order == std::partial_ordering::equivalent
                                                 : (order == std::partial_ordering::equivalent ||
                                                    order == std::partial_ordering::greater);
}

}  // namespace caresync::server
