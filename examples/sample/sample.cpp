// caresync-sample: writes a synthetic, plainly fake region (sample_region.hpp) into a
// store file for the demo and the benchmarks, or prints its registry as CSV.
//
//   caresync-sample --store region.db                 # 4 ORPs, 2,000 clients, 5,000 services
//   caresync-sample --services-csv --seed 7 > services.csv

#include "sample_region.hpp"

#include <caresync/care.hpp>
#include <caresync/store.hpp>

#include <CLI/CLI.hpp>

#include <chrono>
#include <filesystem>
#include <iostream>

int main(int argc, char** argv) {
  caresync::sample::region_options options;
  std::string store_path;
  bool csv = false;
  CLI::App app{"caresync-sample: a synthetic, clearly fake region (ORPs, teams, clients with caregivers, visits "
               "and referrals, a registry of services), the same for the same --seed"};
  app.add_option("--store", store_path, "Write the region into this store file (created; must not exist)");
  app.add_flag("--services-csv", csv, "Print the registry of services as CSV on stdout instead");
  app.add_option("--seed", options.seed, "Seed of the generator")->capture_default_str();
  app.add_option("--orps", options.orps, "ORPs")->capture_default_str()->check(CLI::Range(1, 8));
  app.add_option("--teams", options.teams_per_orp, "Field teams per ORP")->capture_default_str()->check(CLI::Range(1, 9));
  app.add_option("--clients", options.clients, "Clients")->capture_default_str()->check(CLI::Range(0, 1000000));
  app.add_option("--services", options.services, "Services in the registry")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000000));
  app.add_option("--visits-per-client", options.visits_per_client, "Visits of each client")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000));
  for (auto* option : app.get_options()) option->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  CLI11_PARSE(app, argc, argv);
  if (csv == !store_path.empty()) {
    std::cerr << "caresync-sample: give either --store FILE or --services-csv (see --help)\n";
    return 2;
  }
  try {
    const auto region = caresync::sample::make_region(options);
    if (csv) {
      caresync::sample::write_services_csv(std::cout, region);
      return std::cout.good() ? 0 : 1;
    }
    if (std::filesystem::exists(store_path)) {
      std::cerr << "caresync-sample: " << store_path << " exists; give a new file so no store is mixed with samples\n";
      return 2;
    }
    const auto start = std::chrono::steady_clock::now();
    // normal: a sample is made again from its seed if a crash cuts it short.
    caresync::store_options o{store_path, caresync::care::schema(), caresync::durability::normal};
    o.server_side = true;  // it writes the registry, whose fields are server_only
    auto local = caresync::store::open(o);
    caresync::care::records care(*local, caresync::care::role::registry_admin);
    const auto w = caresync::sample::write_region(care, region);
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
    std::cout << "wrote " << store_path << " in " << ms << " ms: " << region.orps.size() << " ORPs (";
    for (std::size_t i = 0; i < region.orps.size(); ++i) std::cout << (i ? ", " : "") << region.orps[i].name;
    std::cout << "), " << w.services << " services, " << w.clients << " clients, " << w.caregivers
              << " caregivers, " << w.visits << " visits, " << w.referrals << " referrals\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "caresync-sample: " << e.what() << "\n";
    return 1;
  }
}
