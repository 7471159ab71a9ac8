#pragma once
/// Scopes (docs/security.md, "Scopes and roles"): which records an enrolled device may
/// receive and write. Org units form a tree; a user's scope is the subtree of her unit.
/// Each collection places its records in org units through some of its fields (or
/// nowhere: region-wide), and each role reads and writes some collections.
/// Thread contract: plain values and pure functions.

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace caresync::server {

/// One node of the org unit tree (a region, an ORP municipality, a team, a hospital).
struct org_unit {
  std::string id;      ///< e.g. "kraj/orp-benesov/team-2"; what records name in their unit fields
  std::string parent;  ///< empty: a root
  std::string name;    ///< for people
  friend bool operator==(const org_unit&, const org_unit&) = default;
};

/// Which fields place each collection's records, and what each role may read and write
/// (the server config's [scopes]). A collection absent from unit_fields is known to no
/// role: invisible to every enrolled device and refused when pushed by one.
struct scope_rules {
  /// collection -> the fields naming its org units; an empty list: region-wide (no unit).
  /// A record is in every unit its fields name (a referral: the sending and the receiving
  /// unit).
  std::map<std::string, std::vector<std::string>, std::less<>> unit_fields;
  /// role -> collections it receives; role -> collections it may write.
  std::map<std::string, std::set<std::string, std::less<>>, std::less<>> read;
  std::map<std::string, std::set<std::string, std::less<>>, std::less<>> write;

  /// The defaults, for the care schema: clients, caregivers and visits by `org_unit`,
  /// referrals by `from_unit` and `to_unit`, services region-wide. field_worker reads and
  /// writes clients, caregivers and visits and reads services; coordinator also
  /// referrals; registry_admin reads and writes services; admin reads and writes nothing.
  static scope_rules care_defaults();

  /// The fields placing `collection`'s records, or nullptr when the collection is unknown.
  const std::vector<std::string>* fields_of(std::string_view collection) const;
  friend bool operator==(const scope_rules&, const scope_rules&) = default;
};

/// An empty string when `rules` is usable; else what is wrong, naming the key
/// ("'scopes.read.field_worker' names 'notes', which scopes.unit_fields does not list").
std::string check_rules(const scope_rules& rules);

/// What one enrolled device may do, fixed for a session at its hello ("scope changes
/// take effect at the next sync").
struct device_scope {
  std::string user;
  std::string role;
  std::set<std::string, std::less<>> units;   ///< the subtree of the user's unit, the unit included
  std::set<std::string, std::less<>> read;    ///< collections it receives
  std::set<std::string, std::less<>> write;   ///< collections it may write
  /// Region-wide collections (no unit fields) among the known ones.
  std::set<std::string, std::less<>> region_wide;
  /// Changes when anything above changes: the server reconciles the device's records
  /// at its next pull when it differs from the one it served before.
  std::string fingerprint;

  bool may_read(std::string_view collection) const { return read.count(collection) > 0; }
  bool may_write(std::string_view collection) const { return write.count(collection) > 0; }
  /// A record of `collection` whose unit fields name `units` (each an optional value:
  /// unset, null or not a text places nowhere) is visible to the device.
  bool sees(std::string_view collection, const std::vector<std::optional<std::string>>& units) const;
  /// The same, for writing: the units place the record in scope (a region-wide
  /// collection is everywhere), whatever the role reads.
  bool covers(std::string_view collection, const std::vector<std::optional<std::string>>& units) const;
};

/// The units below `unit` in `tree`, `unit` included (a unit not in the tree: itself
/// alone). Cycles in the tree are not followed twice.
std::set<std::string, std::less<>> subtree(const std::vector<org_unit>& tree, std::string_view unit);

/// The scope of a user with `role` in `unit`.
device_scope scope_of(std::string_view user, std::string_view role, std::string_view unit,
                      const std::vector<org_unit>& tree, const scope_rules& rules);

/// A short fingerprint of the placement rules (unit_fields): the server rebuilds its
/// index of record units when it differs from the one the index was built with.
std::string unit_fields_fingerprint(const scope_rules& rules);

}  // namespace caresync::server
