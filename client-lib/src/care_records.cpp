// The typed care API: clients, caregivers, visits, referrals (docs/care.md). The
// registry (services) is in care_registry.cpp.
//
// Each entity converts to the map of its care fields (empty text is null, lists are
// JSON arrays, enumerations their codes). add() validates the whole map and creates the
// record with its non-null fields; update() applies the changes to the record as it is
// now, validates the fields that differ (and the rules that tie them to others) and
// writes only those, so concurrent edits of other fields elsewhere survive the merge.
// Every check (reads included) comes before the first write, so a refused write never
// dooms an app's enclosing store.transaction(); writes that belong together (a visit
// and its follow-ups, a transition and its handover) share one transaction.

#include <caresync/care.hpp>
#include <caresync/store.hpp>

#include "care_internal.hpp"
#include "text_fold.hpp"
#include "store_impl.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <set>

namespace caresync::care {

// ---------------------------------------------------------------- shared helpers

sqlite3* care_context::db() noexcept { return db_store.internal().db.get(); }

std::int64_t care_context::now_seconds() {
  // The device's clock with the correction learnt from the server (a tablet whose clock
  // ran ahead), as the store's hybrid clock reads it.
  const auto& impl = db_store.internal();
  const auto ms = static_cast<std::int64_t>(impl.base_time()) + impl.clock_offset_ms;
  return ms >= 0 ? ms / 1000 : (ms - 999) / 1000;
}

void fail_invalid(const std::string& what) { throw error(make_error_code(storage_errc::invalid_argument), what); }
void fail_not_found(const std::string& what) { throw error(make_error_code(storage_errc::not_found), what); }
void fail_constraint(const std::string& what) { throw error(make_error_code(storage_errc::constraint), what); }

void require_ok(const std::string& problem) {
  if (!problem.empty()) fail_invalid(problem);
}

value text_value(const std::string& s) {
  if (s.empty()) return std::monostate{};
  return s;
}

std::string json_list(const std::vector<std::string>& items) {
  return nlohmann::json(items).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

value set_value(std::vector<std::string> items) {
  std::sort(items.begin(), items.end());
  items.erase(std::unique(items.begin(), items.end()), items.end());
  if (items.empty()) return std::monostate{};
  return json_list(items);
}

std::vector<std::string> parse_list(const value& v) {
  std::vector<std::string> out;
  const auto* text = std::get_if<std::string>(&v);
  if (!text) return out;
  const auto j = nlohmann::json::parse(*text, nullptr, false);
  if (j.is_discarded() || !j.is_array()) return out;
  for (const auto& e : j) {
    if (e.is_string()) out.push_back(e.get<std::string>());
  }
  return out;
}

std::string text_of(const record_fields& f, const std::string& name) {
  const auto it = f.find(name);
  if (it == f.end()) return {};
  if (const auto* s = std::get_if<std::string>(&it->second)) return *s;
  return {};
}

std::vector<record_fields> select_records(care_context& ctx, std::string_view collection, const std::string& where,
                                          const std::string& order,
                                          const std::function<void(sqlite::statement&)>& bind, std::size_t limit) {
  const collection_def* def = ctx.db_store.schema().find(collection);
  std::string sql = "SELECT \"id\"";
  for (const auto& f : def->fields) sql += ", " + sqlite::quote(f.name);
  sql += " FROM " + sqlite::quote(collection);
  if (!where.empty()) sql += " WHERE " + where;
  if (!order.empty()) sql += " ORDER BY " + order;
  if (limit != 0) sql += " LIMIT " + std::to_string(limit);
  sqlite::statement stmt(ctx.db(), sql);
  if (bind) bind(stmt);
  std::vector<record_fields> rows;
  while (stmt.step()) {
    record_fields row;
    row["id"] = stmt.column_value(0);
    for (std::size_t i = 0; i < def->fields.size(); ++i) {
      auto v = stmt.column_value(static_cast<int>(i + 1));
      if (!std::holds_alternative<std::monostate>(v)) row[def->fields[i].name] = std::move(v);
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

namespace {

using written_set = std::set<std::string, std::less<>>;

/// The names of every field in `m` (add() validates them all).
written_set all_of(const record_fields& m) {
  written_set out;
  for (const auto& [name, v] : m) out.insert(name);
  return out;
}

std::string where(std::string_view collection, std::string_view field) {
  return std::string(collection) + "." + std::string(field);
}

/// Today's date by the store's clock, in days since the epoch.
std::int64_t today(care_context& ctx) {
  const auto s = ctx.now_seconds();
  return s >= 0 ? s / 86400 : (s - 86399) / 86400;
}

void check_fields(std::string_view collection, const record_fields& m, const written_set& written) {
  for (const auto& name : written) {
    const auto it = m.find(name);
    require_ok(check_care_value(collection, name, it == m.end() ? value{} : it->second));
  }
}

/// A date that must not lie in the future (birth, consent).
void check_not_future(care_context& ctx, std::string_view collection, const record_fields& m, const char* field,
                      const written_set& written) {
  if (!written.contains(field)) return;
  const auto text = text_of(m, field);
  if (text.empty()) return;
  const auto days = parse_date(text);
  // One day of slack: the local date in Czechia (UTC+1, +2 in summer) is a day ahead of
  // the UTC date for an hour or two after midnight, and a consent signed then is today's.
  if (days && *days > today(ctx) + 1) fail_invalid(where(collection, field) + " lies in the future");
}

/// Consent to data processing is a date and a scope: both or neither.
void check_consent(care_context& ctx, std::string_view collection, const record_fields& m, const written_set& written) {
  if (!written.contains("consent_date") && !written.contains("consent_scope")) return;
  if (text_of(m, "consent_date").empty() != text_of(m, "consent_scope").empty()) {
    fail_invalid(where(collection, "consent_date") + " and " + where(collection, "consent_scope") +
                 " go together: give both (the consent's date and scope) or neither");
  }
  check_not_future(ctx, collection, m, "consent_date", written);
}

/// The fields to write for an update: those given in the changes whose value differs.
std::vector<field_write> differing(const record_fields& before, const record_fields& after, const written_set& given,
                                   written_set& written) {
  std::vector<field_write> writes;
  for (const auto& name : given) {
    const auto a = after.find(name);
    const auto b = before.find(name);
    const value va = a == after.end() ? value{} : a->second;
    const value vb = b == before.end() ? value{} : b->second;
    if (va == vb) continue;
    written.insert(name);
    writes.push_back({name, va});
  }
  return writes;
}

std::vector<field_write> non_null(const record_fields& m) {
  std::vector<field_write> out;
  for (const auto& [name, v] : m) {
    if (!std::holds_alternative<std::monostate>(v)) out.push_back({name, v});
  }
  return out;
}

[[noreturn]] void unknown_code(std::string_view collection, const char* field, const std::string& code) {
  throw error(make_error_code(storage_errc::schema_mismatch),
              where(collection, field) + " of a record holds '" + code.substr(0, 64) +
                  "', a code this version does not know (a newer app wrote it); update the app");
}

/// An enumeration read back: its index in the code table.
template <class Enum>
Enum read_enum(std::span<const code_label> codes, std::string_view collection, const char* field,
               const record_fields& m, Enum missing) {
  const auto code = text_of(m, field);
  if (code.empty()) return missing;
  for (std::size_t i = 0; i < codes.size(); ++i) {
    if (codes[i].code == code) return static_cast<Enum>(i);
  }
  unknown_code(collection, field, code);
}

record_id read_id(const record_fields& m, const char* field) {
  return record_id::parse(text_of(m, field)).value_or(record_id{});
}

/// The client as stored, or not_found naming the field that pointed to it.
record_fields live_client(care_context& ctx, std::string_view collection, const record_id& client_id) {
  const auto id = client_id.to_string();
  auto rows = select_records(ctx, k_clients, "\"id\"=?", {}, [&](sqlite::statement& s) { s.bind(1, std::string_view(id)); });
  if (rows.empty()) {
    fail_invalid(where(collection, "client_id") + " names no client on this tablet; add the client first (or sync)");
  }
  return std::move(rows.front());
}

std::optional<record_fields> find_row(care_context& ctx, std::string_view collection, const record_id& id) {
  const auto text = id.to_string();
  auto rows = select_records(ctx, collection, "\"id\"=?", {}, [&](sqlite::statement& s) { s.bind(1, std::string_view(text)); });
  if (rows.empty()) return std::nullopt;
  return std::move(rows.front());
}

record_fields require_row(care_context& ctx, std::string_view collection, const record_id& id) {
  auto row = find_row(ctx, collection, id);
  if (!row) fail_not_found(std::string(collection) + ": no record " + id.to_string() + " on this tablet");
  return std::move(*row);
}

// ---------------------------------------------------------------- clients

record_fields fields_of(const client& c) {
  return {{"name", text_value(c.name)},
          {"birth_date", text_value(c.birth_date)},
          {"address", text_value(c.address)},
          {"municipality", text_value(c.municipality)},
          {"org_unit", text_value(c.org_unit)},
          {"contact", text_value(c.contact)},
          {"care_allowance", std::string(to_code(c.allowance))},
          {"consent_date", text_value(c.consent_date)},
          {"consent_scope", text_value(c.consent_scope)},
          {"assigned_workers", set_value(c.assigned_workers)},
          {"status", std::string(to_code(c.status))}};
}

client client_of(const record_fields& m) {
  client c;
  c.id = read_id(m, "id");
  c.name = text_of(m, "name");
  c.birth_date = text_of(m, "birth_date");
  c.address = text_of(m, "address");
  c.municipality = text_of(m, "municipality");
  c.org_unit = text_of(m, "org_unit");
  c.contact = text_of(m, "contact");
  c.allowance = read_enum(care_allowance_levels(), k_clients, "care_allowance", m, care_allowance::none);
  c.consent_date = text_of(m, "consent_date");
  c.consent_scope = text_of(m, "consent_scope");
  const auto w = m.find("assigned_workers");
  if (w != m.end()) c.assigned_workers = parse_list(w->second);
  c.status = read_enum(client_statuses(), k_clients, "status", m, client_status::active);
  return c;
}

void validate_client(care_context& ctx, const record_fields& m, const written_set& written) {
  check_fields(k_clients, m, written);
  check_not_future(ctx, k_clients, m, "birth_date", written);
  check_consent(ctx, k_clients, m, written);
}

// ---------------------------------------------------------------- caregivers

record_fields fields_of(const caregiver& c) {
  return {{"client_id", c.client_id.to_string()},
          {"org_unit", text_value(c.org_unit)},
          {"name", text_value(c.name)},
          {"relation", text_value(c.relation)},
          {"contact", text_value(c.contact)},
          {"support_needs", text_value(c.support_needs)},
          {"consent_date", text_value(c.consent_date)},
          {"consent_scope", text_value(c.consent_scope)}};
}

caregiver caregiver_of(const record_fields& m) {
  caregiver c;
  c.id = read_id(m, "id");
  c.client_id = read_id(m, "client_id");
  c.org_unit = text_of(m, "org_unit");
  c.name = text_of(m, "name");
  c.relation = text_of(m, "relation");
  c.contact = text_of(m, "contact");
  c.support_needs = text_of(m, "support_needs");
  c.consent_date = text_of(m, "consent_date");
  c.consent_scope = text_of(m, "consent_scope");
  return c;
}

void validate_caregiver(care_context& ctx, const record_fields& m, const written_set& written) {
  check_fields(k_caregivers, m, written);
  check_consent(ctx, k_caregivers, m, written);
}

// ---------------------------------------------------------------- visits

constexpr std::int64_t k_max_visit_seconds = 24 * 3600;

record_fields fields_of(const visit& v) {
  // follow_ups is a log: written entry by entry (add, add_follow_up), never as a whole.
  return {{"client_id", v.client_id.to_string()},
          {"worker_id", text_value(v.worker_id)},
          {"org_unit", text_value(v.org_unit)},
          {"start_at", text_value(v.start_at)},
          {"end_at", text_value(v.end_at)},
          {"kind", text_value(v.kind)},
          {"activity_codes", set_value(v.activity_codes)},
          {"note", text_value(v.note)},
          {"status", std::string(to_code(v.status))}};
}

visit visit_of(const record_fields& m) {
  visit v;
  v.id = read_id(m, "id");
  v.client_id = read_id(m, "client_id");
  v.worker_id = text_of(m, "worker_id");
  v.org_unit = text_of(m, "org_unit");
  v.start_at = text_of(m, "start_at");
  v.end_at = text_of(m, "end_at");
  v.kind = text_of(m, "kind");
  if (const auto it = m.find("activity_codes"); it != m.end()) v.activity_codes = parse_list(it->second);
  v.note = text_of(m, "note");
  if (const auto it = m.find("follow_ups"); it != m.end()) v.follow_ups = parse_list(it->second);
  v.status = read_enum(visit_statuses(), k_visits, "status", m, visit_status::planned);
  return v;
}

void validate_visit(const record_fields& m, const written_set& written) {
  check_fields(k_visits, m, written);
  if (written.contains("start_at") || written.contains("end_at")) {
    const auto start = parse_utc_time(text_of(m, "start_at"));
    const auto end = parse_utc_time(text_of(m, "end_at"));
    if (start && end) {
      if (*end <= *start) fail_invalid("visits.end_at must be after visits.start_at");
      if (*end - *start > k_max_visit_seconds) {
        fail_invalid("visits.end_at is more than 24 hours after visits.start_at; check the dates");
      }
    }
  }
}

// ---------------------------------------------------------------- referrals

record_fields fields_of(const referral& r) {
  return {{"client_id", r.client_id.to_string()},
          {"from_unit", text_value(r.from_unit)},
          {"to_unit", text_value(r.to_unit)},
          {"to_service", r.to_service ? value(r.to_service->to_string()) : value{}},
          {"reason", text_value(r.reason)},
          {"urgency", std::string(to_code(r.urgency))},
          {"state", std::string(to_code(r.state))},
          {"decline_reason", text_value(r.decline_reason)},
          {"handover", std::string(to_code(r.ownership))},
          {"state_at", text_value(r.state_at)}};
}

referral referral_of(const record_fields& m) {
  referral r;
  r.id = read_id(m, "id");
  r.client_id = read_id(m, "client_id");
  r.from_unit = text_of(m, "from_unit");
  r.to_unit = text_of(m, "to_unit");
  if (const auto s = record_id::parse(text_of(m, "to_service"))) r.to_service = *s;
  r.reason = text_of(m, "reason");
  r.urgency = read_enum(referral_urgencies(), k_referrals, "urgency", m, referral_urgency::routine);
  r.state = read_enum(referral_states(), k_referrals, "state", m, referral_state::new_);
  r.decline_reason = text_of(m, "decline_reason");
  r.ownership = read_enum(referral_handovers(), k_referrals, "handover", m, handover::none);
  r.state_at = text_of(m, "state_at");
  return r;
}

void validate_referral(care_context& ctx, const record_fields& m, const written_set& written) {
  check_fields(k_referrals, m, written);
  const bool target = written.contains("to_unit") || written.contains("to_service") || written.contains("handover");
  if (!target) return;
  const auto to_unit = text_of(m, "to_unit");
  const auto to_service = text_of(m, "to_service");
  if (to_unit.empty() && to_service.empty()) {
    fail_invalid("referrals.to_unit or referrals.to_service is required: say where the client is referred");
  }
  if (!to_service.empty() && written.contains("to_service")) {
    const auto id = record_id::parse(to_service);
    if (!id || !find_row(ctx, k_services, *id)) {
      fail_invalid("referrals.to_service names no service of the registry on this tablet");
    }
  }
  if (text_of(m, "handover") != "none" && to_unit.empty()) {
    fail_invalid("referrals.handover other than none needs referrals.to_unit: a client is handed over to a unit");
  }
}

/// Moves the client `client_id` (and their caregivers) to `org_unit`, if not there.
void move_client(care_context& ctx, const record_id& client_id, const std::string& org_unit) {
  const auto row = find_row(ctx, k_clients, client_id);
  if (!row) {
    fail_not_found("the referral hands its client over, but the client is not on this tablet; sync, then try again");
  }
  if (text_of(*row, "org_unit") != org_unit) ctx.db_store.update(k_clients, client_id, {{"org_unit", org_unit}});
  const auto id = client_id.to_string();
  const auto carers = select_records(ctx, k_caregivers, "\"client_id\"=?", {}, [&](sqlite::statement& s) { s.bind(1, std::string_view(id)); });
  for (const auto& c : carers) {
    if (text_of(c, "org_unit") == org_unit) continue;
    ctx.db_store.update(k_caregivers, read_id(c, "id"), {{"org_unit", org_unit}});
  }
}

}  // namespace

// ---------------------------------------------------------------- client_repository

record_id client_repository::add(const client& c) {
  const auto m = fields_of(c);
  validate_client(ctx_, m, all_of(m));
  return ctx_.db_store.create(k_clients, non_null(m));
}

void client_repository::update(const record_id& id, const client_changes& ch) {
  const auto before_row = require_row(ctx_, k_clients, id);
  const client before = client_of(before_row);
  client after = before;
  written_set given;
  const auto take = [&](const auto& change, auto& field, const char* name) {
    if (change) field = *change, given.insert(name);
  };
  take(ch.name, after.name, "name");
  take(ch.birth_date, after.birth_date, "birth_date");
  take(ch.address, after.address, "address");
  take(ch.municipality, after.municipality, "municipality");
  take(ch.org_unit, after.org_unit, "org_unit");
  take(ch.contact, after.contact, "contact");
  take(ch.allowance, after.allowance, "care_allowance");
  take(ch.consent_date, after.consent_date, "consent_date");
  take(ch.consent_scope, after.consent_scope, "consent_scope");
  take(ch.assigned_workers, after.assigned_workers, "assigned_workers");
  take(ch.status, after.status, "status");
  written_set written;
  const auto writes = differing(fields_of(before), fields_of(after), given, written);
  validate_client(ctx_, fields_of(after), written);
  if (!writes.empty()) ctx_.db_store.update(k_clients, id, writes);
}

std::optional<client> client_repository::find(const record_id& id) const {
  auto row = find_row(ctx_, k_clients, id);
  if (!row) return std::nullopt;
  return client_of(*row);
}

std::vector<client> client_repository::list(std::string_view org_unit) const {
  const std::string unit(org_unit);
  const auto rows = select_records(ctx_, k_clients, unit.empty() ? "" : "\"org_unit\"=?", "\"name\", \"id\"",
                                   [&](sqlite::statement& s) {
                                     if (!unit.empty()) s.bind(1, std::string_view(unit));
                                   });
  std::vector<client> out;
  out.reserve(rows.size());
  for (const auto& r : rows) out.push_back(client_of(r));
  return out;
}

std::vector<client> client_repository::search(std::string_view words, std::string_view org_unit) const {
  word_folder fold(ctx_.db());
  const auto wanted = fold.words(words);
  if (wanted.empty()) return {};
  // A tablet holds its team's clients (hundreds): each name is folded here rather than
  // kept in an index of its own.
  std::vector<client> out;
  for (auto& c : list(org_unit)) {
    const auto name_words = fold.words(c.name);
    const bool all = std::all_of(wanted.begin(), wanted.end(), [&](const std::string& w) {
      return std::any_of(name_words.begin(), name_words.end(), [&](const std::string& n) { return n.starts_with(w); });
    });
    if (all) out.push_back(std::move(c));
  }
  return out;
}

// ---------------------------------------------------------------- caregiver_repository

record_id caregiver_repository::add(const caregiver& c) {
  caregiver full = c;
  const auto owner = live_client(ctx_, k_caregivers, c.client_id);
  if (full.org_unit.empty()) full.org_unit = text_of(owner, "org_unit");
  const auto m = fields_of(full);
  validate_caregiver(ctx_, m, all_of(m));
  return ctx_.db_store.create(k_caregivers, non_null(m));
}

void caregiver_repository::update(const record_id& id, const caregiver_changes& ch) {
  const caregiver before = caregiver_of(require_row(ctx_, k_caregivers, id));
  caregiver after = before;
  written_set given;
  const auto take = [&](const auto& change, auto& field, const char* name) {
    if (change) field = *change, given.insert(name);
  };
  take(ch.org_unit, after.org_unit, "org_unit");
  take(ch.name, after.name, "name");
  take(ch.relation, after.relation, "relation");
  take(ch.contact, after.contact, "contact");
  take(ch.support_needs, after.support_needs, "support_needs");
  take(ch.consent_date, after.consent_date, "consent_date");
  take(ch.consent_scope, after.consent_scope, "consent_scope");
  written_set written;
  const auto writes = differing(fields_of(before), fields_of(after), given, written);
  validate_caregiver(ctx_, fields_of(after), written);
  if (!writes.empty()) ctx_.db_store.update(k_caregivers, id, writes);
}

std::optional<caregiver> caregiver_repository::find(const record_id& id) const {
  auto row = find_row(ctx_, k_caregivers, id);
  if (!row) return std::nullopt;
  return caregiver_of(*row);
}

std::vector<caregiver> caregiver_repository::of_client(const record_id& client_id) const {
  const auto id = client_id.to_string();
  const auto rows = select_records(ctx_, k_caregivers, "\"client_id\"=?", "\"name\", \"id\"",
                                   [&](sqlite::statement& s) { s.bind(1, std::string_view(id)); });
  std::vector<caregiver> out;
  for (const auto& r : rows) out.push_back(caregiver_of(r));
  return out;
}

void caregiver_repository::remove(const record_id& id) { ctx_.db_store.remove(k_caregivers, id); }

// ---------------------------------------------------------------- visit_repository

record_id visit_repository::add(const visit& v) {
  visit full = v;
  const auto owner = live_client(ctx_, k_visits, v.client_id);
  if (full.org_unit.empty()) full.org_unit = text_of(owner, "org_unit");
  const auto m = fields_of(full);
  validate_visit(m, all_of(m));
  for (const auto& entry : v.follow_ups) require_ok(check_care_item(k_visits, "follow_ups", entry));
  record_id id;
  ctx_.db_store.transaction([&] {
    id = ctx_.db_store.create(k_visits, non_null(m));
    // A log takes one entry per write.
    for (const auto& entry : v.follow_ups) ctx_.db_store.update(k_visits, id, {{"follow_ups", entry}});
  });
  return id;
}

void visit_repository::update(const record_id& id, const visit_changes& ch) {
  const visit before = visit_of(require_row(ctx_, k_visits, id));
  visit after = before;
  written_set given;
  const auto take = [&](const auto& change, auto& field, const char* name) {
    if (change) field = *change, given.insert(name);
  };
  take(ch.worker_id, after.worker_id, "worker_id");
  take(ch.org_unit, after.org_unit, "org_unit");
  take(ch.start_at, after.start_at, "start_at");
  take(ch.end_at, after.end_at, "end_at");
  take(ch.kind, after.kind, "kind");
  take(ch.activity_codes, after.activity_codes, "activity_codes");
  take(ch.note, after.note, "note");
  take(ch.status, after.status, "status");
  written_set written;
  const auto writes = differing(fields_of(before), fields_of(after), given, written);
  validate_visit(fields_of(after), written);
  if (!writes.empty()) ctx_.db_store.update(k_visits, id, writes);
}

void visit_repository::add_follow_up(const record_id& id, const std::string& text) {
  require_ok(check_care_item(k_visits, "follow_ups", text));
  require_row(ctx_, k_visits, id);
  ctx_.db_store.update(k_visits, id, {{"follow_ups", text}});
}

std::optional<visit> visit_repository::find(const record_id& id) const {
  auto row = find_row(ctx_, k_visits, id);
  if (!row) return std::nullopt;
  return visit_of(*row);
}

std::vector<visit> visit_repository::of_client(const record_id& client_id) const {
  const auto id = client_id.to_string();
  const auto rows = select_records(ctx_, k_visits, "\"client_id\"=?", "\"start_at\", \"id\"",
                                   [&](sqlite::statement& s) { s.bind(1, std::string_view(id)); });
  std::vector<visit> out;
  for (const auto& r : rows) out.push_back(visit_of(r));
  return out;
}

void visit_repository::remove(const record_id& id) { ctx_.db_store.remove(k_visits, id); }

// ---------------------------------------------------------------- referral_repository

record_id referral_repository::add(const referral& r) {
  referral full = r;
  const auto owner = live_client(ctx_, k_referrals, r.client_id);
  if (full.from_unit.empty()) full.from_unit = text_of(owner, "org_unit");
  full.state = referral_state::new_;
  full.decline_reason.clear();
  full.state_at = format_utc_time(ctx_.now_seconds());
  const auto m = fields_of(full);
  validate_referral(ctx_, m, all_of(m));
  return ctx_.db_store.create(k_referrals, non_null(m));
}

void referral_repository::update(const record_id& id, const referral_changes& ch) {
  const referral before = referral_of(require_row(ctx_, k_referrals, id));
  if (before.state != referral_state::new_) {
    fail_constraint("referral " + id.to_string() + " is " + std::string(to_code(before.state)) +
                    "; only a new referral can be changed");
  }
  referral after = before;
  written_set given;
  const auto take = [&](const auto& change, auto& field, const char* name) {
    if (change) field = *change, given.insert(name);
  };
  take(ch.to_unit, after.to_unit, "to_unit");
  take(ch.to_service, after.to_service, "to_service");
  take(ch.reason, after.reason, "reason");
  take(ch.urgency, after.urgency, "urgency");
  take(ch.ownership, after.ownership, "handover");
  written_set written;
  const auto writes = differing(fields_of(before), fields_of(after), given, written);
  validate_referral(ctx_, fields_of(after), written);
  if (!writes.empty()) ctx_.db_store.update(k_referrals, id, writes);
}

std::optional<referral> referral_repository::find(const record_id& id) const {
  auto row = find_row(ctx_, k_referrals, id);
  if (!row) return std::nullopt;
  return referral_of(*row);
}

std::vector<referral> referral_repository::of_client(const record_id& client_id) const {
  const auto id = client_id.to_string();
  const auto rows = select_records(ctx_, k_referrals, "\"client_id\"=?", "\"state_at\", \"id\"",
                                   [&](sqlite::statement& s) { s.bind(1, std::string_view(id)); });
  std::vector<referral> out;
  for (const auto& r : rows) out.push_back(referral_of(r));
  return out;
}

std::vector<referral> referral_repository::to_unit(std::string_view unit, referral_state state) const {
  const std::string u(unit);
  const std::string st(to_code(state));
  const auto rows = select_records(ctx_, k_referrals, "\"to_unit\"=? AND \"state\"=?", "\"state_at\", \"id\"",
                                   [&](sqlite::statement& s) {
                                     s.bind(1, std::string_view(u));
                                     s.bind(2, std::string_view(st));
                                   });
  std::vector<referral> out;
  for (const auto& r : rows) out.push_back(referral_of(r));
  return out;
}

void referral_repository::accept(const record_id& id) { move(id, referral_state::accepted, {}); }
void referral_repository::start(const record_id& id) { move(id, referral_state::in_progress, {}); }
void referral_repository::close(const record_id& id) { move(id, referral_state::closed, {}); }
void referral_repository::decline(const record_id& id, const std::string& reason) {
  if (reason.empty()) fail_invalid("referrals.decline_reason is required: say why the referral is declined");
  require_ok(check_care_value(k_referrals, "decline_reason", reason));
  move(id, referral_state::declined, reason);
}

void referral_repository::move(const record_id& id, referral_state to, const std::string& reason) {
  // The state as the store holds it now (a sync may have moved it since the app read
  // it), so a tablet never writes a move that is illegal from the current state. Every
  // check comes before the first write, so a refusal leaves an app's own enclosing
  // transaction usable.
  const referral r = referral_of(require_row(ctx_, k_referrals, id));
  if (!legal_referral_transition(r.state, to)) {
    fail_constraint("referral " + id.to_string() + " cannot move from " + std::string(to_code(r.state)) + " to " +
                    std::string(to_code(to)) + " (new -> accepted -> in_progress -> closed; new or accepted -> declined)");
  }
  // Where the handover puts the client, if anywhere: the receiving unit at accept; back
  // home when a temporary handover ends or an accepted referral is declined after all.
  std::optional<std::string> owner;
  if (r.ownership != handover::none) {
    if (to == referral_state::accepted) {
      owner = r.to_unit;
    } else if ((to == referral_state::closed && r.ownership == handover::temporary) ||
               (to == referral_state::declined && r.state == referral_state::accepted)) {
      owner = r.from_unit;
    }
  }
  if (owner && !find_row(ctx_, k_clients, r.client_id)) {
    fail_not_found("the referral hands its client over, but the client is not on this tablet; sync, then try again");
  }
  std::vector<field_write> writes{{"state", std::string(to_code(to))},
                                  {"state_at", format_utc_time(ctx_.now_seconds())}};
  if (to == referral_state::declined) writes.push_back({"decline_reason", reason});
  ctx_.db_store.transaction([&] {
    ctx_.db_store.update(k_referrals, id, writes);
    if (owner) move_client(ctx_, r.client_id, *owner);
  });
}

}  // namespace caresync::care
