// The caresync-server binary as an operator runs it: started from a config file,
// stopped with SIGTERM, without losing a change it acknowledged.

#include "../support/fault_proxy.hpp"
#include "../support/server_process.hpp"
#include "../support/sql_probe.hpp"
#include "devices_listed.hpp"
#include "fixture.hpp"

#include <caresync/protocol/errors.hpp>

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <atomic>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <thread>
#include <sys/wait.h>

using namespace caresync;
using caresync::testing::open_tablet;
using caresync::testing::server_process;
using caresync::testing::temp_dir;
using caresync::testing::test_pki;

namespace {

std::string write_config(const temp_dir& dir, const test_pki& pki) {
  server::server_config c;
  c.port = 0;
  c.certificate_file = pki.cert_file;
  c.private_key_file = pki.key_file;
  c.database_file = dir.file("server.db");
  c.devices.push_back({"tablet-0", server::hash_token("token-0-of-a-length-no-log-line-would-hold-by-chance")});
  const auto path = dir.file("server.toml");
  caresync::testing::write_server_config(path, c);
  return path;
}

}  // namespace

TEST_CASE("SIGTERM stops the server cleanly and keeps every acknowledged change", "[sync][faults]") {
  temp_dir dir;
  const auto pki = test_pki::make(dir);
  const auto config = write_config(dir, pki);
  auto a = open_tablet(dir, "a");
  std::vector<record_id> ids;

  server_process proc(CARESYNC_SERVER_BINARY, config);
  sync_options o;
  o.port = proc.port();
  o.ca_file = pki.ca_file;
  o.device_id = "tablet-0";
  o.token = "token-0-of-a-length-no-log-line-would-hold-by-chance";
  o.connect_timeout = std::chrono::milliseconds(2000);
  o.retry.max_attempts = 1;

  // A worker thread owns the tablet: it keeps recording and syncing while the test
  // thread stops the server under it, most likely mid-push or mid-pull.
  std::size_t syncs_ok = 0;
  std::string last_error;
  bool last_error_transient = false;
  std::thread tablet([&] {
    for (int round = 0; round < 100000; ++round) {
      a->transaction([&] {
        for (int i = 0; i < 5; ++i) ids.push_back(a->create("visits", {{"duration_min", std::int64_t{round}}}));
      });
      try {
        sync_client(*a, o).sync();
        ++syncs_ok;
      } catch (const caresync::error& e) {
        last_error = e.what();
        last_error_transient = is_transient(e.code());
        return;
      }
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  const int status = proc.stop(SIGTERM);
  tablet.join();
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(syncs_ok >= 5);
  INFO(last_error);
  CHECK(last_error_transient);

  // Every record the tablet holds a receipt for is in the server's log.
  auto log = server::open_sqlite_change_store(dir.file("server.db"));
  const auto state = log->materialize();
  std::size_t acknowledged = 0;
  for (const auto& id : ids) {
    if (!a->is_synced("visits", id)) continue;
    ++acknowledged;
    CHECK(state.count({"visits", id}) == 1);
  }
  CHECK(acknowledged >= 25);
  CHECK(log->head() >= acknowledged);

  // The server's log: one JSON object per line, a line per session, no token.
  std::istringstream lines(proc.log());
  std::string line;
  std::size_t sessions = 0;
  std::set<std::string> events;
  while (std::getline(lines, line)) {
    INFO(line);
    const auto j = nlohmann::json::parse(line);
    CHECK(j.contains("ts"));
    CHECK(j.contains("level"));
    CHECK(j.contains("msg"));
    events.insert(j.at("event").get<std::string>());
    if (j["event"] == "session" && j["device"] == "tablet-0") {
      ++sessions;
      CHECK(j.contains("changes_in"));
      CHECK(j.contains("duration_ms"));
      CHECK(j.contains("outcome"));
    }
    CHECK(line.find(o.token) == std::string::npos);
  }
  CHECK(sessions >= syncs_ok);
  CHECK(events.count("listening") == 1);
  CHECK(events.count("stopped") == 1);
}

TEST_CASE("caresync-server history prints each accepted change of a record: who, when, what", "[sync][history]") {
  temp_dir dir;
  testing::test_server server(dir);
  auto a = open_tablet(dir, "a");
  auto b = open_tablet(dir, "b");
  const auto id = a->create("visits", {{"note", std::string("Pan Novák: \"bolí ho koleno\"")}, {"duration_min", std::int64_t{30}}});
  sync_client(*a, server.options(0)).sync();
  sync_client(*b, server.options(1)).sync();
  b->update("visits", id, {{"note", std::string("koleno lepší")}});
  sync_client(*b, server.options(1)).sync();
  a->remove("visits", id);
  sync_client(*a, server.options(0)).sync();

  const auto run = [&](const std::string& args) {
    const std::string command = std::string(CARESYNC_SERVER_BINARY) + " history " + args + " 2>/dev/null";
    std::unique_ptr<FILE, decltype(&pclose)> pipe(popen(command.c_str(), "r"), &pclose);
    REQUIRE(pipe);
    std::vector<nlohmann::json> lines;
    char buf[4096];
    while (std::fgets(buf, sizeof buf, pipe.get())) lines.push_back(nlohmann::json::parse(buf));
    return lines;
  };
  const auto lines = run("--db " + server.config().database_file + " --collection visits --id " + id.to_string());
  REQUIRE(lines.size() == 3);
  CHECK(lines[0]["device"] == "tablet-0");
  CHECK(lines[0]["kind"] == "upsert");
  CHECK(lines[0]["fields"]["note"] == "Pan Novák: \"bolí ho koleno\"");
  CHECK(lines[0]["fields"]["duration_min"] == 30);
  CHECK(lines[1]["device"] == "tablet-1");
  CHECK(lines[1]["fields"]["note"] == "koleno lepší");
  CHECK(lines[2]["kind"] == "delete");
  CHECK(lines[0]["seq"].get<std::uint64_t>() < lines[1]["seq"].get<std::uint64_t>());
  CHECK(lines[0]["received"].get<std::string>().size() == 24);  // 2026-11-23T06:41:03.123Z
  CHECK(lines[0]["node"].get<std::string>().size() == 16);

  CHECK(run("--db " + server.config().database_file + " --collection visits --id " + record_id::generate().to_string()).empty());
  const std::string bad = std::string(CARESYNC_SERVER_BINARY) + " history --db x.db --collection visits --id not-an-id >/dev/null 2>&1";
  CHECK(WEXITSTATUS(std::system(bad.c_str())) == 2);
}

TEST_CASE("a backup taken while tablets sync restores to a sound store holding every acknowledged change", "[backup]") {
  temp_dir dir;
  testing::test_server server(dir);
  auto a = open_tablet(dir, "a");
  auto b = open_tablet(dir, "b");
  std::vector<record_id> acknowledged;
  a->transaction([&] {
    for (int i = 0; i < 300; ++i) acknowledged.push_back(a->create("visits", {{"duration_min", std::int64_t{i}}}));
  });
  sync_client(*a, server.options(0)).sync();
  for (const auto& id : acknowledged) REQUIRE(a->is_synced("visits", id));

  // Tablet B keeps pushing while the backup is taken.
  std::atomic<bool> stop{false};
  std::atomic<int> rounds{0};
  std::thread pushing([&] {
    auto o = server.options(1);
    o.push_batch_changes = 10;
    while (!stop) {
      b->transaction([&] {
        for (int i = 0; i < 30; ++i) b->create("visits", {{"worker", std::string("during backup")}});
      });
      sync_client(*b, o).sync();
      ++rounds;
    }
  });
  while (rounds < 2) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const auto backup = dir.file("backup.db");
  const std::string command = std::string(CARESYNC_SERVER_BINARY) + " backup --db " + server.config().database_file +
                              " --to " + backup + " 2>&1";
  std::string output;
  {
    std::unique_ptr<FILE, decltype(&pclose)> pipe(popen(command.c_str(), "r"), &pclose);
    REQUIRE(pipe);
    char buf[512];
    while (std::fgets(buf, sizeof buf, pipe.get())) output += buf;
  }
  while (rounds < 4) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  stop = true;
  pushing.join();
  INFO(output);
  CHECK(output.find("integrity_check ok") != std::string::npos);

  // The copy: every change acknowledged before the backup, and only whole batches.
  {
    auto copy = server::open_sqlite_change_store(backup);
    const auto state = copy->materialize();
    for (const auto& id : acknowledged) CHECK(state.count({"visits", id}) == 1);
    CHECK(copy->head() >= 300 + 30);  // at least B's first round, acknowledged before too
    CHECK(copy->head() <= server.get().store().head());
  }
  CHECK(testing::sql_int(backup,
                         "SELECT count(*) FROM batches WHERE accepted > 0 AND accepted !="
                         " (SELECT count(*) FROM changes WHERE seq BETWEEN first_seq AND last_seq)") == 0);

  // Restored: a server on the copy serves a new tablet everything in it.
  server.stop();
  server.config().database_file = backup;
  server.start();
  auto c = open_tablet(dir, "c");
  sync_client(*c, server.options(2)).sync();
  for (const auto& id : acknowledged) CHECK(c->get("visits", id) == a->get("visits", id));

  // A backup never overwrites a file.
  const std::string again = std::string(CARESYNC_SERVER_BINARY) + " backup --db " + dir.file("server.db") + " --to " + backup +
                            " >/dev/null 2>&1";
  CHECK(WEXITSTATUS(std::system(again.c_str())) != 0);
}

TEST_CASE("fleet health: each device's last sync, queue and refused changes, listed by caresync-server devices",
          "[fleet]") {
  temp_dir dir;
  testing::test_server server(dir);
  server.config().max_value_bytes = 1000;
  server.restart();
  // A session records its device when it ends, just after the tablet closed: wait until
  // the record of the session looked for (`seen`) is there.
  const auto fleet_of = [&](const std::string& device, auto seen) -> std::optional<server::device_health> {
    for (int i = 0; i < 500; ++i) {
      for (const auto& h : server.get().store().fleet()) {
        if (h.device == device && seen(h)) return h;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return std::nullopt;
  };

  auto a = open_tablet(dir, "a");
  auto oa = server.options(0);
  oa.app_version = "field-app 1.4.2";
  for (int i = 0; i < 3; ++i) a->create("visits", {{"duration_min", std::int64_t{i}}});
  a->create("visits", {{"note", std::string(1500, 'x')}});  // refused: over the limit
  sync_client(*a, oa).sync();
  sync_client(*a, oa).sync();  // reports the quarantined change in its hello
  const auto ha = fleet_of(testing::test_server::device(0), [](const server::device_health& h) { return h.quarantined > 0; });
  REQUIRE(ha);
  CHECK(ha->app_version == "field-app 1.4.2");
  CHECK(ha->outbox == 0);
  CHECK(ha->quarantined == 1);
  CHECK(ha->last_ok_ms > 0);
  CHECK(ha->last_outcome == "closed by device");

  // A tablet whose sync is cut: seen, queue waiting, never synced to the end.
  auto c = open_tablet(dir, "c");
  for (int i = 0; i < 200; ++i) c->create("visits", {{"note", std::string(300, static_cast<char>('a' + i % 26))}});
  testing::fault_proxy proxy(server.port(), testing::link_faults{.cut_after_bytes = 4000});
  auto oc = server.options(2);
  oc.port = proxy.port();
  oc.push_batch_changes = 20;
  CHECK_THROWS(sync_client(*c, oc).sync());
  const auto hc = fleet_of(testing::test_server::device(2), [](const server::device_health& h) { return !h.last_outcome.empty(); });
  REQUIRE(hc);
  CHECK(hc->outbox == 200);
  CHECK(hc->last_ok_ms == 0);
  CHECK(hc->last_outcome != "closed by device");

  // A wrong token is not a device: nothing recorded for it.
  auto wrong = server.options(3);
  wrong.token = "not-the-token";
  CHECK_THROWS(sync_client(*a, wrong).sync());

  const auto run = [&](const std::string& args) { return testing::devices_listed(server, args); };
  const auto all = run("");
  REQUIRE(all.size() == 2);
  const auto& la = all.at(testing::test_server::device(0));
  CHECK(la.at("app_version") == "field-app 1.4.2");
  CHECK(la.at("days_since_ok") == 0);
  REQUIRE(la.at("attention").size() == 1);
  CHECK(la.at("attention").at(0) == "1 refused changes to resolve");
  const auto& lc = all.at(testing::test_server::device(2));
  CHECK(lc.at("last_ok").is_null());
  CHECK(lc.at("outbox") == 200);
  REQUIRE(lc.at("attention").size() == 2);
  CHECK(lc.at("attention").at(0) == "never synced to the end");
  CHECK(lc.at("attention").at(1) == "200 changes waiting, last session: connection lost");
  const auto silent = run("--only-silent");
  CHECK(silent.size() == 1);
  CHECK(silent.count(testing::test_server::device(2)) == 1);
}

TEST_CASE("serve --log-level error leaves out the session lines but keeps start and stop", "[sync][log]") {
  temp_dir dir;
  const auto pki = test_pki::make(dir);
  const auto config = write_config(dir, pki);
  server_process proc(CARESYNC_SERVER_BINARY, config, {"--log-level", "error"});
  auto a = open_tablet(dir, "a");
  sync_options o;
  o.port = proc.port();
  o.ca_file = pki.ca_file;
  o.device_id = "tablet-0";
  o.token = "token-0-of-a-length-no-log-line-would-hold-by-chance";
  a->create("visits", {{"duration_min", std::int64_t{5}}});
  CHECK(sync_client(*a, o).sync().pushed == 1);
  CHECK(proc.stop(SIGTERM) == 0);
  const auto log = proc.log();
  INFO(log);
  CHECK(log.find("\"event\":\"listening\"") != std::string::npos);
  CHECK(log.find("\"event\":\"stopped\"") != std::string::npos);
  CHECK(log.find("\"event\":\"session\"") == std::string::npos);
}
