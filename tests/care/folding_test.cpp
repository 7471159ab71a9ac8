// Names matched as a person types them (issue 21): the registry's municipality filter
// and the search of clients by name fold case and diacritics as the registry's text
// search does (SQLite FTS5 unicode61, remove_diacritics 2), and match whole names or
// word starts, never a fragment inside a word.

#include "care_fixture.hpp"

#include <set>

using namespace caresync;
using namespace caresync::care;
using caresync::testing::care_tablet;

namespace {

record_id add_service(records& admin, const std::string& name, std::vector<std::string> places) {
  service s;
  s.org_unit = "kraj";
  s.provider = "Vzorový poskytovatel (synthetic)";
  s.service_name = name;
  s.service_type = "pecovatelska_sluzba";
  s.municipalities = std::move(places);
  return admin.services().add(s);
}

std::set<record_id> id_set(const std::vector<service>& found) {
  std::set<record_id> out;
  for (const auto& s : found) out.insert(s.id);
  return out;
}

std::vector<std::string> names(const std::vector<client>& found) {
  std::vector<std::string> out;
  for (const auto& c : found) out.push_back(c.name);
  return out;
}

}  // namespace

TEST_CASE("the municipality filter ignores case and diacritics but matches whole names", "[care][registry][search]") {
  care_tablet t(role::registry_admin);
  auto& admin = *t.care;
  const auto upper = add_service(admin, "Pečovatelská služba Horní Lhota", {"Horní Lhota", "Dolní Lhota"});
  const auto lhotka = add_service(admin, "Pečovatelská služba Lhotka", {"Horní Lhotka"});
  // Two spellings of one place, as two registries might publish it: both are meant.
  const auto spelled = add_service(admin, "Pečovatelská služba Ústí", {"Ústí nad Orlicí"});
  const auto twice = add_service(admin, "Pečovatelská služba U Orlice", {"Usti nad Orlici", "Ústí nad Orlicí"});
  auto& services = admin.services();

  for (const char* typed : {"Horní Lhota", "horni lhota", "HORNÍ LHOTA", "  horni   lhota ", "Horni-Lhota"}) {
    INFO(typed);
    CHECK(id_set(services.search({.municipality = typed})) == std::set<record_id>{upper});
  }
  CHECK(id_set(services.search({.municipality = "horni lhotka"})) == std::set<record_id>{lhotka});
  CHECK(services.search({.municipality = "lhota"}).empty());      // a part of a name is not the name
  CHECK(services.search({.municipality = "horni lhot"}).empty());  // nor its prefix
  CHECK(services.search({.municipality = "Praha"}).empty());
  CHECK(services.search({.municipality = "--"}).empty());  // no word at all matches nothing
  // A service serving two names that fold alike comes once.
  const auto usti = services.search({.municipality = "usti nad orlici"});
  CHECK(usti.size() == 2);
  CHECK(id_set(usti) == std::set<record_id>{spelled, twice});
  // With text and type, through the full-text index.
  CHECK(id_set(services.search({.municipality = "dolni lhota", .text = "pecovatelska"})) == std::set<record_id>{upper});
  CHECK(id_set(services.search({.type = "pecovatelska_sluzba", .municipality = "ÚSTÍ NAD ORLICÍ", .text = "orlice"})) ==
        std::set<record_id>{twice});
}

TEST_CASE("clients are found by the starts of their names' words, without regard to case and diacritics", "[care][search]") {
  care_tablet t;
  auto& clients = t.care->clients();
  const auto add = [&](const std::string& name, const std::string& unit) {
    client c;
    c.name = name;
    c.org_unit = unit;
    return clients.add(c);
  };
  add("Marie Nováková (synthetic)", "kraj/orp-a/team-1");
  add("Jan Novák (synthetic)", "kraj/orp-a/team-1");
  add("Eva Černá (synthetic)", "kraj/orp-a/team-2");
  add("Ivana Janovská (synthetic)", "kraj/orp-a/team-2");

  CHECK(names(clients.search("novakova")) == std::vector<std::string>{"Marie Nováková (synthetic)"});
  CHECK(names(clients.search("NOVÁK")) == std::vector<std::string>{"Jan Novák (synthetic)", "Marie Nováková (synthetic)"});
  CHECK(names(clients.search("mar nov")) == std::vector<std::string>{"Marie Nováková (synthetic)"});
  CHECK(names(clients.search("cerna")) == std::vector<std::string>{"Eva Černá (synthetic)"});
  CHECK(names(clients.search("jan")) == std::vector<std::string>{"Ivana Janovská (synthetic)", "Jan Novák (synthetic)"});
  CHECK(names(clients.search("jan", "kraj/orp-a/team-1")) == std::vector<std::string>{"Jan Novák (synthetic)"});
  CHECK(clients.search("ova").empty());  // inside a word: not a match
  CHECK(clients.search("novakova eva").empty());  // every word must match
  CHECK(clients.search("").empty());
  CHECK(clients.search("?!").empty());
}
