#include <caresync/schema.hpp>

#include <caresync/protocol/change.hpp>
#include <caresync/protocol/errors.hpp>

#include <set>

namespace caresync {

const field_def* collection_def::find(std::string_view n) const noexcept {
  for (const auto& f : fields) {
    if (f.name == n) return &f;
  }
  return nullptr;
}

bool collection_def::keeps_conflicts() const noexcept {
  for (const auto& f : fields) {
    if (f.policy == merge_policy::keep_both) return true;
  }
  return false;
}

bool collection_def::has_items() const noexcept {
  for (const auto& f : fields) {
    if (f.policy == merge_policy::append || f.policy == merge_policy::set_union) return true;
  }
  return false;
}

const collection_def* schema::find(std::string_view n) const noexcept {
  for (const auto& c : collections) {
    if (c.name == n) return &c;
  }
  return nullptr;
}

void validate(const schema& s) {
  const auto bad = [](const std::string& what) {
    throw error(make_error_code(storage_errc::invalid_argument), what);
  };
  std::set<std::string_view> collections;
  for (const auto& c : s.collections) {
    if (!is_valid_name(c.name)) {
      bad("collection name '" + c.name + "' is invalid: use 1-63 characters of a-z, 0-9 and _, starting with a letter, not 'cs_'");
    }
    if (!collections.insert(c.name).second) bad("collection '" + c.name + "' is declared twice");
    if (c.deletes != delete_policy::delete_wins && c.deletes != delete_policy::update_revives) {
      bad("collection '" + c.name + "' has an unknown delete policy; use delete_wins or update_revives");
    }
    std::set<std::string_view> fields;
    for (const auto& f : c.fields) {
      if (!is_valid_name(f.name)) bad("field name '" + f.name + "' in collection '" + c.name + "' is invalid");
      if (f.name == "id") bad("collection '" + c.name + "' declares a field 'id'; the record id is built in");
      if (f.type == value_kind::null || static_cast<int>(f.type) > static_cast<int>(value_kind::bytes)) {
        bad("field '" + f.name + "' in collection '" + c.name + "' needs a type: integer, real, text or bytes");
      }
      if (f.policy != merge_policy::last_writer_wins && f.policy != merge_policy::keep_both &&
          f.policy != merge_policy::append && f.policy != merge_policy::set_union) {
        bad("field '" + f.name + "' in collection '" + c.name + "' has an unknown merge policy");
      }
      if ((f.policy == merge_policy::append || f.policy == merge_policy::set_union) && f.type != value_kind::text) {
        bad("field '" + f.name + "' in collection '" + c.name + "' is append or set_union, which holds text items; declare it text");
      }
      if (f.server_only && c.deletes == delete_policy::update_revives) {
        // The store's put-back of a refused server_only write (revert_server_only) knows
        // only final tombstones; docs/conflicts.md, "Not built yet".
        bad("field '" + f.name + "' in collection '" + c.name +
            "' is server_only, which a collection whose deletes revive (update_revives) cannot declare yet; use delete_wins");
      }
      if (f.server_only && f.policy != merge_policy::last_writer_wins) {
        bad("field '" + f.name + "' in collection '" + c.name + "' is server_only, which takes last_writer_wins only");
      }
      if (!fields.insert(f.name).second) bad("field '" + f.name + "' is declared twice in collection '" + c.name + "'");
    }
  }
}

}  // namespace caresync
