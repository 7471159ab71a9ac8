#pragma once
/// The care records (docs/care.md): the care schema shipped with the library, and a typed
/// API over a store holding it, with the validation a tablet applies before it writes.
///
///   caresync::schema s = care::schema();              // apps may add collections and fields
///   auto local = store::open({"/data/app/caresync.db", s});
///   care::records care(*local);                       // a field worker's tablet
///   record_id c = care.clients().add({.name = "…", .org_unit = "kraj/orp-a/team-1"});
///   care.visits().add({.client_id = c, .worker_id = "w-17", .start_at = "2026-11-23T08:00:00Z",
///                      .end_at = "2026-11-23T08:45:00Z", .kind = "home_care"});
///   for (const auto& s : care.services().search({.type = "pecovatelska_sluzba", .text = "lhota"})) …
///
/// Every write goes through the store (stamped, merged, queued for the server); a write
/// changes only the fields it names, so concurrent edits of other fields on other tablets
/// are kept. Fields the care schema does not declare (an app's own, or a newer version's)
/// are never written here, so they survive.
///
/// Errors: caresync::error in the storage category. invalid_argument: a value breaks a
/// rule (the message names the field, e.g. "visits.end_at must be after visits.start_at";
/// it quotes codes but never names, dates or notes). not_found: the record to change is
/// not on this tablet. constraint: the write is not allowed in the record's current state
/// (an illegal referral transition) or for this role (the registry is read-only for field
/// roles). schema_mismatch: the store was not opened with care::schema() or an extension
/// of it. Others as the store's (io_failed, busy, ...). A refused write changes nothing,
/// and is refused before anything is written, so an app's enclosing store.transaction()
/// stays usable (the app may catch the error and go on).
///
/// Thread contract: a records object and its repositories are used on the store's thread,
/// like the store; they hold a reference to it and must not outlive it.

#include <caresync/protocol/care_rules.hpp>
#include <caresync/protocol/record_id.hpp>
#include <caresync/schema.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace caresync {
class store;
}

namespace caresync::care {

/// The care collections (clients, caregivers, visits, referrals, services) with their
/// merge policies, and the registry's search index as setup SQL. An app may append its
/// own collections and fields (to a care collection's `fields`) before store::open; it
/// must not remove or retype the care fields.
caresync::schema schema();

/// clients.status
enum class client_status { active, paused, closed };
/// clients.care_allowance: příspěvek na péči, none or levels I-IV (stored "none", "I".."IV").
enum class care_allowance { none, level_1, level_2, level_3, level_4 };
/// visits.status
enum class visit_status { planned, done, cancelled, no_one_home };
/// referrals.urgency
enum class referral_urgency { routine, urgent, crisis };
/// referrals.handover: whether accepting the referral moves the client to the receiving
/// unit (and their caregivers with them), for good or until the referral is closed.
enum class handover { none, temporary, permanent };

/// The stored codes of the enumerations ("paused", "III", "no_one_home", ...).
std::string_view to_code(client_status v) noexcept;
std::string_view to_code(care_allowance v) noexcept;
std::string_view to_code(visit_status v) noexcept;
std::string_view to_code(referral_urgency v) noexcept;
std::string_view to_code(handover v) noexcept;

// Text fields: an empty string is "not given" and is stored as null. Dates are
// "YYYY-MM-DD", times UTC "YYYY-MM-DDTHH:MM:SSZ". Open code lists (visit kinds, activity
// codes, caregiver relations, service types) are text codes from care_rules.hpp.

/// A client of social or health field care.
struct client {
  record_id id{};               ///< set by add(); ignored by it
  std::string name{};           ///< required
  std::string birth_date{};     ///< not in the future
  std::string address{};
  std::string municipality{};   ///< as in services' municipalities (registry search)
  std::string org_unit{};       ///< required: the unit that owns the client (the server's scope)
  std::string contact{};
  care_allowance allowance = care_allowance::none;
  std::string consent_date{};   ///< consent to data processing: date (not in the future) ...
  std::string consent_scope{};  ///< ... and scope; both or neither
  std::vector<std::string> assigned_workers{};  ///< worker ids; merged as a set across tablets
  client_status status = client_status::active;
};

/// An informal caregiver (pečující osoba) of a client.
struct caregiver {
  record_id id{};
  record_id client_id{};        ///< required: a client on this tablet
  std::string org_unit{};       ///< empty in add(): the client's org unit
  std::string name{};           ///< required
  std::string relation = "other";  ///< a caregiver_relations() code
  std::string contact{};
  std::string support_needs{};  ///< what support they need
  std::string consent_date{};
  std::string consent_scope{};  ///< both or neither
};

/// A visit (or other contact) of a worker with a client.
struct visit {
  record_id id{};
  record_id client_id{};        ///< required: a client on this tablet
  std::string worker_id{};      ///< required
  std::string org_unit{};       ///< empty in add(): the client's org unit
  std::string start_at{};       ///< required
  std::string end_at{};         ///< required, after start_at, at most 24 hours after it
  std::string kind = "field_social_work";  ///< a visit_kinds() code
  std::vector<std::string> activity_codes{};  ///< activity_codes() codes; merged as a set
  std::string note{};           ///< concurrent edits are both kept (an open conflict)
  std::vector<std::string> follow_ups{};      ///< a log: add() writes each, then add_follow_up()
  visit_status status = visit_status::planned;
};

/// A referral of a client from one unit to another unit or a registry service.
struct referral {
  record_id id{};
  record_id client_id{};        ///< required: a client on this tablet
  std::string from_unit{};      ///< empty in add(): the client's org unit
  std::string to_unit{};        ///< to_unit or to_service (or both) is required
  std::optional<record_id> to_service{};  ///< a service of the registry on this tablet
  std::string reason{};         ///< required
  referral_urgency urgency = referral_urgency::routine;
  handover ownership = handover::none;  ///< other than none needs to_unit
  referral_state state = referral_state::new_;  ///< add() always starts at new
  std::string decline_reason{}; ///< set by decline()
  std::string state_at{};       ///< when the state was last changed (UTC), set by the transitions
};

/// A service of the regional registry.
struct service {
  record_id id{};
  std::string org_unit{};       ///< required: the region whose tablets receive it
  std::string provider{};       ///< required
  std::string service_name{};   ///< required
  std::string service_type{};   ///< required: a service_types() code (§§ 37-70 of Act 108/2006)
  std::string registration_id{};  ///< identifier in the national register
  std::optional<std::int64_t> capacity{};  ///< clients at once, >= 0
  std::vector<std::string> municipalities{};  ///< served; exact names, as clients' municipality
  std::string address{};
  std::string contacts{};
  std::string opening_hours{};
  std::string description{};
};

/// Changes to a record: each field that holds a value is written, the others are left
/// as they are. An empty string clears an optional text field.
struct client_changes {
  std::optional<std::string> name{}, birth_date{}, address{}, municipality{}, org_unit{}, contact{};
  std::optional<care_allowance> allowance{};
  std::optional<std::string> consent_date{}, consent_scope{};
  std::optional<std::vector<std::string>> assigned_workers{};  ///< the whole new set
  std::optional<client_status> status{};
};
struct caregiver_changes {
  std::optional<std::string> org_unit{}, name{}, relation{}, contact{}, support_needs{}, consent_date{}, consent_scope{};
};
struct visit_changes {
  std::optional<std::string> worker_id{}, org_unit{}, start_at{}, end_at{}, kind{};
  std::optional<std::vector<std::string>> activity_codes{};  ///< the whole new set
  std::optional<std::string> note{};
  std::optional<visit_status> status{};
};
/// Only while the referral is new; its state changes through the transitions.
struct referral_changes {
  std::optional<std::string> to_unit{};
  std::optional<std::optional<record_id>> to_service{};
  std::optional<std::string> reason{};
  std::optional<referral_urgency> urgency{};
  std::optional<handover> ownership{};
};
struct service_changes {
  std::optional<std::string> org_unit{}, provider{}, service_name{}, service_type{}, registration_id{};
  std::optional<std::optional<std::int64_t>> capacity{};
  std::optional<std::vector<std::string>> municipalities{};
  std::optional<std::string> address{}, contacts{}, opening_hours{}, description{};
};

/// A registry search: every given criterion must hold. Without text the services come
/// ordered by name and provider; with text, best match first (bm25: the service's name
/// weighs most, then provider, type, municipalities, description).
struct service_query {
  std::string type{};          ///< a service_types() code, or empty for any
  /// A name among the service's municipalities, matched as whole names without regard to
  /// case or diacritics ("horni lhota" names "Horní Lhota", not "Horní Lhotka"), or empty.
  std::string municipality{};
  /// Plain words, matched without regard to case or diacritics ("pecovatelska" finds
  /// "pečovatelská"); the last word also as a prefix ("peč" finds "pečovatelská"). All
  /// words must match. Punctuation separates words; nothing in it is query syntax.
  std::string text{};
  std::size_t limit = 20;    ///< 1-1000
};

struct care_context;

/// clients(): add, change, find and list clients.
class client_repository {
 public:
  /// Validates and creates the client; returns its id. Throws invalid_argument.
  record_id add(const client& c);
  /// Validates the client as changed and writes the fields given. Throws not_found,
  /// invalid_argument.
  void update(const record_id& id, const client_changes& changes);
  /// The client, or std::nullopt if not on this tablet (or deleted).
  std::optional<client> find(const record_id& id) const;
  /// Clients of `org_unit` (every client if empty), by name.
  std::vector<client> list(std::string_view org_unit = {}) const;
  /// Clients whose name has each word of `words` as the start of one of its words,
  /// without regard to case or diacritics, folded as the registry search folds text
  /// ("novakova" and "mar nov" find "Marie Nováková"), of `org_unit` (every client if
  /// empty), by name. Words with no letter or digit in them find no one.
  std::vector<client> search(std::string_view words, std::string_view org_unit = {}) const;

  explicit client_repository(care_context& ctx) noexcept : ctx_(ctx) {}

 private:
  care_context& ctx_;
};

/// caregivers(): the informal caregivers of clients.
class caregiver_repository {
 public:
  record_id add(const caregiver& c);
  void update(const record_id& id, const caregiver_changes& changes);
  std::optional<caregiver> find(const record_id& id) const;
  /// The caregivers of a client, by name.
  std::vector<caregiver> of_client(const record_id& client_id) const;
  /// Deletes a caregiver (a tombstone that syncs). Throws not_found.
  void remove(const record_id& id);

  explicit caregiver_repository(care_context& ctx) noexcept : ctx_(ctx) {}

 private:
  care_context& ctx_;
};

/// visits(): visits and other contacts with clients.
class visit_repository {
 public:
  /// Validates and creates the visit with its follow-ups, in one transaction.
  record_id add(const visit& v);
  void update(const record_id& id, const visit_changes& changes);
  /// Adds one entry to the visit's follow-up log.
  void add_follow_up(const record_id& id, const std::string& text);
  std::optional<visit> find(const record_id& id) const;
  /// The visits of a client, by start time.
  std::vector<visit> of_client(const record_id& client_id) const;
  void remove(const record_id& id);

  explicit visit_repository(care_context& ctx) noexcept : ctx_(ctx) {}

 private:
  care_context& ctx_;
};

/// referrals(): referrals and their state machine (docs/care.md). Each transition reads
/// the referral's current state in the store and throws constraint when the move is not
/// legal from it (legal_referral_transition); the state, its time and any handover of
/// the client are written in one transaction.
class referral_repository {
 public:
  /// Validates and creates the referral in state new.
  record_id add(const referral& r);
  /// Changes a new referral; throws constraint in any other state.
  void update(const record_id& id, const referral_changes& changes);
  std::optional<referral> find(const record_id& id) const;
  /// Referrals of a client, oldest first.
  std::vector<referral> of_client(const record_id& client_id) const;
  /// Referrals to `to_unit` in `state`, oldest first (a coordinator's inbox).
  std::vector<referral> to_unit(std::string_view to_unit, referral_state state = referral_state::new_) const;

  /// new -> accepted. With a handover, the client (and their caregivers) move to
  /// to_unit; the client must be on this tablet (not_found otherwise).
  void accept(const record_id& id);
  /// accepted -> in_progress.
  void start(const record_id& id);
  /// in_progress -> closed. A temporary handover ends: the client (and caregivers) move
  /// back to from_unit.
  void close(const record_id& id);
  /// new or accepted -> declined, with a reason (required). A handover made by accept is
  /// undone.
  void decline(const record_id& id, const std::string& reason);

  explicit referral_repository(care_context& ctx) noexcept : ctx_(ctx) {}

 private:
  void move(const record_id& id, referral_state to, const std::string& reason);
  care_context& ctx_;
};

/// services(): the regional registry. Readable by everyone; written only through a
/// records object opened as registry_admin (others get constraint) over a store opened
/// with store_options::server_side (the registry's fields are server_only).
class service_repository {
 public:
  record_id add(const service& s);
  void update(const record_id& id, const service_changes& changes);
  void remove(const record_id& id);
  std::optional<service> find(const record_id& id) const;
  /// Offline search (docs/care.md, "Registry search"). Throws invalid_argument for an
  /// unknown type code or a limit outside 1-1000; text never causes an error.
  std::vector<service> search(const service_query& q) const;
  /// Services in the registry.
  std::size_t count() const;

  explicit service_repository(care_context& ctx) noexcept : ctx_(ctx) {}

 private:
  care_context& ctx_;
};

/// Who is writing: field roles read the registry, registry administrators also write it.
/// The server enforces this on what it accepts (server_only fields); this check keeps a
/// field app from queueing writes the server would refuse, with a clear error.
enum class role { field_worker, registry_admin };

/// The typed care API over a store opened with care::schema() (or an extension of it).
class records {
 public:
  /// Checks that the store declares every care field with its type, policy and
  /// server_only flag and holds the search index; throws caresync::error
  /// (schema_mismatch) saying what is missing, or (invalid_argument) for registry_admin
  /// over a store not opened with store_options::server_side.
  explicit records(caresync::store& s, role r = role::field_worker);
  ~records();
  records(const records&) = delete;
  records& operator=(const records&) = delete;

  client_repository& clients() noexcept { return clients_; }
  caregiver_repository& caregivers() noexcept { return caregivers_; }
  visit_repository& visits() noexcept { return visits_; }
  referral_repository& referrals() noexcept { return referrals_; }
  service_repository& services() noexcept { return services_; }

  /// The store, e.g. for store::transaction() around many typed writes.
  caresync::store& store() noexcept;

 private:
  std::unique_ptr<care_context> ctx_;
  client_repository clients_;
  caregiver_repository caregivers_;
  visit_repository visits_;
  referral_repository referrals_;
  service_repository services_;
};

}  // namespace caresync::care
