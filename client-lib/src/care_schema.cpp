// The care schema and the registry's search index (docs/care.md).

#include <caresync/care.hpp>

#include "care_internal.hpp"

#include <sstream>

namespace caresync::care {

namespace {

field_def text(const char* name, merge_policy p = merge_policy::last_writer_wins) {
  return {name, value_kind::text, p};
}

/// Escapes a literal for SQL text (labels are ours, but quote them properly anyway).
std::string sql_literal(std::string_view s) {
  std::string out = "'";
  for (const char c : s) {
    out += c;
    if (c == '\'') out += '\'';
  }
  return out + "'";
}

// The search index over `services`, kept by triggers on that table, so every way a row
// changes is covered: a local write through the typed API or the store, a change applied
// by sync (the store writes rows with INSERT ... ON CONFLICT DO UPDATE or DO NOTHING and
// removes them with DELETE), a delete, a record moved in from cs_meta. The FTS5 rowid is
// our own stable key (cs_registry.key, an INTEGER PRIMARY KEY), not the services table's
// implicit rowid, which VACUUM may renumber.
//
// The triggers must never fail, since they run inside the store's writes (a failing
// trigger would make a sync page unappliable): JSON is read only when valid and an
// array, municipality rows are distinct, and an insert first clears anything left for
// the id. They use no OR IGNORE / OR REPLACE: inside a trigger, the conflict clause of
// the statement that fired it (the store's upsert) overrides theirs.
//
// When the triggers do not exist yet (a new store, or one that held services before the
// index existed), the index tables are emptied and rebuilt from `services` in the same
// transaction; afterwards the triggers keep them exact, and this costs nothing at open.
constexpr const char* k_guard =
    "NOT EXISTS(SELECT 1 FROM sqlite_master WHERE type='trigger' AND name='cs_registry_after_insert')";

std::string municipalities_of(const char* column) {
  // A JSON array of names, or nothing (null, invalid JSON, anything not an array).
  return std::string("json_each(CASE WHEN json_valid(") + column + ") THEN CASE WHEN json_type(" + column +
         ")='array' THEN " + column + " ELSE '[]' END ELSE '[]' END)";
}

std::string fts_values(const char* row) {
  const std::string r = row;
  return r + ".service_name, " + r + ".provider, (SELECT label FROM cs_registry_type_label WHERE code=" + r +
         ".service_type), " + r + ".municipalities, " + r + ".description";
}

std::vector<std::string> registry_index_sql() {
  std::vector<std::string> sql;
  sql.push_back(
      "CREATE TABLE IF NOT EXISTS cs_registry(key INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, service_type TEXT)");
  sql.push_back("CREATE INDEX IF NOT EXISTS cs_registry_by_type ON cs_registry(service_type)");
  sql.push_back(
      "CREATE TABLE IF NOT EXISTS cs_registry_municipality(municipality TEXT NOT NULL, key INTEGER NOT NULL,"
      " PRIMARY KEY(municipality, key)) WITHOUT ROWID");
  sql.push_back("CREATE INDEX IF NOT EXISTS cs_registry_municipality_by_key ON cs_registry_municipality(key)");
  sql.push_back(
      "CREATE TABLE IF NOT EXISTS cs_registry_type_label(code TEXT PRIMARY KEY, label TEXT NOT NULL) WITHOUT ROWID");
  {
    // Written only when a label differs, so an open writes nothing once they are in.
    std::ostringstream labels;
    labels << "INSERT INTO cs_registry_type_label(code, label) VALUES";
    bool first = true;
    for (const auto& t : service_types()) {
      labels << (first ? "" : ",") << "(" << sql_literal(t.code) << "," << sql_literal(t.label) << ")";
      first = false;
    }
    labels << " ON CONFLICT(code) DO UPDATE SET label=excluded.label WHERE label<>excluded.label";
    sql.push_back(labels.str());
  }
  sql.push_back(
      "CREATE VIRTUAL TABLE IF NOT EXISTS cs_registry_fts USING fts5(service_name, provider, type_label,"
      " municipalities, description, tokenize='unicode61 remove_diacritics 2', prefix='2 3')");
  // Rebuild, only while the triggers are missing.
  sql.push_back(std::string("DELETE FROM cs_registry_fts WHERE ") + k_guard);
  sql.push_back(std::string("DELETE FROM cs_registry_municipality WHERE ") + k_guard);
  sql.push_back(std::string("DELETE FROM cs_registry WHERE ") + k_guard);
  sql.push_back(std::string("INSERT INTO cs_registry(id, service_type) SELECT id, service_type FROM services WHERE ") +
                k_guard);
  sql.push_back("INSERT INTO cs_registry_fts(rowid, service_name, provider, type_label, municipalities, description)"
                " SELECT r.key, " + fts_values("s") + " FROM services s JOIN cs_registry r ON r.id=s.id WHERE " +
                k_guard);
  sql.push_back("INSERT INTO cs_registry_municipality(municipality, key) SELECT DISTINCT j.value, r.key"
                " FROM services s JOIN cs_registry r ON r.id=s.id, " + municipalities_of("s.municipalities") +
                " j WHERE j.type='text' AND " + k_guard);
  // The triggers.
  const std::string key_of_new = "(SELECT key FROM cs_registry WHERE id=new.id)";
  const std::string key_of_old = "(SELECT key FROM cs_registry WHERE id=old.id)";
  const std::string index_new =
      "INSERT INTO cs_registry_fts(rowid, service_name, provider, type_label, municipalities, description)"
      " VALUES(" + key_of_new + ", " + fts_values("new") + ");"
      " INSERT INTO cs_registry_municipality(municipality, key) SELECT DISTINCT j.value, " + key_of_new +
      " FROM " + municipalities_of("new.municipalities") + " j WHERE j.type='text';";
  sql.push_back("CREATE TRIGGER IF NOT EXISTS cs_registry_after_insert AFTER INSERT ON services BEGIN"
                " DELETE FROM cs_registry_fts WHERE rowid=" + key_of_new + ";"
                " DELETE FROM cs_registry_municipality WHERE key=" + key_of_new + ";"
                " DELETE FROM cs_registry WHERE id=new.id;"
                " INSERT INTO cs_registry(id, service_type) VALUES(new.id, new.service_type); " +
                index_new + " END");
  sql.push_back("CREATE TRIGGER IF NOT EXISTS cs_registry_after_update"
                " AFTER UPDATE OF service_name, provider, service_type, municipalities, description ON services BEGIN"
                " INSERT INTO cs_registry(id, service_type) SELECT new.id, new.service_type"
                " WHERE NOT EXISTS(SELECT 1 FROM cs_registry WHERE id=new.id);"
                " UPDATE cs_registry SET service_type=new.service_type WHERE id=new.id;"
                " DELETE FROM cs_registry_fts WHERE rowid=" + key_of_new + ";"
                " DELETE FROM cs_registry_municipality WHERE key=" + key_of_new + "; " +
                index_new + " END");
  sql.push_back("CREATE TRIGGER IF NOT EXISTS cs_registry_after_delete AFTER DELETE ON services BEGIN"
                " DELETE FROM cs_registry_fts WHERE rowid=" + key_of_old + ";"
                " DELETE FROM cs_registry_municipality WHERE key=" + key_of_old + ";"
                " DELETE FROM cs_registry WHERE id=old.id; END");
  return sql;
}

}  // namespace

caresync::schema schema() {
  using mp = merge_policy;
  caresync::schema s;
  s.collections = {
      collection_def{std::string(k_clients),
                     {text("name"), text("birth_date"), text("address"), text("municipality"), text("org_unit"),
                      text("contact"), text("care_allowance"), text("consent_date"), text("consent_scope"),
                      text("assigned_workers", mp::set_union), text("status")}},
      collection_def{std::string(k_caregivers),
                     {text("client_id"), text("org_unit"), text("name"), text("relation"), text("contact"),
                      text("support_needs"), text("consent_date"), text("consent_scope")}},
      collection_def{std::string(k_visits),
                     {text("client_id"), text("worker_id"), text("org_unit"), text("start_at"), text("end_at"),
                      text("kind"), text("activity_codes", mp::set_union), text("note", mp::keep_both),
                      text("follow_ups", mp::append), text("status")}},
      collection_def{std::string(k_referrals),
                     {text("client_id"), text("from_unit"), text("to_unit"), text("to_service"), text("reason"),
                      text("urgency"), text("state"), text("decline_reason"), text("handover"), text("state_at")}},
      collection_def{std::string(k_services),
                     {text("org_unit"), text("provider"), text("service_name"), text("service_type"),
                      text("registration_id"), field_def{"capacity", value_kind::integer}, text("municipalities"),
                      text("address"), text("contacts"), text("opening_hours"), text("description")}},
  };
  // The registry is written by the server side only (registry administrators, the
  // import): a field tablet's store refuses to write it, and so does the server.
  for (auto& c : s.collections) {
    if (c.name != k_services) continue;
    for (auto& f : c.fields) f.server_only = true;
  }
  s.setup_sql = registry_index_sql();
  // Indexes for the typed API's lookups (a client's visits, a unit's inbox, ...), so
  // they stay fast on a tablet holding years of visits.
  for (const char* sql : {"CREATE INDEX IF NOT EXISTS cs_care_clients_by_unit ON clients(org_unit, name)",
                          "CREATE INDEX IF NOT EXISTS cs_care_caregivers_by_client ON caregivers(client_id)",
                          "CREATE INDEX IF NOT EXISTS cs_care_visits_by_client ON visits(client_id, start_at)",
                          "CREATE INDEX IF NOT EXISTS cs_care_referrals_by_client ON referrals(client_id)",
                          "CREATE INDEX IF NOT EXISTS cs_care_referrals_by_target ON referrals(to_unit, state)"}) {
    s.setup_sql.emplace_back(sql);
  }
  return s;
}

std::string_view to_code(client_status v) noexcept { return client_statuses()[static_cast<std::size_t>(v)].code; }
std::string_view to_code(care_allowance v) noexcept {
  return care_allowance_levels()[static_cast<std::size_t>(v)].code;
}
std::string_view to_code(visit_status v) noexcept { return visit_statuses()[static_cast<std::size_t>(v)].code; }
std::string_view to_code(referral_urgency v) noexcept {
  return referral_urgencies()[static_cast<std::size_t>(v)].code;
}
std::string_view to_code(handover v) noexcept { return referral_handovers()[static_cast<std::size_t>(v)].code; }

}  // namespace caresync::care
