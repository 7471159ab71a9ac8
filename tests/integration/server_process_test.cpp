// The caresync-server binary as an operator runs it: started from a config file,
// stopped with SIGTERM, without losing a change it acknowledged.

#include "../support/server_process.hpp"
#include "fixture.hpp"

#include <caresync/protocol/errors.hpp>

#include <catch2/catch.hpp>

#include <fstream>
#include <thread>

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
  c.devices.push_back({"tablet-0", server::hash_token("token-0")});
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
  o.token = "token-0";
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
}
