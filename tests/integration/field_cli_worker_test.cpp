// The field CLI as a field worker uses it (issue 21): local times in the forms Czech
// people type, errors that name the option typed, clients found by name, edits, what
// waits and what the server refused, conflicts with who and when, a forgiving registry
// search, and Czech messages. Through the caresync-field binary, with TZ=Europe/Prague,
// against the real server over TLS where a server is needed.

#include "../support/field_cli.hpp"
#include "fixture.hpp"

#include <caresync/care.hpp>

#include <catch2/catch.hpp>

#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#ifdef CARESYNC_FIELD_BINARY

using namespace caresync;
using caresync::testing::temp_dir;
using caresync::testing::test_server;

namespace {

using caresync::testing::first_line;
using caresync::testing::run_result;
const auto& quoted = caresync::testing::shell_quoted;

/// Runs caresync-field on store `tablet` in Prague's zone, with messages in `lang`
/// (the LANG of the child; LC_ALL, LC_MESSAGES and LANGUAGE unset).
run_result field(const temp_dir& dir, const std::string& tablet, const std::vector<std::string>& args,
                 const std::string& lang = "C.UTF-8") {
  return caresync::testing::run_field(CARESYNC_FIELD_BINARY, dir, tablet, args,
                                      "env -u LC_ALL -u LC_MESSAGES -u LANGUAGE TZ=Europe/Prague LANG=" + quoted(lang));
}

std::string add_client(const temp_dir& dir, const std::string& tablet, const std::string& name,
                       const std::string& municipality = "") {
  std::vector<std::string> args{"add-client", "--name", name, "--org-unit", "kraj/orp-a/team-1"};
  if (!municipality.empty()) args.insert(args.end(), {"--municipality", municipality});
  const auto r = field(dir, tablet, args);
  REQUIRE(r.status == 0);
  return first_line(r.out);
}

std::unique_ptr<store> open_care(const temp_dir& dir, const std::string& tablet) {
  return store::open(store_options{dir.file(tablet + ".db"), care::schema()});
}

void configure(const temp_dir& dir, const std::string& tablet, std::uint16_t port, const std::string& ca, int device) {
  const auto r = field(dir, tablet,
                       {"configure", "--host", "127.0.0.1", "--port", std::to_string(port), "--ca", ca, "--device-id",
                        test_server::device(device), "--token", test_server::token(device)});
  REQUIRE(r.status == 0);
}

}  // namespace

TEST_CASE("field CLI: times are typed and shown in local time, stored UTC", "[care][cli]") {
  temp_dir dir;
  const auto client = add_client(dir, "jana", "Marie Vzorová (synthetic)");
  const auto visit_at = [&](const std::string& start, const std::string& end) {
    const auto r = field(dir, "jana", {"record-visit", "--client", client, "--worker", "jana", "--start", start, "--end", end});
    INFO(r.err);
    REQUIRE(r.status == 0);
    const auto id = record_id::parse(first_line(r.out));
    REQUIRE(id);
    auto s = open_care(dir, "jana");
    const auto v = care::records(*s).visits().find(*id);
    REQUIRE(v);
    return std::pair{v->start_at, v->end_at};
  };

  SECTION("Czech forms, winter time (UTC+1): an end given as a time alone is on the start's day") {
    CHECK(visit_at("23. 11. 2026 8:00", "9:15") == std::pair<std::string, std::string>{"2026-11-23T07:00:00Z", "2026-11-23T08:15:00Z"});
    CHECK(visit_at("23.11.2026 8:00", "23.11.2026 8:45").second == "2026-11-23T07:45:00Z");
    CHECK(visit_at("23.11.2026 14.30", "15.00").first == "2026-11-23T13:30:00Z");
  }
  SECTION("ISO forms: local without a zone, UTC with Z, an offset") {
    CHECK(visit_at("2026-11-23 08:00", "2026-11-23T09:00").first == "2026-11-23T07:00:00Z");
    CHECK(visit_at("2026-11-23T08:00:00Z", "2026-11-23T09:00:00Z").first == "2026-11-23T08:00:00Z");
    CHECK(visit_at("2026-11-23T08:00+01:00", "2026-11-23T09:00+01:00").first == "2026-11-23T07:00:00Z");
  }
  SECTION("summer time (UTC+2), and the night the clocks go back") {
    CHECK(visit_at("15.7.2026 8:00", "9:00").first == "2026-07-15T06:00:00Z");
    // 25.10.2026 2:30 happens twice: the first, still in summer time, is taken.
    CHECK(visit_at("25.10.2026 2:30", "4:00") == std::pair<std::string, std::string>{"2026-10-25T00:30:00Z", "2026-10-25T03:00:00Z"});
  }

  SECTION("visits --date lists a local day, shown in local time") {
    visit_at("23.11.2026 8:00", "9:15");
    visit_at("23.11.2026 0:30", "1:00");   // 22.11. 23:30 UTC: still the 23rd here
    visit_at("22.11.2026 23:30", "23:45");  // 22.11. 22:30 UTC
    visit_at("24.11.2026 0:10", "0:20");   // 23.11. 23:10 UTC: the 24th here
    auto r = field(dir, "jana", {"visits", "--date", "23.11.2026"});
    REQUIRE(r.status == 0);
    CHECK_THAT(r.out, Catch::Contains("08:00-09:15") && Catch::Contains("00:30-01:00") && Catch::Contains("Marie Vzorová"));
    CHECK_THAT(r.out, !Catch::Contains("23:30") && !Catch::Contains("00:10"));
    CHECK_THAT(r.err, Catch::Contains("2 visit(s) on 23.11.2026"));
    r = field(dir, "jana", {"visits", "--date", "2026-11-22"});
    CHECK_THAT(r.out, Catch::Contains("23:30-23:45"));
    CHECK_THAT(r.err, Catch::Contains("1 visit(s)"));
  }

  SECTION("a day of 23 hours: the spring change") {
    visit_at("29.3.2026 23:30", "23:45");  // 21:30 UTC
    visit_at("29.3.2026 0:30", "1:00");    // 28.3. 23:30 UTC
    const auto r = field(dir, "jana", {"visits", "--date", "29.3.2026"});
    CHECK_THAT(r.err, Catch::Contains("2 visit(s)"));
    CHECK_THAT(r.out, Catch::Contains("23:30-23:45") && Catch::Contains("00:30-01:00"));
  }
}

TEST_CASE("field CLI: a bad value is an error naming the option typed", "[care][cli]") {
  temp_dir dir;
  const auto client = add_client(dir, "jana", "Marie Vzorová (synthetic)");
  SECTION("visits --date") {
    for (const char* bad : {"32.11.2026", "2026-13-01", "tomorrow", "23.11."}) {
      const auto r = field(dir, "jana", {"visits", "--date", bad});
      INFO(bad);
      CHECK(r.status == 2);
      CHECK_THAT(r.err, Catch::Contains("--date") && Catch::Contains(bad));
      CHECK(r.out.empty());
    }
  }
  SECTION("record-visit --start and --end") {
    auto r = field(dir, "jana", {"record-visit", "--client", client, "--worker", "jana", "--start", "at eight", "--end", "9:00"});
    CHECK(r.status == 2);
    CHECK_THAT(r.err, Catch::Contains("--start 'at eight'") && !Catch::Contains("visits."));
    // The hour the clocks skip does not exist.
    r = field(dir, "jana", {"record-visit", "--client", client, "--worker", "jana", "--start", "29.3.2026 2:30", "--end", "3:30"});
    CHECK(r.status == 2);
    CHECK_THAT(r.err, Catch::Contains("--start"));
    r = field(dir, "jana", {"record-visit", "--client", client, "--worker", "jana", "--start", "23.11.2026 10:00", "--end", "9:00"});
    CHECK(r.status == 2);
    CHECK_THAT(r.err, Catch::Contains("--end must be after --start") && !Catch::Contains("visits."));
    r = field(dir, "jana", {"record-visit", "--client", "nobody", "--worker", "jana", "--start", "8:00", "--end", "9:00"});
    CHECK(r.status == 2);
    CHECK_THAT(r.err, Catch::Contains("--client 'nobody' is not a record id"));
    r = field(dir, "jana", {"record-visit", "--client", client, "--worker", "jana", "--start", "8:00", "--end", "9:00", "--kind", "chat"});
    CHECK(r.status == 2);
    CHECK_THAT(r.err, Catch::Contains("--kind 'chat'") && !Catch::Contains("visits."));
    // Nothing was written.
    CHECK(open_care(dir, "jana")->count("visits") == 0);
  }
}

TEST_CASE("field CLI: clients are listed, found by name without regard to case and diacritics, and edited", "[care][cli]") {
  temp_dir dir;
  const auto marie = add_client(dir, "jana", "Marie Nováková (synthetic)", "Horní Lhota");
  const auto jan = add_client(dir, "jana", "Jan Novák (synthetic)");
  add_client(dir, "jana", "Eva Černá (synthetic)");

  auto r = field(dir, "jana", {"clients"});
  REQUIRE(r.status == 0);
  CHECK_THAT(r.out, Catch::Contains(marie) && Catch::Contains(jan) && Catch::Contains("Eva Černá"));
  CHECK_THAT(r.err, Catch::Contains("3 client(s)"));

  r = field(dir, "jana", {"clients", "novakova"});
  CHECK_THAT(r.out, Catch::Contains(marie) && !Catch::Contains(jan));
  CHECK_THAT(r.err, Catch::Contains("1 client(s)"));
  r = field(dir, "jana", {"clients", "NOVÁK"});  // a word's start: both
  CHECK_THAT(r.out, Catch::Contains(marie) && Catch::Contains(jan));
  r = field(dir, "jana", {"clients", "cerna eva"});
  CHECK_THAT(r.out, Catch::Contains("Eva Černá") && !Catch::Contains(marie));
  r = field(dir, "jana", {"clients", "svobodova"});
  CHECK(r.status == 0);
  CHECK(r.out.empty());
  CHECK_THAT(r.err, Catch::Contains("no client on this tablet has a name with 'svobodova'"));

  r = field(dir, "jana", {"edit-client", marie, "--municipality", "Dolní Lhota", "--birth-date", "3.4.1941", "--status", "paused"});
  REQUIRE(r.status == 0);
  {
    auto s = open_care(dir, "jana");
    const auto c = care::records(*s).clients().find(*record_id::parse(marie));
    CHECK(c->municipality == "Dolní Lhota");
    CHECK(c->birth_date == "1941-04-03");
    CHECK(c->status == care::client_status::paused);
    CHECK(c->name == "Marie Nováková (synthetic)");  // not given: unchanged
  }
  r = field(dir, "jana", {"edit-client", marie, "--birth-date", "3.4.2999"});
  CHECK(r.status == 2);
  CHECK_THAT(r.err, Catch::Contains("--birth-date") && !Catch::Contains("clients."));
  r = field(dir, "jana", {"edit-client", marie, "--status", "gone"});
  CHECK(r.status == 2);
  CHECK_THAT(r.err, Catch::Contains("--status"));
}

TEST_CASE("field CLI: edit-visit changes only what is given, in local time", "[care][cli]") {
  temp_dir dir;
  const auto client = add_client(dir, "jana", "Marie Vzorová (synthetic)");
  auto r = field(dir, "jana", {"record-visit", "--client", client, "--worker", "jana", "--start", "23.11.2026 8:00", "--end",
                               "9:00", "--note", "brought the forms"});
  REQUIRE(r.status == 0);
  const auto visit = first_line(r.out);

  r = field(dir, "jana", {"edit-visit", visit, "--start", "9:30", "--end", "10:15", "--status", "no_one_home"});
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK_THAT(r.out, Catch::Contains("23.11.2026 09:30-10:15"));
  {
    auto s = open_care(dir, "jana");
    const auto v = care::records(*s).visits().find(*record_id::parse(visit));
    CHECK(v->start_at == "2026-11-23T08:30:00Z");  // the visit's day kept
    CHECK(v->end_at == "2026-11-23T09:15:00Z");
    CHECK(v->status == care::visit_status::no_one_home);
    CHECK(v->note == "brought the forms");
  }
  r = field(dir, "jana", {"edit-visit", visit, "--end", "9:00"});  // before the start
  CHECK(r.status == 2);
  CHECK_THAT(r.err, Catch::Contains("--end must be after --start"));
  r = field(dir, "jana", {"edit-visit", visit, "--note", "forms signed"});
  REQUIRE(r.status == 0);
  auto s = open_care(dir, "jana");
  CHECK(care::records(*s).visits().find(*record_id::parse(visit))->note == "forms signed");
}

TEST_CASE("field CLI: the registry search forgives case and diacritics in the municipality, and counts", "[care][cli]") {
  temp_dir dir;
  {
    // The registry as the office publishes it (written here directly, as a sync would).
    store_options o{dir.file("jana.db"), care::schema()};
    o.server_side = true;
    auto s = store::open(o);
    care::records admin(*s, care::role::registry_admin);
    for (int i = 0; i < 3; ++i) {
      admin.services().add({.org_unit = "kraj",
                            .provider = "Charita (synthetic)",
                            .service_name = "Pečovatelská služba " + std::to_string(i),
                            .service_type = "pecovatelska_sluzba",
                            .municipalities = {"Horní Lhota", "Dolní Lhota"}});
    }
    admin.services().add({.org_unit = "kraj",
                          .provider = "Diakonie (synthetic)",
                          .service_name = "Osobní asistence",
                          .service_type = "osobni_asistence",
                          .municipalities = {"Horní Lhotka"}});
  }
  auto r = field(dir, "jana", {"search", "--municipality", "horni lhota"});
  REQUIRE(r.status == 0);
  CHECK_THAT(r.out, Catch::Contains("Pečovatelská služba 0") && Catch::Contains("Pečovatelská služba 2"));
  CHECK_THAT(r.out, !Catch::Contains("Osobní asistence"));  // Horní Lhotka is another place
  CHECK_THAT(r.err, Catch::Contains("3 service(s) found"));
  r = field(dir, "jana", {"search", "pecovatelska", "--municipality", "HORNÍ LHOTA"});
  CHECK_THAT(r.err, Catch::Contains("3 service(s) found"));
  r = field(dir, "jana", {"search", "--municipality", "horni lhotka"});
  CHECK_THAT(r.out, Catch::Contains("Osobní asistence"));
  CHECK_THAT(r.err, Catch::Contains("1 service(s) found"));
  r = field(dir, "jana", {"search", "asistence", "--municipality", "Dolní Lhota"});
  CHECK(r.status == 0);
  CHECK(r.out.empty());
  CHECK_THAT(r.err, Catch::Contains("no service in the registry on this tablet matches"));
  r = field(dir, "jana", {"search", "--municipality", "Praha"});
  CHECK_THAT(r.err, Catch::Contains("no service"));
}

TEST_CASE("field CLI: pending shows what waits and what the server refused, with why", "[sync][care][cli][quarantine]") {
  temp_dir dir;
  test_server server(dir);
  server.config().max_value_bytes = 1000;
  server.restart();
  configure(dir, "jana", server.port(), server.pki().ca_file, 0);
  const auto client = add_client(dir, "jana", "Marie Vzorová (synthetic)");

  auto r = field(dir, "jana", {"pending"});
  REQUIRE(r.status == 0);
  CHECK_THAT(r.out, Catch::Contains("Waiting to be sent with the next sync (1 change)") &&
                        Catch::Contains("client Marie Vzorová (synthetic)") && Catch::Contains(client));
  CHECK_THAT(r.out, Catch::Contains("The server has refused nothing."));

  r = field(dir, "jana", {"record-visit", "--client", client, "--worker", "jana", "--start", "23.11.2026 8:00", "--end",
                          "9:00", "--note", std::string(1500, 'x')});
  REQUIRE(r.status == 0);
  const auto visit = first_line(r.out);
  r = field(dir, "jana", {"sync"});
  REQUIRE(r.status == 0);
  CHECK_THAT(r.out, Catch::Contains("1 refused") && Catch::Contains("'pending' shows which and why"));

  r = field(dir, "jana", {"pending"});
  REQUIRE(r.status == 0);
  CHECK_THAT(r.out, Catch::Contains("Nothing waits to be sent"));
  CHECK_THAT(r.out, Catch::Contains("Refused by the server (1 change") &&
                        Catch::Contains("visit of Marie Vzorová (synthetic), 23.11.2026 08:00") && Catch::Contains(visit));
  CHECK_THAT(r.out, Catch::Contains("larger than the server takes") && Catch::Contains("the server said:") &&
                        Catch::Contains("1000"));
  CHECK_THAT(r.out, !Catch::Contains("xxxx"));

  // Corrected, sent, and the refused change forgotten.
  REQUIRE(field(dir, "jana", {"edit-visit", visit, "--note", "short now"}).status == 0);
  r = field(dir, "jana", {"pending"});
  CHECK_THAT(r.out, Catch::Contains("Waiting to be sent with the next sync (1 change)"));
  REQUIRE(field(dir, "jana", {"sync"}).status == 0);
  auto held = open_care(dir, "jana")->quarantined();
  REQUIRE(held.size() == 1);
  r = field(dir, "jana", {"pending", "--drop", "999"});
  CHECK(r.status == 2);
  CHECK_THAT(r.err, Catch::Contains("no refused change number 999"));
  r = field(dir, "jana", {"pending", "--drop", std::to_string(held[0].id)});
  REQUIRE(r.status == 0);
  r = field(dir, "jana", {"pending"});
  CHECK_THAT(r.out, Catch::Contains("Nothing waits") && Catch::Contains("The server has refused nothing."));
  CHECK(open_care(dir, "jana")->is_synced("visits", *record_id::parse(visit)));
}

TEST_CASE("field CLI: after a failed sync the worker hears that the work is safe, and how much waits", "[sync][cli][faults]") {
  temp_dir dir;
  std::uint16_t port = 0;
  std::string ca;
  {
    test_server server(dir);
    port = server.port();
    ca = server.pki().ca_file;
    configure(dir, "jana", port, ca, 0);
  }  // the server is gone
  const auto client = add_client(dir, "jana", "Marie Vzorová (synthetic)");
  REQUIRE(field(dir, "jana", {"record-visit", "--client", client, "--worker", "jana", "--start", "8:00", "--end", "9:00"}).status == 0);
  auto r = field(dir, "jana", {"sync"});
  CHECK(r.status == 1);
  CHECK_THAT(r.err, Catch::Contains("the sync failed") && Catch::Contains("everything recorded is safe on this tablet") &&
                        Catch::Contains("(2 changes wait to be sent)"));
  r = field(dir, "jana", {"sync"}, "cs_CZ.UTF-8");
  CHECK(r.status == 1);
  CHECK_THAT(r.err, Catch::Contains("vše zapsané je v bezpečí na tomto tabletu") && Catch::Contains("(2 změny čekají na odeslání)"));
}

TEST_CASE("field CLI: conflicts say for which client, who wrote each value and when, and dismiss closes one", "[sync][care][cli]") {
  temp_dir dir;
  test_server server(dir);
  configure(dir, "jana", server.port(), server.pki().ca_file, 0);
  configure(dir, "petr", server.port(), server.pki().ca_file, 1);
  const auto client = add_client(dir, "jana", "Marie Vzorová (synthetic)");
  auto r = field(dir, "jana", {"record-visit", "--client", client, "--worker", "jana", "--start", "23.11.2026 8:00", "--end",
                               "9:00", "--note", "first words"});
  const auto visit = first_line(r.out);
  REQUIRE(field(dir, "jana", {"sync"}).status == 0);
  REQUIRE(field(dir, "petr", {"sync"}).status == 0);
  // Both edit the note without seeing the other's edit.
  REQUIRE(field(dir, "jana", {"edit-visit", visit, "--note", "Jana's words"}).status == 0);
  REQUIRE(field(dir, "petr", {"edit-visit", visit, "--note", "Petr's words"}).status == 0);
  REQUIRE(field(dir, "jana", {"sync"}).status == 0);
  r = field(dir, "petr", {"sync"});
  REQUIRE(r.status == 0);
  CHECK_THAT(r.out, Catch::Contains("'conflicts' shows them"));

  r = field(dir, "petr", {"conflicts"});
  REQUIRE(r.status == 0);
  CHECK_THAT(r.err, Catch::Contains("1 open conflict(s)"));
  CHECK_THAT(r.out, Catch::Contains("visit of Marie Vzorová (synthetic), 23.11.2026 08:00: field note"));
  CHECK_THAT(r.out, Catch::Contains("\"Jana's words\"") && Catch::Contains("\"Petr's words\""));
  CHECK_THAT(r.out, Catch::Contains("written on this tablet, ") && Catch::Contains("written on another tablet or the office (node "));
  // When: today, in local time (the edits were just made), as date(1) says in Prague.
  const auto day_file = dir.file("day.txt");
  REQUIRE(std::system(("env TZ=Europe/Prague date +%d.%m.%Y > " + quoted(day_file)).c_str()) == 0);
  const auto day = first_line([&] {
    std::ifstream in(day_file);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }());
  CHECK_THAT(r.out, Catch::Contains(std::string(", ") + day + " "));

  r = field(dir, "petr", {"dismiss", "--collection", "visits", "--id", visit, "--field", "status"});
  CHECK(r.status == 2);
  CHECK_THAT(r.err, Catch::Contains("no open conflict in field 'status'"));
  r = field(dir, "petr", {"dismiss", "--collection", "visits", "--id", visit, "--field", "note"});
  REQUIRE(r.status == 0);
  r = field(dir, "petr", {"conflicts"});
  CHECK_THAT(r.err, Catch::Contains("0 open conflict(s)"));
  // The dismissal syncs: Jana's tablet closes it too.
  REQUIRE(field(dir, "petr", {"sync"}).status == 0);
  REQUIRE(field(dir, "jana", {"sync"}).status == 0);
  CHECK(open_care(dir, "jana")->conflict_count() == 0);
}

#ifdef CARESYNC_FIELD_CZECH
TEST_CASE("field CLI: messages are Czech when the locale is Czech, English otherwise", "[care][cli]") {
  temp_dir dir;
  const auto client = add_client(dir, "jana", "Marie Vzorová (synthetic)");
  REQUIRE(field(dir, "jana", {"record-visit", "--client", client, "--worker", "jana", "--start", "23.11.2026 8:00", "--end", "9:00"}).status == 0);

  auto r = field(dir, "jana", {"visits", "--date", "23.11.2026"}, "cs_CZ.UTF-8");
  CHECK_THAT(r.err, Catch::Contains("1 návštěva dne 23.11.2026"));
  r = field(dir, "jana", {"visits", "--date", "24.11.2026"}, "cs_CZ.UTF-8");
  CHECK_THAT(r.err, Catch::Contains("0 návštěv dne 24.11.2026"));
  r = field(dir, "jana", {"clients"}, "cs_CZ.UTF-8");
  CHECK_THAT(r.err, Catch::Contains("1 klient"));
  r = field(dir, "jana", {"visits", "--date", "zítra"}, "cs_CZ.UTF-8");
  CHECK(r.status == 2);
  CHECK_THAT(r.err, Catch::Contains("--date 'zítra' není datum"));
  r = field(dir, "jana", {"record-visit", "--client", client, "--worker", "jana", "--start", "10:00", "--end", "9:00"}, "cs_CZ.UTF-8");
  CHECK_THAT(r.err, Catch::Contains("--end musí být později než --start"));
  r = field(dir, "jana", {"sync"}, "cs_CZ");
  CHECK_THAT(r.err, Catch::Contains("tento tablet zatím nemá server"));
  r = field(dir, "jana", {"pending"}, "cs_CZ.UTF-8");
  CHECK_THAT(r.out, Catch::Contains("Čeká na odeslání při příští synchronizaci (2 změny)"));

  // English otherwise; LC_ALL outranks LANG.
  for (const char* lang : {"C", "en_GB.UTF-8", "de_DE.UTF-8"}) {
    r = field(dir, "jana", {"visits", "--date", "23.11.2026"}, lang);
    INFO(lang);
    CHECK_THAT(r.err, Catch::Contains("1 visit(s) on 23.11.2026"));
  }
  const auto out = dir.file("lcall.txt");
  const auto cmd = std::string("env LC_ALL=C LANG=cs_CZ.UTF-8 TZ=Europe/Prague '") + CARESYNC_FIELD_BINARY + "' --store '" +
                   dir.file("jana.db") + "' visits --date 23.11.2026 2> '" + out + "' > /dev/null";
  REQUIRE(std::system(cmd.c_str()) == 0);
  std::ifstream in(out);
  std::stringstream text;
  text << in.rdbuf();
  CHECK_THAT(text.str(), Catch::Contains("1 visit(s)"));
}
#endif

#endif
