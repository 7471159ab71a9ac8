// caresync-converge: runs the convergence property test over many seeds and prints one
// JSON object with the figures. `--seeds 10000` for the full run, `--seed S` to replay
// a failure. Exit status 1 when any seed fails (its seed and property are printed).

#include "simulation.hpp"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <iostream>

int main(int argc, char** argv) {
  CLI::App app{"caresync convergence property test: replicas and the server under random writes, faults and skewed clocks"};
  std::uint64_t seeds = 300;
  std::uint64_t first = 1;
  std::optional<std::uint64_t> only;
  int replicas = 5;
  int steps = 150;
  std::string dir = std::filesystem::exists("/dev/shm") ? "/dev/shm" : std::filesystem::temp_directory_path().string();
  app.add_option("--seeds", seeds, "number of seeds to run, from --first")->check(CLI::PositiveNumber);
  app.add_option("--first", first, "first seed");
  app.add_option("--seed", only, "run this one seed (replay a failure)");
  app.add_option("--replicas", replicas, "tablets per run (>= 5 for the issue's property)")->check(CLI::Range(2, 64));
  app.add_option("--steps", steps, "random operations per run before the final sync")->check(CLI::Range(1, 100000));
  app.add_option("--dir", dir, "where runs keep their SQLite files (tmpfs makes it fast)")->check(CLI::ExistingDirectory);
  CLI11_PARSE(app, argc, argv);
  if (only) {
    first = *only;
    seeds = 1;
  }

  nlohmann::ordered_json totals = {{"seeds", 0},          {"failed", 0},         {"replicas", replicas},
                                   {"steps_per_seed", steps}, {"operations", 0},  {"syncs", 0},
                                   {"failed_syncs", 0},   {"faults", 0},         {"restamped", 0}, {"reverted", 0},
                                   {"open_conflicts_at_end", 0}, {"conflicts_closed", 0}, {"changes_logged", 0},
                                   {"values_checked", 0}, {"deletes_with_concurrent_edits", 0}, {"revived", 0},
                                   {"prime_phases", 0}, {"primed", 0}};
  nlohmann::ordered_json failures = nlohmann::ordered_json::array();
  const auto started = std::chrono::steady_clock::now();
  for (std::uint64_t seed = first; seed < first + seeds; ++seed) {
    const auto r = caresync::testing::run_simulation({seed, replicas, steps, dir});
    totals["seeds"] = totals["seeds"].get<std::uint64_t>() + 1;
    totals["operations"] = totals["operations"].get<std::uint64_t>() + r.operations;
    totals["syncs"] = totals["syncs"].get<std::uint64_t>() + r.syncs;
    totals["failed_syncs"] = totals["failed_syncs"].get<std::uint64_t>() + r.failed_syncs;
    totals["faults"] = totals["faults"].get<std::uint64_t>() + r.faults;
    totals["restamped"] = totals["restamped"].get<std::uint64_t>() + r.restamped;
    totals["reverted"] = totals["reverted"].get<std::uint64_t>() + r.reverted;
    totals["open_conflicts_at_end"] = totals["open_conflicts_at_end"].get<std::uint64_t>() + r.conflicts_opened;
    totals["conflicts_closed"] = totals["conflicts_closed"].get<std::uint64_t>() + r.conflicts_closed;
    totals["changes_logged"] = totals["changes_logged"].get<std::uint64_t>() + r.changes_logged;
    totals["values_checked"] = totals["values_checked"].get<std::uint64_t>() + r.values_checked;
    totals["deletes_with_concurrent_edits"] = totals["deletes_with_concurrent_edits"].get<std::uint64_t>() + r.deletes_surfaced;
    totals["revived"] = totals["revived"].get<std::uint64_t>() + r.revived;
    totals["prime_phases"] = totals["prime_phases"].get<std::uint64_t>() + r.prime_phases;
    totals["primed"] = totals["primed"].get<std::uint64_t>() + r.primed;
    if (!r.ok) {
      totals["failed"] = totals["failed"].get<std::uint64_t>() + 1;
      failures.push_back(r.failure);
      std::cerr << "caresync-converge: " << r.failure << " (replay: --seed " << seed << ")\n";
    }
    if (seeds >= 100 && (seed - first + 1) % (seeds / 10) == 0) {
      std::cerr << "caresync-converge: " << (seed - first + 1) << " of " << seeds << " seeds\n";
    }
  }
  totals["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  totals["failures"] = failures;
  std::cout << totals.dump(2) << "\n";
  return failures.empty() ? 0 : 1;
}
