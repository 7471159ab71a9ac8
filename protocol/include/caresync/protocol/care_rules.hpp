#pragma once
/// The rules of the care records (docs/care.md) that hold wherever a change is made or
/// received: the enumeration codes, the referral state machine, the shape of dates and
/// times, and a check of one change's care fields. Both sides use them: the client
/// library's typed API (caresync/care.hpp) before it writes, and the server when it
/// accepts a push. Nothing here knows about stores or tables; rules that need other
/// records (a visit's client must exist) or a record's current state (which referral
/// transition is legal now) are applied by whoever holds that state.
/// Thread contract: pure functions over immutable tables; safe from any thread.

#include <caresync/protocol/change.hpp>
#include <caresync/protocol/value.hpp>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace caresync::care {

/// The collection names of the care schema.
inline constexpr std::string_view k_clients = "clients";
inline constexpr std::string_view k_caregivers = "caregivers";
inline constexpr std::string_view k_visits = "visits";
inline constexpr std::string_view k_referrals = "referrals";
inline constexpr std::string_view k_services = "services";

/// A stable lowercase code stored in a field, with its Czech label for people.
struct code_label {
  std::string_view code;
  std::string_view label;  ///< Czech, UTF-8
};

/// A service type of the Social Services Act (zákon č. 108/2006 Sb., §§ 37-70).
struct service_type_info {
  std::string_view code;       ///< e.g. "pecovatelska_sluzba"
  std::string_view paragraph;  ///< "40", "60a"
  std::string_view label;      ///< "pečovatelská služba"
  std::string_view group;      ///< "sociální poradenství", "služby sociální péče", "služby sociální prevence"
};

/// Every service type of the Act, by paragraph.
std::span<const service_type_info> service_types() noexcept;
/// The type with `code`, or nullptr.
const service_type_info* find_service_type(std::string_view code) noexcept;

/// Activity codes a visit may record (visits.activity_codes).
std::span<const code_label> activity_codes() noexcept;
/// Kinds of visit (visits.kind).
std::span<const code_label> visit_kinds() noexcept;
/// Relations of an informal caregiver to the client (caregivers.relation).
std::span<const code_label> caregiver_relations() noexcept;
/// Closed sets: clients.status, clients.care_allowance, visits.status, referrals.urgency,
/// referrals.handover, referrals.state.
std::span<const code_label> client_statuses() noexcept;
std::span<const code_label> care_allowance_levels() noexcept;
std::span<const code_label> visit_statuses() noexcept;
std::span<const code_label> referral_urgencies() noexcept;
std::span<const code_label> referral_handovers() noexcept;
std::span<const code_label> referral_states() noexcept;

/// The fields only the server side writes: every field of the registry (services), as
/// "services.provider", ... . care::schema() declares them server_only; a server lists
/// them in its config ([policies] server_only) to refuse a field device's write of them.
std::span<const std::string_view> server_only_fields() noexcept;

/// Whether `code` is one of `codes`.
bool is_known(std::span<const code_label> codes, std::string_view code) noexcept;

/// The states of a referral (referrals.state, stored as the code in parentheses).
enum class referral_state {
  new_,         ///< "new": sent, not yet answered by the receiving unit or service
  accepted,     ///< "accepted": the receiver takes the client on
  in_progress,  ///< "in_progress": the receiver is working with the client
  closed,       ///< "closed": done (terminal)
  declined,     ///< "declined": refused, with a reason (terminal)
};

/// The stored code of a state: "new", "accepted", "in_progress", "closed", "declined".
std::string_view to_code(referral_state s) noexcept;
/// The state stored as `code`, or std::nullopt for any other text.
std::optional<referral_state> parse_referral_state(std::string_view code) noexcept;

/// Whether a referral in state `from` may move to `to`. The legal moves are
/// new -> accepted, new -> declined, accepted -> in_progress, accepted -> declined and
/// in_progress -> closed; closed and declined are final, and no state moves to itself.
bool legal_referral_transition(referral_state from, referral_state to) noexcept;

/// Whether `text` is a calendar date "YYYY-MM-DD" with a year from 1900 to 2199
/// (2026-02-30 is not).
bool is_valid_date(std::string_view text) noexcept;

/// Days since 1970-01-01 of a valid date, else std::nullopt.
std::optional<std::int64_t> parse_date(std::string_view text) noexcept;

/// Seconds since the Unix epoch of a UTC time written "YYYY-MM-DDTHH:MM:SSZ" (the only
/// form stored; the date part as is_valid_date, hours 00-23, minutes and seconds 00-59),
/// else std::nullopt.
std::optional<std::int64_t> parse_utc_time(std::string_view text) noexcept;

/// The UTC time `seconds` after the epoch, as "YYYY-MM-DDTHH:MM:SSZ".
std::string format_utc_time(std::int64_t seconds);
/// The UTC date of day `days` since 1970-01-01, as "YYYY-MM-DD".
std::string format_date(std::int64_t days);

/// Length bounds of text fields, in bytes of UTF-8.
inline constexpr std::size_t k_max_short_text = 500;    ///< names, addresses, contacts, ...
inline constexpr std::size_t k_max_long_text = 20000;   ///< notes, reasons, descriptions
inline constexpr std::size_t k_max_list_items = 200;    ///< elements of a list field

/// Checks one value written to a field of a care collection against that field's rule
/// (type, code list, date or time form, length, valid UTF-8, not null where the field is
/// required). A field the care schema does not declare (an app's own, or a newer
/// version's) passes. Returns an empty string when acceptable, else one sentence naming
/// the collection and field; it quotes a value only when the value is a code (never
/// names, dates, notes or other personal content).
std::string check_care_value(std::string_view collection, std::string_view field, const value& v);

/// Checks one item added to a list field (visits.activity_codes, clients.assigned_workers,
/// visits.follow_ups, services.municipalities) under the same convention.
std::string check_care_item(std::string_view collection, std::string_view field, std::string_view item);

/// Checks the care fields of a change (check_care_value for each field written,
/// check_care_item for each item added) so a server can refuse what no care app may
/// write; changes to other collections, and removes, pass. The rules that need other
/// records or the record's current state are not checked here. Same return convention.
std::string check_care_change(const change& c);

}  // namespace caresync::care
