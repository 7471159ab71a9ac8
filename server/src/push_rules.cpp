#include <caresync/server/push_rules.hpp>

#include "refusal_code.hpp"

#include <algorithm>
#include <map>
#include <optional>
#include <set>

#include <caresync/protocol/care_rules.hpp>
#include <caresync/protocol/errors.hpp>
#include <caresync/protocol/merge.hpp>

namespace caresync::server {

std::map<std::string, std::set<std::string, std::less<>>, std::less<>> server_only_map(const std::vector<std::string>& entries) {
  std::map<std::string, std::set<std::string, std::less<>>, std::less<>> out;
  for (const auto& e : entries) {
    const auto dot = e.find('.');
    if (dot == std::string::npos) continue;
    out[e.substr(0, dot)].insert(e.substr(dot + 1));
  }
  return out;
}

std::vector<wire::restored_field> server_only_writes(const change& c, const push_rules& rules) {
  std::vector<wire::restored_field> out;
  if (rules.server_side || c.kind != change_kind::upsert) return out;
  const auto it = rules.server_only.find(c.collection);
  if (it == rules.server_only.end()) return out;
  const auto add = [&](const std::string& name) {
    if (!it->second.contains(name)) return;
    for (const auto& f : out) {
      if (f.name == name) return;
    }
    out.push_back(wire::restored_field{name, value{}, version{}});
  };
  for (const auto& f : c.fields) add(f.name);
  for (const auto& op : c.items) add(op.field);
  return out;
}

push_screen screen_push(std::span<const change> changes, node_id device_node, const push_rules& rules,
                        std::uint64_t now_ms) {
  push_screen out;
  for (std::size_t i = 0; i < changes.size(); ++i) {
    const auto& c = changes[i];
    if (c.ver.node != device_node) {
      out.foreign_node = true;
      out.refused.clear();
      return out;
    }
    const auto index = static_cast<std::uint32_t>(i);
    if (auto reason = check_change(c, rules.limits); !reason.empty()) {
      out.refused.push_back(wire::refusal{index, static_cast<std::uint16_t>(protocol_errc::limit_exceeded), std::move(reason)});
    } else if (c.ver.stamp.wall_ms() > now_ms + rules.max_clock_ahead_ms) {
      out.refused.push_back(wire::refusal{
          index, static_cast<std::uint16_t>(protocol_errc::clock_ahead),
          "the change is stamped " + std::to_string((c.ver.stamp.wall_ms() - now_ms) / 1000) +
              " s ahead of the server's clock; the device re-stamps it with the server's time"});
    } else if (auto care = rules.care_rules ? care::check_care_change(c) : std::string(); !care.empty()) {
      out.refused.push_back(wire::refusal{index, static_cast<std::uint16_t>(protocol_errc::limit_exceeded),
                                          std::string(k_care_rule_prefix) + care});
    } else if (auto fields = server_only_writes(c, rules); !fields.empty()) {
      std::string names;
      for (const auto& f : fields) names += (names.empty() ? "'" : ", '") + c.collection + "." + f.name + "'";
      out.refused.push_back(wire::refusal{index, static_cast<std::uint16_t>(protocol_errc::server_only),
                                          "only the server side writes " + names +
                                              "; the device puts back the server's value and sends the rest of the change",
                                          std::move(fields)});
    }
  }
  return out;
}

namespace {

/// Whether legal moves lead from `from` to `to`: a tablet's outbox sends a record's
/// newest values, so accept and start made offline arrive as one move new -> in_progress.
bool reachable(care::referral_state from, care::referral_state to) {
  std::vector<care::referral_state> frontier{from};
  std::set<care::referral_state> seen{from};
  while (!frontier.empty()) {
    const auto at = frontier.back();
    frontier.pop_back();
    for (const auto next : {care::referral_state::new_, care::referral_state::accepted, care::referral_state::in_progress,
                            care::referral_state::closed, care::referral_state::declined}) {
      if (!care::legal_referral_transition(at, next) || !seen.insert(next).second) continue;
      if (next == to) return true;
      frontier.push_back(next);
    }
  }
  return false;
}

}  // namespace

void refuse_illegal_transitions(change_store& store, std::span<const change> changes, std::vector<wire::refusal>& refused) {
  // The state each referral is in as the batch goes: the log's, then the batch's own.
  std::map<record_id, std::optional<std::string>> state;
  std::vector<wire::refusal> added;
  for (std::size_t i = 0; i < changes.size(); ++i) {
    const change& c = changes[i];
    if (c.collection != "referrals" || c.kind != change_kind::upsert) continue;
    if (std::any_of(refused.begin(), refused.end(), [&](const wire::refusal& r) { return r.index == i; })) continue;
    const auto written = std::find_if(c.fields.begin(), c.fields.end(), [](const field_write& f) { return f.name == "state"; });
    if (written == c.fields.end()) continue;
    auto known = state.find(c.id);
    if (known == state.end()) {
      record_state merged;
      for (const auto& entry : store.history(c.collection, c.id)) merge(merged, entry.body);
      std::optional<std::string> current;
      if (const auto f = merged.fields.find("state"); f != merged.fields.end()) {
        if (const auto* text = std::get_if<std::string>(&f->second.val)) current = *text;
      }
      known = state.emplace(c.id, current).first;
    }
    const auto* to_text = std::get_if<std::string>(&written->val);
    auto to = care::referral_state::new_;
    bool to_known = false;
    if (to_text) {
      if (const auto parsed = care::parse_referral_state(*to_text)) {
        to = *parsed;
        to_known = true;
      }
    }
    // (Plain values rather than optionals: GCC 12 warns falsely on optionals here.)
    auto from = care::referral_state::new_;
    bool from_known = false;
    if (known->second) {
      if (const auto parsed = care::parse_referral_state(*known->second)) {
        from = *parsed;
        from_known = true;
      }
    }
    // Each reason begins with k_referral_prefix: the audit's code (refusal_code) reads it.
    std::string why;
    if (!to_known) {
      why = "a referral's state must be one of new, accepted, in_progress, closed, declined";
    } else if (!known->second) {
      if (to != care::referral_state::new_) why = "a referral starts as new, not " + std::string(care::to_code(to));
    } else if (from_known && from == to) {
      // The same state written again: no move.
    } else if (!from_known || !reachable(from, to)) {
      why = "a referral cannot move from " + *known->second + " to " + std::string(care::to_code(to));
    }
    if (!why.empty()) {
      added.push_back(wire::refusal{static_cast<std::uint32_t>(i), static_cast<std::uint16_t>(protocol_errc::limit_exceeded),
                                    why + " (the server holds the referral as " + known->second.value_or("new to it") + ")"});
      continue;
    }
    known->second = *to_text;
  }
  if (added.empty()) return;
  refused.insert(refused.end(), added.begin(), added.end());
  std::sort(refused.begin(), refused.end(), [](const wire::refusal& a, const wire::refusal& b) { return a.index < b.index; });
}

void strip_server_only(std::vector<change>& changes, const std::vector<wire::refusal>& refused) {
  for (const auto& r : refused) {
    if (r.code != static_cast<std::uint16_t>(protocol_errc::server_only) || r.index >= changes.size()) continue;
    change& c = changes[r.index];
    const auto named = [&](const std::string& name) {
      return std::any_of(r.restore.begin(), r.restore.end(), [&](const wire::restored_field& f) { return f.name == name; });
    };
    std::erase_if(c.fields, [&](const field_write& f) { return named(f.name); });
    std::erase_if(c.kept, [&](const kept_field& k) { return named(k.name); });
    std::erase_if(c.items, [&](const item_op& op) { return named(op.field); });
  }
}

void fill_restores(change_store& store, std::span<const change> changes, std::vector<wire::refusal>& refused,
                   const push_rules& rules) {
  // The device puts back what its refused write replaced: the server's newest value of
  // each field (a replayed batch is answered with the values of now, which is what the
  // device must show).
  for (auto& r : refused) {
    if (r.code != static_cast<std::uint16_t>(protocol_errc::server_only) || r.index >= changes.size()) continue;
    const change& c = changes[r.index];
    if (r.restore.empty()) {
      push_rules field_device = rules;
      field_device.server_side = false;
      r.restore = server_only_writes(c, field_device);
    }
    record_state state;
    for (const auto& entry : store.history(c.collection, c.id)) merge(state, entry.body);
    for (auto& f : r.restore) {
      const auto it = state.fields.find(f.name);
      f.record_deleted = state.deleted.has_value();
      if (it == state.fields.end()) continue;  // never written: null, version 0
      // A deleted record's tombstone keeps each field's version, and no value.
      f.ver = it->second.ver;
      f.val = it->second.val;
      f.conflicts = it->second.conflicts;
      f.record_deleted = state.deleted.has_value();
      if (state.deleted) {
        // The value that write wrote, where the tombstone still shows it (an edit the
        // delete did not cover): a device holding the record live merges the delete later.
        for (const auto& c : f.conflicts) {
          if (c.ver == f.ver) f.val = c.val;
        }
      }
    }
  }
}

batch_id batch_key(const batch_id& sent, node_id node) noexcept {
  if (batch_number(sent) == 0) return sent;
  batch_id key = sent;
  for (int i = 0; i < 8; ++i) key.bytes[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(node >> (56 - 8 * i));
  return key;
}

}  // namespace caresync::server
