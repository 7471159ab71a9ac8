// What an operator asks the caresync-server binary before and while it runs: its
// version (--version, the start line, /metrics), whether a config would start
// (check-config), and what `init` writes (care rules on, as README and
// docs/operations.md say).

#include "../support/command.hpp"
#include "../support/server_process.hpp"
#include "fixture.hpp"

#include <caresync/care.hpp>
#include <caresync/server/config.hpp>

#include <catch2/catch.hpp>
#include <httplib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <sys/wait.h>

using namespace caresync;
using caresync::testing::server_process;
using caresync::testing::temp_dir;
using caresync::testing::test_pki;
using caresync::testing::test_server;

namespace {

using caresync::testing::command_result;

/// Runs `args` after the server binary through the shell. Arguments are paths in a
/// temporary directory, without spaces or quotes.
command_result run_server_binary(const std::string& args) {
  return caresync::testing::run_command(std::string(CARESYNC_SERVER_BINARY) + " " + args + " 2>&1");
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  REQUIRE(out.flush());
}

/// A config dir made by `caresync-server init`, its database in the same directory.
std::string init_dir(const temp_dir& dir) {
  const auto r = run_server_binary("init --dir " + dir.file("etc"));
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  return dir.file("etc/caresync-server.toml");
}

/// `text` with the first line starting with `key` replaced by `line`.
std::string with_line(std::string text, const std::string& key, const std::string& line) {
  const auto at = text.find("\n" + key);
  REQUIRE(at != std::string::npos);
  const auto end = text.find('\n', at + 1);
  return text.replace(at + 1, end - at - 1, line);
}

}  // namespace

TEST_CASE("caresync-server --version prints the CMake project version", "[server][ops]") {
  const auto r = run_server_binary("--version");
  CHECK(r.exit_code == 0);
  CHECK(r.output == "caresync-server " CARESYNC_VERSION "\n");
}

TEST_CASE("the start line names the server's version", "[server][ops]") {
  temp_dir dir;
  const auto config = init_dir(dir);
  server_process proc(CARESYNC_SERVER_BINARY, config, {"--port", "0", "--admin-port", "0"});
  const auto log = proc.log();
  const auto started = log.find("\"event\":\"started\"");
  REQUIRE(started != std::string::npos);
  const auto line = log.substr(started, log.find('\n', started) - started);
  INFO(line);
  CHECK(line.find("\"version\":\"" CARESYNC_VERSION "\"") != std::string::npos);
  CHECK(line.find("caresync-server " CARESYNC_VERSION) != std::string::npos);
}

TEST_CASE("/metrics carries caresync_build_info with the version", "[server][ops][admin]") {
  temp_dir dir;
  test_server server(dir);
  server.config().admin_enabled = true;
  server.config().admin_port = 0;
  server.restart();
  httplib::Client http("127.0.0.1", server.get().admin_port());
  const auto res = http.Get("/metrics");
  REQUIRE(res);
  REQUIRE(res->status == 200);
  CHECK(res->body.find("# TYPE caresync_build_info gauge\n") != std::string::npos);
  CHECK(res->body.find("\ncaresync_build_info{version=\"" CARESYNC_VERSION "\"} 1\n") != std::string::npos);
}

TEST_CASE("check-config says config OK for a config that starts, and names what is wrong otherwise", "[server][ops]") {
  temp_dir dir;
  const auto config = init_dir(dir);
  const auto good = read_text(config);

  SECTION("a config made by init is OK, and checking it makes no database") {
    const auto r = run_server_binary("check-config --config " + config);
    INFO(r.output);
    CHECK(r.exit_code == 0);
    CHECK(r.output.find("config OK") != std::string::npos);
    CHECK_FALSE(std::filesystem::exists(dir.file("etc/caresync-server.db")));
  }
  SECTION("a key that is not readable") {
    std::filesystem::remove(dir.file("etc/server-key.pem"));
    const auto r = run_server_binary("check-config --config " + config);
    INFO(r.output);
    CHECK(r.exit_code != 0);
    CHECK(r.output.find("config OK") == std::string::npos);
    CHECK(r.output.find("server-key.pem") != std::string::npos);
  }
  SECTION("a key that does not belong to the certificate") {
    const auto other = test_pki::make(dir, "other");
    std::filesystem::copy_file(other.key_file, dir.file("etc/server-key.pem"),
                               std::filesystem::copy_options::overwrite_existing);
    const auto r = run_server_binary("check-config --config " + config);
    INFO(r.output);
    CHECK(r.exit_code != 0);
    CHECK(r.output.find("private key") != std::string::npos);
  }
  SECTION("a listen address that does not parse") {
    write_text(config, with_line(good, "listen_address", "listen_address = \"tablets.example\""));
    const auto r = run_server_binary("check-config --config " + config);
    INFO(r.output);
    CHECK(r.exit_code != 0);
    CHECK(r.output.find("listen_address") != std::string::npos);
  }
  SECTION("an admin address that does not parse") {
    auto text = good;
    const auto admin = text.find("[admin]");
    REQUIRE(admin != std::string::npos);
    text = text.substr(0, admin) + with_line(text.substr(admin), "listen_address", "listen_address = \"loopback\"");
    write_text(config, text);
    const auto r = run_server_binary("check-config --config " + config);
    INFO(r.output);
    CHECK(r.exit_code != 0);
    CHECK(r.output.find("admin.listen_address") != std::string::npos);
  }
  SECTION("an unknown key") {
    write_text(config, "prot = 7443\n" + good);
    const auto r = run_server_binary("check-config --config " + config);
    INFO(r.output);
    CHECK(r.exit_code != 0);
    CHECK(r.output.find("'prot'") != std::string::npos);
  }
  SECTION("a database directory that does not exist") {
    write_text(config, with_line(good, "database_file", "database_file = \"" + dir.file("nowhere/server.db") + "\""));
    const auto r = run_server_binary("check-config --config " + config);
    INFO(r.output);
    CHECK(r.exit_code != 0);
    CHECK(r.output.find("nowhere") != std::string::npos);
  }
  SECTION("a config file that does not exist") {
    const auto r = run_server_binary("check-config --config " + dir.file("none.toml"));
    CHECK(r.exit_code != 0);
  }
}

TEST_CASE("init writes a config with the care rules on", "[server][ops][care]") {
  temp_dir dir;
  const auto path = init_dir(dir);
  auto config = server::load_config(path);
  REQUIRE(config.care_rules);

  // And a server started from it refuses a visit kind no care app knows, from an app
  // that writes the store outside the typed API.
  config.port = 0;
  config.admin_enabled = false;
  config.devices.push_back({"tablet-0", server::hash_token("token-of-tablet-0-from-a-test")});
  server::server srv(config, server::open_sqlite_change_store(config.database_file));
  srv.start();
  auto tablet = store::open(store_options{dir.file("tablet.db"), care::schema(), durability::normal});
  const auto visit = tablet->create(
      "visits", {{"client_id", record_id::generate().to_string()}, {"org_unit", std::string("kraj/orp-a/team-1")},
                 {"kind", std::string("tea_party")}, {"status", std::string("planned")},
                 {"start_at", std::string("2026-11-20T08:00:00Z")}, {"end_at", std::string("2026-11-20T09:00:00Z")}});
  sync_options o;
  o.host = "127.0.0.1";
  o.port = srv.port();
  o.ca_file = dir.file("etc/ca.pem");
  o.device_id = "tablet-0";
  o.token = "token-of-tablet-0-from-a-test";
  o.retry.max_attempts = 1;
  const auto report = sync_client(*tablet, o).sync();
  CHECK(report.quarantined == 1);
  const auto held = tablet->quarantined();
  REQUIRE(held.size() == 1);
  CHECK(held[0].record == visit);
  CHECK(held[0].reason.find("tea_party") != std::string::npos);
  srv.stop();
}
