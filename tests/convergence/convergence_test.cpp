// The convergence property test in CTest: 300 seeds of five replicas and the server
// (tests/convergence/simulation.hpp), the last joining half-way with priority tiers. `caresync-converge --seeds 10000` runs more.

#include "simulation.hpp"

#include <catch2/catch.hpp>

#include <filesystem>

TEST_CASE("every replica and the server converge and no value vanishes unseen, over 300 seeds", "[convergence]") {
  const std::string dir = std::filesystem::exists("/dev/shm") ? "/dev/shm" : "";
  std::size_t operations = 0, faults = 0, conflicts = 0, restamped = 0, primed = 0, reverted = 0;
  for (std::uint64_t seed = 1; seed <= 300; ++seed) {
    const auto r = caresync::testing::run_simulation({seed, 5, 150, dir});
    INFO(r.failure);
    REQUIRE(r.ok);
    operations += r.operations;
    faults += r.faults;
    conflicts += r.conflicts_opened + r.conflicts_closed;
    restamped += r.restamped;
    reverted += r.reverted;
    primed += r.primed;
  }
  // The schedule did what it is for: writes, faults, conflicts and skewed clocks.
  CHECK(operations > 300 * 50);
  CHECK(faults > 300);
  CHECK(conflicts > 100);
  CHECK(restamped > 0);
  CHECK(reverted > 0);
  CHECK(primed > 300);  // the late joiners' priority phases delivered changes
}

TEST_CASE("a broken seed is reported with its number", "[convergence]") {
  // Zero replicas cannot run; the simulation reports it rather than throwing.
  const auto r = caresync::testing::run_simulation({42, 0, 10, ""});
  CHECK_FALSE(r.ok);
  CHECK(r.failure.find("seed 42") != std::string::npos);
}
