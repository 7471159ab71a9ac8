// One tablet of the kill -9 loop (kill_loop.cpp), run as its own process so that the
// loop can kill it mid-write or mid-apply. Forever, until killed: write some visits
// (create, update, delete) in one transaction, then sync. A transient sync error (the
// server was killed) is retried after a short random pause; anything else is a bug the
// loop must see, so the program prints it and exits with status 2.

#include "../support/sql_probe.hpp"
#include "fixture.hpp"

#include <caresync/protocol/errors.hpp>

#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

using caresync::record_id;

/// Ids of live visits in the store, read with plain SQL as an app reads.
std::vector<record_id> live_visits(const std::string& path) {
  std::vector<record_id> out;
  for (const auto& text : caresync::testing::sql_column(path, "SELECT id FROM visits")) {
    if (auto id = record_id::parse(text)) out.push_back(*id);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"one tablet of the kill -9 loop: writes visits and syncs until killed"};
  std::string store_path, ca_file, device, token;
  std::uint16_t port = 0;
  std::uint64_t seed = 1;
  app.add_option("--store", store_path, "the tablet's store file")->required();
  app.add_option("--port", port, "the server's port on 127.0.0.1")->required();
  app.add_option("--ca", ca_file, "the CA file that signed the server's certificate")->required();
  app.add_option("--device", device, "device id")->required();
  app.add_option("--token", token, "device token")->required();
  app.add_option("--seed", seed, "random seed of the writes");
  CLI11_PARSE(app, argc, argv);

  try {
    auto tablet = caresync::store::open(caresync::store_options{store_path, caresync::testing::care_schema()});
    std::vector<record_id> ids = live_visits(store_path);
    std::mt19937_64 rng(seed);
    caresync::sync_options o;
    o.port = port;
    o.ca_file = ca_file;
    o.device_id = device;
    o.token = token;
    o.connect_timeout = std::chrono::milliseconds(2000);
    o.io_timeout = std::chrono::milliseconds(5000);
    o.retry.max_attempts = 1;  // this loop retries itself
    o.push_batch_changes = 50;  // several batches per sync, so kills land between them
    o.pull_page_changes = 100;
    const std::string note(200, 'n');
    for (std::uint64_t round = 0;; ++round) {
      tablet->transaction([&] {
        const auto creates = 1 + rng() % 40;
        for (std::uint64_t i = 0; i < creates; ++i) {
          ids.push_back(tablet->create("visits", {{"worker", device},
                                                  {"duration_min", static_cast<std::int64_t>(rng() % 240)},
                                                  {"note", note},
                                                  {"status", std::string("done")}}));
        }
        for (int i = 0; i < 3 && !ids.empty(); ++i) {
          const auto& id = ids[rng() % ids.size()];
          if (tablet->get("visits", id)) tablet->update("visits", id, {{"status", "edited " + std::to_string(round)}});
        }
        if (!ids.empty() && rng() % 8 == 0) {
          const auto at = rng() % ids.size();
          if (tablet->get("visits", ids[at])) tablet->remove("visits", ids[at]);
          ids.erase(ids.begin() + static_cast<std::ptrdiff_t>(at));
        }
      });
      try {
        caresync::sync_client(*tablet, o).sync();
      } catch (const caresync::error& e) {
        if (!caresync::is_transient(e.code())) throw;
        std::this_thread::sleep_for(std::chrono::milliseconds(5 + rng() % 50));
      }
    }
  } catch (const caresync::error& e) {
    std::fprintf(stderr, "%s: %s (%s)\n", device.c_str(), e.what(), e.code().message().c_str());
    return 2;
  }
}
