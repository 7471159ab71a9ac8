#pragma once
// The convergence property test (issue 3): replicas (real stores on real SQLite files)
// and the server's real change log run in one process; the network between them is a
// direct hand-over of encoded messages that a seeded schedule drops, duplicates and
// delivers late. The last replica joins half-way with a prioritised initial sync. After random writes, partitions, skewed clocks and a final full sync,
// every replica and the server must hold identical state, and no value anyone wrote may
// have vanished unseen.

#include <cstdint>
#include <string>

namespace caresync::testing {

struct simulation_options {
  std::uint64_t seed = 1;
  int replicas = 5;
  int steps = 150;   ///< random operations (writes, syncs, partitions) before the final sync
  std::string dir;   ///< where the run's files go (a fresh subdirectory, removed after)
};

struct simulation_result {
  bool ok = true;
  std::string failure;  ///< the first broken property (names the seed)
  std::size_t operations = 0;        ///< writes: creates, updates, deletes, resolves, dismisses
  std::size_t syncs = 0;             ///< sync attempts, final ones included
  std::size_t failed_syncs = 0;      ///< attempts cut by an injected fault
  std::size_t faults = 0;            ///< messages dropped, duplicated or delivered late
  std::size_t restamped = 0;         ///< writes re-stamped because their device's clock ran ahead
  std::size_t reverted = 0;          ///< changes refused as server_only whose fields the tablet put back
  std::size_t conflicts_opened = 0;  ///< open conflicts seen on replicas (summed over checks)
  std::size_t conflicts_closed = 0;  ///< resolves and dismisses
  std::size_t changes_logged = 0;    ///< the server's log head at the end
  std::size_t values_checked = 0;    ///< written values traced to the final state or history
  std::size_t deletes_surfaced = 0;  ///< deleted records whose concurrent edits stay visible
  std::size_t revived = 0;           ///< of those, records brought back (update_revives)
  std::size_t prime_phases = 0;      ///< prioritised initial syncs begun (by the late joiner)
  std::size_t primed = 0;            ///< changes those delivered
};

/// Runs one seed. Never throws for a broken property (it is reported in the result); an
/// unexpected exception is reported the same way.
simulation_result run_simulation(const simulation_options& options);

}  // namespace caresync::testing
