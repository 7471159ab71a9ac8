#pragma once
/// A synthetic, plainly fake region for the demo and the benchmarks: a few ORPs
/// ("Fiktivní ORP Horní Lhota"), their teams and municipalities, clients with informal
/// caregivers, visits and referrals, and a registry of services ("Vzorová pečovatelská
/// služba s.r.o."). Every name says it is made up ("Vzorová" is Czech for "sample",
/// "fiktivní" for "fictitious"); phone numbers use the unassigned 000 range and e-mail
/// the .invalid domain, so nothing could be mistaken for a real person or provider.
///
/// Deterministic: the same options give the same region (content, not record ids, which
/// the store makes at random), on every platform (no std distributions).
/// Thread contract: plain functions and values; each call uses only its arguments.

#include <caresync/care.hpp>

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

namespace caresync::sample {

struct region_options {
  std::uint64_t seed = 1;
  std::size_t orps = 4;              ///< ORPs (obce s rozšířenou působností), 1-8
  std::size_t teams_per_orp = 3;     ///< field teams per ORP, 1-9
  std::size_t clients = 2000;
  std::size_t services = 5000;
  std::size_t visits_per_client = 2;
};

/// One fake ORP: its name, org unit and municipalities.
struct orp {
  std::string name;                         ///< "Fiktivní ORP Horní Lhota"
  std::string org_unit;                     ///< "kraj-vzor/orp-horni-lhota"
  std::vector<std::string> teams;           ///< org units of its field teams
  std::vector<std::string> municipalities;  ///< "Dolní Vzorov", ...
};

/// A client with the caregivers, visits and referrals made for them (ids unset: they
/// are given when written).
struct client_bundle {
  care::client person;
  std::vector<care::caregiver> caregivers;
  std::vector<care::visit> visits;
  std::vector<care::referral> referrals;  ///< to_unit only (no registry ids at generation)
};

struct region {
  std::string org_unit;  ///< the region: "kraj-vzor"; services carry it
  std::vector<orp> orps;
  std::vector<care::service> services;
  std::vector<client_bundle> clients;
  /// Every municipality of every ORP.
  std::vector<std::string> municipalities() const;
};

/// Makes the region. Throws std::invalid_argument for options out of range.
region make_region(const region_options& options);

/// What write_region wrote.
struct written {
  std::size_t services = 0, clients = 0, caregivers = 0, visits = 0, referrals = 0;
};

/// Writes the region through the typed API (which validates every record) in
/// transactions of `batch` records. `care` must be opened as role::registry_admin to
/// write the registry. Throws caresync::error as the repositories do.
written write_region(care::records& care, const region& r, std::size_t batch = 1000);

/// The registry as CSV (RFC 4180, UTF-8, header line) in the shape
/// `caresync-server import-registry` reads: one column per field of the care schema's
/// services (registration_id, provider, service_name, service_type, municipalities as
/// the JSON array the field holds, capacity:integer, address, contacts, opening_hours,
/// org_unit, description). Municipality names hold no '"' or '\\', so the array needs
/// no escapes.
void write_services_csv(std::ostream& out, const region& r);

}  // namespace caresync::sample
