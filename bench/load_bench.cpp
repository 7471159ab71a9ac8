// caresync-load: many devices sync at once against the real caresync-server process over
// TLS on loopback. Each device, with its own store file, records `--changes` visits
// offline; then all start their sync together (one thread each): push, then pull what
// the others pushed so far. Prints one JSON object: sessions ok and failed, session time
// percentiles, the server's CPU seconds and peak RSS (from /proc), changes per second.

#include "../tests/support/server_process.hpp"

#include <caresync/server/certificate.hpp>
#include <caresync/server/config.hpp>
#include <caresync/store.hpp>
#include <caresync/sync_client.hpp>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <sys/resource.h>
#include <unistd.h>

namespace {

using clock_type = std::chrono::steady_clock;
namespace fs = std::filesystem;

caresync::schema visit_schema() {
  using caresync::value_kind;
  return caresync::schema{{caresync::collection_def{"visits",
                                                    {{"client_id", value_kind::text},
                                                     {"worker_id", value_kind::text},
                                                     {"date", value_kind::text},
                                                     {"duration_min", value_kind::integer},
                                                     {"note", value_kind::text},
                                                     {"status", value_kind::text}}}}};
}

/// utime + stime of a process, in seconds.
double cpu_seconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(in, line);
  // Fields after the command name (which may hold spaces) start after the last ')'.
  std::istringstream rest(line.substr(line.rfind(')') + 2));
  std::string field;
  unsigned long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stoul(field);
    if (i == 15) stime = std::stoul(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

/// A /proc/PID/status value in kB (VmHWM: peak resident set).
long status_kb(pid_t pid, const std::string& key) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) == 0) return std::stol(line.substr(key.size() + 1));
  }
  return -1;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto at = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(at, v.size() - 1)];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"caresync-load: many devices sync at once with the real server; prints JSON"};
  int devices = 1000;
  int changes = 50;
  int server_threads = 2;
  std::string server_binary = CARESYNC_SERVER_BINARY;
  std::string parent = fs::temp_directory_path().string();
  bool keep = false;
  app.add_option("--devices", devices, "devices syncing at once (one thread each)")->check(CLI::Range(1, 20000));
  app.add_option("--changes", changes, "visits each device records and pushes")->check(CLI::Range(1, 100000));
  app.add_option("--server-threads", server_threads, "the server's I/O threads")->check(CLI::Range(1, 256));
  app.add_option("--server", server_binary, "caresync-server binary");
  app.add_option("--dir", parent, "parent of the run's fresh directory");
  app.add_flag("--keep", keep, "keep the run's directory");
  CLI11_PARSE(app, argc, argv);

  // A store is three files and a session one socket on each side: lift the soft limit.
  rlimit files{};
  getrlimit(RLIMIT_NOFILE, &files);
  files.rlim_cur = files.rlim_max;
  setrlimit(RLIMIT_NOFILE, &files);

  std::random_device entropy;
  const fs::path dir = fs::path(parent) / ("caresync-load-" + std::to_string(entropy()));
  fs::create_directories(dir);
  nlohmann::json out;
  int status = 0;
  try {
    // Certificates and a config with one fresh token per device.
    const auto ca = caresync::server::make_certificate_authority("caresync-load CA");
    const auto leaf = caresync::server::make_server_certificate(ca, {"localhost"}, {"127.0.0.1"});
    const auto ca_file = (dir / "ca.pem").string();
    caresync::server::server_config config;
    config.port = 0;
    config.threads = static_cast<std::size_t>(server_threads);
    config.certificate_file = (dir / "server-cert.pem").string();
    config.private_key_file = (dir / "server-key.pem").string();
    config.database_file = (dir / "server.db").string();
    // Every simulated device connects from 127.0.0.1, so the per-address limit (64 by
    // default, against one address opening connections without end) is off here: on,
    // it resets those past 64 before TLS, and some run out of retries.
    config.max_connections_per_address = 0;
    caresync::server::write_file(ca_file, ca.certificate_pem, 0644);
    caresync::server::write_file(config.certificate_file, leaf.certificate_pem, 0644);
    caresync::server::write_file(config.private_key_file, leaf.private_key_pem, 0600);
    const std::string token_prefix = "load-" + std::to_string(entropy()) + "-";
    const auto device = [](int i) { return "load-tablet-" + std::to_string(i); };
    for (int i = 0; i < devices; ++i) {
      config.devices.push_back({device(i), caresync::server::hash_token(token_prefix + std::to_string(i))});
    }
    const auto config_file = (dir / "server.toml").string();
    caresync::testing::write_server_config(config_file, config);

    // The offline day: each device records its visits.
    std::cerr << "caresync-load: preparing " << devices << " stores\n";
    std::vector<std::unique_ptr<caresync::store>> stores;
    const std::string note(200, 'n');
    for (int i = 0; i < devices; ++i) {
      stores.push_back(caresync::store::open(caresync::store_options{(dir / (device(i) + ".db")).string(), visit_schema(),
                                                                     caresync::durability::normal}));
      auto& s = *stores.back();
      s.transaction([&] {
        for (int c = 0; c < changes; ++c) {
          s.create("visits", {{"client_id", "client-" + std::to_string(c % 40)},
                              {"worker_id", device(i)},
                              {"date", std::string("2026-11-23")},
                              {"duration_min", std::int64_t{30 + c % 60}},
                              {"note", note},
                              {"status", std::string("done")}});
        }
      });
    }

    caresync::testing::server_process server(server_binary, config_file);
    const double cpu_before = cpu_seconds(server.pid());
    std::cerr << "caresync-load: " << devices << " devices sync at once\n";
    std::vector<double> session_ms(static_cast<std::size_t>(devices), -1);
    std::vector<std::string> errors;
    std::mutex errors_mutex;
    std::atomic<std::uint64_t> pushed{0}, pulled{0}, attempts{0};
    std::barrier start(devices + 1);
    std::vector<std::thread> threads;
    for (int i = 0; i < devices; ++i) {
      threads.emplace_back([&, i] {
        caresync::sync_options o;
        o.port = server.port();
        o.ca_file = ca_file;
        o.device_id = device(i);
        o.token = token_prefix + std::to_string(i);
        o.connect_timeout = std::chrono::milliseconds(60'000);
        o.io_timeout = std::chrono::milliseconds(120'000);
        start.arrive_and_wait();
        const auto t0 = clock_type::now();
        try {
          const auto r = caresync::sync_client(*stores[static_cast<std::size_t>(i)], o).sync();
          session_ms[static_cast<std::size_t>(i)] = std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
          pushed += r.pushed;
          pulled += r.pulled;
          attempts += r.attempts;
        } catch (const std::exception& e) {
          const std::lock_guard lock(errors_mutex);
          errors.push_back(device(i) + ": " + e.what());
        }
      });
    }
    start.arrive_and_wait();
    const auto t0 = clock_type::now();
    for (auto& t : threads) t.join();
    const double wall = std::chrono::duration<double>(clock_type::now() - t0).count();
    const double server_cpu = cpu_seconds(server.pid()) - cpu_before;
    const long peak_rss_kb = status_kb(server.pid(), "VmHWM");
    server.stop(SIGTERM);

    std::vector<double> ok_ms;
    for (const double ms : session_ms) {
      if (ms >= 0) ok_ms.push_back(ms);
    }
    out["devices"] = devices;
    out["changes_per_device"] = changes;
    out["server_threads"] = server_threads;
    out["sessions_ok"] = ok_ms.size();
    out["sessions_failed"] = errors.size();
    out["attempts"] = attempts.load();
    out["first_errors"] = std::vector<std::string>(errors.begin(), errors.begin() + std::min<std::ptrdiff_t>(5, std::ssize(errors)));
    out["session_ms"] = {{"p50", percentile(ok_ms, 0.50)}, {"p99", percentile(ok_ms, 0.99)}, {"max", percentile(ok_ms, 1.0)}};
    out["wall_seconds"] = wall;
    out["server_cpu_seconds"] = server_cpu;
    out["server_peak_rss_mb"] = static_cast<double>(peak_rss_kb) / 1024.0;
    out["changes_pushed"] = pushed.load();
    out["changes_pulled"] = pulled.load();
    out["pushed_per_second"] = static_cast<double>(pushed.load()) / wall;
    out["pulled_per_second"] = static_cast<double>(pulled.load()) / wall;
    out["all_ok"] = errors.empty() && pushed.load() == static_cast<std::uint64_t>(devices) * static_cast<std::uint64_t>(changes);
    out["notes"] =
        "one thread per device, all released at once; a device pulls what the others pushed before its pull, so "
        "pulled totals vary between runs. Server CPU and peak RSS (VmHWM) are the caresync-server process's, "
        "measured from /proc. Clients and server share the machine.";
    if (!out["all_ok"].get<bool>()) status = 1;
  } catch (const std::exception& e) {
    out["error"] = e.what();
    status = 1;
  }
  std::cout << out.dump(2) << std::endl;
  if (!keep) {
    std::error_code ignored;
    fs::remove_all(dir, ignored);
  }
  return status;
}
