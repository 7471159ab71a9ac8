#include <caresync/protocol/change.hpp>

#include <algorithm>
#include <cmath>

namespace caresync {

bool is_valid_name(std::string_view name) noexcept {
  if (name.empty() || name.size() > 63) return false;
  if (name[0] < 'a' || name[0] > 'z') return false;
  if (name.substr(0, 3) == "cs_") return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

const kept_field* change::kept_of(std::string_view name) const noexcept {
  for (const auto& k : kept) {
    if (k.name == name) return &k;
  }
  return nullptr;
}

std::string check_change(const change& c, const change_limits& limits) {
  if (!is_valid_name(c.collection)) {
    return "a change names an invalid collection; names are 1-63 characters of a-z, 0-9 and _";
  }
  if (c.kind == change_kind::remove && (!c.fields.empty() || !c.kept.empty() || !c.items.empty())) {
    return "a delete in collection '" + c.collection + "' carries fields; a delete carries none";
  }
  if (auto reason = check_fields(c.collection, c.fields, limits); !reason.empty()) return reason;
  if (c.covers) {
    if (c.kind != change_kind::remove) return "an edit in collection '" + c.collection + "' carries a delete's view of the record";
    if (c.covers->size() > limits.max_fields * 4) {
      return "a delete in collection '" + c.collection + "' covers more than " + std::to_string(limits.max_fields * 4) + " versions";
    }
    for (std::size_t j = 0; j < c.covers->size(); ++j) {
      if (!((*c.covers)[j] < c.ver) || (j > 0 && !((*c.covers)[j - 1] < (*c.covers)[j]))) {
        return "a delete in collection '" + c.collection + "' covers versions that are not older than it, or not in ascending order";
      }
    }
  }
  if (c.revivable && c.kind != change_kind::remove) {
    return "an edit in collection '" + c.collection + "' is flagged as a revivable delete";
  }
  if (c.dismisses) {
    if (c.kind != change_kind::upsert) return "a delete in collection '" + c.collection + "' dismisses a revived record's delete";
    if (!(*c.dismisses < c.ver)) {
      return "an edit in collection '" + c.collection + "' dismisses a delete that is not older than the edit";
    }
  }
  for (std::size_t i = 0; i < c.kept.size(); ++i) {
    const auto& k = c.kept[i];
    const auto where = "field '" + k.name + "' in collection '" + c.collection + "'";
    if (std::none_of(c.fields.begin(), c.fields.end(), [&](const field_write& f) { return f.name == k.name; })) {
      // The name is repeated only when valid: it may come from a peer.
      return is_valid_name(k.name) ? where + " is listed as kept, but the change does not write it"
                                   : "a change in collection '" + c.collection + "' keeps conflicts of a field it does not write";
    }
    for (std::size_t j = 0; j < i; ++j) {
      if (c.kept[j].name == k.name) return where + " is listed twice as kept";
    }
    if (k.supersedes.size() > limits.max_supersedes) {
      return where + " replaces more than " + std::to_string(limits.max_supersedes) + " earlier values";
    }
    // A write replaces only what its writer had seen, which is older than the write.
    for (std::size_t j = 0; j < k.supersedes.size(); ++j) {
      if (!(k.supersedes[j] < c.ver) || (j > 0 && !(k.supersedes[j - 1] < k.supersedes[j]))) {
        return where + " replaces versions that are not older than the change, or not in ascending order";
      }
    }
  }
  if (c.fields.size() + c.items.size() > limits.max_fields) {
    return "a change in collection '" + c.collection + "' writes more than " + std::to_string(limits.max_fields) + " fields";
  }
  for (std::size_t i = 0; i < c.items.size(); ++i) {
    const auto& op = c.items[i];
    if (!is_valid_name(op.field)) return "a change in collection '" + c.collection + "' names an invalid field";
    const auto where = "field '" + op.field + "' in collection '" + c.collection + "'";
    for (std::size_t j = 0; j < i; ++j) {
      if (c.items[j].field == op.field) return where + " has two item operations in one change";
    }
    if (std::any_of(c.fields.begin(), c.fields.end(), [&](const field_write& f) { return f.name == op.field; })) {
      return where + " is both written and given item operations";
    }
    if (op.policy != item_policy::append && op.policy != item_policy::set_union) return where + " names an unknown item policy";
    if (op.policy == item_policy::append && (op.add.size() != 1 || !op.remove.empty())) {
      return where + " appends other than exactly one entry";
    }
    if (op.add.empty() && op.remove.empty()) return where + " has an item operation that does nothing";
    if (op.add.size() > limits.max_supersedes || op.remove.size() > limits.max_supersedes) {
      return where + " adds or removes more than " + std::to_string(limits.max_supersedes) + " items at once";
    }
    for (std::size_t j = 0; j < op.add.size(); ++j) {
      if (op.add[j].empty() || op.add[j].size() > limits.max_value_bytes) return where + " adds an empty or too large item";
      for (std::size_t k = 0; k < j; ++k) {
        if (op.add[k] == op.add[j]) return where + " adds the same item twice";
      }
    }
    for (std::size_t j = 0; j < op.remove.size(); ++j) {
      if (!(op.remove[j] < c.ver) || (j > 0 && !(op.remove[j - 1] < op.remove[j]))) {
        return where + " removes versions that are not older than the change, or not in ascending order";
      }
    }
  }
  return {};
}

std::string check_fields(std::string_view collection, std::span<const field_write> fields,
                         const change_limits& limits) {
  if (fields.size() > limits.max_fields) {
    return "a change in collection '" + std::string(collection) + "' writes more than " +
           std::to_string(limits.max_fields) + " fields";
  }
  for (std::size_t i = 0; i < fields.size(); ++i) {
    const auto& f = fields[i];
    if (!is_valid_name(f.name)) {
      return "a change in collection '" + std::string(collection) + "' names an invalid field";
    }
    // Quadratic, but over at most max_fields names and without allocating: a change
    // usually writes a handful of fields, and this runs for every local write.
    for (std::size_t j = 0; j < i; ++j) {
      if (fields[j].name == f.name) {
        return "a change in collection '" + std::string(collection) + "' writes field '" + f.name + "' twice";
      }
    }
    // NaN has no place in SQLite (it becomes null) and compares unequal to itself, so
    // replicas could never agree on it.
    if (const auto* r = std::get_if<double>(&f.val); r && std::isnan(*r)) {
      return "field '" + f.name + "' in collection '" + std::string(collection) + "' holds NaN, which caresync does not store";
    }
    std::size_t size = 0;
    if (const auto* s = std::get_if<std::string>(&f.val)) size = s->size();
    if (const auto* b = std::get_if<blob>(&f.val)) size = b->bytes.size();
    if (size > limits.max_value_bytes) {
      return "field '" + f.name + "' in collection '" + std::string(collection) + "' holds more than " +
             std::to_string(limits.max_value_bytes) + " bytes";
    }
  }
  return {};
}

}  // namespace caresync
