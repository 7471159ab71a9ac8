// Scopes: the org unit tree, the placement and role rules, a device's scope
// (docs/security.md, "Scopes and roles").

#include <caresync/server/scope.hpp>

#include <caresync/protocol/change.hpp>
#include <caresync/protocol/sha256.hpp>

#include <algorithm>

namespace caresync::server {

namespace {

constexpr const char* k_known_roles[] = {"field_worker", "coordinator", "registry_admin", "admin"};

bool known_role(std::string_view role) {
  return std::any_of(std::begin(k_known_roles), std::end(k_known_roles), [&](const char* r) { return role == r; });
}

}  // namespace

scope_rules scope_rules::care_defaults() {
  scope_rules r;
  r.unit_fields = {{"clients", {"org_unit"}},
                   {"caregivers", {"org_unit"}},
                   {"visits", {"org_unit"}},
                   {"referrals", {"from_unit", "to_unit"}},
                   {"services", {}}};
  r.read = {{"field_worker", {"clients", "caregivers", "visits", "services"}},
            {"coordinator", {"clients", "caregivers", "visits", "referrals", "services"}},
            {"registry_admin", {"services"}},
            {"admin", {}}};
  r.write = {{"field_worker", {"clients", "caregivers", "visits"}},
             {"coordinator", {"clients", "caregivers", "visits", "referrals"}},
             {"registry_admin", {"services"}},
             {"admin", {}}};
  return r;
}

const std::vector<std::string>* scope_rules::fields_of(std::string_view collection) const {
  const auto it = unit_fields.find(collection);
  return it == unit_fields.end() ? nullptr : &it->second;
}

std::string check_rules(const scope_rules& rules) {
  for (const auto& [collection, fields] : rules.unit_fields) {
    if (!is_valid_name(collection)) return "'scopes.unit_fields' names '" + collection + "', which is not a valid collection name";
    const std::string key = "'scopes.unit_fields." + collection + "'";
    if (fields.size() > 8) return key + " lists more than 8 fields";
    for (const auto& f : fields) {
      if (!is_valid_name(f)) return key + " names '" + f + "', which is not a valid field name";
      if (std::count(fields.begin(), fields.end(), f) > 1) return key + " names '" + f + "' twice";
    }
  }
  for (const auto* table : {&rules.read, &rules.write}) {
    const char* key = table == &rules.read ? "scopes.read" : "scopes.write";
    for (const auto& [role, collections] : *table) {
      if (!known_role(role)) {
        return "'" + std::string(key) + "' names role '" + role + "'; roles are field_worker, coordinator, registry_admin, admin";
      }
      for (const auto& c : collections) {
        if (!rules.unit_fields.count(c)) {
          return "'" + std::string(key) + "." + role + "' names '" + c + "', which scopes.unit_fields does not list";
        }
      }
    }
  }
  return {};
}

bool device_scope::covers(std::string_view collection, const std::vector<std::optional<std::string>>& record_units) const {
  if (region_wide.count(collection)) return true;
  return std::any_of(record_units.begin(), record_units.end(),
                     [&](const std::optional<std::string>& u) { return u && units.count(*u) > 0; });
}

bool device_scope::sees(std::string_view collection, const std::vector<std::optional<std::string>>& record_units) const {
  return may_read(collection) && covers(collection, record_units);
}

std::set<std::string, std::less<>> subtree(const std::vector<org_unit>& tree, std::string_view unit) {
  std::set<std::string, std::less<>> out{std::string(unit)};
  std::vector<std::string> frontier{std::string(unit)};
  while (!frontier.empty()) {
    const auto parent = std::move(frontier.back());
    frontier.pop_back();
    for (const auto& u : tree) {
      if (u.parent == parent && out.insert(u.id).second) frontier.push_back(u.id);
    }
  }
  return out;
}

device_scope scope_of(std::string_view user, std::string_view role, std::string_view unit,
                      const std::vector<org_unit>& tree, const scope_rules& rules) {
  device_scope s;
  s.user = std::string(user);
  s.role = std::string(role);
  s.units = subtree(tree, unit);
  if (const auto it = rules.read.find(role); it != rules.read.end()) s.read = it->second;
  if (const auto it = rules.write.find(role); it != rules.write.end()) s.write = it->second;
  for (const auto& [collection, fields] : rules.unit_fields) {
    if (fields.empty()) s.region_wide.insert(collection);
  }
  // Everything that decides what the device sees, in a canonical text.
  std::string canon = "role=" + s.role + "\nunits=";
  for (const auto& u : s.units) canon += u + "\x1f";
  canon += "\nread=";
  for (const auto& c : s.read) canon += c + ",";
  canon += "\nplacement=" + unit_fields_fingerprint(rules);
  s.fingerprint = sha256_hex(canon).substr(0, 32);
  return s;
}

std::string unit_fields_fingerprint(const scope_rules& rules) {
  std::string canon;
  for (const auto& [collection, fields] : rules.unit_fields) {
    canon += collection + ":";
    for (const auto& f : fields) canon += f + ",";
    canon += "\n";
  }
  return sha256_hex(canon).substr(0, 32);
}

}  // namespace caresync::server
