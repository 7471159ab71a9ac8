// caresync-test-tablet: one tablet for packaging and smoke tests. Records N visits in its
// store and syncs once with the server given; prints the report as JSON. Exits 0 when
// every visit was stored by the server and the outbox is empty.

#include <caresync/store.hpp>
#include <caresync/sync_client.hpp>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <iostream>

int main(int argc, char** argv) {
  CLI::App app{"caresync-test-tablet: record visits and sync once"};
  std::string store_path, host = "127.0.0.1", ca_file, device, token;
  std::uint16_t port = 7443;
  int visits = 5;
  app.add_option("--store", store_path, "the tablet's store file")->required();
  app.add_option("--host", host, "the server's host name or address");
  app.add_option("--port", port, "the server's port");
  app.add_option("--ca", ca_file, "the CA file that signed the server's certificate")->required();
  app.add_option("--device", device, "device id")->required();
  app.add_option("--token", token, "device token")->required();
  app.add_option("--visits", visits, "visits to record before syncing")->check(CLI::Range(0, 1000000));
  CLI11_PARSE(app, argc, argv);
  try {
    using namespace caresync;
    schema s{{collection_def{"visits", {{"worker", value_kind::text}, {"duration_min", value_kind::integer}}}}};
    auto tablet = store::open(store_options{store_path, s});
    tablet->transaction([&] {
      for (int i = 0; i < visits; ++i) tablet->create("visits", {{"worker", device}, {"duration_min", std::int64_t{i}}});
    });
    sync_options o;
    o.host = host;
    o.port = port;
    o.ca_file = ca_file;
    o.device_id = device;
    o.token = token;
    const auto r = sync_client(*tablet, o).sync();
    const bool ok = r.pushed == static_cast<std::size_t>(visits) && tablet->outbox_size() == 0;
    std::cout << nlohmann::json{{"pushed", r.pushed}, {"pulled", r.pulled}, {"attempts", r.attempts},
                                {"bytes_sent", r.bytes_sent}, {"bytes_received", r.bytes_received}, {"ok", ok}}
                     .dump()
              << std::endl;
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::cerr << "caresync-test-tablet: " << e.what() << std::endl;
    return 1;
  }
}
