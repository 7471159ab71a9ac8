// caresync-server: the command line. `caresync-server --help` lists the subcommands.

#include <caresync/protocol/errors.hpp>
#include <caresync/server/certificate.hpp>
#include <caresync/server/config.hpp>
#include <caresync/server/server.hpp>

#include <CLI/CLI.hpp>
#include <openssl/rand.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <pthread.h>
#include <thread>

namespace {

using namespace caresync;
namespace fs = std::filesystem;

constexpr int k_exit_usage = 2;
constexpr int k_exit_failure = 1;

struct serve_args {
  std::string config;
  std::string listen;
  int port = -1;
  std::string database;
};

int serve(const serve_args& args) {
  // SIGINT and SIGTERM are taken by a dedicated thread (sigwait), never by a handler
  // that could interrupt the server mid-commit.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto config = server::load_config(args.config);
  if (!args.listen.empty()) config.listen_address = args.listen;
  if (args.port >= 0) config.port = static_cast<std::uint16_t>(args.port);
  if (!args.database.empty()) config.database_file = args.database;
  server::validate(config);
  server::server srv(config, server::open_sqlite_change_store(config.database_file));
  srv.start();
  std::cerr << "caresync-server: " << config.devices.size() << " device(s) configured; listening on "
            << config.listen_address << ":" << srv.port() << std::endl;

  std::thread waiter([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    std::cerr << "caresync-server: " << (sig == SIGINT ? "SIGINT" : "SIGTERM") << " received; stopping" << std::endl;
    srv.stop();
  });
  srv.wait();
  waiter.join();
  std::cerr << "caresync-server: stopped cleanly" << std::endl;
  return 0;
}

std::string random_token() {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof bytes) != 1) throw std::runtime_error("the system's random source failed");
  static constexpr char k_hex[] = "0123456789abcdef";
  std::string s;
  for (unsigned char b : bytes) {
    s.push_back(k_hex[b >> 4]);
    s.push_back(k_hex[b & 0xf]);
  }
  return s;
}

int init(const std::string& dir, const std::vector<std::string>& hosts, const std::vector<std::string>& ips) {
  fs::create_directories(dir);
  const auto config_path = (fs::path(dir) / "caresync-server.toml").string();
  if (fs::exists(config_path)) {
    std::cerr << "caresync-server: " << config_path << " exists already; remove it or choose another --dir" << std::endl;
    return k_exit_usage;
  }
  std::vector<std::string> dns{"localhost"};
  dns.insert(dns.end(), hosts.begin(), hosts.end());
  std::vector<std::string> addresses{"127.0.0.1"};
  addresses.insert(addresses.end(), ips.begin(), ips.end());
  const auto ca = server::make_certificate_authority("caresync regional CA");
  const auto leaf = server::make_server_certificate(ca, dns, addresses);
  const auto path = [&](const char* name) { return (fs::path(dir) / name).string(); };
  server::write_file(path("ca.pem"), ca.certificate_pem, 0644);
  server::write_file(path("ca-key.pem"), ca.private_key_pem, 0600);
  server::write_file(path("server-cert.pem"), leaf.certificate_pem, 0644);
  server::write_file(path("server-key.pem"), leaf.private_key_pem, 0600);
  server::write_file(config_path,
                     "# caresync-server configuration; every key: packaging/caresync-server.toml\n"
                     "listen_address = \"127.0.0.1\"\n"
                     "port = 7443\n"
                     "certificate_file = \"server-cert.pem\"\n"
                     "private_key_file = \"server-key.pem\"\n"
                     "database_file = \"caresync-server.db\"\n"
                     "\n# Devices: add with 'caresync-server add-device'.\n",
                     0600);
  std::cout << "config:      " << config_path << "\n"
            << "CA for tablets (sync_options.ca_file): " << path("ca.pem") << "\n"
            << "public-key pin (sync_options.pinned_key_sha256): " << server::public_key_sha256(leaf.certificate_pem)
            << "\n"
            << "keep " << path("ca-key.pem") << " offline: it can sign certificates the tablets trust\n";
  return 0;
}

int add_device(const std::string& config_path, const std::string& device_id) {
  auto config = server::load_config(config_path);  // refuses a broken file before we append
  for (const auto& d : config.devices) {
    if (d.device_id == device_id) {
      std::cerr << "caresync-server: device '" << device_id << "' is already configured" << std::endl;
      return k_exit_usage;
    }
  }
  const auto token = random_token();
  config.devices.push_back({device_id, server::hash_token(token)});
  server::validate(config);
  std::ofstream out(config_path, std::ios::app);
  out << "\n[[devices]]\ndevice_id = \"" << device_id << "\"\ntoken_sha256 = \"" << server::hash_token(token) << "\"\n";
  out.close();
  if (!out) {
    std::cerr << "caresync-server: cannot append to " << config_path << std::endl;
    return k_exit_failure;
  }
  std::cout << "device " << device_id << " added; its token (shown once, give it to the device):\n" << token << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"caresync-server: the caresync sync server (TLS, SQLite change log)"};
  app.require_subcommand(1);

  serve_args sa;
  auto* serve_cmd = app.add_subcommand("serve", "Serve devices until SIGINT or SIGTERM");
  serve_cmd->add_option("-c,--config", sa.config, "Config file (TOML)")->required()->check(CLI::ExistingFile);
  serve_cmd->add_option("--listen", sa.listen, "Override listen_address");
  serve_cmd->add_option("--port", sa.port, "Override port (0: any free port)")->check(CLI::Range(0, 65535));
  serve_cmd->add_option("--db", sa.database, "Override database_file");

  std::string init_dir;
  std::vector<std::string> init_hosts, init_ips;
  auto* init_cmd = app.add_subcommand("init", "Make a CA, a server certificate and key, and a config in a directory");
  init_cmd->add_option("-d,--dir", init_dir, "Directory to write into")->required();
  init_cmd->add_option("--host", init_hosts, "Extra DNS name for the certificate (repeatable)");
  init_cmd->add_option("--ip", init_ips, "Extra IP address for the certificate (repeatable)");

  std::string token_arg;
  auto* hash_cmd = app.add_subcommand("hash-token", "Print the SHA-256 of a token, as the config stores it");
  hash_cmd->add_option("token", token_arg, "The token, or - to read it from standard input")->required();

  std::string device_config, device_id;
  auto* device_cmd = app.add_subcommand("add-device", "Add a device with a new random token to a config file");
  device_cmd->add_option("-c,--config", device_config, "Config file (TOML)")->required()->check(CLI::ExistingFile);
  device_cmd->add_option("--device-id", device_id, "The device's id")->required();

  CLI11_PARSE(app, argc, argv);
  try {
    if (*serve_cmd) return serve(sa);
    if (*init_cmd) return init(init_dir, init_hosts, init_ips);
    if (*hash_cmd) {
      if (token_arg == "-") std::getline(std::cin, token_arg);
      std::cout << server::hash_token(token_arg) << "\n";
      return 0;
    }
    if (*device_cmd) return add_device(device_config, device_id);
  } catch (const caresync::error& e) {
    std::cerr << "caresync-server: " << e.what() << std::endl;
    return e.code() == storage_errc::invalid_argument ? k_exit_usage : k_exit_failure;
  } catch (const std::exception& e) {
    std::cerr << "caresync-server: " << e.what() << std::endl;
    return k_exit_failure;
  }
  return k_exit_usage;
}
