// The care records through the real server over real TLS: a registry published on an
// administrator's tablet is searchable on field tablets after they sync (the index kept
// by triggers as pulled changes land), and a referral with a handover moves between a
// field tablet and a coordinator's.

#include "../support/sql_probe.hpp"
#include "fixture.hpp"

#include <caresync/care.hpp>
#include <caresync/protocol/errors.hpp>
#include <caresync/server/registry_import.hpp>

#include <catch2/catch.hpp>

#include <set>

using namespace caresync;
using caresync::testing::temp_dir;
using caresync::testing::test_server;

namespace {

std::unique_ptr<store> care_tablet(const temp_dir& dir, const std::string& name, bool server_side = false) {
  store_options o{dir.file(name + ".db"), care::schema(), durability::normal};
  o.server_side = server_side;
  return store::open(o);
}

care::service sample_service(int i) {
  care::service s;
  s.org_unit = "kraj-vzor";
  s.provider = "Vzorový poskytovatel " + std::to_string(i % 9) + " s.r.o.";
  s.service_name = std::string(i % 2 ? "Pečovatelská služba" : "Osobní asistence") + " Obec " + std::to_string(i % 11);
  s.service_type = i % 2 ? "pecovatelska_sluzba" : "osobni_asistence";
  s.municipalities = {"Obec " + std::to_string(i % 11), "Obec " + std::to_string((i + 1) % 11)};
  s.description = "Fiktivní služba (synthetic) " + std::to_string(i);
  return s;
}

std::vector<record_id> ids(const std::vector<care::service>& found) {
  std::vector<record_id> out;
  for (const auto& s : found) out.push_back(s.id);
  return out;
}

/// The index matches the services table row for row (registry_test has the full check).
bool index_matches(const std::string& path) {
  using caresync::testing::sql_text;
  return sql_text(path, "SELECT count(*) FROM cs_registry_fts") == sql_text(path, "SELECT count(*) FROM services") &&
         sql_text(path,
                  "SELECT count(*) FROM services s LEFT JOIN cs_registry r ON r.id=s.id"
                  " LEFT JOIN cs_registry_fts f ON f.rowid=r.key WHERE f.rowid IS NULL"
                  " OR f.service_name IS NOT s.service_name OR f.municipalities IS NOT s.municipalities") == "0";
}

}  // namespace

TEST_CASE("a registry published on one tablet is searchable on another after sync", "[sync][care]") {
  temp_dir dir;
  test_server server(dir);
  // The registry is server_only: the server takes it from its server-side writers only.
  for (const auto field : care::server_only_fields()) server.config().server_only_fields.emplace_back(field);
  server.config().devices[0].server_side = true;
  server.restart();
  auto admin_store = care_tablet(dir, "admin", true);
  auto field_store = care_tablet(dir, "field");
  care::records admin(*admin_store, care::role::registry_admin);
  care::records field(*field_store);

  std::vector<record_id> made;
  admin_store->transaction([&] {
    for (int i = 0; i < 300; ++i) made.push_back(admin.services().add(sample_service(i)));
  });
  CHECK(sync_client(*admin_store, server.options(0)).sync().pushed == 300);
  CHECK(sync_client(*field_store, server.options(1)).sync().pulled == 300);
  CHECK(field.services().count() == 300);
  CHECK(index_matches(dir.file("field.db")));

  const care::service_query queries[] = {{.type = "pecovatelska_sluzba", .limit = 1000},
                                         {.municipality = "Obec 3", .limit = 1000},
                                         {.text = "pecovatelska obec", .limit = 1000},
                                         {.type = "osobni_asistence", .text = "vzorovy poskytovatel 4", .limit = 1000}};
  for (const auto& q : queries) {
    const auto here = ids(field.services().search(q));
    CHECK_FALSE(here.empty());
    CHECK(here == ids(admin.services().search(q)));
  }

  // The administrator renames one service, moves another and withdraws a third.
  admin.services().update(made[0], {.service_name = "Raná péče Nové Jméno", .service_type = "rana_pece"});
  admin.services().update(made[1], {.municipalities = std::vector<std::string>{"Obec 99"}});
  admin.services().remove(made[2]);
  sync_client(*admin_store, server.options(0)).sync();
  CHECK(sync_client(*field_store, server.options(1)).sync().pulled == 3);
  CHECK(index_matches(dir.file("field.db")));
  CHECK(ids(field.services().search({.text = "nove jmeno"})) == std::vector<record_id>{made[0]});
  CHECK(ids(field.services().search({.type = "rana_pece"})) == std::vector<record_id>{made[0]});
  CHECK(ids(field.services().search({.municipality = "Obec 99"})) == std::vector<record_id>{made[1]});
  CHECK_FALSE(field.services().find(made[2]));
  for (const auto& q : queries) CHECK(ids(field.services().search(q)) == ids(admin.services().search(q)));
  CHECK(field_store->state_digest() == admin_store->state_digest());

  // An app that does not know the registry is server_only (its own schema) writes a
  // service anyway: the server refuses it and every tablet keeps the published registry.
  auto s = care::schema();
  for (auto& c : s.collections) {
    for (auto& f : c.fields) f.server_only = false;
  }
  auto older = store::open(store_options{dir.file("older.db"), s, durability::normal});
  sync_client(*older, server.options(2)).sync();
  older->update("services", made[0], {{"service_name", std::string("Přepsáno z tabletu")}});
  const auto report = sync_client(*older, server.options(2)).sync();
  CHECK(report.reverted == 1);
  CHECK(older->get("services", made[0])->at("service_name") == value(std::string("Raná péče Nové Jméno")));
  sync_client(*field_store, server.options(1)).sync();
  CHECK(field.services().find(made[0])->service_name == "Raná péče Nové Jméno");
  CHECK(field.services().search({.text = "prepsano"}).empty());
}

TEST_CASE("a referral with a temporary handover, between a field tablet and a coordinator", "[sync][care]") {
  temp_dir dir;
  test_server server(dir);
  auto worker_store = care_tablet(dir, "worker");
  auto coordinator_store = care_tablet(dir, "coordinator");
  care::records worker(*worker_store);
  care::records coordinator(*coordinator_store);

  const auto client = worker.clients().add({.name = "Marie Vzorová (synthetic)", .org_unit = "kraj/orp-a/team-1"});
  care::caregiver g;
  g.client_id = client;
  g.name = "Dcera Vzorová (synthetic)";
  g.relation = "child";
  const auto carer = worker.caregivers().add(g);
  const auto referral = worker.referrals().add({.client_id = client, .to_unit = "kraj/nemocnice/soc",
                                                .reason = "propuštění domů (synthetic)",
                                                .ownership = care::handover::temporary});
  sync_client(*worker_store, server.options(0)).sync();
  sync_client(*coordinator_store, server.options(1)).sync();

  // The coordinator's inbox; accepting moves the client and the caregiver to her unit.
  const auto inbox = coordinator.referrals().to_unit("kraj/nemocnice/soc");
  REQUIRE(inbox.size() == 1);
  coordinator.referrals().accept(inbox[0].id);
  coordinator.referrals().start(inbox[0].id);
  sync_client(*coordinator_store, server.options(1)).sync();
  sync_client(*worker_store, server.options(0)).sync();
  CHECK(worker.referrals().find(referral)->state == care::referral_state::in_progress);
  CHECK(worker.clients().find(client)->org_unit == "kraj/nemocnice/soc");
  CHECK(worker.caregivers().find(carer)->org_unit == "kraj/nemocnice/soc");
  // The worker's tablet knows the state now: accepting again is refused there.
  CHECK_THROWS_AS(worker.referrals().accept(referral), caresync::error);

  coordinator.referrals().close(referral);
  sync_client(*coordinator_store, server.options(1)).sync();
  sync_client(*worker_store, server.options(0)).sync();
  CHECK(worker.referrals().find(referral)->state == care::referral_state::closed);
  CHECK(worker.clients().find(client)->org_unit == "kraj/orp-a/team-1");
  CHECK(worker_store->state_digest() == coordinator_store->state_digest());
}

TEST_CASE("a registry imported on the server in caresync-sample's CSV shape is searchable on a tablet", "[sync][care]") {
  temp_dir dir;
  test_server server(dir);
  // The header and values as caresync-sample --services-csv writes them.
  const std::string csv =
      "registration_id,provider,service_name,service_type,municipalities,capacity:integer,address,contacts,"
      "opening_hours,org_unit,description\r\n"
      "SYN-1000000,Vzorová pečovatelská služba s.r.o.,Pečovatelská služba Horní Lhota,pecovatelska_sluzba,"
      "\"[\"\"Dolní Lhota\"\",\"\"Horní Lhota\"\"]\",40,Horní Lhota č. p. 1,+420 000 111 222,Po–Pá 7:00–15:30,kraj-vzor,"
      "Fiktivní služba (synthetic)\r\n"
      "SYN-1000001,Fiktivní asistence z.ú.,Osobní asistence Vzorov,osobni_asistence,\"[\"\"Vzorov\"\"]\",,,,,kraj-vzor,\r\n";
  const auto result = server::import_registry(server.get().store(), csv, {});
  REQUIRE(result.created == 2);

  auto tablet = care_tablet(dir, "field");
  care::records care(*tablet);
  CHECK(sync_client(*tablet, server.options(1)).sync().pulled == 2);
  const auto found = care.services().search({.municipality = "Dolní Lhota", .text = "pecovatelska"});
  REQUIRE(found.size() == 1);
  CHECK(found[0].id == server::registry_record_id("services", "SYN-1000000"));
  CHECK(found[0].capacity == 40);
  CHECK(found[0].municipalities == std::vector<std::string>{"Dolní Lhota", "Horní Lhota"});
  CHECK(ids(care.services().search({.type = "osobni_asistence"})).size() == 1);
  CHECK(index_matches(dir.file("field.db")));
}

TEST_CASE("with care_rules on, the server refuses a referral reopened and an invalid code from an app that skips "
          "the checks, and the rest of the push is stored",
          "[sync][care]") {
  temp_dir dir;
  test_server server(dir);
  server.config().care_rules = true;
  server.restart();
  auto worker_store = care_tablet(dir, "worker");
  auto other_store = care_tablet(dir, "other");
  care::records worker(*worker_store);
  care::records other(*other_store);
  const auto client = worker.clients().add({.name = "Marie Vzorová (synthetic)", .org_unit = "kraj/orp-a/team-1"});
  const auto referral = worker.referrals().add({.client_id = client, .to_unit = "kraj/nemocnice/soc",
                                                .reason = "propuštění domů (synthetic)"});
  CHECK(sync_client(*worker_store, server.options(0)).sync().quarantined == 0);

  // Legal moves made offline reach the server as one (the outbox sends the newest
  // state): new -> in_progress is accepted, then closed.
  sync_client(*other_store, server.options(1)).sync();
  other.referrals().accept(referral);
  other.referrals().start(referral);
  CHECK(sync_client(*other_store, server.options(1)).sync().quarantined == 0);
  other.referrals().close(referral);
  CHECK(sync_client(*other_store, server.options(1)).sync().quarantined == 0);
  sync_client(*worker_store, server.options(0)).sync();
  REQUIRE(worker.referrals().find(referral)->state == care::referral_state::closed);

  // An app that writes the store directly reopens it, and records a visit kind no care
  // app knows; a legal edit goes in the same push.
  worker_store->update("referrals", referral, {{"state", std::string("accepted")}});
  const auto bad_visit = worker_store->create(
      "visits", {{"client_id", client.to_string()}, {"org_unit", std::string("kraj/orp-a/team-1")},
                 {"kind", std::string("teleportation")}, {"status", std::string("planned")},
                 {"start_at", std::string("2026-11-20T08:00:00Z")}, {"end_at", std::string("2026-11-20T09:00:00Z")}});
  worker_store->update("clients", client, {{"contact", std::string("+420 000 000 000 (synthetic)")}});
  const auto report = sync_client(*worker_store, server.options(0)).sync();
  CHECK(report.quarantined == 2);
  const auto held = worker_store->quarantined();
  REQUIRE(held.size() == 2);
  bool move_named = false, kind_named = false;
  for (const auto& q : held) {
    move_named = move_named || q.reason.find("cannot move from closed to accepted") != std::string::npos;
    kind_named = kind_named || (q.record == bad_visit && q.reason.find("care rule") != std::string::npos);
  }
  CHECK(move_named);
  CHECK(kind_named);

  // Nobody else sees them; the legal edit arrived.
  sync_client(*other_store, server.options(1)).sync();
  CHECK(other.referrals().find(referral)->state == care::referral_state::closed);
  CHECK_FALSE(other_store->get("visits", bad_visit));
  CHECK(other.clients().find(client)->contact == "+420 000 000 000 (synthetic)");
}
