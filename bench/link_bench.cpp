// caresync-link-bench: a fresh tablet's initial sync of the sample region
// (examples/sample) through emulated links (tests/support/fault_proxy): slow, medium and
// fast profiles, each cut every 10 s, every 30 s or never. Loops sync() until it finishes
// or the run's deadline passes, and prints one JSON object on stdout: time, bytes each
// way, cuts survived, connections, rows stored, bytes wasted per cut. Progress goes to
// stderr. See bench/README.md, "caresync-link-bench".

#include "../examples/sample/sample_region.hpp"
#include "../tests/support/fault_proxy.hpp"
#include "loopback_server.hpp"

#include <caresync/care.hpp>
#include <caresync/protocol/errors.hpp>
#include <caresync/store.hpp>
#include <caresync/sync_client.hpp>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#ifndef CARESYNC_BENCH_BUILD_TYPE
#define CARESYNC_BENCH_BUILD_TYPE "unknown"
#endif

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;
using namespace caresync;
using caresync::testing::fault_proxy;
using caresync::testing::link_faults;

namespace {

/// A link as the proxy emulates it: the same bandwidth each way, half the round trip
/// added each way.
struct link_profile {
  std::string name;
  std::uint64_t bits_per_second;
  std::chrono::milliseconds rtt;
};

const std::vector<link_profile> k_profiles{
    {"64k", 64'000, std::chrono::milliseconds(600)},       // a village at the edge of coverage (issue 19)
    {"384k", 384'000, std::chrono::milliseconds(300)},     // a weak 3G cell
    {"10M", 10'000'000, std::chrono::milliseconds(50)},    // an office or good 4G
};

struct bench_options {
  std::vector<std::string> profiles{"64k", "384k", "10M"};
  std::vector<unsigned> cuts{10, 30, 0};  ///< cut every this many seconds; 0: never
  std::size_t clients = 2000;
  double deadline_s = 400;
  bool quick = false;
  std::uint64_t seed = 1;
  std::string dir;
  bool keep = false;
};

void progress(const std::string& line) { std::cerr << "caresync-link-bench: " << line << "\n"; }

double rounded(double x, int decimals) {
  const double scale = std::pow(10.0, decimals);
  return std::round(x * scale) / scale;
}

/// A fresh directory for the server and the tablets, removed at the end unless kept.
class run_directory {
 public:
  run_directory(const std::string& parent, bool keep) : keep_(keep) {
    const fs::path base = parent.empty() ? fs::temp_directory_path() : fs::path(parent);
    std::random_device rd;
    do {
      path_ = base / ("caresync-link-bench-" + std::to_string(rd()));
    } while (!fs::create_directory(path_));
  }
  ~run_directory() {
    std::error_code ignored;
    if (!keep_) fs::remove_all(path_, ignored);
  }
  run_directory(const run_directory&) = delete;
  run_directory& operator=(const run_directory&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
  bool keep_;
};

/// Records in every collection of `s`.
std::size_t rows_in(const store& s) {
  std::size_t n = 0;
  for (const auto& c : s.schema().collections) n += s.count(c.name);
  return n;
}

/// One run: profile x cut interval.
struct run_result {
  std::string profile;
  unsigned cut_every_s = 0;
  double time_s = 0;
  std::uint64_t bytes_received = 0;  ///< delivered to the tablet by the link, all connections
  std::uint64_t bytes_sent = 0;      ///< delivered to the server by the link
  std::uint64_t cuts = 0;            ///< cuts the sync went on after (not the deadline's)
  std::uint64_t connections = 0;
  bool completed = false;
  std::size_t rows = 0;
  std::string error;  ///< the last failure, if the run did not complete
};

/// A fresh tablet (device `device`) syncs through `profile`, cut every `cut_every_s`,
/// calling sync() (one connection each) until one finishes or `deadline_s` passes. A
/// connection still open at the deadline is cut by the proxy then.
run_result run_once(const bench::loopback_server& server, const fs::path& dir, int device, const link_profile& profile,
                    unsigned cut_every_s, double deadline_s) {
  run_result r;
  r.profile = profile.name;
  r.cut_every_s = cut_every_s;
  const auto file = dir / ("tablet-" + std::to_string(device) + ".db");
  store_options so{file.string(), care::schema(), durability::normal};
  auto tablet = store::open(so);
  link_faults link;
  link.bits_per_second = profile.bits_per_second;
  link.delay = profile.rtt / 2;
  fault_proxy proxy(server.options(device).port, link);
  auto o = server.options(device);
  o.port = proxy.port();
  o.retry.max_attempts = 1;  // the loop below reconnects at once, so each cut is one connection
  sync_client client(*tablet, o);

  const auto deadline = std::chrono::duration<double>(deadline_s);
  const auto started = clock_type::now();
  bool deadline_cut = false;
  for (;;) {
    const auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - (clock_type::now() - started));
    if (remaining.count() <= 0) break;
    const std::chrono::milliseconds cut_every = std::chrono::seconds(cut_every_s);
    deadline_cut = cut_every_s == 0 || remaining < cut_every;
    link.cut_after_time = deadline_cut ? remaining : cut_every;
    proxy.set_faults(link);
    try {
      client.sync();
      r.completed = true;
      break;
    } catch (const caresync::error& e) {
      r.error = e.what();
      if (!is_transient(e.code())) break;
    }
  }
  r.time_s = std::chrono::duration<double>(clock_type::now() - started).count();
  r.bytes_received = proxy.bytes_down();
  r.bytes_sent = proxy.bytes_up();
  r.cuts = proxy.cuts();
  if (!r.completed && deadline_cut && r.cuts > 0) --r.cuts;
  r.connections = proxy.connections();
  r.rows = rows_in(*tablet);
  if (r.completed) r.error.clear();
  return r;
}

nlohmann::json run(const bench_options& opt) {
  std::vector<link_profile> profiles;
  for (const auto& name : opt.profiles) {
    bool known = false;
    for (const auto& p : k_profiles) {
      if (p.name == name) profiles.push_back(p), known = true;
    }
    if (!known) throw std::invalid_argument("unknown profile " + name + " (64k, 384k or 10M)");
  }
  run_directory dir(opt.dir, opt.keep);
  progress("working in " + dir.path().string());

  // The region, scaled by its clients (services with them), written by an office
  // tablet and pushed to the server over loopback, outside every measurement.
  sample::region_options ro;
  ro.seed = opt.seed;
  ro.clients = opt.clients;
  ro.services = std::max<std::size_t>(1, opt.clients * 5000 / 2000);
  const auto region = sample::make_region(ro);
  const int runs = static_cast<int>(profiles.size() * opt.cuts.size());
  bench::loopback_server server(dir.path(), runs + 1);
  store_options office_options{(dir.path() / "office.db").string(), care::schema(), durability::normal};
  office_options.server_side = true;  // it writes the registry, whose fields are server_only
  auto office = store::open(office_options);
  {
    care::records care(*office, care::role::registry_admin);
    sample::write_region(care, region);
  }
  progress("pushing the region (" + std::to_string(rows_in(*office)) + " records) over loopback");
  const auto pushed = sync_client(*office, server.options(0)).sync();
  const auto expected = rows_in(*office);

  std::vector<run_result> results;
  int device = 1;
  for (const auto& p : profiles) {
    for (const auto cut : opt.cuts) {
      progress("run " + std::to_string(device) + "/" + std::to_string(runs) + ": " + p.name + ", cut every " +
               (cut ? std::to_string(cut) + " s" : std::string("never")));
      results.push_back(run_once(server, dir.path(), device++, p, cut, opt.deadline_s));
      const auto& r = results.back();
      progress(std::string(r.completed ? "completed" : "not completed") + " in " + std::to_string(r.time_s) + " s, " +
               std::to_string(r.rows) + " rows, " + std::to_string(r.cuts) + " cuts");
    }
  }

  // Bytes wasted per cut: beyond the same profile's uncut run, when there is one that completed.
  std::map<std::string, std::uint64_t> uncut_bytes;
  for (const auto& r : results) {
    if (r.cut_every_s == 0 && r.completed) uncut_bytes[r.profile] = r.bytes_received;
  }
  nlohmann::json out;
  out["bench"] = "caresync-link-bench";
  out["region"] = {{"clients", opt.clients}, {"records", expected}, {"changes", pushed.pushed}};
  out["deadline_s"] = opt.deadline_s;
  bool all_completed = true;
  out["runs"] = nlohmann::json::array();
  for (const auto& r : results) {
    const auto& p = *std::find_if(k_profiles.begin(), k_profiles.end(), [&](const auto& q) { return q.name == r.profile; });
    nlohmann::json j = {{"profile", r.profile},
                        {"kbit_s", p.bits_per_second / 1000},
                        {"rtt_ms", p.rtt.count()},
                        {"cut_every_s", r.cut_every_s},
                        {"time_s", rounded(r.time_s, 2)},
                        {"bytes_received", r.bytes_received},
                        {"bytes_sent", r.bytes_sent},
                        {"cuts", r.cuts},
                        {"connections", r.connections},
                        {"completed", r.completed},
                        {"rows", r.rows},
                        {"expected_rows", expected}};
    const auto uncut = uncut_bytes.find(r.profile);
    if (r.cuts > 0 && r.completed && uncut != uncut_bytes.end()) {
      j["bytes_wasted_per_cut"] = rounded(
          (static_cast<double>(r.bytes_received) - static_cast<double>(uncut->second)) / static_cast<double>(r.cuts), 0);
    } else {
      j["bytes_wasted_per_cut"] = nullptr;
    }
    if (!r.error.empty()) j["error"] = r.error;
    all_completed = all_completed && r.completed && r.rows == expected;
    out["runs"].push_back(j);
  }
  out["all_completed"] = all_completed;
  out["machine"] = {{"hardware_concurrency", std::thread::hardware_concurrency()},
                    {"build_type", CARESYNC_BENCH_BUILD_TYPE}};
  out["notes"] =
      "Each run: a fresh tablet's initial sync of the sample region through tests/support/fault_proxy (bandwidth "
      "each way, half the RTT added each way, the default 64 KiB bottleneck queue), cut cut_every_s after each "
      "connection opens; sync() (one connection each) is called again at once after a transient failure until one "
      "finishes or deadline_s passes. bytes_*: what the link delivered, all connections, TLS included. "
      "bytes_wasted_per_cut: (bytes_received - the same profile's uncut bytes_received) / cuts.";
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  bench_options opt;
  CLI::App app{"caresync-link-bench: a fresh tablet's initial sync of the sample region through emulated links"};
  app.add_option("--profiles", opt.profiles, "Link profiles: 64k (600 ms RTT), 384k (300 ms), 10M (50 ms)")
      ->capture_default_str()
      ->delimiter(',')
      ->check(CLI::IsMember({"64k", "384k", "10M"}));
  app.add_option("--cuts", opt.cuts, "Cut every this many seconds; 0: never")->capture_default_str()->delimiter(',');
  app.add_option("--clients", opt.clients, "Clients in the region (services scale with them)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000000));
  app.add_option("--deadline", opt.deadline_s, "Seconds each run may take")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_flag("--quick", opt.quick, "200 clients, cuts every 10 s and never, deadline 120 s (unless given)");
  app.add_option("--seed", opt.seed, "Seed of the region")->capture_default_str();
  app.add_option("--dir", opt.dir, "Parent of the run's directory (default: the system's temp dir)");
  app.add_flag("--keep", opt.keep, "Keep the run's directory");
  CLI11_PARSE(app, argc, argv);
  if (opt.quick) {
    if (app.count("--clients") == 0) opt.clients = 200;
    if (app.count("--cuts") == 0) opt.cuts = {10, 0};
    if (app.count("--deadline") == 0) opt.deadline_s = 120;
  }
  try {
    const auto out = run(opt);
    std::cout << out.dump(2) << "\n";
    return out["all_completed"].get<bool>() ? 0 : 1;
  } catch (const std::exception& e) {
    std::cerr << "caresync-link-bench: " << e.what() << "\n";
    return 1;
  }
}
