// The registry of services and its offline search (docs/care.md, "Registry search"),
// and the records object that opens the typed API over a store.

#include <caresync/care.hpp>
#include <caresync/store.hpp>

#include "care_internal.hpp"
#include "store_impl.hpp"
#include "text_fold.hpp"

#include <algorithm>
#include <cctype>

namespace caresync::care {

namespace {

record_fields fields_of(const service& s) {
  return {{"org_unit", text_value(s.org_unit)},
          {"provider", text_value(s.provider)},
          {"service_name", text_value(s.service_name)},
          {"service_type", text_value(s.service_type)},
          {"registration_id", text_value(s.registration_id)},
          {"capacity", s.capacity ? value(*s.capacity) : value{}},
          {"municipalities", set_value(s.municipalities)},
          {"address", text_value(s.address)},
          {"contacts", text_value(s.contacts)},
          {"opening_hours", text_value(s.opening_hours)},
          {"description", text_value(s.description)}};
}

service service_of(const record_fields& m) {
  service s;
  s.id = record_id::parse(text_of(m, "id")).value_or(record_id{});
  s.org_unit = text_of(m, "org_unit");
  s.provider = text_of(m, "provider");
  s.service_name = text_of(m, "service_name");
  s.service_type = text_of(m, "service_type");
  s.registration_id = text_of(m, "registration_id");
  if (const auto it = m.find("capacity"); it != m.end()) {
    if (const auto* n = std::get_if<std::int64_t>(&it->second)) s.capacity = *n;
  }
  if (const auto it = m.find("municipalities"); it != m.end()) s.municipalities = parse_list(it->second);
  s.address = text_of(m, "address");
  s.contacts = text_of(m, "contacts");
  s.opening_hours = text_of(m, "opening_hours");
  s.description = text_of(m, "description");
  return s;
}

void require_admin(const care_context& ctx) {
  if (ctx.who != role::registry_admin) {
    fail_constraint("the registry of services is read-only on this tablet: registry administrators publish it "
                    "(care::records opened with role::registry_admin)");
  }
}

void validate_service(const record_fields& m) {
  for (const auto& [name, v] : m) require_ok(check_care_value(k_services, name, v));
}

/// Longest word and most words taken from a search text: enough for any real query,
/// and a bound on the work a pasted page of text can cause.
constexpr std::size_t k_max_word_bytes = 64;
constexpr std::size_t k_max_words = 12;

/// Whether byte `c` belongs to a word: ASCII letters and digits, and every byte of a
/// multi-byte UTF-8 character (the tokenizer decides about those; see below).
bool word_byte(unsigned char c) noexcept {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80;
}

/// Drops a UTF-8 character cut short at the end of `word` (by the length bound, or in
/// the input), so the last word's prefix is a whole character.
void drop_incomplete_character(std::string& word) {
  std::size_t lead = word.size();
  std::size_t continuation = 0;
  while (lead > 0 && (static_cast<unsigned char>(word[lead - 1]) & 0xC0) == 0x80 && continuation < 3) {
    --lead;
    ++continuation;
  }
  if (lead == 0) return;
  const auto c = static_cast<unsigned char>(word[lead - 1]);
  const std::size_t need = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC0 ? 1 : 0;
  if (c >= 0x80 && continuation < need) word.resize(lead - 1);
}

/// The FTS5 query for a text typed by a person: each word a quoted string (so nothing in
/// it is syntax: no operators, column filters, NEAR or stray quotes), all required, the
/// last as a prefix. Empty when the text has no word.
std::string fts_query(std::string_view text) {
  std::vector<std::string> words;
  std::size_t i = 0;
  while (i < text.size() && words.size() < k_max_words) {
    while (i < text.size() && !word_byte(static_cast<unsigned char>(text[i]))) ++i;
    const std::size_t begin = i;
    while (i < text.size() && word_byte(static_cast<unsigned char>(text[i]))) ++i;
    if (i == begin) continue;
    std::string word(text.substr(begin, std::min(i - begin, k_max_word_bytes)));
    drop_incomplete_character(word);
    if (!word.empty()) words.push_back(std::move(word));
  }
  std::string q;
  for (std::size_t k = 0; k < words.size(); ++k) {
    // Words hold no '"' (it is not a word byte), so quoting needs no escapes.
    q += (k ? " \"" : "\"") + words[k] + "\"";
    if (k + 1 == words.size()) q += "*";
  }
  return q;
}

/// The municipality names in the registry index that `name` names: equal once both are
/// folded (text_fold.hpp).
std::vector<std::string> municipalities_named(care_context& ctx, std::string_view name) {
  word_folder fold(ctx.db());
  const auto want = fold.joined(name);
  std::vector<std::string> out;
  if (want.empty()) return out;
  sqlite::statement all(ctx.db(), "SELECT DISTINCT municipality FROM cs_registry_municipality");
  while (all.step()) {
    auto place = all.column_text(0);
    if (fold.joined(place) == want) out.push_back(std::move(place));
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------- service_repository

record_id service_repository::add(const service& s) {
  require_admin(ctx_);
  const auto m = fields_of(s);
  validate_service(m);
  std::vector<field_write> writes;
  for (const auto& [name, v] : m) {
    if (!std::holds_alternative<std::monostate>(v)) writes.push_back({name, v});
  }
  return ctx_.db_store.create(k_services, writes);
}

void service_repository::update(const record_id& id, const service_changes& ch) {
  require_admin(ctx_);
  const auto row = select_records(ctx_, k_services, "\"id\"=?", {},
                                  [&](sqlite::statement& st) { st.bind(1, std::string_view(id.to_string())); });
  if (row.empty()) fail_not_found("services: no record " + id.to_string() + " on this tablet");
  const service before = service_of(row.front());
  service after = before;
  std::vector<std::string> given;
  const auto take = [&](const auto& change, auto& field, const char* name) {
    if (change) field = *change, given.push_back(name);
  };
  take(ch.org_unit, after.org_unit, "org_unit");
  take(ch.provider, after.provider, "provider");
  take(ch.service_name, after.service_name, "service_name");
  take(ch.service_type, after.service_type, "service_type");
  take(ch.registration_id, after.registration_id, "registration_id");
  take(ch.capacity, after.capacity, "capacity");
  take(ch.municipalities, after.municipalities, "municipalities");
  take(ch.address, after.address, "address");
  take(ch.contacts, after.contacts, "contacts");
  take(ch.opening_hours, after.opening_hours, "opening_hours");
  take(ch.description, after.description, "description");
  const auto old_fields = fields_of(before), new_fields = fields_of(after);
  std::vector<field_write> writes;
  for (const auto& name : given) {
    const auto& v = new_fields.at(name);
    if (v == old_fields.at(name)) continue;
    require_ok(check_care_value(k_services, name, v));
    writes.push_back({name, v});
  }
  if (!writes.empty()) ctx_.db_store.update(k_services, id, writes);
}

void service_repository::remove(const record_id& id) {
  require_admin(ctx_);
  ctx_.db_store.remove(k_services, id);
}

std::optional<service> service_repository::find(const record_id& id) const {
  const auto text = id.to_string();
  const auto rows =
      select_records(ctx_, k_services, "\"id\"=?", {}, [&](sqlite::statement& s) { s.bind(1, std::string_view(text)); });
  if (rows.empty()) return std::nullopt;
  return service_of(rows.front());
}

std::size_t service_repository::count() const { return ctx_.db_store.count(k_services); }

std::vector<service> service_repository::search(const service_query& q) const {
  if (!q.type.empty() && !find_service_type(q.type)) {
    fail_invalid("service_query.type '" + q.type.substr(0, 64) +
                 "' is not a service type of the Social Services Act (docs/care.md lists the codes)");
  }
  if (q.limit < 1 || q.limit > 1000) fail_invalid("service_query.limit must be from 1 to 1000");
  const std::string match = fts_query(q.text);
  // A text with something in it but no word (only punctuation, say) matches nothing,
  // rather than being no criterion at all.
  if (match.empty() && std::any_of(q.text.begin(), q.text.end(), [](char c) { return !std::isspace(static_cast<unsigned char>(c)); })) {
    return {};
  }
  const collection_def* def = ctx_.db_store.schema().find(k_services);

  // The municipality, matched as the text is (case and diacritics aside: "horni lhota"
  // names "Horní Lhota"): the names it may mean, from the few distinct ones the index
  // holds; none means nothing matches.
  std::vector<std::string> places;
  if (!q.municipality.empty()) {
    places = municipalities_named(ctx_, q.municipality);
    if (places.empty()) return {};
  }
  std::string place_list;
  for (std::size_t i = 0; i < places.size(); ++i) place_list += i ? ",?" : "?";

  // The candidates come from the narrowest index: the full-text index when there is
  // text, else the municipality index, else the type index (cs_registry).
  std::string from, conditions;
  std::vector<std::string> params;
  if (!match.empty()) {
    from = "cs_registry_fts JOIN cs_registry r ON r.key=cs_registry_fts.rowid";
    conditions += " AND cs_registry_fts MATCH ?";
    params.push_back(match);
    if (!places.empty()) {
      conditions += " AND EXISTS(SELECT 1 FROM cs_registry_municipality m WHERE m.municipality IN (" + place_list +
                    ") AND m.key=r.key)";
      params.insert(params.end(), places.begin(), places.end());
    }
  } else if (!places.empty()) {
    // DISTINCT: a service may serve two names that fold alike.
    from = "(SELECT DISTINCT key FROM cs_registry_municipality WHERE municipality IN (" + place_list +
           ")) m JOIN cs_registry r ON r.key=m.key";
    params.insert(params.end(), places.begin(), places.end());
  } else {
    from = "cs_registry r";
  }
  if (!q.type.empty()) {
    conditions += " AND r.service_type=?";
    params.push_back(q.type);
  }
  std::string columns = "s.\"id\"";
  for (const auto& f : def->fields) columns += ", s." + sqlite::quote(f.name);
  const std::string limit = " LIMIT " + std::to_string(q.limit);
  std::string sql;
  if (!match.empty()) {
    // Ranked inside the index first, so only the rows returned are read from the
    // services table (a common word matches a fifth of the registry). Weights by column:
    // service_name, provider, type_label, municipalities, description. Ties go by record
    // id, which every replica shares (the index keys are local).
    sql = "SELECT " + columns + " FROM (SELECT r.id AS id, bm25(cs_registry_fts, 10.0, 4.0, 3.0, 2.0, 1.0) AS score"
          " FROM " + from + " WHERE 1" + conditions + " ORDER BY score, r.id" + limit + ") top"
          " JOIN services s ON s.\"id\"=top.id ORDER BY top.score, top.id";
  } else {
    sql = "SELECT " + columns + " FROM " + from + " JOIN services s ON s.\"id\"=r.id WHERE 1" + conditions +
          " ORDER BY s.\"service_name\", s.\"provider\", s.\"id\"" + limit;
  }

  sqlite::statement stmt(ctx_.db(), sql);
  for (std::size_t i = 0; i < params.size(); ++i) stmt.bind(static_cast<int>(i + 1), std::string_view(params[i]));
  std::vector<service> out;
  while (stmt.step()) {
    record_fields row;
    row["id"] = stmt.column_value(0);
    for (std::size_t i = 0; i < def->fields.size(); ++i) {
      auto v = stmt.column_value(static_cast<int>(i + 1));
      if (!std::holds_alternative<std::monostate>(v)) row[def->fields[i].name] = std::move(v);
    }
    out.push_back(service_of(row));
  }
  return out;
}

// ---------------------------------------------------------------- records

records::records(caresync::store& s, role r)
    : ctx_(std::make_unique<care_context>(care_context{s, r})),
      clients_(*ctx_),
      caregivers_(*ctx_),
      visits_(*ctx_),
      referrals_(*ctx_),
      services_(*ctx_) {
  const auto mismatch = [](const std::string& what) {
    throw error(make_error_code(storage_errc::schema_mismatch),
                what + "; open the store with care::schema() (or a schema that extends it)");
  };
  const auto policy_name = [](merge_policy p) {
    switch (p) {
      case merge_policy::keep_both: return "keep_both";
      case merge_policy::append: return "append";
      case merge_policy::set_union: return "set_union";
      default: return "last_writer_wins";
    }
  };
  for (const auto& want : care::schema().collections) {
    const collection_def* have = s.schema().find(want.name);
    if (!have) mismatch("the store does not declare the care collection '" + want.name + "'");
    for (const auto& f : want.fields) {
      const field_def* hf = have->find(f.name);
      if (!hf) mismatch("the store does not declare the care field " + want.name + "." + f.name);
      if (hf->server_only != f.server_only) {
        mismatch("the store declares " + want.name + "." + f.name + (f.server_only ? " not server_only" : " server_only") +
                 ", unlike the care schema");
      }
      if (hf->type != f.type || hf->policy != f.policy) {
        mismatch("the store declares " + want.name + "." + f.name + " as " + std::string(to_string(hf->type)) + ", " +
                 policy_name(hf->policy) + " instead of " + std::string(to_string(f.type)) + ", " +
                 policy_name(f.policy));
      }
    }
  }
  if (r == role::registry_admin && !s.internal().options.server_side) {
    throw error(make_error_code(storage_errc::invalid_argument),
                "role::registry_admin writes the registry, whose fields are server_only: open the store with "
                "store_options::server_side = true (and the server must list the device as server_side)");
  }
  sqlite::statement index(ctx_->db(),
                          "SELECT count(*) FROM sqlite_master WHERE name IN ('cs_registry_fts',"
                          " 'cs_registry_after_insert', 'cs_registry_after_update', 'cs_registry_after_delete')");
  if (!index.step() || index.column_int64(0) != 4) {
    mismatch("the store has no registry search index (the care schema's setup_sql did not run)");
  }
}

records::~records() = default;

caresync::store& records::store() noexcept { return ctx_->db_store; }

}  // namespace caresync::care
