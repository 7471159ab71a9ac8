// caresync-demo: the README's "run it" command. Starts the real caresync-server on
// 127.0.0.1 with a self-signed certificate made on the first run, lets several simulated
// tablets record visits offline, brings them online in random order to sync, and proves
// that every tablet and the server end with identical state. examples/README.md explains
// the options and the output.

#include "server_process.hpp"
#include "state_directory.hpp"
#include "synthetic_care.hpp"
#include "tablet.hpp"

#include <caresync/protocol/errors.hpp>
#include <caresync/protocol/merge.hpp>
#include <caresync/server/change_store.hpp>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>
#include <sys/wait.h>

#ifndef CARESYNC_SERVER_BINARY
#define CARESYNC_SERVER_BINARY "caresync-server"
#endif

namespace {

using namespace caresync;
using namespace caresync::demo;

constexpr int k_exit_ok = 0;
constexpr int k_exit_failed = 1;
constexpr std::size_t k_digest_prefix = 12;
constexpr double k_no_signal_chance = 0.25;   // a tablet stays offline for a round
constexpr std::size_t k_max_concurrent_editors = 3;
constexpr int k_final_sync_attempts = 3;
constexpr auto k_server_start_timeout = std::chrono::seconds(10);

struct demo_options {
  std::string dir = "demo-data";
  std::size_t tablets = 4;
  std::size_t visits = 25;
  std::size_t rounds = 3;
  std::uint64_t seed = 0;
  std::string server_binary = CARESYNC_SERVER_BINARY;
  bool fresh = false;
};

/// A visit several tablets changed while offline, each to its own status.
struct concurrent_edit {
  record_id visit;
  std::size_t round = 0;
  std::vector<std::pair<std::string, std::string>> writes;  ///< tablet, status it wrote
};

/// The visit whose receipt the demo follows from "recorded offline" to "on the server".
struct followed_receipt {
  std::size_t tablet = 0;
  record_id visit;
  bool shown_synced = false;
};

struct sync_totals {
  std::size_t syncs = 0;
  std::size_t pushed = 0;
  std::size_t pulled = 0;
  std::size_t conflicts = 0;
  std::uint64_t bytes_sent = 0;
  std::uint64_t bytes_received = 0;
};

std::string formatted(const char* pattern, auto... args) {
  char line[512];
  std::snprintf(line, sizeof line, pattern, args...);
  return line;
}

std::string human_bytes(std::uint64_t bytes) {
  if (bytes < 10 * 1024) return formatted("%llu B", static_cast<unsigned long long>(bytes));
  if (bytes < 10 * 1024 * 1024) return formatted("%.1f KiB", static_cast<double>(bytes) / 1024.0);
  return formatted("%.1f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
}

std::string short_id(const record_id& id) { return id.to_string().substr(0, 8); }

/// The tablets, the dice and what happened so far; one method per phase of the demo.
/// Thread contract: the main thread only.
class simulation {
 public:
  simulation(std::vector<std::unique_ptr<tablet>> tablets, std::uint64_t seed, std::string server_log)
      : tablets_(std::move(tablets)), rng_(seed), server_log_(std::move(server_log)) {}

  /// Every tablet works offline for a day; then some tablets edit one shared visit.
  void work_offline(std::size_t round, std::size_t rounds, std::size_t visits) {
    const int day_offset = static_cast<int>(round) - static_cast<int>(rounds);
    std::cout << "\n--- round " << round << " of " << rounds << ": offline, " << visit_date(day_offset) << "\n";
    for (std::size_t i = 0; i < tablets_.size(); ++i) {
      auto& t = *tablets_[i];
      const auto work = t.work_offline(rng_, visits, day_offset);
      std::cout << formatted("  %-22s +%zu clients, +%zu visits, %zu reviewed, %zu deleted; outbox %zu\n",
                             t.profile().name.c_str(), work.clients_created, work.visits_created, work.visits_edited,
                             work.visits_deleted, t.local().outbox_size());
      if (!receipt_ && work.first_visit) {
        receipt_ = followed_receipt{i, *work.first_visit, false};
        std::cout << "  receipt: visit " << work.first_visit->to_string() << " recorded offline by "
                  << t.profile().name << ": synced=" << (t.local().is_synced("visits", receipt_->visit) ? "true" : "false")
                  << "\n";
      }
    }
    if (tablets_.size() < 2) return;
    if (auto edit = edit_concurrently(round)) {
      std::cout << "  concurrent edits of visit " << short_id(edit->visit) << ":";
      for (const auto& [name, status] : edit->writes) std::cout << " " << name << " sets status '" << status << "';";
      std::cout << " all offline\n";
      concurrent_edits_.push_back(std::move(*edit));
    } else {
      std::cout << "  (no visit is on two tablets yet: concurrent edits start once tablets have synced)\n";
    }
  }

  /// The tablets come online in random order; each may have no signal this round,
  /// except that someone always gets through.
  void come_online(std::size_t round) {
    std::cout << "--- round " << round << ": tablets come online in random order\n";
    std::vector<std::size_t> order(tablets_.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::shuffle(order.begin(), order.end(), rng_);
    const auto always_online = order.back();
    for (const auto i : order) {
      auto& t = *tablets_[i];
      if (i != always_online && chance(rng_, k_no_signal_chance)) {
        std::cout << formatted("  %-22s no signal in the village; %zu changes wait in the outbox\n",
                               t.profile().name.c_str(), t.local().outbox_size());
        continue;
      }
      try_sync(t);
    }
  }

  /// Every tablet syncs twice, round-robin: the first pass brings every outbox to the
  /// server, the second brings everything to every tablet. Throws std::runtime_error if
  /// a tablet keeps failing.
  void sync_everyone() {
    std::cout << "\n--- final sync: every tablet, twice round-robin, so that everyone has everything\n";
    for (int pass = 0; pass < 2; ++pass) {
      for (auto& t : tablets_) {
        for (int attempt = 1; !try_sync(*t); ++attempt) {
          if (attempt == k_final_sync_attempts) {
            throw std::runtime_error(t->profile().name + " could not sync; see " + server_log_);
          }
          std::this_thread::sleep_for(std::chrono::milliseconds(500));
        }
      }
    }
  }

  /// What each tablet holds now for each concurrently edited visit.
  void show_concurrent_edits() const {
    if (concurrent_edits_.empty()) return;
    std::cout << "\n--- concurrent edits, after sync: per field, the write with the greatest\n"
                 "    (hybrid clock stamp, node id) version wins, identically on every replica;\n"
                 "    the note is keep_both, so the notes that lost stay as an open conflict\n";
    for (const auto& edit : concurrent_edits_) {
      std::set<std::string> held;
      for (const auto& t : tablets_) {
        const auto fields = t->local().get("visits", edit.visit);
        held.insert(fields ? "status '" + text_field(fields, "status") + "'" : std::string("deleted"));
      }
      // The note is keep_both: the notes that lost are open conflicts, the same everywhere.
      std::set<std::size_t> kept;
      for (const auto& t : tablets_) {
        const auto open = t->local().conflicts("visits", edit.visit);
        kept.insert(open.empty() ? 0 : open.front().others.size());
      }
      std::cout << "  visit " << short_id(edit.visit) << " (round " << edit.round << ", " << edit.writes.size()
                << " writers): ";
      if (held.size() == 1 && kept.size() == 1) {
        std::cout << "every tablet holds " << *held.begin() << " and " << *kept.begin()
                  << " other note(s) as an open conflict\n";
      } else {
        std::cout << "tablets DIFFER:";
        for (const auto& h : held) std::cout << " " << h << ";";
        std::cout << "\n";
      }
    }
  }

  /// A coordinator reads the open conflicts and resolves each note by keeping every text;
  /// the next syncs close them on every tablet.
  void resolve_notes() {
    if (concurrent_edits_.empty()) return;
    auto& coordinator = *tablets_.back();
    std::size_t resolved = 0;
    for (const auto& c : coordinator.local().conflicts()) {
      if (c.record_deleted || c.record_revived) continue;
      std::string merged = std::get<std::string>(c.current.val);
      for (const auto& o : c.others) merged += "\n" + std::get<std::string>(o.val);
      coordinator.local().resolve_conflict(c.collection, c.record, c.field, value{merged});
      ++resolved;
    }
    std::cout << "\n--- " << coordinator.profile().name << " resolves " << resolved
              << " open conflict(s), keeping every note's text; everyone syncs again\n";
    sync_everyone();
    std::size_t open = 0;
    for (const auto& t : tablets_) open += t->local().conflict_count();
    std::cout << "  open conflicts left on all tablets: " << open << "\n";
  }

  const std::vector<std::unique_ptr<tablet>>& tablets() const noexcept { return tablets_; }
  const sync_totals& totals() const noexcept { return totals_; }

 private:
  /// One sync; a transient failure (no signal after all) is reported and left for later,
  /// anything else ends the demo. Returns whether the sync completed.
  bool try_sync(tablet& t) {
    try {
      const auto r = t.sync();
      std::cout << formatted("  %-22s pushed %4zu  pulled %5zu  conflicts %3zu  sent %10s  received %10s  %5lld ms\n",
                             t.profile().name.c_str(), r.pushed, r.pulled, r.conflicts,
                             human_bytes(r.bytes_sent).c_str(), human_bytes(r.bytes_received).c_str(),
                             static_cast<long long>(r.duration.count()));
      ++totals_.syncs;
      totals_.pushed += r.pushed;
      totals_.pulled += r.pulled;
      totals_.conflicts += r.conflicts;
      totals_.bytes_sent += r.bytes_sent;
      totals_.bytes_received += r.bytes_received;
    } catch (const caresync::error& e) {
      if (!is_transient(e.code())) throw;
      std::cout << "  " << t.profile().name << ": sync failed (" << e.what() << "); nothing is lost, it retries later\n";
      return false;
    }
    if (receipt_ && !receipt_->shown_synced && tablets_[receipt_->tablet].get() == &t &&
        t.local().is_synced("visits", receipt_->visit)) {
      std::cout << "  receipt: visit " << receipt_->visit.to_string() << " after " << t.profile().name
                << "'s sync: synced=true (the server has acknowledged it)\n";
      receipt_->shown_synced = true;
    }
    return true;
  }

  /// Has up to three tablets that hold the same visit change its status while offline,
  /// each to a different value. Returns std::nullopt when no visit is on two tablets yet.
  std::optional<concurrent_edit> edit_concurrently(std::size_t round) {
    std::map<std::string, std::size_t> by_name;
    for (std::size_t i = 0; i < tablets_.size(); ++i) by_name[tablets_[i]->profile().name] = i;
    const auto start = pick_index(rng_, tablets_.size());
    for (std::size_t k = 0; k < tablets_.size(); ++k) {
      auto ids = tablets_[(start + k) % tablets_.size()]->visit_ids();
      std::shuffle(ids.begin(), ids.end(), rng_);
      if (ids.size() > 50) ids.resize(50);
      for (const auto& visit : ids) {
        std::vector<std::size_t> holders;
        std::string worker;
        for (std::size_t i = 0; i < tablets_.size(); ++i) {
          if (const auto fields = tablets_[i]->local().get("visits", visit)) {
            holders.push_back(i);
            worker = text_field(fields, "worker");
          }
        }
        // The visit's own worker must still hold it: an edit racing a delete ends as a
        // tombstone, which is a different lesson.
        const auto owner = by_name.find(worker);
        const bool owner_holds =
            owner == by_name.end() || std::find(holders.begin(), holders.end(), owner->second) != holders.end();
        if (holders.size() < 2 || !owner_holds) continue;
        std::shuffle(holders.begin(), holders.end(), rng_);
        holders.resize(std::min(holders.size(), k_max_concurrent_editors));
        concurrent_edit edit{visit, round, {}};
        for (const auto i : holders) {
          const auto status = "reviewed by " + tablets_[i]->profile().name;
          tablets_[i]->set_status(visit, status);
          edit.writes.emplace_back(tablets_[i]->profile().name, status);
        }
        return edit;
      }
    }
    return std::nullopt;
  }

  std::vector<std::unique_ptr<tablet>> tablets_;
  demo_rng rng_;
  std::string server_log_;
  sync_totals totals_;
  std::optional<followed_receipt> receipt_;
  std::vector<concurrent_edit> concurrent_edits_;
};

/// Digest and live-record counts of the server's change log, read after the server stopped.
struct server_state_summary {
  std::string digest;
  std::map<std::string, std::size_t> live;
  std::uint64_t head = 0;
};

server_state_summary summarize_server(const std::string& database_file) {
  auto log = server::open_sqlite_change_store(database_file);
  server_state_summary summary;
  summary.head = log->head();
  state_hasher hasher;
  // std::map orders by (collection, id): the order state_hasher requires.
  for (const auto& [key, state] : log->materialize()) {
    hasher.add(key.first, key.second, state);
    if (!state.deleted) ++summary.live[key.first];
  }
  summary.digest = hasher.finish();
  return summary;
}

/// Prints one row per replica and returns how many different digests there are.
std::size_t print_replicas(const std::vector<std::unique_ptr<tablet>>& tablets, const server_state_summary& server) {
  std::cout << "\n"
            << formatted("%-26s %8s %8s %8s %8s  %s\n", "replica", "clients", "visits", "outbox", "cursor", "digest");
  std::set<std::string> digests{server.digest};
  for (const auto& t : tablets) {
    const auto& local = t->local();
    const auto digest = local.state_digest();
    digests.insert(digest);
    std::cout << formatted("%-26s %8zu %8zu %8zu %8llu  %s\n", t->profile().name.c_str(), local.count("clients"),
                           local.count("visits"), local.outbox_size(), static_cast<unsigned long long>(local.cursor()),
                           digest.substr(0, k_digest_prefix).c_str());
  }
  const auto live = [&](const char* collection) {
    const auto it = server.live.find(collection);
    return it == server.live.end() ? std::size_t{0} : it->second;
  };
  std::cout << formatted("%-26s %8zu %8zu %8s %8llu  %s\n", "caresync-server (its log)", live("clients"),
                         live("visits"), "-", static_cast<unsigned long long>(server.head),
                         server.digest.substr(0, k_digest_prefix).c_str());
  return digests.size();
}

/// Opens (creating on first run) each tablet's store, pointed at the server.
std::vector<std::unique_ptr<tablet>> open_tablets(const std::vector<tablet_profile>& profiles, const demo_state& state,
                                                  std::uint16_t port) {
  std::vector<std::unique_ptr<tablet>> tablets;
  for (const auto& p : profiles) {
    sync_options o;
    o.host = "127.0.0.1";
    o.port = port;
    o.ca_file = state.ca_file;
    o.device_id = p.name;
    o.token = state.tokens.at(p.name);
    o.connect_timeout = std::chrono::milliseconds(5000);
    tablets.push_back(std::make_unique<tablet>(p, tablet_store_path(state, p.name), o));
    const auto& local = tablets.back()->local();
    std::cout << formatted("tablet %-22s %-25s %-15s ", p.name.c_str(), p.role.c_str(), p.org_unit.c_str())
              << (local.count("visits") + local.count("clients") == 0 && local.cursor() == 0
                      ? std::string("new store")
                      : formatted("store holds %zu visits", local.count("visits")))
              << "\n";
  }
  return tablets;
}

int run(const demo_options& options) {
  const auto started = std::chrono::steady_clock::now();
  const auto profiles = tablet_profiles(options.tablets);
  std::vector<std::string> names;
  for (const auto& p : profiles) names.push_back(p.name);

  std::cout << "caresync demo: a caresync-server on 127.0.0.1 and " << options.tablets << " simulated tablet"
            << (options.tablets == 1 ? "" : "s") << "; every name and note is synthetic.\n"
            << "seed " << options.seed << " (--seed " << options.seed << " repeats this run's choices)\n\n";

  const auto state = prepare_state_directory(options.dir, names, std::cout);
  if (options.fresh) {
    std::cout << "--fresh: removed " << remove_replicas(state)
              << " file(s) of tablet stores and the server's change log; certificates and tokens kept\n";
  }

  server_process server(options.server_binary, state.config_file, state.log_file, k_server_start_timeout);
  std::cout << "started " << options.server_binary << " (pid " << server.pid() << ") on 127.0.0.1:" << server.port()
            << "; its log: " << state.log_file << "\n\n";

  simulation sim(open_tablets(profiles, state, server.port()), options.seed, state.log_file);
  for (std::size_t round = 1; round <= options.rounds; ++round) {
    sim.work_offline(round, options.rounds, options.visits);
    sim.come_online(round);
  }
  sim.sync_everyone();
  sim.show_concurrent_edits();
  sim.resolve_notes();

  const int server_status = server.stop();
  const bool server_clean = WIFEXITED(server_status) && WEXITSTATUS(server_status) == 0;
  std::cout << "\ncaresync-server stopped with SIGTERM and " << describe_wait_status(server_status)
            << (server_clean ? "" : "; see " + state.log_file) << "\n";
  const auto server_summary = summarize_server(state.database_file);
  const auto states = print_replicas(sim.tablets(), server_summary);

  const auto& totals = sim.totals();
  const auto elapsed =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
  std::cout << "\n"
            << totals.syncs << " syncs: " << totals.pushed << " changes pushed, " << totals.pulled << " pulled, "
            << totals.conflicts << " incoming writes lost to newer ones or kept as conflicts; " << human_bytes(totals.bytes_sent)
            << " sent, " << human_bytes(totals.bytes_received) << " received; " << elapsed.count() << " ms in all\n";

  const auto n = sim.tablets().size();
  if (states == 1) {
    std::cout << "CONVERGED: " << (n == 1 ? std::string("the tablet") : "all " + std::to_string(n) + " tablets")
              << " and the server hold identical state (digest " << server_summary.digest.substr(0, k_digest_prefix)
              << ")\n";
    return server_clean ? k_exit_ok : k_exit_failed;
  }
  std::cout << "NOT CONVERGED: " << states << " different states among " << n << " tablets and the server\n";
  return k_exit_failed;
}

}  // namespace

int main(int argc, char** argv) {
  demo_options options;
  CLI::App app{"caresync-demo: a caresync-server on 127.0.0.1 and simulated tablets that record visits offline, "
               "sync in random order and converge"};
  app.add_option("--dir", options.dir, "State directory: certificates, tokens, stores, server log")
      ->capture_default_str();
  app.add_option("--tablets", options.tablets, "Number of simulated tablets")
      ->capture_default_str()
      ->check(CLI::Range(1, 100));
  app.add_option("--visits", options.visits, "Visits each tablet records per round")
      ->capture_default_str()
      ->check(CLI::Range(0, 100000));
  app.add_option("--rounds", options.rounds, "Rounds of offline work and sync")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  auto* seed = app.add_option("--seed", options.seed, "Seed of the simulation's choices (default: random)");
  app.add_option("--server", options.server_binary, "The caresync-server binary to run")->capture_default_str();
  app.add_flag("--fresh", options.fresh, "Start with empty tablet stores and server log (keeps certificates and tokens)");
  // ./scripts/demo passes --dir demo-data before the user's options: the last value wins.
  for (auto* option : app.get_options()) option->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  CLI11_PARSE(app, argc, argv);
  if (seed->count() == 0) options.seed = std::random_device{}();

  try {
    return run(options);
  } catch (const std::exception& e) {
    std::cout.flush();
    std::cerr << "caresync-demo: " << e.what() << std::endl;
    return k_exit_failed;
  }
}
