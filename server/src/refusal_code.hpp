#pragma once
// Why a pushed change was refused, as a short code for the audit (docs/operations.md,
// "Audit"). Private to the server: push_rules.cpp makes the reasons with these prefixes,
// the store reads them back. Thread contract: pure functions and constants.

#include <caresync/protocol/errors.hpp>
#include <caresync/protocol/messages.hpp>

#include <string_view>

namespace caresync::server {

/// How the refusal of a change breaking a care schema rule begins (care::check_care_change).
inline constexpr std::string_view k_care_rule_prefix = "care rule: ";
/// How the refusal of a referral's state move begins (refuse_illegal_transitions).
inline constexpr std::string_view k_referral_prefix = "a referral";

/// The audit's reason code of `r`: out_of_scope, server_only, clock_ahead, care_rule,
/// referral_transition, limit_exceeded (a size, count or name limit), else "other".
inline std::string_view refusal_code(const wire::refusal& r) {
  const auto is = [&](protocol_errc c) { return r.code == static_cast<std::uint16_t>(c); };
  if (is(protocol_errc::out_of_scope)) return "out_of_scope";
  if (is(protocol_errc::server_only)) return "server_only";
  if (is(protocol_errc::clock_ahead)) return "clock_ahead";
  if (is(protocol_errc::limit_exceeded)) {
    const std::string_view reason(r.reason);
    if (reason.substr(0, k_care_rule_prefix.size()) == k_care_rule_prefix) return "care_rule";
    if (reason.substr(0, k_referral_prefix.size()) == k_referral_prefix) return "referral_transition";
    return "limit_exceeded";
  }
  return "other";
}

}  // namespace caresync::server
