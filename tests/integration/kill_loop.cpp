// The kill -9 loop (issue 6): tablets (kill_loop_client, each its own process) write
// visits and sync without pause against the real caresync-server, while this program
// kills, at random moments, either the server or one tablet with SIGKILL, and starts it
// again. Kills land mid-push, mid-pull and mid-apply. Then every tablet syncs to the end
// and the loop checks:
//   - nothing acknowledged is lost: every record a tablet holds a receipt for is on
//     the server, and every replica (each tablet, a fresh witness, the server) holds
//     the same state (canonical digest);
//   - nothing is applied twice: no (node, stamp, record) twice in the server's log;
//   - PRAGMA integrity_check is ok on every file; every outbox is empty.
// Prints one JSON object; exits 1 on any failure, naming the seed (--seed replays the
// same schedule of kills, though not the same timing).

#include "../support/server_process.hpp"
#include "../support/sql_probe.hpp"
#include "fixture.hpp"

#include <caresync/protocol/errors.hpp>
#include <caresync/protocol/merge.hpp>
#include <caresync/server/change_store.hpp>

#include <CLI/CLI.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <random>
#include <spawn.h>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace {

using caresync::testing::server_process;
using caresync::testing::temp_dir;
using caresync::testing::test_pki;
using clock_type = std::chrono::steady_clock;

std::string device(int i) { return "tablet-" + std::to_string(i); }
std::string token(int i) { return "kill-loop-token-" + std::to_string(i); }

/// A port that was free a moment ago, so that the server comes back on the same one.
std::uint16_t free_port() {
  asio::io_context io;
  asio::ip::tcp::acceptor probe(io, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  return probe.local_endpoint().port();
}

std::string write_config(const temp_dir& dir, const test_pki& pki, std::uint16_t port, int devices) {
  caresync::server::server_config c;
  c.port = port;
  c.certificate_file = pki.cert_file;
  c.private_key_file = pki.key_file;
  c.database_file = dir.file("server.db");
  for (int i = 0; i < devices; ++i) c.devices.push_back({device(i), caresync::server::hash_token(token(i))});
  const auto path = dir.file("server.toml");
  caresync::testing::write_server_config(path, c);
  return path;
}

/// One kill_loop_client process.
class tablet_process {
 public:
  tablet_process(const std::string& binary, std::vector<std::string> args) {
    args.insert(args.begin(), binary);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (posix_spawn(&pid_, binary.c_str(), nullptr, nullptr, argv.data(), environ) != 0) {
      throw std::runtime_error("cannot start " + binary);
    }
  }
  ~tablet_process() { kill9(); }
  tablet_process(const tablet_process&) = delete;
  tablet_process& operator=(const tablet_process&) = delete;

  /// The wait status if the process ended by itself (it should not), else nullopt.
  std::optional<int> ended() {
    int status = 0;
    if (pid_ > 0 && waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return status;
    }
    return std::nullopt;
  }
  void kill9() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
};

/// "ok", or what PRAGMA integrity_check found.
std::string integrity(const std::string& path) {
  try {
    return caresync::testing::sql_text(path, "PRAGMA integrity_check");
  } catch (const std::exception& e) {
    return e.what();
  }
}

/// Ids of the visits a store holds (live), read with plain SQL.
std::vector<caresync::record_id> visit_ids(const std::string& path) {
  std::vector<caresync::record_id> out;
  for (const auto& text : caresync::testing::sql_column(path, "SELECT id FROM visits")) {
    if (auto id = caresync::record_id::parse(text)) out.push_back(*id);
  }
  return out;
}

/// Syncs until a sync succeeds (the server may still be starting); gives up after 50 tries.
caresync::sync_report sync_to_end(caresync::store& s, const caresync::sync_options& o) {
  for (int attempt = 1;; ++attempt) {
    try {
      return caresync::sync_client(s, o).sync();
    } catch (const caresync::error& e) {
      if (!caresync::is_transient(e.code()) || attempt == 50) throw;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"kill -9 loop: kills the server and tablets at random during sync, then checks nothing was lost"};
  int kills = 40;
  int tablets = 3;
  std::uint64_t seed = std::random_device{}();
  int min_pause_ms = 20, max_pause_ms = 400;
  app.add_option("--kills", kills, "SIGKILLs to send (the issue asks >= 200; CI runs fewer)")->check(CLI::Range(1, 1000000));
  app.add_option("--tablets", tablets, "tablet processes")->check(CLI::Range(2, 64));
  app.add_option("--seed", seed, "random seed (printed; replays the same schedule)");
  app.add_option("--max-pause-ms", max_pause_ms, "longest pause between kills")->check(CLI::Range(20, 60000));
  CLI11_PARSE(app, argc, argv);

  const auto started = clock_type::now();
  std::mt19937_64 rng(seed);
  temp_dir dir;
  const auto pki = test_pki::make(dir);
  const auto config = write_config(dir, pki, free_port(), tablets + 1);
  const std::string server_binary = CARESYNC_SERVER_BINARY;
  const std::string client_binary = CARESYNC_KILL_LOOP_CLIENT;
  const auto store_of = [&](int i) { return dir.file(device(i) + ".db"); };

  std::vector<std::string> failures;
  int server_kills = 0, tablet_kills = 0;
  nlohmann::json out;
  try {
    auto server = std::make_unique<server_process>(server_binary, config);
    const std::uint16_t port = server->port();
    const auto spawn_tablet = [&](int i) {
      return std::make_unique<tablet_process>(
          client_binary, std::vector<std::string>{"--store", store_of(i), "--port", std::to_string(port), "--ca",
                                                  pki.ca_file, "--device", device(i), "--token", token(i), "--seed",
                                                  std::to_string(seed + static_cast<std::uint64_t>(i) * 7919 + rng() % 1000)});
    };
    std::vector<std::unique_ptr<tablet_process>> running;
    for (int i = 0; i < tablets; ++i) running.push_back(spawn_tablet(i));

    for (int k = 0; k < kills && failures.empty(); ++k) {
      const auto pause = std::uniform_int_distribution<int>(min_pause_ms, max_pause_ms)(rng);
      std::this_thread::sleep_for(std::chrono::milliseconds(pause));
      for (int i = 0; i < tablets; ++i) {
        if (const auto status = running[static_cast<std::size_t>(i)]->ended()) {
          failures.push_back(device(i) + " ended by itself (wait status " + std::to_string(*status) +
                             "); its error is on stderr above");
        }
      }
      if (rng() % 5 < 2) {
        server->stop(SIGKILL);
        ++server_kills;
        server = std::make_unique<server_process>(server_binary, config);
        if (server->port() != port) failures.push_back("the server came back on another port");
      } else {
        const auto i = static_cast<std::size_t>(rng() % static_cast<std::uint64_t>(tablets));
        running[i]->kill9();
        ++tablet_kills;
        running[i] = spawn_tablet(static_cast<int>(i));
      }
    }
    for (auto& t : running) t->kill9();
    // One last server kill, so the final state is read from a crashed server's files.
    server->stop(SIGKILL);
    ++server_kills;
    server = std::make_unique<server_process>(server_binary, config);

    // Every tablet, then a fresh witness, syncs to the end: twice round, so each tablet
    // also receives what the ones after it pushed.
    const auto options = [&](int i) {
      caresync::sync_options o;
      o.port = port;
      o.ca_file = pki.ca_file;
      o.device_id = device(i);
      o.token = token(i);
      return o;
    };
    std::vector<std::unique_ptr<caresync::store>> stores;
    for (int i = 0; i < tablets; ++i) {
      stores.push_back(caresync::store::open(caresync::store_options{store_of(i), caresync::testing::care_schema()}));
    }
    for (int round = 0; round < 2; ++round) {
      for (int i = 0; i < tablets; ++i) sync_to_end(*stores[static_cast<std::size_t>(i)], options(i));
    }
    auto witness = caresync::store::open(caresync::store_options{store_of(tablets), caresync::testing::care_schema()});
    sync_to_end(*witness, options(tablets));
    if (server->stop(SIGTERM) != 0) failures.push_back("the server did not stop cleanly on SIGTERM");
    server.reset();

    // The checks.
    const auto server_file = dir.file("server.db");
    auto log = caresync::server::open_sqlite_change_store(server_file);
    const auto state = log->materialize();
    caresync::state_hasher server_hasher;
    for (const auto& [key, record] : state) server_hasher.add(key.first, key.second, record);
    const auto server_digest = server_hasher.finish();
    std::size_t receipts = 0, records = 0;
    for (int i = 0; i < tablets; ++i) {
      auto& s = *stores[static_cast<std::size_t>(i)];
      if (s.outbox_size() != 0) failures.push_back(device(i) + ": outbox not empty after the final syncs");
      if (s.state_digest() != server_digest) failures.push_back(device(i) + ": state differs from the server's");
      for (const auto& id : visit_ids(store_of(i))) {
        if (!s.is_synced("visits", id)) continue;
        ++receipts;
        if (state.count({"visits", id}) != 1) failures.push_back(device(i) + ": acknowledged visit " + id.to_string() + " is not on the server");
      }
    }
    if (witness->state_digest() != server_digest) failures.push_back("witness: state differs from the server's");
    records = witness->count("visits");
    const auto duplicates = caresync::testing::duplicates_in_log(server_file);
    if (duplicates != 0) failures.push_back("the server's log holds " + std::to_string(duplicates) + " changes twice");
    log.reset();
    stores.clear();
    witness.reset();
    for (int i = 0; i <= tablets; ++i) {
      if (const auto r = integrity(store_of(i)); r != "ok") failures.push_back(device(i) + ": integrity_check: " + r);
    }
    if (const auto r = integrity(server_file); r != "ok") failures.push_back("server: integrity_check: " + r);

    out["changes_in_server_log"] = caresync::testing::sql_int(server_file, "SELECT count(*) FROM changes");
    out["visits_live"] = records;
    out["receipts_checked"] = receipts;
    out["duplicates"] = duplicates;
  } catch (const std::exception& e) {
    failures.push_back(std::string("error: ") + e.what());
  }
  out["seed"] = seed;
  out["kills"] = {{"server", server_kills}, {"tablets", tablet_kills}};
  out["tablets"] = tablets;
  out["seconds"] = std::chrono::duration<double>(clock_type::now() - started).count();
  out["ok"] = failures.empty();
  out["failures"] = failures;
  std::cout << out.dump(2) << std::endl;
  if (!failures.empty()) {
    std::cerr << "kill -9 loop FAILED; replay with --seed " << seed << "\n";
    return 1;
  }
  return 0;
}
