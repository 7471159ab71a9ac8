#pragma once
/// A simulated field tablet: its own caresync store, the care schema, and the work a
/// field worker does offline (clients met, visits recorded, visits reviewed later, a
/// visit recorded by mistake deleted), then a sync with the server.
/// Thread contract: one thread per tablet (the store's thread contract).

#include "synthetic_care.hpp"

#include <caresync/store.hpp>
#include <caresync/sync_client.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace caresync::demo {

/// The demo's collections: "clients" (name, municipality, org_unit) and "visits"
/// (client_id, worker, org_unit, date, duration_min, kind, note, status).
caresync::schema care_schema();

/// The text value of field `name`, or "" when the record is missing (nullopt), lacks the
/// field, or holds another kind there.
std::string text_field(const std::optional<record_fields>& fields, const std::string& name);

/// Who carries a tablet.
struct tablet_profile {
  std::string name;      ///< the device id, also written as a visit's `worker`
  std::string role;      ///< "field social worker", "help coordinator", ...
  std::string org_unit;  ///< e.g. "orp-benesov"
};

/// The first `n` profiles: named ones ("anna-benesov", "petr-vlasim",
/// "coordinator-kolin", ...), then "tablet-13", "tablet-14", ...
std::vector<tablet_profile> tablet_profiles(std::size_t n);

/// What one offline session did.
struct offline_work {
  std::size_t clients_created = 0;
  std::size_t visits_created = 0;
  std::size_t visits_edited = 0;
  std::size_t visits_deleted = 0;
  std::optional<record_id> first_visit;  ///< the first visit created, for the receipt
};

class tablet {
 public:
  /// Opens (creating on first use) the store at `store_path`. `options` carries the
  /// server's address, the CA file, this device's id and its token.
  /// Throws caresync::error if the store cannot be opened.
  tablet(tablet_profile profile, const std::string& store_path, sync_options options);

  const tablet_profile& profile() const noexcept { return profile_; }
  caresync::store& local() noexcept { return *store_; }
  const caresync::store& local() const noexcept { return *store_; }

  /// A field worker's day without signal: records `visits` visits dated today +
  /// `day_offset` (registering a new client now and then), reviews some of their own
  /// earlier visits still in status "recorded" (a new status and an added sentence in the
  /// note, in one write) and sometimes deletes one recorded by mistake. Every write
  /// commits locally at once.
  offline_work work_offline(demo_rng& rng, std::size_t visits, int day_offset);

  /// Sets a visit's status (a worker reviewing a visit this tablet holds).
  void set_status(const record_id& visit, const std::string& status);

  /// The live visits / clients this tablet holds, read with plain SQL.
  std::vector<record_id> visit_ids() const;
  std::vector<record_id> client_ids() const;

  /// Pushes the outbox and pulls what changed. Throws caresync::error (see sync_client).
  sync_report sync();

 private:
  tablet_profile profile_;
  std::unique_ptr<caresync::store> store_;
  sync_options options_;
};

}  // namespace caresync::demo
