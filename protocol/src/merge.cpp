#include <caresync/protocol/merge.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>

namespace caresync {

namespace {

bool replaces(const kept_field* k, const version& v) {
  return k && std::binary_search(k->supersedes.begin(), k->supersedes.end(), v);
}

/// One incoming write to a field the record holds. The field's candidates are its current
/// value and its open conflicts; the write removes those it replaces (kept writes only)
/// and joins them. The greatest version is the current value; of the others, those
/// written under keep_both stay as open conflicts and the rest are dropped
/// (last-writer-wins).
void merge_field(field_state& f, const std::string& name, const field_write& w, const version& ver,
                 const kept_field* k, merge_outcome& out) {
  // The same write seen again.
  if (f.ver == ver) return;
  for (const auto& c : f.conflicts) {
    if (c.ver == ver) return;
  }
  const auto conflicts_before = f.conflicts.size();
  std::erase_if(f.conflicts, [&](const conflict_value& c) { return replaces(k, c.ver); });
  bool conflicts_changed = f.conflicts.size() != conflicts_before;
  const bool current_replaced = replaces(k, f.ver);
  const bool incoming_wins = current_replaced ? ver > f.ver || f.conflicts.empty() || ver > f.conflicts.back().ver
                                              : ver > f.ver;
  if (current_replaced) {
    // The current value is gone; the greatest of the rest and the incoming write wins.
    if (!incoming_wins) {
      // A write that replaced the current value yet is older than an open conflict:
      // only with clocks gone wrong. The newest conflict becomes the current value.
      auto newest = std::move(f.conflicts.back());
      f.conflicts.pop_back();
      f.val = std::move(newest.val);
      f.ver = newest.ver;
      f.kept = true;
      out.updated.push_back(name);
      if (k) {
        f.conflicts.push_back(conflict_value{w.val, ver});
        ++out.conflicts_opened;
      }
      conflicts_changed = true;
    } else {
      f.val = w.val;
      f.ver = ver;
      f.kept = k != nullptr;
      out.updated.push_back(name);
    }
  } else if (incoming_wins) {
    if (f.kept) {
      f.conflicts.push_back(conflict_value{std::move(f.val), f.ver});
      ++out.conflicts_opened;
      conflicts_changed = true;
    }
    f.val = w.val;
    f.ver = ver;
    f.kept = k != nullptr;
    out.updated.push_back(name);
  } else {
    // A losing kept write is counted once, as an opened conflict.
    if (!k) ++out.superseded;
    if (k) {
      f.conflicts.push_back(conflict_value{w.val, ver});
      ++out.conflicts_opened;
      conflicts_changed = true;
    }
  }
  if (conflicts_changed) {
    std::sort(f.conflicts.begin(), f.conflicts.end(),
              [](const conflict_value& a, const conflict_value& b) { return a.ver < b.ver; });
    out.conflicts_changed.push_back(name);
  }
}

bool item_less(const conflict_value& a, const conflict_value& b) {
  if (a.ver != b.ver) return a.ver < b.ver;
  return std::get<std::string>(a.val) < std::get<std::string>(b.val);
}

/// An append or set_union operation: adds its items, tagged with the change's version,
/// and removes the items whose tags it names (set_union). The field's value is the
/// rendering of the items left.
/// Applies an item operation to a field's items; true when they changed.
bool apply_item_op(std::vector<conflict_value>& items, const item_op& op, const version& ver) {
  bool changed = false;
  if (!op.remove.empty()) {
    const auto before = items.size();
    std::erase_if(items, [&](const conflict_value& i) { return std::binary_search(op.remove.begin(), op.remove.end(), i.ver); });
    changed = items.size() != before;
  }
  for (const auto& a : op.add) {
    conflict_value item{a, ver};
    const auto pos = std::lower_bound(items.begin(), items.end(), item, item_less);
    if (pos != items.end() && *pos == item) continue;  // the same add seen again
    items.insert(pos, std::move(item));
    changed = true;
  }
  return changed;
}

void merge_items(record_state& state, const item_op& op, const version& ver, merge_outcome& out) {
  // A field takes item operations or plain writes, never both (docs/conflicts.md).
  auto [it, inserted] = state.fields.try_emplace(op.field);
  field_state& f = it->second;
  const bool changed = apply_item_op(f.items, op, ver);
  const bool newer = inserted || f.ver < ver;
  if (newer) f.ver = ver;
  if (changed || inserted) {
    f.val = render_items(op.policy, f.items);
    f.kept = false;
    f.conflicts.clear();
    out.items_changed.push_back(op.field);
  }
  if (changed || newer) out.updated.push_back(op.field);
}

}  // namespace

std::string render_items(item_policy policy, const std::vector<conflict_value>& items) {
  nlohmann::json out = nlohmann::json::array();
  if (policy == item_policy::append) {
    for (const auto& i : items) out.push_back(std::get<std::string>(i.val));
  } else {
    std::vector<std::string_view> elements;
    for (const auto& i : items) elements.push_back(std::get<std::string>(i.val));
    std::sort(elements.begin(), elements.end());
    elements.erase(std::unique(elements.begin(), elements.end()), elements.end());
    for (const auto e : elements) out.push_back(e);
  }
  // Invalid UTF-8 is replaced rather than refused: the items are the writers', as sent.
  return out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

namespace {

/// A deleted record keeps, per field, the greatest version written and no value; an edit
/// the delete did not cover (made concurrently, by someone who had not seen the delete)
/// is kept as the field's one open conflict, so it stays visible.
void merge_into_deleted(record_state& state, const change& incoming, merge_outcome& out) {
  // Items go on merging (a log or set is order-free); the field's conflict shows them.
  for (const auto& op : incoming.items) {
    auto [it, inserted] = state.fields.try_emplace(op.field);
    field_state& f = it->second;
    const bool changed = apply_item_op(f.items, op, incoming.ver);
    if (changed) out.items_changed.push_back(op.field);
    if (inserted || f.ver < incoming.ver) {
      f.ver = incoming.ver;
      f.conflicts = {conflict_value{render_items(op.policy, f.items), incoming.ver}};
      ++out.conflicts_opened;
      out.conflicts_changed.push_back(op.field);
    } else if (changed && !f.conflicts.empty()) {
      f.conflicts.front().val = render_items(op.policy, f.items);
      out.conflicts_changed.push_back(op.field);
    }
  }
  // An edit arriving after the delete was made without seeing it. The field's open
  // conflicts are the values nobody who had them replaced or deleted, as on a live
  // record: a kept edit joins them, replacing those it names, whatever its version; a
  // last-writer-wins edit counts only if it is the field's newest, replacing the newest
  // before it unless that one was kept. `ver` and `kept` describe the field's newest write.
  for (const auto& write : incoming.fields) {
    const kept_field* k = incoming.kept.empty() ? nullptr : incoming.kept_of(write.name);
    auto [it, inserted] = state.fields.try_emplace(write.name);
    field_state& f = it->second;
    if (!inserted && (f.ver == incoming.ver || std::any_of(f.conflicts.begin(), f.conflicts.end(), [&](const conflict_value& c) {
                        return c.ver == incoming.ver;
                      }))) {
      continue;  // the same edit seen again
    }
    const bool newest = inserted || f.ver < incoming.ver;
    if (!k && !newest) {
      ++out.superseded;
      continue;
    }
    if (k) std::erase_if(f.conflicts, [&](const conflict_value& c) { return replaces(k, c.ver); });
    if (newest) {
      if (!inserted && !f.kept) std::erase_if(f.conflicts, [&](const conflict_value& c) { return c.ver == f.ver; });
      f.ver = incoming.ver;
      f.kept = k != nullptr;
    }
    f.conflicts.push_back(conflict_value{write.val, incoming.ver});
    std::sort(f.conflicts.begin(), f.conflicts.end(),
              [](const conflict_value& a, const conflict_value& b) { return a.ver < b.ver; });
    ++out.conflicts_opened;
    out.conflicts_changed.push_back(write.name);
  }
}


/// Keeps in `covered` only the versions the record still holds: a version an edit
/// replaced never comes back, so the set stays the union of the revivable deletes'
/// covers intersected with what the record holds, whatever the order of arrival.
void prune_covered(record_state& state) {
  if (state.covered.empty()) return;
  const auto held = held_versions(state);
  std::erase_if(state.covered, [&](const version& v) { return !std::binary_search(held.begin(), held.end(), v); });
}

}  // namespace

std::vector<version> held_versions(const record_state& state) {
  std::vector<version> held;
  for (const auto& [name, f] : state.fields) {
    held.push_back(f.ver);
    for (const auto& c : f.conflicts) held.push_back(c.ver);
    for (const auto& i : f.items) held.push_back(i.ver);
  }
  std::sort(held.begin(), held.end());
  held.erase(std::unique(held.begin(), held.end()), held.end());
  return held;
}

bool is_hidden(const record_state& state) noexcept {
  if (state.deleted) return true;
  if (!state.removed) return false;
  const auto covered = [&](const version& v) { return std::binary_search(state.covered.begin(), state.covered.end(), v); };
  for (const auto& [name, f] : state.fields) {
    if (!covered(f.ver)) return false;
    for (const auto& c : f.conflicts) {
      if (!covered(c.ver)) return false;
    }
    for (const auto& i : f.items) {
      if (!covered(i.ver)) return false;
    }
  }
  return true;
}

bool is_revived(const record_state& state) noexcept {
  return !state.deleted && state.removed && !(state.dismissed && !(*state.dismissed < *state.removed)) && !is_hidden(state);
}

merge_outcome merge(record_state& state, const change& incoming) {
  merge_outcome out;
  if (incoming.kind == change_kind::remove) {
    // A delete that does not say what it covers (stored by protocol version 2) covers
    // nothing: every value stays visible, the same whichever arrives first.
    const auto covered = [&](const version& v) {
      return incoming.covers && std::binary_search(incoming.covers->begin(), incoming.covers->end(), v);
    };
    if (incoming.revivable) {
      if (!state.removed || *state.removed < incoming.ver) state.removed = incoming.ver;
      if (state.deleted) {
        // A record deleted for good stays so; like any later delete, this one closes the
        // open conflicts it covers.
        for (auto& [name, f] : state.fields) {
          if (std::erase_if(f.conflicts, [&](const conflict_value& c) { return covered(c.ver); }) > 0) {
            out.conflicts_changed.push_back(name);
          }
        }
        return out;
      }
      // The values stay: an edit this delete did not cover (a newer version, by causal
      // delivery) brings the record back with them.
      for (const auto& v : held_versions(state)) {
        if (covered(v)) state.covered.push_back(v);
      }
      std::sort(state.covered.begin(), state.covered.end());
      state.covered.erase(std::unique(state.covered.begin(), state.covered.end()), state.covered.end());
      return out;
    }
    // A final delete also treats what earlier revivable deletes covered as covered, so
    // the result does not depend on which of them arrived first.
    const auto covered_now = [&](const version& v) {
      return covered(v) || std::binary_search(state.covered.begin(), state.covered.end(), v);
    };
    for (auto& [name, f] : state.fields) {
      // What the delete's writer had is gone; values she had not seen (the current one
      // and open conflicts of a live record) stay visible as open conflicts. A later
      // delete that saw them closes them.
      const auto before = f.conflicts;
      if (!state.deleted) f.conflicts.push_back(conflict_value{std::move(f.val), f.ver});
      std::erase_if(f.conflicts, [&](const conflict_value& c) { return covered_now(c.ver); });
      std::sort(f.conflicts.begin(), f.conflicts.end(),
                [](const conflict_value& a, const conflict_value& b) { return a.ver < b.ver; });
      f.val = value{};
      if (f.conflicts != before || !state.deleted) {
        out.conflicts_opened += f.conflicts.size() > before.size() ? f.conflicts.size() - before.size() : 0;
        out.conflicts_changed.push_back(name);
      }
    }
    state.covered.clear();
    if (!state.deleted) out.deleted_now = true;
    if (!state.deleted || *state.deleted < incoming.ver) state.deleted = incoming.ver;
    return out;
  }
  // A dismissal is a maximum: order-free, whatever the record's state.
  if (incoming.dismisses && (!state.dismissed || *state.dismissed < *incoming.dismisses)) state.dismissed = incoming.dismisses;
  // Delete wins: a tombstone is final, whatever the stamps of later field writes; an edit
  // made concurrently is kept visible on the deleted record.
  if (state.deleted) {
    merge_into_deleted(state, incoming, out);
    return out;
  }
  for (const auto& write : incoming.fields) {
    const kept_field* k = incoming.kept.empty() ? nullptr : incoming.kept_of(write.name);
    auto [it, inserted] = state.fields.try_emplace(write.name, field_state{write.val, incoming.ver, k != nullptr, {}});
    if (inserted) {
      out.updated.push_back(write.name);
    } else {
      merge_field(it->second, write.name, write, incoming.ver, k, out);
    }
  }
  for (const auto& op : incoming.items) merge_items(state, op, incoming.ver, out);
  prune_covered(state);
  return out;
}

}  // namespace caresync
