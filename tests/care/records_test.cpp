// The typed care API on a real store: every validation rule refuses with a clear error
// naming the field and writes nothing; updates write only the fields that changed; the
// fields and collections an app adds survive.
#include "care_fixture.hpp"
#include "store_impl.hpp"

#include <caresync/care.hpp>
#include <caresync/store.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <string>
#include <vector>

using namespace caresync;
using namespace caresync::care;
using caresync::testing::care_tablet;
using caresync::testing::error_of;
using caresync::testing::message_of;

namespace {

const std::error_code k_invalid = make_error_code(storage_errc::invalid_argument);
const std::error_code k_not_found = make_error_code(storage_errc::not_found);

/// Runs `write`, which must be refused as invalid_argument with a message that mentions
/// `field`, and checks that nothing was written (no outbox entry, no record).
void refused(care_tablet& t, const std::string& field, const std::function<void()>& write) {
  const auto outbox = t.local->outbox_size();
  const auto clients = t.local->count("clients"), visits = t.local->count("visits"),
             caregivers = t.local->count("caregivers");
  std::string message;
  std::error_code code;
  try {
    write();
  } catch (const caresync::error& e) {
    message = e.what();
    code = e.code();
  }
  INFO("message: " << message);
  CHECK(code == k_invalid);
  CHECK(message.find(field) != std::string::npos);
  CHECK(t.local->outbox_size() == outbox);
  CHECK(t.local->count("clients") == clients);
  CHECK(t.local->count("visits") == visits);
  CHECK(t.local->count("caregivers") == caregivers);
}

/// The names of the fields the next push would send for the record's last change.
std::vector<std::string> pending_fields(store& s, const record_id& id) {
  std::vector<std::string> names;
  auto batch = s.internal().next_batch(1000);
  REQUIRE(batch);
  for (const auto& c : batch->decode_changes()) {
    if (c.id != id) continue;
    names.clear();
    for (const auto& f : c.fields) names.push_back(f.name);
    for (const auto& op : c.items) names.push_back(op.field);
  }
  s.internal().ack_batch(*batch);
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

TEST_CASE("a client: added, found, listed by unit, changed", "[care][records]") {
  care_tablet t;
  client c;
  c.name = "Jan Vzorový (synthetic)";
  c.birth_date = "1938-12-01";
  c.municipality = "Fiktivní Lhota";
  c.org_unit = "kraj/orp-a/team-1";
  c.allowance = care_allowance::level_3;
  c.consent_date = "2026-10-01";
  c.consent_scope = "evidence a sdílení v rámci týmu";
  c.assigned_workers = {"w-2", "w-1", "w-2"};
  const auto id = t.care->clients().add(c);
  const auto other = t.add_client("kraj/orp-b/team-1");

  const auto got = t.care->clients().find(id);
  REQUIRE(got);
  CHECK(got->id == id);
  CHECK(got->name == c.name);
  CHECK(got->birth_date == "1938-12-01");
  CHECK(got->allowance == care_allowance::level_3);
  CHECK(got->assigned_workers == std::vector<std::string>{"w-1", "w-2"});
  CHECK(got->status == client_status::active);
  CHECK(got->address.empty());
  // Stored as codes an app reads with plain SQL.
  CHECK(std::get<std::string>(t.local->get("clients", id)->at("care_allowance")) == "III");
  CHECK(t.local->get("clients", id)->count("address") == 0);  // empty text is null

  CHECK(t.care->clients().list("kraj/orp-a/team-1").size() == 1);
  CHECK(t.care->clients().list().size() == 2);
  CHECK_FALSE(t.care->clients().find(record_id::generate()));

  t.care->clients().update(id, {.address = "Náves 1", .status = client_status::paused});
  const auto changed = t.care->clients().find(id);
  CHECK(changed->address == "Náves 1");
  CHECK(changed->status == client_status::paused);
  CHECK(changed->name == c.name);
  t.care->clients().update(id, {.address = ""});
  CHECK(t.care->clients().find(id)->address.empty());
  CHECK(t.care->clients().find(other)->org_unit == "kraj/orp-b/team-1");
}

TEST_CASE("client validation", "[care][records][validation]") {
  care_tablet t;
  client c;
  c.name = "Eva Vzorová (synthetic)";
  c.org_unit = "kraj/orp-a/team-1";
  auto cl = t.care.get();

  SECTION("name and org unit are required") {
    refused(t, "clients.name", [&] { auto x = c; x.name.clear(); cl->clients().add(x); });
    refused(t, "clients.org_unit", [&] { auto x = c; x.org_unit.clear(); cl->clients().add(x); });
  }
  SECTION("birth date: a real date, not in the future") {
    refused(t, "clients.birth_date", [&] { auto x = c; x.birth_date = "1950-02-30"; cl->clients().add(x); });
    refused(t, "clients.birth_date", [&] { auto x = c; x.birth_date = "7.3.1941"; cl->clients().add(x); });
    refused(t, "clients.birth_date", [&] { auto x = c; x.birth_date = "2026-11-25"; cl->clients().add(x); });
    auto x = c;
    x.birth_date = "2026-11-23";  // today by the tablet's clock (UTC)
    CHECK_NOTHROW(cl->clients().add(x));
    x.birth_date = "2026-11-24";  // today in Prague shortly after midnight
    CHECK_NOTHROW(cl->clients().add(x));
  }
  SECTION("consent: date and scope together, the date not in the future") {
    refused(t, "clients.consent_scope", [&] { auto x = c; x.consent_date = "2026-01-01"; cl->clients().add(x); });
    refused(t, "clients.consent_date", [&] { auto x = c; x.consent_scope = "evidence"; cl->clients().add(x); });
    refused(t, "clients.consent_date", [&] {
      auto x = c;
      x.consent_date = "2027-01-01";
      x.consent_scope = "evidence";
      cl->clients().add(x);
    });
  }
  SECTION("text: valid UTF-8, bounded, no control characters") {
    refused(t, "clients.name", [&] { auto x = c; x.name = "\xFF\xFE"; cl->clients().add(x); });
    refused(t, "clients.address", [&] { auto x = c; x.address = std::string(600, 'a'); cl->clients().add(x); });
    refused(t, "clients.contact", [&] { auto x = c; x.contact = "777\x07"; cl->clients().add(x); });
  }
  SECTION("assigned workers: no empty element") {
    refused(t, "clients.assigned_workers", [&] { auto x = c; x.assigned_workers = {"w-1", ""}; cl->clients().add(x); });
  }
  SECTION("update: the record must exist; a refused change leaves it as it was") {
    const auto id = cl->clients().add(c);
    CHECK(error_of([&] { cl->clients().update(record_id::generate(), {.name = "X"}); }) == k_not_found);
    refused(t, "clients.birth_date", [&] { cl->clients().update(id, {.birth_date = "2026-02-29"}); });
    refused(t, "clients.name", [&] { cl->clients().update(id, {.name = ""}); });
    refused(t, "clients.consent_scope", [&] { cl->clients().update(id, {.consent_date = "2026-01-01"}); });
    CHECK(cl->clients().find(id)->name == c.name);
    CHECK(cl->clients().find(id)->birth_date.empty());
  }
  SECTION("a code this version does not know, written by a newer app, is reported on read") {
    const auto id = cl->clients().add(c);
    t.local->update("clients", id, {{"status", std::string("archived")}});
    const auto message = message_of([&] { (void)cl->clients().find(id); });
    CHECK(message.find("clients.status") != std::string::npos);
    CHECK(message.find("'archived'") != std::string::npos);
    CHECK(error_of([&] { (void)cl->clients().find(id); }) == make_error_code(storage_errc::schema_mismatch));
    // The record itself is intact.
    CHECK(std::get<std::string>(t.local->get("clients", id)->at("status")) == "archived");
  }
}

TEST_CASE("caregiver validation, the org unit from the client", "[care][records][validation]") {
  care_tablet t;
  const auto client = t.add_client("kraj/orp-a/team-2");
  caregiver g;
  g.client_id = client;
  g.name = "Petr Vzorový (synthetic)";
  g.relation = "child";
  g.support_needs = "zaškolení v polohování";

  const auto id = t.care->caregivers().add(g);
  const auto got = t.care->caregivers().find(id);
  REQUIRE(got);
  CHECK(got->org_unit == "kraj/orp-a/team-2");
  CHECK(got->relation == "child");
  CHECK(t.care->caregivers().of_client(client).size() == 1);

  auto cl = t.care.get();
  refused(t, "caregivers.client_id", [&] { auto x = g; x.client_id = record_id::generate(); cl->caregivers().add(x); });
  refused(t, "caregivers.relation", [&] { auto x = g; x.relation = "cousin_twice_removed"; cl->caregivers().add(x); });
  refused(t, "caregivers.name", [&] { auto x = g; x.name.clear(); cl->caregivers().add(x); });
  refused(t, "caregivers.consent_scope", [&] { auto x = g; x.consent_date = "2026-03-01"; cl->caregivers().add(x); });
  refused(t, "caregivers.relation", [&] { cl->caregivers().update(id, {.relation = "uncle"}); });

  t.care->caregivers().update(id, {.contact = "+420 000 000 000"});
  CHECK(t.care->caregivers().find(id)->contact == "+420 000 000 000");
  t.care->caregivers().remove(id);
  CHECK_FALSE(t.care->caregivers().find(id));
  CHECK(error_of([&] { cl->caregivers().remove(id); }) == k_not_found);
}

TEST_CASE("visit validation", "[care][records][validation]") {
  care_tablet t;
  const auto client = t.add_client();
  const visit v = t.visit_of(client);
  auto cl = t.care.get();

  SECTION("a valid visit; org unit from the client; activity codes as a set") {
    auto x = v;
    x.activity_codes = {"meals", "hygiene", "meals"};
    x.note = "Poznámka (synthetic)";
    x.follow_ups = {"zavolat dceři", "objednat pomůcky"};
    const auto id = cl->visits().add(x);
    const auto got = cl->visits().find(id);
    REQUIRE(got);
    CHECK(got->org_unit == "kraj/orp-a/team-1");
    CHECK(got->activity_codes == std::vector<std::string>{"hygiene", "meals"});
    CHECK(got->follow_ups == std::vector<std::string>{"zavolat dceři", "objednat pomůcky"});
    CHECK(got->status == visit_status::planned);
    cl->visits().add_follow_up(id, "ověřit příspěvek na péči");
    CHECK(cl->visits().find(id)->follow_ups.size() == 3);
    CHECK(cl->visits().of_client(client).size() == 1);
  }
  SECTION("the client must exist on this tablet") {
    refused(t, "visits.client_id", [&] { auto x = v; x.client_id = record_id::generate(); cl->visits().add(x); });
    // A deleted client is gone too.
    t.local->remove("clients", client);
    refused(t, "visits.client_id", [&] { cl->visits().add(v); });
  }
  SECTION("end after start, within 24 hours") {
    refused(t, "visits.end_at", [&] { auto x = v; x.end_at = "2026-11-23T07:59:59Z"; cl->visits().add(x); });
    refused(t, "visits.end_at", [&] { auto x = v; x.end_at = x.start_at; cl->visits().add(x); });
    refused(t, "visits.end_at", [&] { auto x = v; x.end_at = "2026-11-24T08:00:01Z"; cl->visits().add(x); });
    auto x = v;
    x.end_at = "2026-11-24T08:00:00Z";  // exactly 24 hours
    CHECK_NOTHROW(cl->visits().add(x));
  }
  SECTION("times: valid dates, UTC form") {
    refused(t, "visits.start_at", [&] { auto x = v; x.start_at = "2026-02-30T08:00:00Z"; cl->visits().add(x); });
    refused(t, "visits.start_at", [&] { auto x = v; x.start_at = "2026-11-23 08:00"; cl->visits().add(x); });
    refused(t, "visits.end_at", [&] { auto x = v; x.end_at = "2026-11-23T08:45:00+01:00"; cl->visits().add(x); });
    refused(t, "visits.start_at", [&] { auto x = v; x.start_at.clear(); cl->visits().add(x); });
  }
  SECTION("known codes only") {
    refused(t, "visits.activity_codes", [&] { auto x = v; x.activity_codes = {"hygiene", "astrology"}; cl->visits().add(x); });
    refused(t, "visits.kind", [&] { auto x = v; x.kind = "tea_party"; cl->visits().add(x); });
    const auto message = message_of([&] { auto x = v; x.activity_codes = {"astrology"}; cl->visits().add(x); });
    CHECK(message.find("'astrology'") != std::string::npos);
  }
  SECTION("worker, follow-ups, note") {
    refused(t, "visits.worker_id", [&] { auto x = v; x.worker_id.clear(); cl->visits().add(x); });
    refused(t, "visits.follow_ups", [&] { auto x = v; x.follow_ups = {"ok", ""}; cl->visits().add(x); });
    refused(t, "visits.note", [&] { auto x = v; x.note = std::string(k_max_long_text + 1, 'n'); cl->visits().add(x); });
  }
  SECTION("updates are checked against the visit as stored") {
    const auto id = cl->visits().add(v);
    refused(t, "visits.end_at", [&] { cl->visits().update(id, {.end_at = "2026-11-23T07:00:00Z"}); });
    refused(t, "visits.end_at", [&] { cl->visits().update(id, {.start_at = "2026-11-23T09:00:00Z"}); });
    refused(t, "visits.activity_codes", [&] { cl->visits().update(id, {.activity_codes = std::vector<std::string>{"x"}}); });
    refused(t, "visits.follow_ups", [&] { cl->visits().add_follow_up(id, ""); });
    CHECK(error_of([&] { cl->visits().add_follow_up(record_id::generate(), "x"); }) == k_not_found);
    CHECK(error_of([&] { cl->visits().update(record_id::generate(), {.note = "x"}); }) == k_not_found);
    cl->visits().update(id, {.start_at = "2026-11-23T07:30:00Z", .status = visit_status::done});
    CHECK(cl->visits().find(id)->status == visit_status::done);
    CHECK(cl->visits().find(id)->start_at == "2026-11-23T07:30:00Z");
  }
}

TEST_CASE("an update writes only the fields that changed", "[care][records]") {
  care_tablet t;
  const auto client = t.add_client();
  const auto id = t.care->visits().add(t.visit_of(client));
  (void)pending_fields(*t.local, id);  // the create, acknowledged

  t.care->visits().update(id, {.kind = "home_care", .status = visit_status::done});  // kind unchanged
  CHECK(pending_fields(*t.local, id) == std::vector<std::string>{"status"});
  t.care->visits().update(id, {.status = visit_status::done});
  CHECK(t.local->outbox_size() == 0);  // nothing changed: nothing to send
  t.care->visits().update(id, {.activity_codes = std::vector<std::string>{"meals", "escort"}, .note = "nová"});
  CHECK(pending_fields(*t.local, id) == std::vector<std::string>{"activity_codes", "note"});
}

TEST_CASE("fields and collections an app adds to the care schema survive typed writes", "[care][records]") {
  caresync::testing::temp_dir dir;
  auto s = care::schema();
  for (auto& c : s.collections) {
    if (c.name == "visits") c.fields.push_back({"mood", value_kind::integer});
  }
  s.collections.push_back(collection_def{"equipment", {{"label", value_kind::text}}});
  auto local = store::open({dir.file("app.db"), s});
  records care(*local);
  client c;
  c.name = "Anna Vzorová (synthetic)";
  c.org_unit = "kraj/orp-a/team-1";
  const auto client_id = care.clients().add(c);
  visit v;
  v.client_id = client_id;
  v.worker_id = "w-1";
  v.start_at = "2026-11-20T08:00:00Z";
  v.end_at = "2026-11-20T09:00:00Z";
  const auto id = care.visits().add(v);
  local->update("visits", id, {{"mood", std::int64_t{4}}});
  const auto thing = local->create("equipment", {{"label", std::string("chodítko")}});

  care.visits().update(id, {.note = "po návštěvě", .status = visit_status::done});
  const auto fields = local->get("visits", id);
  REQUIRE(fields);
  CHECK(std::get<std::int64_t>(fields->at("mood")) == 4);
  CHECK(std::get<std::string>(fields->at("note")) == "po návštěvě");
  CHECK(local->get("equipment", thing));
}

TEST_CASE("records needs a store opened with the care schema", "[care][records]") {
  caresync::testing::temp_dir dir;
  SECTION("a store without the care collections") {
    auto local = store::open({dir.file("plain.db"), caresync::schema{{collection_def{"visits", {{"note", value_kind::text}}}}}});
    const auto message = message_of([&] { records r(*local); });
    CHECK(message.find("care::schema()") != std::string::npos);
    CHECK(error_of([&] { records r(*local); }) == make_error_code(storage_errc::schema_mismatch));
  }
  SECTION("a care field declared with another policy") {
    auto s = care::schema();
    for (auto& c : s.collections) {
      for (auto& f : c.fields) {
        if (f.name == "note") f.policy = merge_policy::last_writer_wins;
      }
    }
    auto local = store::open({dir.file("lww.db"), s});
    CHECK(message_of([&] { records r(*local); }).find("visits.note") != std::string::npos);
  }
  SECTION("registry administration needs a server-side store") {
    auto local = store::open({dir.file("field.db"), care::schema()});
    CHECK(error_of([&] { records r(*local, role::registry_admin); }) == k_invalid);
    CHECK(message_of([&] { records r(*local, role::registry_admin); }).find("server_side") != std::string::npos);
    CHECK_NOTHROW(records(*local, role::field_worker));
  }
  SECTION("the registry's fields not server_only") {
    auto s = care::schema();
    for (auto& c : s.collections) {
      for (auto& f : c.fields) f.server_only = false;
    }
    auto local = store::open({dir.file("open.db"), s});
    CHECK(message_of([&] { records r(*local); }).find("server_only") != std::string::npos);
  }
  SECTION("the care collections without the search index") {
    auto s = care::schema();
    s.setup_sql.clear();
    auto local = store::open({dir.file("noindex.db"), s});
    CHECK(message_of([&] { records r(*local); }).find("search index") != std::string::npos);
  }
}

TEST_CASE("the example of docs/care.md runs as written", "[care][records]") {
  caresync::testing::temp_dir dir;
  caresync::schema s = care::schema();
  store_options o{dir.file("caresync.db"), s};
  o.server_side = true;  // this test also publishes the registry it searches
  auto local = store::open(o);
  care::records care(*local);
  records admin(*local, role::registry_admin);
  admin.services().add({.org_unit = "kraj", .provider = "Vzorová pečovatelská služba s.r.o.",
                        .service_name = "Pečovatelská služba Horní Lhota", .service_type = "pecovatelska_sluzba",
                        .municipalities = {"Horní Lhota"}});

  record_id c = care.clients().add({.name = "Marie Vzorová (synthetic)", .org_unit = "kraj/orp-a/team-1"});
  record_id v = care.visits().add({.client_id = c, .worker_id = "w-17", .start_at = "2026-11-23T08:00:00Z",
                                   .end_at = "2026-11-23T08:45:00Z", .kind = "home_care",
                                   .activity_codes = {"hygiene", "meals"}});
  care.visits().update(v, {.note = "poznámka", .status = care::visit_status::done});
  care.visits().add_follow_up(v, "zavolat dceři");
  record_id r = care.referrals().add({.client_id = c, .to_unit = "kraj/nemocnice-x/soc", .reason = "propuštění",
                                      .ownership = care::handover::temporary});
  care.referrals().accept(r);
  const auto found = care.services().search({.municipality = "Horní Lhota", .text = "pecovatelska"});
  REQUIRE(found.size() == 1);
  CHECK(found[0].service_name == "Pečovatelská služba Horní Lhota");
  CHECK(care.visits().find(v)->follow_ups == std::vector<std::string>{"zavolat dceři"});
  CHECK(care.clients().find(c)->org_unit == "kraj/nemocnice-x/soc");
}

TEST_CASE("a refused write leaves the app's enclosing transaction usable", "[care][records][validation]") {
  care_tablet t;
  const auto client = t.add_client();
  const auto referral = t.care->referrals().add({.client_id = client, .to_unit = "kraj/jinam", .reason = "důvod"});
  record_id kept;
  t.local->transaction([&] {
    auto bad = t.visit_of(client);
    bad.end_at = "2026-11-23T07:00:00Z";
    CHECK(error_of([&] { t.care->visits().add(bad); }) == k_invalid);
    auto orphan = t.visit_of(record_id::generate());
    CHECK(error_of([&] { t.care->visits().add(orphan); }) == k_invalid);
    CHECK(error_of([&] { t.care->referrals().start(referral); }) == make_error_code(storage_errc::constraint));
    CHECK(error_of([&] { t.care->caregivers().add({.client_id = record_id::generate(), .name = "X"}); }) == k_invalid);
    kept = t.care->visits().add(t.visit_of(client));
  });
  CHECK(t.care->visits().find(kept));
  CHECK(t.local->count("visits") == 1);
}
