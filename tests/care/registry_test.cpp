// The registry of services on a tablet: read-only for field roles, and its offline
// search (FTS5 kept by triggers), which must stay exact however rows change: typed
// writes, raw store writes, deletes, changes applied by sync, a rebuild, VACUUM, wipe.
#include "../support/sql_probe.hpp"
#include "care_fixture.hpp"

#include <caresync/care.hpp>
#include <caresync/store.hpp>

#include <catch2/catch.hpp>

#include <sqlite3.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

using namespace caresync;
using namespace caresync::care;
using caresync::testing::care_tablet;
using caresync::testing::error_of;
using caresync::testing::message_of;
using caresync::testing::transfer;

namespace {

const std::error_code k_constraint = make_error_code(storage_errc::constraint);
const std::error_code k_invalid = make_error_code(storage_errc::invalid_argument);

service make_service(std::string name, std::string provider, std::string type, std::vector<std::string> places,
                     std::string description = {}) {
  service s;
  s.org_unit = "kraj";
  s.service_name = std::move(name);
  s.provider = std::move(provider);
  s.service_type = std::move(type);
  s.municipalities = std::move(places);
  s.description = std::move(description);
  s.capacity = 12;
  s.registration_id = "1234567";
  return s;
}

/// A small registry, written by an administrator.
struct registry {
  explicit registry(care_tablet& t) : care(*t.local, role::registry_admin) {
    home_care = care.services().add(make_service("Pečovatelská služba Horní Lhota", "Vzorová pečovatelská služba s.r.o.",
                                                 "pecovatelska_sluzba", {"Horní Lhota", "Dolní Lhota"}));
    assistance = care.services().add(make_service("Osobní asistence Vzorov", "Fiktivní asistence z.ú.",
                                                  "osobni_asistence", {"Horní Lhota"}));
    seniors = care.services().add(make_service("Domov Zelená zahrada", "Vzorový domov p.o.", "domovy_pro_seniory",
                                               {"Vzorov"}, "nepřetržitá pečovatelská péče, 60 lůžek"));
    outreach = care.services().add(make_service("Terénní program Lhoty", "Spolek Fiktivní pomoc z.s.",
                                                "terenni_programy", {"Dolní Lhota"}));
  }
  records care;
  record_id home_care, assistance, seniors, outreach;
};

std::vector<record_id> ids(const std::vector<service>& found) {
  std::vector<record_id> out;
  for (const auto& s : found) out.push_back(s.id);
  return out;
}

std::set<record_id> id_set(const std::vector<service>& found) {
  const auto v = ids(found);
  return {v.begin(), v.end()};
}

/// Checks the search index against the services table, row by row, on a connection of
/// the test's own: every service has one index row holding exactly its current text, one
/// municipality row per municipality and nothing else; FTS5's own integrity check passes.
void check_index_exact(const std::string& path) {
  using caresync::testing::sql_text;
  CHECK(sql_text(path, "SELECT count(*) FROM cs_registry") == sql_text(path, "SELECT count(*) FROM services"));
  CHECK(sql_text(path, "SELECT count(*) FROM cs_registry_fts") == sql_text(path, "SELECT count(*) FROM services"));
  CHECK(sql_text(path,
                 "SELECT count(*) FROM services s LEFT JOIN cs_registry r ON r.id=s.id"
                 " LEFT JOIN cs_registry_fts f ON f.rowid=r.key WHERE r.key IS NULL OR f.rowid IS NULL"
                 " OR f.service_name IS NOT s.service_name OR f.provider IS NOT s.provider"
                 " OR f.description IS NOT s.description OR f.municipalities IS NOT s.municipalities"
                 " OR r.service_type IS NOT s.service_type") == "0");
  const std::string valid_list = "json_valid(s.municipalities) AND json_type(s.municipalities)='array'";
  CHECK(sql_text(path, "SELECT count(*) FROM cs_registry_municipality") ==
        sql_text(path, "SELECT count(*) FROM (SELECT DISTINCT s.id, j.value FROM services s, json_each("
                       "CASE WHEN " + valid_list + " THEN s.municipalities ELSE '[]' END) j WHERE j.type='text')"));
  CHECK(sql_text(path,
                 "SELECT count(*) FROM cs_registry_municipality m LEFT JOIN cs_registry r ON r.key=m.key"
                 " LEFT JOIN services s ON s.id=r.id WHERE s.id IS NULL OR NOT EXISTS(SELECT 1 FROM"
                 " json_each(s.municipalities) j WHERE j.value=m.municipality)") == "0");
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK);
  const int rc = sqlite3_exec(db, "INSERT INTO cs_registry_fts(cs_registry_fts) VALUES('integrity-check')", nullptr,
                              nullptr, nullptr);
  INFO(sqlite3_errmsg(db));
  CHECK(rc == SQLITE_OK);
  sqlite3_close(db);
}

}  // namespace

TEST_CASE("the registry is read-only for field roles", "[care][registry]") {
  // Published on an administrator's tablet, received by a field tablet as a sync would.
  care_tablet admin(role::registry_admin, "admin.db");
  registry r(admin);
  care_tablet t(role::field_worker, "field.db");
  transfer(*admin.local, *t.local);
  auto& field = t.care->services();
  const auto outbox = t.local->outbox_size();
  const auto attempt = [&](const std::function<void()>& write) {
    CHECK(error_of(write) == k_constraint);
    CHECK(message_of(write).find("read-only") != std::string::npos);
  };
  attempt([&] { field.add(make_service("X", "Y", "osobni_asistence", {})); });
  attempt([&] { field.update(r.home_care, {.service_name = "Z"}); });
  attempt([&] { field.remove(r.home_care); });
  // Below the typed API, the store refuses too: the registry's fields are server_only.
  CHECK(error_of([&] { t.local->create("services", {{"service_name", std::string("X")}}); }) ==
        make_error_code(storage_errc::invalid_argument));
  CHECK(error_of([&] { t.local->update("services", r.home_care, {{"capacity", std::int64_t{1}}}); }) ==
        make_error_code(storage_errc::invalid_argument));
  CHECK(t.local->outbox_size() == outbox);
  CHECK(field.count() == 4);
  CHECK(field.find(r.home_care)->service_name == "Pečovatelská služba Horní Lhota");
  // Reading is for everyone.
  CHECK(field.search({.type = "osobni_asistence"}).size() == 1);
}

TEST_CASE("service validation", "[care][registry][validation]") {
  care_tablet t(role::registry_admin);
  auto& services = t.care->services();
  const auto good = make_service("Služba", "Poskytovatel", "rana_pece", {"Vzorov"});
  const auto refused = [&](const std::string& field, service s) {
    const auto count = services.count();
    const auto message = message_of([&] { services.add(s); });
    INFO(message);
    CHECK(error_of([&] { services.add(s); }) == k_invalid);
    CHECK(message.find(field) != std::string::npos);
    CHECK(services.count() == count);
  };
  refused("services.service_type", [&] { auto s = good; s.service_type = "spa"; return s; }());
  refused("services.service_type", [&] { auto s = good; s.service_type.clear(); return s; }());
  refused("services.provider", [&] { auto s = good; s.provider.clear(); return s; }());
  refused("services.service_name", [&] { auto s = good; s.service_name.clear(); return s; }());
  refused("services.org_unit", [&] { auto s = good; s.org_unit.clear(); return s; }());
  refused("services.capacity", [&] { auto s = good; s.capacity = -3; return s; }());
  refused("services.municipalities", [&] { auto s = good; s.municipalities = {"Vzorov", ""}; return s; }());
  const auto id = services.add(good);
  CHECK(error_of([&] { services.update(id, {.service_type = "casino"}); }) == k_invalid);
  CHECK(services.find(id)->service_type == "rana_pece");
  CHECK(services.find(id)->capacity == 12);
  services.update(id, {.capacity = std::optional<std::int64_t>{}});
  CHECK_FALSE(services.find(id)->capacity);
}

TEST_CASE("registry search by type, municipality and text", "[care][registry][search]") {
  care_tablet t(role::field_worker, "tablet.db", true);
  registry r(t);
  auto& services = t.care->services();

  SECTION("by type") {
    CHECK(ids(services.search({.type = "pecovatelska_sluzba"})) == std::vector<record_id>{r.home_care});
    CHECK(services.search({.type = "azylove_domy"}).empty());
  }
  SECTION("by municipality, the whole name (folding_test: case and diacritics)") {
    CHECK(id_set(services.search({.municipality = "Horní Lhota"})) == std::set<record_id>{r.home_care, r.assistance});
    CHECK(id_set(services.search({.municipality = "Dolní Lhota"})) == std::set<record_id>{r.home_care, r.outreach});
    CHECK(services.search({.municipality = "Lhota"}).empty());
  }
  SECTION("by text, without regard to case or diacritics; the name weighs most") {
    const auto found = ids(services.search({.text = "pecovatelska"}));
    REQUIRE(found.size() == 2);
    CHECK(found[0] == r.home_care);  // in its name (and provider)
    CHECK(found[1] == r.seniors);    // in its description only
    CHECK(ids(services.search({.text = "PEČOVATELSKÁ"})) == found);
    CHECK(ids(services.search({.text = "Pečovatelská"})) == found);
  }
  SECTION("the last word is a prefix; every word must match") {
    CHECK(id_set(services.search({.text = "peč"})) == std::set<record_id>{r.home_care, r.seniors});
    CHECK(ids(services.search({.text = "osobni asist"})) == std::vector<record_id>{r.assistance});
    CHECK(services.search({.text = "osobni pecovatelska"}).empty());
    CHECK(services.search({.text = "asist osobni"}).empty());  // only the last word is a prefix
  }
  SECTION("the type's name and the municipalities are searchable text") {
    CHECK(ids(services.search({.text = "domovy pro seniory"})) == std::vector<record_id>{r.seniors});
    CHECK(ids(services.search({.text = "terenni programy"})) == std::vector<record_id>{r.outreach});
    CHECK(ids(services.search({.text = "vzorov"})).size() >= 2);
  }
  SECTION("criteria combine") {
    CHECK(ids(services.search({.type = "terenni_programy", .text = "lhoty"})) == std::vector<record_id>{r.outreach});
    CHECK(ids(services.search({.municipality = "Horní Lhota", .text = "asistence"})) ==
          std::vector<record_id>{r.assistance});
    CHECK(services.search({.type = "osobni_asistence", .municipality = "Dolní Lhota"}).empty());
    CHECK(ids(services.search({.type = "pecovatelska_sluzba", .municipality = "Dolní Lhota", .text = "lhota"})) ==
          std::vector<record_id>{r.home_care});
  }
  SECTION("no criteria: every service by name, up to the limit") {
    const auto all = services.search({});
    REQUIRE(all.size() == 4);
    CHECK(all[0].service_name == "Domov Zelená zahrada");
    CHECK(all[3].service_name == "Terénní program Lhoty");
    CHECK(services.search({.limit = 2}).size() == 2);
    // A result carries the whole record.
    const auto first = services.search({.type = "pecovatelska_sluzba"}).at(0);
    CHECK(first.provider == "Vzorová pečovatelská služba s.r.o.");
    CHECK(first.municipalities == std::vector<std::string>{"Dolní Lhota", "Horní Lhota"});
    CHECK(first.capacity == 12);
  }
  SECTION("bad criteria are errors; a bad text never is") {
    CHECK(error_of([&] { services.search({.type = "wellness"}); }) == k_invalid);
    CHECK(error_of([&] { services.search({.limit = 0}); }) == k_invalid);
    CHECK(error_of([&] { services.search({.limit = 1001}); }) == k_invalid);
  }
}

TEST_CASE("hostile search text is plain words: no error, no injection", "[care][registry][search][security]") {
  care_tablet t(role::field_worker, "tablet.db", true);
  registry r(t);
  auto& services = t.care->services();
  const std::vector<std::string> hostile{
      "\"",
      "\"\"\"",
      "NEAR(pecovatelska lhota, 2)",
      "pecovatelska OR NOT asistence AND",
      "* OR 1=1 --",
      "service_name:pecovatelska",
      "{service_name provider}: lhota",
      "'; DROP TABLE services; --",
      ")(*)(",
      "–",
      "€ ✓",
      "\xFF\xFE\xFD",
      std::string(10000, 'a'),
      std::string(5000, '"'),
      "a b c d e f g h i j k l m n o p q r s t u v w x y z",
      std::string("x\0y", 3),
  };
  for (const auto& text : hostile) {
    INFO("text of " << text.size() << " bytes");
    std::vector<service> found;
    CHECK_NOTHROW(found = services.search({.text = text}));
    CHECK(found.empty());
  }
  // Operators are words like any other: "OR" must appear in the service to match.
  CHECK(services.search({.text = "pecovatelska OR"}).empty());
  // Punctuation only separates words; a cut UTF-8 character at the end is dropped.
  const std::vector<std::pair<std::string, std::string>> same{
      {"\"pečovatelská\"::lhota*", "pecovatelska lhota"},
      {"^pecovatelska", "pecovatelska"},
      {"pecov\"", "pecov"},
      {"(lhota)", "lhota"},
      {"pe\xC4", "pe"},
  };
  for (const auto& [text, plain] : same) {
    INFO(plain);
    std::vector<service> found;
    CHECK_NOTHROW(found = services.search({.text = text}));
    CHECK_FALSE(found.empty());
    CHECK(ids(found) == ids(services.search({.text = plain})));
  }
  CHECK(ids(services.search({.text = "\"pečovatelská\"::lhota*"})) == std::vector<record_id>{r.home_care});
  CHECK(services.count() == 4);
}

TEST_CASE("the search index stays exact through updates and deletes", "[care][registry][search]") {
  care_tablet t(role::field_worker, "tablet.db", true);
  registry r(t);
  auto& admin = r.care.services();
  auto& services = t.care->services();
  check_index_exact(t.path);

  admin.update(r.home_care, {.provider = "Fiktivní doprava s.r.o.", .service_name = "Senior taxi Horní Lhota"});
  // Still a pečovatelská služba by type, no longer by name or provider.
  CHECK(id_set(services.search({.text = "pecovatelska"})) == std::set<record_id>{r.home_care, r.seniors});
  CHECK(services.search({.text = "vzorova pecovatelska"}).empty());
  CHECK(ids(services.search({.text = "taxi"})) == std::vector<record_id>{r.home_care});

  admin.update(r.home_care, {.municipalities = std::vector<std::string>{"Horní Lhota"}});
  CHECK(id_set(services.search({.municipality = "Dolní Lhota"})) == std::set<record_id>{r.outreach});

  admin.update(r.home_care, {.service_type = "tisnova_pece"});
  CHECK(services.search({.type = "pecovatelska_sluzba"}).empty());
  CHECK(ids(services.search({.type = "tisnova_pece"})) == std::vector<record_id>{r.home_care});
  CHECK(ids(services.search({.text = "pecovatelska"})) == std::vector<record_id>{r.seniors});

  // A write of fields outside the index (capacity) leaves it as it is.
  admin.update(r.home_care, {.capacity = 30});
  CHECK(ids(services.search({.text = "taxi"})) == std::vector<record_id>{r.home_care});
  check_index_exact(t.path);

  admin.remove(r.outreach);
  CHECK(services.search({.text = "terenni"}).empty());
  CHECK(services.search({.municipality = "Dolní Lhota"}).empty());
  CHECK(services.search({.type = "terenni_programy"}).empty());
  CHECK(services.search({}).size() == 3);
  check_index_exact(t.path);

  // VACUUM may renumber the services table's implicit rowids; the index keys are its own.
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open_v2(t.path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK);
    CHECK(sqlite3_exec(db, "VACUUM", nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);
  }
  check_index_exact(t.path);
  CHECK(ids(services.search({.text = "zelena zahrada"})) == std::vector<record_id>{r.seniors});
}

TEST_CASE("the search index follows changes applied by sync", "[care][registry][search][sync]") {
  // The administrator's tablet publishes the registry; a field tablet receives it the way
  // a pull applies it (the store's own upserts and deletes, no typed API involved).
  care_tablet admin_tablet(role::registry_admin, "admin.db");
  care_tablet field(role::field_worker, "field.db");
  auto& admin = admin_tablet.care->services();
  std::vector<record_id> made;
  for (int i = 0; i < 60; ++i) {
    const auto type = service_types()[static_cast<std::size_t>(i) % service_types().size()].code;
    made.push_back(admin.add(make_service("Služba číslo " + std::to_string(i), "Vzorový poskytovatel " + std::to_string(i % 7),
                                          std::string(type), {"Obec " + std::to_string(i % 5)})));
  }
  transfer(*admin_tablet.local, *field.local);
  CHECK(field.care->services().count() == 60);
  check_index_exact(field.path);
  CHECK(field.care->services().search({.municipality = "Obec 3", .limit = 100}).size() == 12);

  // Edits, deletes and a new service, synced again.
  admin.update(made[3], {.service_name = "Přejmenovaná služba", .municipalities = std::vector<std::string>{"Obec 9"}});
  admin.remove(made[4]);
  admin.remove(made[5]);
  const auto late = admin.add(make_service("Pozdní služba", "Nový poskytovatel", "krizova_pomoc", {"Obec 3"}));
  transfer(*admin_tablet.local, *field.local);
  check_index_exact(field.path);
  auto& s = field.care->services();
  CHECK(s.count() == 59);
  CHECK(ids(s.search({.text = "prejmenovana"})) == std::vector<record_id>{made[3]});
  CHECK(ids(s.search({.municipality = "Obec 9"})) == std::vector<record_id>{made[3]});
  CHECK_FALSE(s.find(made[4]));
  for (const auto& found : s.search({.text = "cislo 4", .limit = 100})) CHECK(found.id != made[4]);

  CHECK(ids(s.search({.text = "pozdni"})) == std::vector<record_id>{late});
  // Both tablets answer the same.
  for (const auto& q : {service_query{.text = "sluzba"}, service_query{.municipality = "Obec 3"},
                        service_query{.type = "osobni_asistence"}, service_query{.text = "vzorovy poskytovatel 3"}}) {
    auto qq = q;
    qq.limit = 1000;
    CHECK(ids(s.search(qq)) == ids(admin.search(qq)));
  }
}

TEST_CASE("the index never fails a sync, whatever a newer app wrote", "[care][registry][search][sync]") {
  // Municipalities that are not a JSON array of strings (written below the typed API)
  // must not make the triggers fail: the change is applied, the text stays searchable.
  care_tablet admin_tablet(role::registry_admin, "admin.db");
  care_tablet field(role::field_worker, "field.db");
  const auto a = admin_tablet.care->services().add(make_service("Služba A", "P", "rana_pece", {"X"}));
  const auto b = admin_tablet.care->services().add(make_service("Služba B", "P", "rana_pece", {"X", "Y"}));
  admin_tablet.local->update("services", a, {{"municipalities", std::string("not json [")}});
  admin_tablet.local->update("services", b, {{"municipalities", std::string("{\"X\": 1}")}});
  const auto c = admin_tablet.local->create("services", {{"service_name", std::string("Služba C")},
                                                         {"municipalities", std::string("[\"Z\", \"Z\", 3]")}});
  CHECK_NOTHROW(transfer(*admin_tablet.local, *field.local));
  CHECK(field.care->services().count() == 3);
  check_index_exact(field.path);
  CHECK(field.care->services().search({.municipality = "X"}).empty());
  CHECK(ids(field.care->services().search({.municipality = "Z"})) == std::vector<record_id>{c});
  CHECK(ids(field.care->services().search({.text = "sluzba b"})) == std::vector<record_id>{b});
}

TEST_CASE("a store that held services before the index existed is indexed at open", "[care][registry][search]") {
  caresync::testing::temp_dir dir;
  const auto path = dir.file("old.db");
  auto without_index = care::schema();
  without_index.setup_sql.clear();
  record_id id;
  {
    store_options o{path, without_index};
    o.server_side = true;
    auto local = store::open(o);
    id = local->create("services", {{"org_unit", std::string("kraj")},
                                    {"provider", std::string("Vzorový poskytovatel")},
                                    {"service_name", std::string("Odlehčovací služba Vzorov")},
                                    {"service_type", std::string("odlehcovaci_sluzby")},
                                    {"municipalities", std::string("[\"Vzorov\"]")}});
  }
  auto local = store::open({path, care::schema()});
  records care(*local);
  CHECK(ids(care.services().search({.text = "odlehcovaci"})) == std::vector<record_id>{id});
  CHECK(ids(care.services().search({.municipality = "Vzorov"})) == std::vector<record_id>{id});
  check_index_exact(path);
  // Opening again does not rebuild or duplicate anything.
  local.reset();
  local = store::open({path, care::schema()});
  records again(*local);
  CHECK(again.services().search({}).size() == 1);
  check_index_exact(path);
}

TEST_CASE("after a wipe the registry and its index start empty and work", "[care][registry][search]") {
  care_tablet t(role::registry_admin);
  registry r(t);
  t.local->wipe();
  auto& services = t.care->services();
  CHECK(services.count() == 0);
  CHECK(services.search({.text = "pecovatelska"}).empty());
  const auto id = services.add(make_service("Raná péče Vzorov", "Vzorová raná péče o.p.s.", "rana_pece", {"Vzorov"}));
  CHECK(ids(services.search({.text = "rana pece"})) == std::vector<record_id>{id});
  check_index_exact(t.path);
}
