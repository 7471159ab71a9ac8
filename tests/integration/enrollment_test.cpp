// Enrollment and revocation over the real TLS server: a one-time code gives a device its
// id and token (the server keeps only the token's hash); a used, expired or unknown code
// is refused with a clear reason; a revoked device is refused, told to wipe, and its
// store is wiped while other devices go on.

#include "../support/command.hpp"
#include "../support/sql_probe.hpp"
#include "fixture.hpp"

#include <caresync/protocol/errors.hpp>
#include <caresync/protocol/sha256.hpp>
#include <caresync/server/enrollment.hpp>

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <utility>
#include <string>

using namespace caresync;
using caresync::testing::open_tablet;
using caresync::testing::sql_column;
using caresync::testing::sql_int;
using caresync::testing::temp_dir;
using caresync::testing::test_server;

namespace {

server::user_record jana() {
  return server::user_record{"jana.novakova", "Jana Nováková", "field_worker", "kraj/orp-benesov/team-2", 1};
}

/// Options to reach `server` with no credentials yet.
sync_options unenrolled(test_server& server) {
  auto o = server.options(0);
  o.device_id.clear();
  o.token.clear();
  return o;
}

/// The enrollment_refused message for `code`, or "" if it was accepted.
std::string refusal(test_server& server, const std::string& code) {
  try {
    (void)enroll(unenrolled(server), code);
  } catch (const caresync::error& e) {
    CHECK(e.code() == make_error_code(protocol_errc::enrollment_refused));
    CHECK_FALSE(is_transient(e.code()));
    return e.what();
  }
  return {};
}

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

TEST_CASE("a one-time code enrolls a device, which then syncs with the token it received", "[security][enrollment]") {
  temp_dir dir;
  test_server server(dir);
  auto& store = server.get().store();
  store.add_user(jana());
  const auto now = system_time_ms();
  const auto issued = server::issue_enrollment_code(store, "jana.novakova", std::chrono::hours(72), now);
  REQUIRE(issued.code.size() == 19);  // XXXX-XXXX-XXXX-XXXX
  CHECK(issued.expires_ms == now + 72 * 3'600'000ULL);

  // Typed in lower case without dashes: the same code.
  std::string typed;
  for (const char c : issued.code) {
    if (c != '-') typed += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  const auto got = enroll(unenrolled(server), typed);
  CHECK(got.user_id == "jana.novakova");
  CHECK(got.user_name == "Jana Nováková");
  CHECK(got.device_id.rfind("d-", 0) == 0);
  CHECK(got.token.size() == 64);

  // The server keeps the token's and the code's hashes, never the secrets themselves.
  const auto device = store.find_device(got.device_id);
  REQUIRE(device);
  CHECK(device->user_id == "jana.novakova");
  CHECK(device->token_sha256 == sha256_hex(got.token));
  const auto db = server.config().database_file;
  CHECK(sql_int(db, "SELECT count(*) FROM enrollments WHERE used_ms IS NOT NULL AND device_id = '" + got.device_id + "'") == 1);
  server.stop();
  for (const auto& file : {db, db + "-wal"}) {
    const auto bytes = file_bytes(file);
    CHECK(bytes.find(got.token) == std::string::npos);
    CHECK(bytes.find(server::normalize_code(issued.code)) == std::string::npos);
  }
  server.start();

  // The credentials work for sync, and another device receives what this one wrote (a
  // client of Jana's unit: an enrolled device is scoped).
  auto a = open_tablet(dir, "a");
  a->create("clients", {{"name", std::string("Klient")}, {"municipality", std::string("Benešov")},
                        {"org_unit", jana().org_unit}});
  auto o = server.options(0);
  o.device_id = got.device_id;
  o.token = got.token;
  CHECK(sync_client(*a, o).sync().pushed == 1);
  auto b = open_tablet(dir, "b");
  sync_client(*b, server.options(1)).sync();
  CHECK(b->state_digest() == a->state_digest());

  // A wrong token for the enrolled device is refused like any wrong token.
  o.token = std::string(64, 'a');
  try {
    sync_client(*a, o).sync();
    FAIL("a wrong token was accepted");
  } catch (const caresync::error& e) {
    CHECK(e.code() == make_error_code(protocol_errc::auth_failed));
  }
}

TEST_CASE("a used, an expired and an unknown code are refused, each with its reason", "[security][enrollment]") {
  temp_dir dir;
  test_server server(dir);
  auto& store = server.get().store();
  store.add_user(jana());
  const auto now = system_time_ms();
  const auto once = server::issue_enrollment_code(store, "jana.novakova", std::chrono::hours(1), now);
  CHECK(refusal(server, once.code).empty());
  CHECK_THAT(refusal(server, once.code), Catch::Contains("used already"));

  const auto old = server::issue_enrollment_code(store, "jana.novakova", std::chrono::hours(1), now - 2 * 3'600'000ULL);
  CHECK_THAT(refusal(server, old.code), Catch::Contains("expired"));
  CHECK_THAT(refusal(server, "ABCD-EFGH-JKMN-PQRS"), Catch::Contains("not known"));
  CHECK_THAT(refusal(server, std::string(300, 'x')), Catch::Contains("not known"));

  // Only the one good code made a device; a code for a user who does not exist is not made.
  CHECK(store.devices().size() == 1);
  CHECK_THROWS_AS(server::issue_enrollment_code(store, "nobody", std::chrono::hours(1), now), caresync::error);
  // Enrollment without a way to verify the server, or without a code, is refused here.
  auto bare = unenrolled(server);
  bare.ca_file.clear();
  CHECK_THROWS_AS(enroll(bare, once.code), caresync::error);
  CHECK_THROWS_AS(enroll(unenrolled(server), ""), caresync::error);
}

TEST_CASE("users are checked before they are added", "[security][enrollment]") {
  auto u = jana();
  CHECK(server::check_user(u).empty());
  u.role = "superuser";
  CHECK_THAT(server::check_user(u), Catch::Contains("role"));
  u = jana();
  u.user_id = "jana novakova";
  CHECK_FALSE(server::check_user(u).empty());
  u = jana();
  u.org_unit.clear();
  CHECK_FALSE(server::check_user(u).empty());
  u = jana();
  u.name.clear();
  CHECK_FALSE(server::check_user(u).empty());
}

TEST_CASE("a revoked device is refused, told to wipe, and its store is wiped, and others go on", "[security][enrollment]") {
  temp_dir dir;
  test_server server(dir);
  auto& store = server.get().store();
  store.add_user(jana());
  const auto code = server::issue_enrollment_code(store, "jana.novakova", std::chrono::hours(1), system_time_ms()).code;
  const auto got = enroll(unenrolled(server), code);
  auto o = server.options(0);
  o.device_id = got.device_id;
  o.token = got.token;

  auto lost = open_tablet(dir, "lost");
  const std::string secret_note = "a note that must not outlive the tablet";
  lost->create("visits", {{"note", secret_note}, {"date", std::string("2026-11-23")}, {"org_unit", jana().org_unit}});
  sync_client(*lost, o).sync();
  lost->create("visits", {{"note", std::string("written after the last sync")}, {"org_unit", jana().org_unit}});  // will be lost: the tablet is gone
  const auto old_node = lost->node();

  REQUIRE(store.revoke_device(got.device_id, system_time_ms()));
  CHECK_FALSE(store.revoke_device("d-000000000000", system_time_ms()));
  try {
    sync_client(*lost, o).sync();
    FAIL("a revoked device synced");
  } catch (const caresync::error& e) {
    CHECK(e.code() == make_error_code(protocol_errc::device_revoked));
    CHECK_FALSE(is_transient(e.code()));
    CHECK_THAT(e.what(), Catch::Contains("wiped"));
  }
  // The store is empty and new; nothing of the old file is left on disk.
  CHECK(lost->count("visits") == 0);
  CHECK(lost->outbox_size() == 0);
  CHECK(lost->cursor() == 0);
  CHECK(lost->node() != old_node);
  for (const auto& suffix : {"", "-wal"}) {
    const auto path = dir.file("lost.db") + suffix;
    if (std::filesystem::exists(path)) CHECK(file_bytes(path).find(secret_note) == std::string::npos);
  }
  const auto device = store.find_device(got.device_id);
  REQUIRE(device);
  CHECK(device->revoked_ms > 0);
  CHECK(device->told_to_wipe_ms >= device->revoked_ms);

  // The revoked credentials stay refused; other devices sync on and keep the data.
  CHECK_THROWS_AS(sync_client(*lost, o).sync(), caresync::error);
  auto other = open_tablet(dir, "other");
  CHECK(sync_client(*other, server.options(1)).sync().pulled == 1);
  CHECK(sql_column(dir.file("other.db"), "SELECT note FROM visits") == std::vector<std::string>{secret_note});
}

namespace {

/// Runs `caresync-server ARGS`; its standard output and exit status.
std::pair<std::string, int> server_command(const std::string& args) {
  auto r = caresync::testing::run_command(std::string(CARESYNC_SERVER_BINARY) + " " + args + " 2>/dev/null");
  return {std::move(r.output), r.exit_code};
}

/// The code on the line after "enrollment code for ...".
std::string code_in(const std::string& out) {
  const auto at = out.find("enrollment code for ");
  if (at == std::string::npos) return {};
  const auto start = out.find('\n', at) + 1;
  return out.substr(start, out.find('\n', start) - start);
}

}  // namespace

TEST_CASE("an administrator adds a user, gives codes and revokes a device with caresync-server", "[security][enrollment]") {
  temp_dir dir;
  test_server server(dir);
  const std::string db = "--db " + server.config().database_file;
  const auto [added, added_status] = server_command(
      "add-user " + db + " --user petr.svoboda --name 'Petr Svoboda' --role coordinator --org-unit kraj/orp-kolin");
  REQUIRE(added_status == 0);
  CHECK_THAT(added, Catch::Contains("user petr.svoboda added (coordinator, kraj/orp-kolin)"));
  const auto first = code_in(added);
  REQUIRE(first.size() == 19);

  // Mistakes exit 2 and change nothing.
  CHECK(server_command("add-user " + db + " --user petr.svoboda --name P --role coordinator --org-unit x").second == 2);
  CHECK(server_command("add-user " + db + " --user eva --name Eva --role root --org-unit x").second == 2);
  CHECK_FALSE(server.get().store().find_user("eva"));

  const auto [again, again_status] = server_command("enroll-code " + db + " --user petr.svoboda --code-hours 1");
  REQUIRE(again_status == 0);
  const auto second = code_in(again);
  CHECK(second.size() == 19);
  CHECK(second != first);
  CHECK(server_command("enroll-code " + db + " --user nobody").second == 1);

  // Two tablets of one user, each with its own code and credentials.
  const auto one = enroll(unenrolled(server), first);
  const auto two = enroll(unenrolled(server), second);
  CHECK(one.device_id != two.device_id);
  CHECK(one.user_name == "Petr Svoboda");

  CHECK(server_command("revoke-device " + db + " --device " + one.device_id).second == 0);
  CHECK(server_command("revoke-device " + db + " --device d-000000000000").second == 1);
  auto tablet = open_tablet(dir, "one");
  auto o = server.options(0);
  o.device_id = one.device_id;
  o.token = one.token;
  try {
    sync_client(*tablet, o).sync();
    FAIL("a revoked device synced");
  } catch (const caresync::error& e) {
    CHECK(e.code() == make_error_code(protocol_errc::device_revoked));
  }
  o.device_id = two.device_id;
  o.token = two.token;
  auto other = open_tablet(dir, "two");
  CHECK_NOTHROW(sync_client(*other, o).sync());

  // devices lists both, with their user, and the revoked one as revoked.
  const auto [listed, listed_status] = server_command("devices " + db);
  CHECK(listed_status == 0);
  std::size_t revoked = 0, petr = 0;
  std::istringstream lines(listed);
  for (std::string line; std::getline(lines, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j["user"] == "petr.svoboda") ++petr;
    if (!j["revoked"].is_null()) {
      ++revoked;
      CHECK(j["device"] == one.device_id);
    }
  }
  CHECK(petr == 2);
  CHECK(revoked == 1);
}
