// Users and devices as an administrator manages them with caresync-server, over the
// real TLS server: list-users, disable-user (every device of hers revoked and wiped, her
// codes dead), devices --user; add-device while the server runs (no restart) and the
// start line's count; the reason code of each refused line of the audit; and the admin
// listener's connection cap, which keeps /healthz answering past idle connections.

#include "../support/command.hpp"
#include "../support/server_process.hpp"
#include "fixture.hpp"
#include "raw_client.hpp"

#include <caresync/care.hpp>
#include <caresync/protocol/errors.hpp>
#include <caresync/server/config.hpp>
#include <caresync/server/enrollment.hpp>

#include <catch2/catch.hpp>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

using namespace caresync;
using caresync::testing::open_tablet;
using caresync::testing::raw_client;
using caresync::testing::server_process;
using caresync::testing::temp_dir;
using caresync::testing::test_pki;
using caresync::testing::test_server;

namespace {

/// Runs `caresync-server ARGS`; its standard output and exit status.
std::pair<std::string, int> run_server_command(const std::string& args) {
  auto r = caresync::testing::run_command(std::string(CARESYNC_SERVER_BINARY) + " " + args + " 2>/dev/null");
  return {std::move(r.output), r.exit_code};
}

/// The JSON lines of `out`.
std::vector<nlohmann::json> json_lines(const std::string& out) {
  std::vector<nlohmann::json> lines;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) lines.push_back(nlohmann::json::parse(line));
  }
  return lines;
}

/// The code on the line after "enrollment code for ...".
std::string code_in(const std::string& out) {
  const auto at = out.find("enrollment code for ");
  if (at == std::string::npos) return {};
  const auto start = out.find('\n', at) + 1;
  return out.substr(start, out.find('\n', start) - start);
}

/// The last line of `out` (add-device prints the token there).
std::string last_line(std::string out) {
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out.substr(out.rfind('\n') + 1);
}

/// Options for `server` with another device's credentials.
sync_options as_device(const test_server& server, const std::string& device, const std::string& token) {
  auto o = server.options(0);
  o.device_id = device;
  o.token = token;
  return o;
}

/// The protocol error a sync of `tablet` as `o` ends with (an empty code if it synced).
std::error_code sync_error(store& tablet, const sync_options& o) {
  try {
    sync_client(tablet, o).sync();
  } catch (const caresync::error& e) {
    return e.code();
  }
  return {};
}

std::string today_utc() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char day[16];
  std::strftime(day, sizeof day, "%Y-%m-%d", &tm);
  return day;
}

constexpr const char* k_unit = "kraj/orp-benesov/team-2";

}  // namespace

TEST_CASE("disable-user revokes all her devices, which are refused and wiped, and her codes no longer enroll",
          "[security][enrollment][users]") {
  temp_dir dir;
  test_server server(dir);
  const std::string db = "--db " + server.config().database_file;
  const auto [added, added_status] =
      run_server_command("add-user " + db + " --user jana.novakova --name 'Jana Nováková' --role field_worker --org-unit " +
                         k_unit);
  REQUIRE(added_status == 0);
  REQUIRE(run_server_command("add-user " + db + " --user petr.svoboda --name 'Petr Svoboda' --role field_worker "
                             "--org-unit " + std::string(k_unit) + " --code-hours 0")
              .second == 0);
  const auto second = code_in(run_server_command("enroll-code " + db + " --user jana.novakova").first);
  const auto unused = code_in(run_server_command("enroll-code " + db + " --user jana.novakova").first);
  REQUIRE(unused.size() == 19);

  // Two tablets of hers, each with something synced.
  sync_options unenrolled = server.options(0);
  unenrolled.device_id.clear();
  unenrolled.token.clear();
  const auto one = enroll(unenrolled, code_in(added));
  const auto two = enroll(unenrolled, second);
  auto tablet_one = open_tablet(dir, "one");
  auto tablet_two = open_tablet(dir, "two");
  tablet_one->create("visits", {{"note", std::string("visit of tablet one")}, {"org_unit", std::string(k_unit)}});
  tablet_two->create("visits", {{"note", std::string("visit of tablet two")}, {"org_unit", std::string(k_unit)}});
  const auto o1 = as_device(server, one.device_id, one.token);
  const auto o2 = as_device(server, two.device_id, two.token);
  CHECK(sync_client(*tablet_one, o1).sync().pushed == 1);
  CHECK(sync_client(*tablet_two, o2).sync().pushed == 1);
  sync_client(*tablet_one, o1).sync();
  REQUIRE(tablet_one->count("visits") == 2);

  SECTION("list-users and devices --user show her and her two tablets") {
    const auto [listed, status] = run_server_command("list-users " + db);
    REQUIRE(status == 0);
    std::map<std::string, nlohmann::json> users;
    for (auto& j : json_lines(listed)) users[j["user"].get<std::string>()] = j;
    REQUIRE(users.size() == 2);
    CHECK(users["jana.novakova"]["name"] == "Jana Nováková");
    CHECK(users["jana.novakova"]["org_unit"] == k_unit);
    CHECK(users["jana.novakova"]["role"] == "field_worker");
    CHECK(users["jana.novakova"]["state"] == "enabled");
    CHECK(users["jana.novakova"]["devices"] == 2);
    CHECK(users["petr.svoboda"]["devices"] == 0);

    std::set<std::string> hers;
    for (const auto& j : json_lines(run_server_command("devices " + db + " --user jana.novakova").first)) {
      CHECK(j["user"] == "jana.novakova");
      hers.insert(j["device"].get<std::string>());
    }
    CHECK(hers == std::set<std::string>{one.device_id, two.device_id});
    CHECK(json_lines(run_server_command("devices " + db + " --user petr.svoboda").first).empty());
  }

  SECTION("disable-user: both tablets are refused and wiped at their next sync; her codes are dead") {
    const auto [said, status] = run_server_command("disable-user " + db + " --user jana.novakova");
    REQUIRE(status == 0);
    CHECK_THAT(said, Catch::Contains("2 device(s) revoked"));
    CHECK_THAT(said, Catch::Contains("1 unused enrollment code(s) deleted"));

    for (auto* t : {tablet_one.get(), tablet_two.get()}) {
      const auto& o = t == tablet_one.get() ? o1 : o2;
      CHECK(sync_error(*t, o) == make_error_code(protocol_errc::device_revoked));
      CHECK(t->count("visits") == 0);  // wiped
      CHECK(t->cursor() == 0);
    }
    // Her unused code no longer enrolls, and no new one is made for her.
    try {
      (void)enroll(unenrolled, unused);
      FAIL("a disabled user's code enrolled a device");
    } catch (const caresync::error& e) {
      CHECK(e.code() == make_error_code(protocol_errc::enrollment_refused));
    }
    CHECK(run_server_command("enroll-code " + db + " --user jana.novakova").second == 2);
    CHECK_THROWS_AS(server::issue_enrollment_code(server.get().store(), "jana.novakova", std::chrono::hours(1),
                                                  system_time_ms()),
                    caresync::error);

    const auto users = json_lines(run_server_command("list-users " + db).first);
    REQUIRE(users.size() == 2);
    CHECK(users[0]["user"] == "jana.novakova");
    CHECK(users[0]["state"] == "disabled");
    CHECK(users[0]["disabled"].is_string());
    CHECK(users[0]["devices"] == 0);
    CHECK(users[0]["devices_revoked"] == 2);
    CHECK(users[1]["state"] == "enabled");
    for (const auto& j : json_lines(run_server_command("devices " + db + " --user jana.novakova").first)) {
      CHECK(j["revoked"].is_string());
    }

    // Another user's devices go on; an unknown user is an error.
    auto other = open_tablet(dir, "other");
    CHECK(sync_error(*other, server.options(1)) == std::error_code{});
    CHECK(run_server_command("disable-user " + db + " --user nobody").second == 1);
  }
}

TEST_CASE("a device added by add-device while the server runs syncs without a restart and the start line counts it",
          "[security][enrollment][users]") {
  temp_dir dir;
  const auto pki = test_pki::make(dir);
  server::server_config c;
  c.port = 0;
  c.certificate_file = pki.cert_file;
  c.private_key_file = pki.key_file;
  c.database_file = dir.file("server.db");
  c.devices.push_back({"tablet-0", server::hash_token("token-0-of-the-config-file-device")});
  const auto config = dir.file("server.toml");
  caresync::testing::write_server_config(config, c);

  auto proc = std::make_unique<server_process>(CARESYNC_SERVER_BINARY, config);
  sync_options o;
  o.port = proc->port();
  o.ca_file = pki.ca_file;
  o.connect_timeout = std::chrono::milliseconds(2000);
  o.retry.max_attempts = 1;

  const auto [added, status] = run_server_command("add-device --config " + config + " --device-id tablet-added");
  REQUIRE(status == 0);
  CHECK_THAT(added, Catch::Contains("without a restart"));
  const auto token = last_line(added);
  REQUIRE(token.size() == 64);
  // Ids taken, in the config or the database, are refused.
  CHECK(run_server_command("add-device --config " + config + " --device-id tablet-added").second == 2);
  CHECK(run_server_command("add-device --config " + config + " --device-id tablet-0").second == 2);

  // The running server accepts it at once; it is not scoped (no user), as tablet-0.
  auto added_tablet = open_tablet(dir, "added");
  added_tablet->create("visits", {{"note", std::string("from the added device")}, {"org_unit", std::string("anywhere")}});
  auto oa = o;
  oa.device_id = "tablet-added";
  oa.token = token;
  CHECK(sync_client(*added_tablet, oa).sync().pushed == 1);
  auto config_tablet = open_tablet(dir, "config");
  auto oc = o;
  oc.device_id = "tablet-0";
  oc.token = "token-0-of-the-config-file-device";
  CHECK(sync_client(*config_tablet, oc).sync().pulled == 1);

  // revoke-device revokes it like an enrolled one: refused and wiped, its id in the log.
  const auto [second_out, second_status] = run_server_command("add-device --config " + config + " --device-id tablet-gone");
  REQUIRE(second_status == 0);
  REQUIRE(run_server_command("revoke-device --config " + config + " --device tablet-gone").second == 0);
  auto gone = open_tablet(dir, "gone");
  auto og = o;
  og.device_id = "tablet-gone";
  og.token = last_line(second_out);
  CHECK(sync_error(*gone, og) == make_error_code(protocol_errc::device_revoked));
  // An unknown device is logged with the id it claimed.
  auto unknown = o;
  unknown.device_id = "tablet-nobody";
  unknown.token = std::string(64, 'a');
  CHECK(sync_error(*gone, unknown) == make_error_code(protocol_errc::auth_failed));

  proc->stop(SIGTERM);
  const auto log = proc->log();
  CHECK_THAT(log, Catch::Contains("\"device_claimed\":\"tablet-gone\""));
  CHECK_THAT(log, Catch::Contains("\"device_claimed\":\"tablet-nobody\""));
  CHECK(log.find(token) == std::string::npos);

  // Started again: one device of the config and one of the database may sync (the
  // revoked one is not counted).
  proc = std::make_unique<server_process>(CARESYNC_SERVER_BINARY, config);
  proc->stop(SIGTERM);
  const auto started = proc->log();
  CHECK_THAT(started, Catch::Contains("\"devices\":2,\"devices_configured\":1,\"devices_in_database\":1"));
}

TEST_CASE("every refused line of the audit carries the reason code of the refusal", "[audit][security][users]") {
  temp_dir dir;
  test_server server(dir);
  server.config().care_rules = true;
  server.config().max_value_bytes = 1000;
  server.restart();
  auto& store = server.get().store();

  // A device of the config file (not scoped) breaks a care rule, a referral's first
  // state and a value limit; one change is stored.
  auto tablet = store::open(store_options{dir.file("care.db"), care::schema(), durability::normal});
  const auto client = tablet->create("clients", {{"name", std::string("Marie Vzorová (synthetic)")},
                                                 {"org_unit", std::string("kraj/orp-kolin")}});
  tablet->create("visits", {{"client_id", client.to_string()}, {"org_unit", std::string("kraj/orp-kolin")},
                            {"kind", std::string("teleportation")}});
  tablet->create("referrals", {{"client_id", client.to_string()}, {"state", std::string("closed")}});
  tablet->create("clients", {{"name", std::string(2000, 'x')}, {"org_unit", std::string("kraj/orp-kolin")}});
  CHECK(sync_client(*tablet, server.options(0)).sync().quarantined == 3);

  // An enrolled user's device writes outside her unit.
  store.add_user(server::user_record{"jana.novakova", "Jana Nováková", "field_worker", k_unit, 1});
  sync_options unenrolled = server.options(0);
  unenrolled.device_id.clear();
  unenrolled.token.clear();
  const auto jana =
      enroll(unenrolled, server::issue_enrollment_code(store, "jana.novakova", std::chrono::hours(1), system_time_ms()).code);
  auto hers = store::open(store_options{dir.file("hers.db"), care::schema(), durability::normal});
  hers->create("clients", {{"name", std::string("Jan Vzor (synthetic)")}, {"org_unit", std::string("kraj/orp-kolin")}});
  CHECK(sync_client(*hers, as_device(server, jana.device_id, jana.token)).sync().quarantined == 1);

  // The store's audit and the CSV export name each reason.
  std::multiset<std::string> reasons;
  store.audit(server::audit_query{0, system_time_ms() + 1000, {}, {}}, [&](const server::audit_entry& e) {
    if (e.action == "refused") reasons.insert(e.reason);
    if (e.action != "refused") CHECK(e.reason.empty());
  });
  CHECK(reasons == std::multiset<std::string>{"care_rule", "limit_exceeded", "out_of_scope", "referral_transition"});

  const auto [csv, status] = run_server_command("audit --db " + server.config().database_file + " --from " + today_utc() +
                                                " --to " + today_utc());
  REQUIRE(status == 0);
  std::istringstream lines(csv);
  std::string header;
  std::getline(lines, header);
  CHECK(header == "at,device,user,action,collection,record_id,seq,reason");
  std::multiset<std::string> exported;
  for (std::string line; std::getline(lines, line);) {
    // Names are quoted and hold no comma here: the last column is the reason.
    const auto reason = line.substr(line.rfind(',') + 1);
    if (line.find(",refused,") != std::string::npos) {
      exported.insert(reason);
    } else {
      CHECK(reason.empty());
    }
  }
  CHECK(exported == reasons);
}

TEST_CASE("idle connections past the admin cap do not keep /healthz waiting", "[admin][security][users]") {
  temp_dir dir;
  test_server server(dir, 1);
  server.config().admin_enabled = true;
  server.config().admin_port = 0;
  const auto port = [&] {
    server.restart();
    return server.get().admin_port();
  };
  const auto healthz_ms = [](std::uint16_t admin_port) {
    httplib::Client admin("127.0.0.1", admin_port);
    admin.set_connection_timeout(1, 0);
    admin.set_read_timeout(1, 0);
    const auto started = std::chrono::steady_clock::now();
    const auto res = admin.Get("/healthz");
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count();
    INFO("answered after " << ms << " ms");
    REQUIRE(res);
    CHECK(res->status == 200);
    CHECK(res->body == "ok\n");
    return ms;
  };

  SECTION("the default cap of 8: 16 idle connections, and /healthz answers at once") {
    CHECK(server.config().admin_max_connections == 8);
    const auto admin_port = port();
    std::vector<std::unique_ptr<raw_client>> idle;
    for (int i = 0; i < 16; ++i) idle.push_back(std::make_unique<raw_client>(admin_port, "127.0.0.72"));
    CHECK(healthz_ms(admin_port) < 1000);
    httplib::Client admin("127.0.0.1", admin_port);
    const auto metrics = admin.Get("/metrics");
    REQUIRE(metrics);
    // 16 idle and /healthz: 9 waiting ones gave way (the /metrics request may make a 10th).
    const std::string sample = "caresync_admin_connections_closed_total{reason=\"waiting\"} ";
    const auto at = metrics->body.find(sample);
    REQUIRE(at != std::string::npos);
    const auto waiting = std::stoi(metrics->body.substr(at + sample.size()));
    CHECK(waiting >= 9);
    CHECK(waiting <= 10);

    // 48 more (the listener before the cap, a thread per connection, answered after ~5 s).
    for (int i = 0; i < 48; ++i) idle.push_back(std::make_unique<raw_client>(admin_port, "127.0.0.72"));
    CHECK(healthz_ms(admin_port) < 1000);
  }
  SECTION("a cap of 2 from [admin] max_connections: 6 idle connections, and /healthz answers at once") {
    const auto toml = dir.file("admin.toml");
    {
      std::ofstream out(toml);
      out << "certificate_file = \"c\"\nprivate_key_file = \"k\"\n[admin]\nenabled = true\nmax_connections = 2\n";
    }
    CHECK(server::load_config(toml).admin_max_connections == 2);
    server.config().admin_max_connections = 2;
    const auto admin_port = port();
    std::vector<std::unique_ptr<raw_client>> idle;
    for (int i = 0; i < 6; ++i) idle.push_back(std::make_unique<raw_client>(admin_port, "127.0.0.72"));
    CHECK(healthz_ms(admin_port) < 1000);
  }
  SECTION("a cap of 0 is refused") {
    auto c = server.config();
    c.admin_max_connections = 0;
    CHECK_THROWS_WITH(server::validate(c), Catch::Contains("admin.max_connections"));
  }
}
