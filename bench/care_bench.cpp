// caresync-care-bench: the care records' figures on a synthetic region
// (examples/sample): offline registry search latency over 5,000 services, and the rate
// of typed visit writes, single and batched. Prints one JSON object on stdout; progress
// goes to stderr. See bench/README.md.

#include "../examples/sample/sample_region.hpp"

#include <caresync/care.hpp>
#include <caresync/store.hpp>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <sqlite3.h>
#include <sys/vfs.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <time.h>
#include <vector>

#ifndef CARESYNC_BENCH_BUILD_TYPE
#define CARESYNC_BENCH_BUILD_TYPE "unknown"
#endif

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;
using namespace caresync;

namespace {

struct bench_options {
  std::size_t services = 5000;
  std::size_t clients = 2000;
  std::size_t queries = 2000;
  std::size_t single = 500;
  std::size_t batched = 10000;
  std::uint64_t seed = 1;
  std::string durability_name = "full";
  std::string dir;
  bool keep = false;
};

void progress(const std::string& line) { std::cerr << "caresync-care-bench: " << line << "\n"; }

/// CPU time of this thread, in microseconds: the search's own work, without the time
/// the scheduler gave other processes (the bench shares its cores with builds on CI).
double thread_cpu_us() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) * 1e6 + static_cast<double>(t.tv_nsec) / 1e3;
}

double seconds(clock_type::duration d) { return std::chrono::duration<double>(d).count(); }

double rounded(double x, int decimals) {
  const double scale = std::pow(10.0, decimals);
  return std::round(x * scale) / scale;
}

/// A fresh directory for the run's store, removed at the end unless kept.
class run_directory {
 public:
  run_directory(const std::string& parent, bool keep) : keep_(keep) {
    const fs::path base = parent.empty() ? fs::temp_directory_path() : fs::path(parent);
    std::random_device rd;
    do {
      path_ = base / ("caresync-care-bench-" + std::to_string(rd()));
    } while (!fs::create_directory(path_));
  }
  ~run_directory() {
    std::error_code ignored;
    if (!keep_) fs::remove_all(path_, ignored);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
  bool keep_;
};

std::string file_system_of(const fs::path& dir) {
  struct statfs info {};
  if (::statfs(dir.c_str(), &info) != 0) return "unknown";
  static const std::map<unsigned long, std::string> k_names = {
      {0xEF53UL, "ext4"}, {0x01021994UL, "tmpfs"}, {0x58465342UL, "xfs"}, {0x9123683EUL, "btrfs"},
      {0x794C7630UL, "overlay"}};
  const auto it = k_names.find(static_cast<unsigned long>(info.f_type));
  return it == k_names.end() ? "other" : it->second;
}

/// Czech text without diacritics, lowercase (what a worker types on a tablet keyboard).
std::string folded(const std::string& s) {
  static const std::array<std::pair<std::string_view, char>, 30> k_letters{{
      {"á", 'a'}, {"č", 'c'}, {"ď", 'd'}, {"é", 'e'}, {"ě", 'e'}, {"í", 'i'}, {"ň", 'n'}, {"ó", 'o'},
      {"ř", 'r'}, {"š", 's'}, {"ť", 't'}, {"ú", 'u'}, {"ů", 'u'}, {"ý", 'y'}, {"ž", 'z'},
      {"Á", 'a'}, {"Č", 'c'}, {"Ď", 'd'}, {"É", 'e'}, {"Ě", 'e'}, {"Í", 'i'}, {"Ň", 'n'}, {"Ó", 'o'},
      {"Ř", 'r'}, {"Š", 's'}, {"Ť", 't'}, {"Ú", 'u'}, {"Ů", 'u'}, {"Ý", 'y'}, {"Ž", 'z'},
  }};
  std::string out;
  for (std::size_t i = 0; i < s.size();) {
    bool replaced = false;
    for (const auto& [letter, ascii] : k_letters) {
      if (std::string_view(s).substr(i, letter.size()) == letter) {
        out += ascii;
        i += letter.size();
        replaced = true;
        break;
      }
    }
    if (!replaced) out += static_cast<char>(std::tolower(static_cast<unsigned char>(s[i++])));
  }
  return out;
}

std::vector<std::string> words_of(const std::string& s) {
  std::vector<std::string> out;
  std::string word;
  for (const char c : s + " ") {
    if (c == ' ' || c == ',' || c == '.' || c == '(' || c == ')') {
      if (word.size() >= 3) out.push_back(word);
      word.clear();
    } else {
      word += c;
    }
  }
  return out;
}

struct query_case {
  std::string kind;  ///< type, municipality, text, text_prefix, type+text, municipality+text
  care::service_query query;
};

/// The query mix, from the registry's own words so most queries find something.
std::vector<query_case> make_queries(const sample::region& r, std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed ^ 0x5eed);
  const auto below = [&](std::size_t k) { return static_cast<std::size_t>(rng() % k); };
  const auto places = r.municipalities();
  const auto types = care::service_types();
  std::vector<query_case> out;
  for (std::size_t i = 0; i < n; ++i) {
    const auto& s = r.services[below(r.services.size())];
    const auto words = words_of(below(2) ? s.service_name : s.provider);
    const std::string word = words.empty() ? "sluzba" : words[below(words.size())];
    query_case q;
    switch (i % 6) {
      case 0:
        q.kind = "type";
        q.query.type = std::string(types[below(types.size())].code);
        break;
      case 1:
        q.kind = "municipality";
        q.query.municipality = places[below(places.size())];
        break;
      case 2:
        q.kind = "text";
        q.query.text = below(2) ? word : folded(word);  // with and without diacritics
        break;
      case 3: {
        q.kind = "text_prefix";
        const auto plain = folded(word);
        q.query.text = plain.substr(0, std::min<std::size_t>(plain.size(), 3 + below(3)));
        break;
      }
      case 4:
        q.kind = "type+text";
        q.query.type = s.service_type;
        q.query.text = folded(s.municipalities.front());
        break;
      default:
        q.kind = "municipality+text";
        q.query.municipality = s.municipalities.front();
        q.query.text = folded(word);
        break;
    }
    out.push_back(std::move(q));
  }
  return out;
}

struct latency {
  std::vector<double> us;
  double percentile(double p) const {
    if (us.empty()) return 0;
    std::vector<double> sorted = us;
    std::sort(sorted.begin(), sorted.end());
    const auto at = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size()))) - 1;
    return sorted[std::min(at, sorted.size() - 1)];
  }
};

nlohmann::json run(const bench_options& opt) {
  const auto mode = opt.durability_name == "normal" ? durability::normal : durability::full;
  run_directory dir(opt.dir, opt.keep);
  progress("working in " + dir.path().string() + ", durability " + opt.durability_name);

  sample::region_options ro;
  ro.seed = opt.seed;
  ro.services = opt.services;
  ro.clients = opt.clients;
  ro.visits_per_client = 0;
  const auto generate_start = clock_type::now();
  const auto region = sample::make_region(ro);
  const auto generate = clock_type::now() - generate_start;

  store_options o{(dir.path() / "tablet.db").string(), care::schema(), mode};
  o.server_side = true;  // it publishes the registry (server_only fields) as well
  auto local = store::open(o);
  care::records care(*local, care::role::registry_admin);

  progress("writing " + std::to_string(opt.services) + " services and " + std::to_string(opt.clients) + " clients");
  const auto registry_start = clock_type::now();
  local->transaction([&] {
    for (const auto& s : region.services) care.services().add(s);
  });
  const auto registry_write = clock_type::now() - registry_start;
  std::vector<record_id> clients;
  local->transaction([&] {
    for (const auto& b : region.clients) clients.push_back(care.clients().add(b.person));
  });

  // Search: a warm-up pass (page cache, statement paths), then every query timed alone.
  const auto queries = make_queries(region, opt.queries, opt.seed);
  for (std::size_t i = 0; i < std::min<std::size_t>(200, queries.size()); ++i) (void)care.services().search(queries[i].query);
  progress("timing " + std::to_string(queries.size()) + " registry searches");
  latency all, cpu;
  std::map<std::string, latency> by_kind;
  std::size_t results = 0, empty = 0;
  for (const auto& q : queries) {
    const double cpu_start = thread_cpu_us();
    const auto start = clock_type::now();
    const auto found = care.services().search(q.query);
    const double us = std::chrono::duration<double, std::micro>(clock_type::now() - start).count();
    cpu.us.push_back(thread_cpu_us() - cpu_start);
    all.us.push_back(us);
    by_kind[q.kind].us.push_back(us);
    results += found.size();
    empty += found.empty();
  }

  // Typed visit writes: made up front, so only add() is timed.
  std::mt19937_64 rng(opt.seed);
  const auto make_visits = [&](std::size_t n) {
    std::vector<care::visit> out;
    const auto codes = care::activity_codes();
    for (std::size_t i = 0; i < n; ++i) {
      care::visit v;
      v.client_id = clients[rng() % clients.size()];
      v.worker_id = "w-" + std::to_string(rng() % 50);
      const auto start = care::parse_utc_time("2026-03-02T07:00:00Z").value() + static_cast<std::int64_t>(rng() % 200) * 86400 +
                         static_cast<std::int64_t>(rng() % 40) * 900;
      v.start_at = care::format_utc_time(start);
      v.end_at = care::format_utc_time(start + 15 * 60 + static_cast<std::int64_t>(rng() % 12) * 300);
      v.kind = "home_care";
      v.activity_codes = {std::string(codes[rng() % codes.size()].code), std::string(codes[rng() % codes.size()].code)};
      v.note = "Návštěva proběhla bez obtíží, domluven další termín (synthetic).";
      v.status = care::visit_status::done;
      out.push_back(std::move(v));
    }
    return out;
  };
  const auto single_visits = make_visits(opt.single);
  const auto batched_visits = make_visits(opt.batched);
  progress("timing " + std::to_string(opt.single) + " single and " + std::to_string(opt.batched) + " batched visit adds");
  const auto single_start = clock_type::now();
  for (const auto& v : single_visits) care.visits().add(v);
  const auto single = clock_type::now() - single_start;
  const auto batched_start = clock_type::now();
  local->transaction([&] {
    for (const auto& v : batched_visits) care.visits().add(v);
  });
  const auto batched = clock_type::now() - batched_start;

  nlohmann::json kinds = nlohmann::json::object();
  for (const auto& [kind, l] : by_kind) {
    kinds[kind] = {{"queries", l.us.size()}, {"p50_us", rounded(l.percentile(50), 1)}, {"p99_us", rounded(l.percentile(99), 1)}};
  }
  nlohmann::json out;
  out["services"] = local->count("services");
  out["clients"] = local->count("clients");
  out["queries"] = queries.size();
  out["registry_search_p50_us"] = rounded(all.percentile(50), 1);
  out["registry_search_p90_us"] = rounded(all.percentile(90), 1);
  out["registry_search_p99_us"] = rounded(all.percentile(99), 1);
  out["registry_search_max_us"] = rounded(all.percentile(100), 1);
  out["registry_search_cpu_p50_us"] = rounded(cpu.percentile(50), 1);
  out["registry_search_cpu_p99_us"] = rounded(cpu.percentile(99), 1);
  out["registry_search_by_kind"] = kinds;
  out["registry_search_mean_results"] = rounded(static_cast<double>(results) / static_cast<double>(queries.size()), 2);
  out["registry_search_empty_results"] = empty;
  out["registry_write_ms"] = rounded(seconds(registry_write) * 1000, 1);
  out["typed_visit_add_rps_single"] = rounded(static_cast<double>(opt.single) / seconds(single), 0);
  out["typed_visit_add_rps_batched"] = rounded(static_cast<double>(opt.batched) / seconds(batched), 0);
  out["single_visits"] = opt.single;
  out["batched_visits"] = opt.batched;
  out["visits"] = local->count("visits");
  out["counts_ok"] = local->count("visits") == opt.single + opt.batched && local->count("services") == opt.services &&
                     local->count("clients") == opt.clients;
  out["durability"] = opt.durability_name;
  out["unmeasured_ms"] = rounded(seconds(generate) * 1000, 1);
  out["machine"] = {{"hardware_concurrency", std::thread::hardware_concurrency()},
                    {"sqlite_version", sqlite3_libversion()},
                    {"file_system", file_system_of(dir.path())},
                    {"build_type", CARESYNC_BENCH_BUILD_TYPE}};
  out["notes"] =
      "registry_search_*: care::records::services().search() latency, each query timed alone after 200 warm-up "
      "queries, limit 20, over a mix (one sixth each) of type, municipality, text (half without diacritics), text "
      "prefix (3-5 letters), type+text and municipality+text queries drawn from the registry's own words; _cpu_: the same queries' thread CPU time (without preemption). "
      "typed_visit_add_rps_single: visits().add() each its own transaction (a commit per visit, durability as "
      "given); _batched: all in one store.transaction(). Both include validation (the client's existence, codes, "
      "times).";
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  bench_options opt;
  CLI::App app{"caresync-care-bench: registry search latency and typed write rates on a synthetic region"};
  app.add_option("--services", opt.services, "Services in the registry")->capture_default_str()->check(CLI::Range(1, 1000000));
  app.add_option("--clients", opt.clients, "Clients")->capture_default_str()->check(CLI::Range(1, 1000000));
  app.add_option("--queries", opt.queries, "Timed searches")->capture_default_str()->check(CLI::Range(1, 10000000));
  app.add_option("--single", opt.single, "Visits added one transaction each")->capture_default_str();
  app.add_option("--batched", opt.batched, "Visits added in one transaction")->capture_default_str();
  app.add_option("--seed", opt.seed, "Seed of the region and the queries")->capture_default_str();
  app.add_option("--durability", opt.durability_name, "full or normal")
      ->capture_default_str()
      ->check(CLI::IsMember({"full", "normal"}));
  app.add_option("--dir", opt.dir, "Parent of the run's directory (default: the system's temp dir)");
  app.add_flag("--keep", opt.keep, "Keep the run's directory");
  CLI11_PARSE(app, argc, argv);
  try {
    std::cout << run(opt).dump(2) << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "caresync-care-bench: " << e.what() << "\n";
    return 1;
  }
}
