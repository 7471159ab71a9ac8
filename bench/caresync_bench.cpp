// caresync-bench: local write rates against raw SQLite, sync times and bytes on the wire
// against a real in-process server over TLS on 127.0.0.1. Prints one JSON object on
// stdout; progress goes to stderr. See bench/README.md for what every key means.

#include "loopback_server.hpp"
#include "raw_sqlite_insert.hpp"
#include "visit_workload.hpp"

#include <caresync/protocol/errors.hpp>
#include <caresync/store.hpp>
#include <caresync/sync_client.hpp>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <sqlite3.h>
#include <stdlib.h>   // mkdtemp (POSIX)
#include <sys/vfs.h>  // statfs (Linux)

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#ifndef CARESYNC_BENCH_BUILD_TYPE
#define CARESYNC_BENCH_BUILD_TYPE "unknown"
#endif

namespace {

namespace fs = std::filesystem;
using caresync::durability;
using clock_type = std::chrono::steady_clock;

constexpr std::uint64_t k_seed = 20240917;
constexpr const char* k_collection = "visits";
constexpr const char* k_last_week = "2024-12-25";  ///< the visits span 2024: its last week comes first in D

/// What the command line asks for.
struct bench_options {
  std::size_t records = 10'000;
  std::size_t single = 1'000;
  std::string durability_name = "full";
  std::string dir;
  bool keep = false;
};

/// A fresh directory for this run's files, removed with them at the end unless kept.
class run_directory {
 public:
  run_directory(const std::string& parent, bool keep) : keep_(keep) {
    const fs::path base = parent.empty() ? fs::temp_directory_path() : fs::path(parent);
    std::error_code ec;
    fs::create_directories(base, ec);
    std::string pattern = (base / "caresync-bench-XXXXXX").string();
    if (ec || ::mkdtemp(pattern.data()) == nullptr) {
      throw caresync::error(make_error_code(caresync::storage_errc::open_failed),
                            "cannot create a directory under '" + base.string() +
                                "'; pass --dir with a writable directory");
    }
    path_ = pattern;
  }
  ~run_directory() {
    if (keep_) {
      std::cerr << "caresync-bench: files kept in " << path_.string() << "\n";
      return;
    }
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  run_directory(const run_directory&) = delete;
  run_directory& operator=(const run_directory&) = delete;

  const fs::path& path() const noexcept { return path_; }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
  bool keep_;
};

void progress(const std::string& line) { std::cerr << "caresync-bench: " << line << std::endl; }

double milliseconds(clock_type::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double rate(std::size_t count, clock_type::duration d) {
  const double seconds = std::chrono::duration<double>(d).count();
  return seconds > 0 ? static_cast<double>(count) / seconds : 0.0;
}

/// Rounds for reading; the JSON need not carry 17 significant digits of noise.
double rounded(double x, int decimals) {
  const double scale = std::pow(10.0, decimals);
  return std::round(x * scale) / scale;
}

std::unique_ptr<caresync::store> open_store(const run_directory& dir, const std::string& name, durability mode) {
  return caresync::store::open(caresync::store_options{dir.file(name + ".db"), caresync::bench::visit_schema(), mode});
}

/// One timed sync of `local` as device `device`.
struct timed_sync {
  caresync::sync_report report;
  clock_type::duration elapsed{};
};

timed_sync sync_once(caresync::store& local, caresync::sync_options options) {
  caresync::sync_client client(local, std::move(options));
  const auto start = clock_type::now();
  timed_sync result;
  result.report = client.sync();
  result.elapsed = clock_type::now() - start;
  return result;
}

nlohmann::json report_json(const timed_sync& s) {
  return {{"ms", rounded(milliseconds(s.elapsed), 1)},
          {"pushed", s.report.pushed},
          {"batches", s.report.batches},
          {"pulled", s.report.pulled},
          {"pages", s.report.pages},
          {"bytes_sent", s.report.bytes_sent},
          {"bytes_received", s.report.bytes_received}};
}

std::string cpu_model() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(' ', colon + 1));
    }
  }
  return "unknown";
}

/// The file system the run's files live on: fsync costs nothing on tmpfs, which makes
/// the single-write and durability numbers meaningless there.
std::string file_system_of(const fs::path& dir) {
  struct statfs info {};
  if (::statfs(dir.c_str(), &info) != 0) return "unknown";
  static const std::map<unsigned long, std::string> k_names = {
      {0xEF53UL, "ext4"},     {0x01021994UL, "tmpfs"}, {0x58465342UL, "xfs"},  {0x9123683EUL, "btrfs"},
      {0x794C7630UL, "overlay"}, {0x6969UL, "nfs"},    {0xF2F52010UL, "f2fs"}, {0x65735546UL, "fuse"}};
  const auto it = k_names.find(static_cast<unsigned long>(info.f_type));
  if (it != k_names.end()) return it->second;
  char hex[24];
  std::snprintf(hex, sizeof hex, "0x%lx", static_cast<unsigned long>(info.f_type));
  return hex;
}

/// Runs every measurement; returns the JSON object and whether all replicas converged.
nlohmann::json run(const bench_options& opt, bool& healthy) {
  const durability mode = opt.durability_name == "normal" ? durability::normal : durability::full;
  const std::size_t n = opt.records;
  run_directory dir(opt.dir, opt.keep);
  progress("working in " + dir.path().string() + ", durability " + opt.durability_name);

  // Everything written is made before any clock starts.
  progress("generating " + std::to_string(n) + " visits");
  const auto generate_start = clock_type::now();
  const auto visits = caresync::bench::make_visits(n, k_seed);
  std::vector<std::vector<caresync::field_write>> rows;
  rows.reserve(n);
  for (const auto& v : visits) rows.push_back(caresync::bench::to_fields(v));
  const auto generate_elapsed = clock_type::now() - generate_start;

  // 1. One create per transaction: bound by one fsync (FULL) per commit.
  progress("local writes, one transaction each: " + std::to_string(opt.single));
  clock_type::duration single_elapsed{};
  {
    auto single = open_store(dir, "single", mode);
    const auto start = clock_type::now();
    for (std::size_t i = 0; i < opt.single; ++i) single->create(k_collection, rows[i % n]);
    single_elapsed = clock_type::now() - start;
  }

  // 2. All creates in one transaction, into store A, which then pushes them.
  progress("local writes, one transaction: " + std::to_string(n));
  auto a = open_store(dir, "a", mode);
  std::vector<caresync::record_id> ids;
  ids.reserve(n);
  const auto batched_start = clock_type::now();
  a->transaction([&] {
    for (const auto& row : rows) ids.push_back(a->create(k_collection, row));
  });
  const auto batched_elapsed = clock_type::now() - batched_start;

  // 3. The baseline: the same rows with plain sqlite3.
  progress("raw SQLite inserts, one transaction: " + std::to_string(n));
  const auto raw_elapsed = caresync::bench::raw_sqlite_insert(dir.file("raw.db"), visits, mode);

  // 4. Sync through a real server over TLS on loopback.
  progress("starting the server");
  const auto server_start = clock_type::now();
  caresync::bench::loopback_server server(dir.path(), 4);
  const auto server_start_elapsed = clock_type::now() - server_start;
  progress("sync A: push " + std::to_string(n));
  const auto push = sync_once(*a, server.options(0));
  progress("sync B (fresh store): initial pull");
  auto b = open_store(dir, "b", mode);
  const auto pull = sync_once(*b, server.options(1));
  // 6. The same initial pull without compression, into a third store.
  progress("sync C (fresh store): initial pull, compression off");
  auto c = open_store(dir, "c", mode);
  auto uncompressed_options = server.options(2);
  uncompressed_options.compress = false;
  const auto pull_uncompressed = sync_once(*c, uncompressed_options);

  // 6a. A prioritised initial sync into a fresh store D: the last week's visits first
  // (the visits span 2024). The time until they are all in, against the whole sync.
  progress("sync D (fresh store): initial pull, last week's visits first");
  auto d = open_store(dir, "d", mode);
  auto prime_options = server.options(3);
  prime_options.priority = {caresync::priority_tier::at_least(k_collection, "date", std::string(k_last_week))};
  clock_type::time_point prime_start{}, prime_ready{};
  prime_options.on_progress = [&](const caresync::sync_progress& p) {
    if (p.priority_ready && prime_ready == clock_type::time_point{}) prime_ready = clock_type::now();
  };
  prime_start = clock_type::now();
  const auto pull_prime = sync_once(*d, prime_options);
  const double prime_ready_ms = prime_ready == clock_type::time_point{} ? -1.0 : milliseconds(prime_ready - prime_start);
  const std::size_t last_week =
      static_cast<std::size_t>(std::count_if(visits.begin(), visits.end(), [](const auto& v) { return v.date >= k_last_week; }));

  // 5. The cost of one field edit: an edit sync minus a sync with nothing to do.
  progress("one-field edit");
  const auto empty_push = sync_once(*a, server.options(0));
  const auto empty_pull = sync_once(*b, server.options(1));
  if (ids.empty()) throw std::logic_error("no records to edit; pass --records 1 or more");
  a->update(k_collection, ids.front(), {{"status", std::string("done")}});
  const auto edit_push = sync_once(*a, server.options(0));
  const auto edit_pull = sync_once(*b, server.options(1));

  // 6b. Live mode: B waits after its pull; A records one visit and syncs. The time from
  // the start of A's sync to B holding the visit.
  progress("live mode: one visit from A to a waiting B");
  double live_notify_ms = -1;
  std::size_t live_records = 0;  // visits created for the live-mode measurement
  {
    auto live_options = server.options(1);
    live_options.live_wait = std::chrono::seconds(30);
    clock_type::time_point received{};
    caresync::sync_report live_report;
    std::thread waiting([&] {
      live_report = caresync::sync_client(*b, live_options).sync();
      received = clock_type::now();
    });
    for (int i = 0; i < 3000 && server.get().stats().sessions_waiting == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    a->create(k_collection, rows.front());
    ++live_records;
    const auto sent = clock_type::now();
    caresync::sync_client(*a, server.options(0)).sync();
    waiting.join();
    if (live_report.woken) live_notify_ms = milliseconds(received - sent);
  }

  // 7. Every replica up to date, then compare what each holds.
  progress("final syncs and digests");
  const auto final_a = sync_once(*a, server.options(0));
  const auto final_b = sync_once(*b, server.options(1));
  const auto final_c = sync_once(*c, uncompressed_options);
  prime_options.on_progress = nullptr;
  const auto final_d = sync_once(*d, prime_options);
  const auto digest_start = clock_type::now();
  const std::string digest_a = a->state_digest();
  const auto digest_elapsed = clock_type::now() - digest_start;
  const std::string digest_b = b->state_digest();
  const std::string digest_c = c->state_digest();
  const bool converged = digest_a == digest_b && digest_b == digest_c && digest_c == d->state_digest();
  const auto stats = server.get().stats();
  server.stop();

  // The live-mode record (6.) is on every replica too.
  const bool counts_ok = push.report.pushed == n && pull.report.pulled == n && pull_uncompressed.report.pulled == n &&
                         b->count(k_collection) == n + live_records && c->count(k_collection) == n + live_records &&
                         a->outbox_size() == 0 && pull_prime.report.pulled == n && pull_prime.report.primed == last_week &&
                         d->count(k_collection) == n + live_records;
  healthy = converged && counts_ok;

  const double single_rps = rate(opt.single, single_elapsed);
  const double batched_rps = rate(n, batched_elapsed);
  const double raw_rps = rate(n, raw_elapsed);
  const double push_ms = milliseconds(push.elapsed);
  const double pull_ms = milliseconds(pull.elapsed);
  const double e2e_rps = push_ms + pull_ms > 0 ? static_cast<double>(n) / ((push_ms + pull_ms) / 1000.0) : 0.0;
  const double records = n ? static_cast<double>(n) : 1.0;
  auto difference = [](std::uint64_t x, std::uint64_t y) { return static_cast<std::int64_t>(x) - static_cast<std::int64_t>(y); };

  nlohmann::json out;
  out["records"] = n;
  out["single_records"] = opt.single;
  out["durability"] = opt.durability_name;
  out["local_write_rps_single"] = rounded(single_rps, 1);
  out["local_write_rps_batched"] = rounded(batched_rps, 1);
  out["raw_sqlite_rps"] = rounded(raw_rps, 1);
  out["sync_push_ms"] = rounded(push_ms, 1);
  out["sync_pull_ms"] = rounded(pull_ms, 1);
  out["live_notify_ms"] = rounded(live_notify_ms, 1);
  out["prime_records"] = last_week;
  out["prime_ready_ms"] = rounded(prime_ready_ms, 1);
  out["prime_sync_ms"] = rounded(milliseconds(pull_prime.elapsed), 1);
  out["prime_bytes_per_record"] = rounded(static_cast<double>(pull_prime.report.bytes_received) / records, 2);
  out["sync_e2e_rps"] = rounded(e2e_rps, 1);
  out["bytes_per_record_initial"] = rounded(static_cast<double>(pull.report.bytes_received) / records, 2);
  out["push_bytes_per_record"] = rounded(static_cast<double>(push.report.bytes_sent) / records, 2);
  out["bytes_per_record_initial_uncompressed"] =
      rounded(static_cast<double>(pull_uncompressed.report.bytes_received) / records, 2);
  out["bytes_per_field_edit"] = difference(edit_push.report.bytes_sent, empty_push.report.bytes_sent);
  out["edit_sync_bytes_sent"] = edit_push.report.bytes_sent;
  out["empty_sync_bytes_sent"] = empty_push.report.bytes_sent;
  out["bytes_per_field_edit_pull"] = difference(edit_pull.report.bytes_received, empty_pull.report.bytes_received);
  out["edit_pull_bytes_received"] = edit_pull.report.bytes_received;
  out["empty_pull_bytes_received"] = empty_pull.report.bytes_received;
  out["ratios"] = {{"e2e_vs_raw", raw_rps > 0 ? rounded(e2e_rps / raw_rps, 4) : 0.0},
                   {"batched_vs_raw", raw_rps > 0 ? rounded(batched_rps / raw_rps, 4) : 0.0},
                   {"single_vs_batched", batched_rps > 0 ? rounded(single_rps / batched_rps, 4) : 0.0}};
  out["targets_met"] = {{"e2e_at_least_25pct_of_raw", raw_rps > 0 && e2e_rps >= 0.25 * raw_rps},
                        {"batched_at_least_50pct_of_raw", raw_rps > 0 && batched_rps >= 0.5 * raw_rps},
                        {"field_edit_under_100_bytes",
                         difference(edit_push.report.bytes_sent, empty_push.report.bytes_sent) < 100},
                        {"initial_record_under_250_bytes",
                         static_cast<double>(pull.report.bytes_received) / records < 250.0}};
  out["converged"] = converged;
  out["counts_ok"] = counts_ok;
  out["syncs"] = {{"push_a", report_json(push)},
                  {"pull_b", report_json(pull)},
                  {"pull_c_uncompressed", report_json(pull_uncompressed)},
                  {"empty_a", report_json(empty_push)},
                  {"empty_b", report_json(empty_pull)},
                  {"edit_a", report_json(edit_push)},
                  {"edit_pull_b", report_json(edit_pull)},
                  {"final_a", report_json(final_a)},
                  {"final_b", report_json(final_b)},
                  {"final_c", report_json(final_c)},
                  {"pull_prime_d", report_json(pull_prime)},
                  {"final_d", report_json(final_d)}};
  // Work outside the measurements, timed so a slow run can be explained.
  out["unmeasured_ms"] = {{"generate_rows", rounded(milliseconds(generate_elapsed), 1)},
                          {"server_start", rounded(milliseconds(server_start_elapsed), 1)},
                          {"state_digest_one_store", rounded(milliseconds(digest_elapsed), 1)}};
  out["server"] = {{"sessions_accepted", stats.sessions_accepted},
                   {"sessions_refused", stats.sessions_refused},
                   {"changes_accepted", stats.changes_accepted},
                   {"batches_replayed", stats.batches_replayed}};
  out["machine"] = {{"hardware_concurrency", std::thread::hardware_concurrency()},
                    {"cpu_model", cpu_model()},
                    {"sqlite_version", sqlite3_libversion()},
                    {"file_system", file_system_of(dir.path())},
                    {"build_type", CARESYNC_BENCH_BUILD_TYPE}};
  out["notes"] =
      "bytes_per_record_initial = bytes B received in its initial sync (hello, auth and pull pages, "
      "TLS application bytes with frame headers, compressed) / records; push_bytes_per_record = bytes A sent "
      "in its push sync / records. bytes_per_field_edit = bytes_sent of A's sync after updating one field "
      "(status) of one record minus bytes_sent of an empty sync; bytes_per_field_edit_pull likewise for B's "
      "bytes_received. sync_e2e_rps = records / (sync_push_ms + sync_pull_ms). The raw SQLite baseline binds "
      "pre-made ids; caresync's create makes its own. Single-write records repeat the rows when --single > --records. "
      "prime_*: a fresh store D pulls with the visits dated from 2024-12-25 (the last week of the visits' year) as "
      "its priority tier: prime_records of them, all in after prime_ready_ms of a prime_sync_ms initial sync.";
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  bench_options opt;
  CLI::App app{"caresync-bench: local write rates, sync times and bytes on the wire, printed as one JSON object"};
  app.add_option("--records", opt.records, "visits written in one transaction and synced")->check(CLI::Range(1, 100'000'000));
  app.add_option("--single", opt.single, "visits written one transaction each (fsync-bound)")->check(CLI::NonNegativeNumber);
  app.add_option("--durability", opt.durability_name, "store commit durability: full or normal")
      ->check(CLI::IsMember({"full", "normal"}));
  app.add_option("--dir", opt.dir, "parent of the run's fresh directory (default: the system temp directory)");
  app.add_flag("--keep", opt.keep, "keep the run's directory and files");
  CLI11_PARSE(app, argc, argv);

  try {
    bool healthy = false;
    const auto result = run(opt, healthy);
    std::cout << result.dump(2) << std::endl;
    if (!healthy) {
      std::cerr << "caresync-bench: replicas did not converge or counts differ; see \"converged\" and \"counts_ok\"\n";
      return 1;
    }
    return 0;
  } catch (const caresync::error& e) {
    std::cerr << "caresync-bench: " << e.what() << " [" << e.code().category().name() << ":" << e.code().value()
              << "]\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "caresync-bench: " << e.what() << "\n";
    return 1;
  }
}
