// caresync-server: the command line. `caresync-server --help` lists the subcommands.

#include <caresync/protocol/errors.hpp>
#include <caresync/protocol/sha256.hpp>
#include <caresync/server/activity_report.hpp>
#include <caresync/server/certificate.hpp>
#include <caresync/server/config.hpp>
#include <caresync/server/enrollment.hpp>
#include <caresync/server/registry_import.hpp>
#include <caresync/server/server.hpp>

#include <caresync/server/change_store.hpp>

#include "log.hpp"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <openssl/rand.h>

#include <netdb.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <cstdio>
#include <algorithm>
#include <filesystem>
#include <functional>
#include <optional>
#include <fstream>
#include <iterator>
#include <iostream>
#include <set>
#include <map>
#include <pthread.h>
#include <sys/stat.h>
#include <thread>

namespace {

using namespace caresync;
namespace fs = std::filesystem;

constexpr int k_exit_usage = 2;
constexpr int k_exit_failure = 1;
/// The CMake project's version (server/CMakeLists.txt defines it).
constexpr const char* k_version = CARESYNC_VERSION;

struct serve_args {
  std::string config;
  std::string listen;
  int port = -1;
  int admin_port = -1;
  std::string database;
  std::string log_level;
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
  if (args.admin_port >= 0) config.admin_port = static_cast<std::uint16_t>(args.admin_port);
  if (!args.database.empty()) config.database_file = args.database;
  if (!args.log_level.empty()) config.log_level = args.log_level;
  server::validate(config);
  server::log::set_level(config.log_level);
  server::server srv(config, server::open_sqlite_change_store(config.database_file));
  srv.start();
  server::log::notice("started", {{"version", k_version}, {"devices", config.devices.size()}},
                    std::string("caresync-server ") + k_version + " started; " + std::to_string(config.devices.size()) +
                        " device(s) configured");
  // Scripts and tests wait for this line and read the port after its last ':'.
  if (config.admin_enabled) {
    server::log::notice("admin_listening", {{"address", config.admin_listen_address}, {"port", srv.admin_port()}},
                      "admin (/metrics, /healthz) on http://" + config.admin_listen_address + ":" +
                          std::to_string(srv.admin_port()));
  }
  // "msg" is last, so the port also follows the line's last ':' (before "}).
  server::log::notice("listening", {{"address", config.listen_address}, {"port", srv.port()}},
                    "caresync-server listening on " + config.listen_address + ":" + std::to_string(srv.port()));

  std::thread waiter([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    server::log::notice("stopping", {{"signal", sig == SIGINT ? "SIGINT" : "SIGTERM"}},
                      std::string(sig == SIGINT ? "SIGINT" : "SIGTERM") + " received; stopping");
    srv.stop();
  });
  srv.wait();
  waiter.join();
  server::log::notice("stopped", nlohmann::ordered_json::object(), "stopped cleanly");
  return 0;
}


std::string toml_string(const std::string& text);

/// Empty when getaddrinfo takes `address` as the listeners will (`numeric`: an IP
/// address only, as the sync listener; else a name too, as the admin listener), else why not.
std::string address_problem(const std::string& address, bool numeric) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | (numeric ? AI_NUMERICHOST : 0);
  addrinfo* found = nullptr;
  const int rc = ::getaddrinfo(address.c_str(), nullptr, &hints, &found);
  if (found) ::freeaddrinfo(found);
  return rc == 0 ? std::string() : ::gai_strerror(rc);
}

/// Empty when the server could open (or make) its database at `path`, else why not. Does
/// not open it: a server may be running on it, and opening may upgrade its format.
std::string database_problem(const std::string& path) {
  const auto dir = fs::path(path).parent_path().empty() ? fs::path(".") : fs::path(path).parent_path();
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return "its directory " + dir.string() + " does not exist";
  if (fs::exists(path, ec)) {
    if (::access(path.c_str(), R_OK | W_OK) != 0) return "it is not readable and writable by this user";
  } else if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    return "this user cannot create it in " + dir.string();
  }
  return {};
}

/// `serve`'s checks without serving: the config's keys, its addresses, the certificate
/// and key (loaded by the server itself, so a key of another certificate is refused) and
/// where the database goes. Binds no port and leaves the database alone. Throws
/// caresync::error naming what is wrong.
void check_config(const std::string& config_path) {
  auto config = server::load_config(config_path);
  server::validate(config);
  const auto bad = [](const std::string& what) {
    throw caresync::error(make_error_code(storage_errc::invalid_argument), what);
  };
  if (const auto why = address_problem(config.listen_address, true); !why.empty()) {
    bad("config key 'listen_address' is not an IP address: '" + config.listen_address + "' (" + why + ")");
  }
  if (config.admin_enabled) {
    if (const auto why = address_problem(config.admin_listen_address, false); !why.empty()) {
      bad("config key 'admin.listen_address' cannot be listened on: '" + config.admin_listen_address + "' (" + why + ")");
    }
  }
  if (const auto why = database_problem(config.database_file); !why.empty()) {
    bad("config key 'database_file' names '" + config.database_file + "', but " + why);
  }
  // The server loads the certificate and key in its constructor; a throwaway store in a
  // private temporary directory stands in for the database.
  std::string scratch = (fs::temp_directory_path() / "caresync-check-config-XXXXXX").string();
  if (!::mkdtemp(scratch.data())) bad("cannot make a temporary directory in " + fs::temp_directory_path().string());
  struct removed_at_exit {
    std::string dir;
    ~removed_at_exit() {
      std::error_code ignored;
      fs::remove_all(dir, ignored);
    }
  } scratch_dir{scratch};
  const server::server loaded(config, server::open_sqlite_change_store(scratch + "/check.db"));
}

/// Where `init` keeps the CA's private key: in its directory (the default), at a path
/// outside it, or nowhere.
struct ca_key_choice {
  std::string out;       ///< --ca-key-out: this path instead of DIR/ca-key.pem
  bool discard = false;  ///< --no-ca-key: not written at all
};

/// Empty when the CA key may be written to `out` (outside `dir`, not over a file), else why not.
std::string ca_key_out_problem(const std::string& dir, const std::string& out) {
  std::error_code ec, dir_ec;
  const auto target = fs::weakly_canonical(fs::absolute(out), ec);
  const auto config_dir = fs::weakly_canonical(fs::absolute(dir), dir_ec);
  if (ec) return "cannot resolve '" + out + "': " + ec.message();
  if (dir_ec) return "cannot resolve '" + dir + "': " + dir_ec.message();
  if (fs::exists(target, ec)) return "'" + out + "' exists already; the CA key is never written over a file";
  for (auto p = target.parent_path(); !p.empty(); p = p.parent_path()) {
    if (p == config_dir) return "'" + out + "' is inside --dir; --ca-key-out is for a place off the config directory";
    if (p == p.parent_path()) break;
  }
  if (!fs::is_directory(target.parent_path(), ec)) return "the directory of '" + out + "' does not exist";
  return {};
}

int init(const std::string& dir, const std::vector<std::string>& hosts, const std::vector<std::string>& ips,
         const std::string& database, int days, const ca_key_choice& ca_key) {
  const auto config_path = (fs::path(dir) / "caresync-server.toml").string();
  if (fs::exists(config_path)) {
    std::cerr << "caresync-server: " << config_path << " exists already; remove it or choose another --dir" << std::endl;
    return k_exit_usage;
  }
  if (!ca_key.out.empty()) {
    if (const auto why = ca_key_out_problem(dir, ca_key.out); !why.empty()) {
      std::cerr << "caresync-server: " << why << std::endl;
      return k_exit_usage;
    }
  }
  fs::create_directories(dir);
  std::vector<std::string> dns{"localhost"};
  dns.insert(dns.end(), hosts.begin(), hosts.end());
  std::vector<std::string> addresses{"127.0.0.1"};
  addresses.insert(addresses.end(), ips.begin(), ips.end());
  const auto ca = server::make_certificate_authority("caresync regional CA");
  const auto leaf = server::make_server_certificate(ca, dns, addresses, days);
  const auto path = [&](const char* name) { return (fs::path(dir) / name).string(); };
  const auto ca_key_path = ca_key.discard ? std::string() : !ca_key.out.empty() ? ca_key.out : path("ca-key.pem");
  server::write_file(path("ca.pem"), ca.certificate_pem, 0644);
  if (!ca_key_path.empty()) server::write_file(ca_key_path, ca.private_key_pem, 0600);
  server::write_file(path("server-cert.pem"), leaf.certificate_pem, 0644);
  server::write_file(path("server-key.pem"), leaf.private_key_pem, 0600);
  server::write_file(config_path,
                     "# caresync-server configuration; every key: /usr/share/doc/caresync-server/caresync-server.toml.example\n"
                     "# (packaging/caresync-server.toml in the source tree)\n"
                     "listen_address = \"127.0.0.1\"\n"
                     "port = 7443\n"
                     "certificate_file = \"server-cert.pem\"\n"
                     "private_key_file = \"server-key.pem\"\n"
                     "database_file = " + toml_string(database) + "\n"
                     "\n# Refuse changes breaking the care schema's rules (docs/care.md), as README and\n"
                     "# docs/operations.md say; off only for apps with schemas of their own.\n"
                     "[policies]\n"
                     "care_rules = true\n"
                     "\n# /metrics and /healthz over HTTP, loopback only (any other address needs\n"
                     "# bearer_token_file).\n"
                     "[admin]\n"
                     "enabled = true\n"
                     "listen_address = \"127.0.0.1\"\n"
                     "port = 7444\n"
                     "\n# Devices: add with 'caresync-server add-device'.\n",
                     0600);
  std::cout << "config:      " << config_path << "\n"
            << "CA for tablets (sync_options.ca_file): " << path("ca.pem") << "\n"
            << "public-key pin (sync_options.pinned_key_sha256): " << server::public_key_sha256(leaf.certificate_pem)
            << "\n"
            << "server certificate valid until: "
            << server::log::iso_time(static_cast<std::uint64_t>(server::describe_certificate(leaf.certificate_pem).not_after) * 1000)
            << " (" << days << " days; renew it before with caresync-server renew-certificate)\n";
  if (ca_key_path.empty()) {
    std::cout << "CA private key: not kept (--no-ca-key). Nothing can renew this certificate: when it expires, a new CA "
                 "is needed and every tablet that checks the CA file needs its new ca.pem (docs/operations.md, "
                 "\"Certificates\")\n";
  } else {
    std::cout << "CA private key: " << ca_key_path
              << " (mode 0600). It can sign certificates that every tablet checking ca.pem trusts: move it off this "
                 "host, offline, and bring it back only to renew (caresync-server renew-certificate --ca-key PATH)\n";
  }
  return 0;
}

/// `path`'s contents, for a PEM file; `what` names it in the error. Throws
/// caresync::error (invalid_argument) saying which file and what to do.
std::string read_pem(const std::string& path, const std::string& what, const std::string& hint) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw caresync::error(make_error_code(storage_errc::invalid_argument),
                          "cannot read " + what + " '" + path + "' (" + std::strerror(errno) + "); " + hint);
  }
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

/// Makes a new key and a certificate for it (the same names and CA) beside the current
/// ones, as FILE.next, for a key rotation: nothing the server serves changes.
int rekey_certificate(const server::server_config& config, const server::pem_identity& ca, int days) {
  const auto cert_next = config.certificate_file + ".next";
  const auto key_next = config.private_key_file + ".next";
  for (const auto& f : {cert_next, key_next}) {
    if (fs::exists(f)) {
      std::cerr << "caresync-server: " << f << " exists already (a rotation under way?); move it away first" << std::endl;
      return k_exit_usage;
    }
  }
  const auto current = read_pem(config.certificate_file, "the server certificate", "check certificate_file");
  const auto next = server::rekey_server_certificate(ca, current, days);
  server::replace_file(key_next, next.private_key_pem, 0600, config.private_key_file);
  server::replace_file(cert_next, next.certificate_pem, 0644, config.certificate_file);
  const auto d = server::describe_certificate(next.certificate_pem);
  std::cout << "a new key and its certificate, not served yet:\n  " << key_next << "\n  " << cert_next << "\n"
            << "old public-key pin: " << server::public_key_sha256(current) << "\n"
            << "NEW public-key pin: " << d.public_key_sha256 << "\n"
            << "valid until: " << server::log::iso_time(static_cast<std::uint64_t>(d.not_after) * 1000) << " (" << days
            << " days)\n"
            << "tablets that pin the old key refuse the server once it serves the new one, until they get the new pin; "
               "to switch: move both files over the current ones and restart (docs/operations.md, \"Certificates\")\n";
  return 0;
}

/// Issues a new server certificate for the configured key (the pin does not change),
/// signed by the CA, and puts it in place of certificate_file atomically; with
/// `new_key`, makes a rotation's new key and certificate instead (rekey_certificate).
int renew_certificate(const std::string& config_path, std::string ca_path, std::string ca_key_path, int days,
                      bool new_key) {
  const auto config = server::load_config(config_path);
  const auto config_dir = fs::path(config_path).parent_path();
  if (ca_path.empty()) ca_path = (config_dir / "ca.pem").string();
  if (ca_key_path.empty()) ca_key_path = (config_dir / "ca-key.pem").string();
  const server::pem_identity ca{
      read_pem(ca_path, "the CA certificate", "pass the CA's certificate with --ca"),
      read_pem(ca_key_path, "the CA key",
               "pass it with --ca-key (where init --ca-key-out put it, or where it is kept offline); after init "
               "--no-ca-key there is none, and docs/operations.md, \"Certificates\", says what to do")};
  if (new_key) return rekey_certificate(config, ca, days);
  const server::pem_identity current{
      read_pem(config.certificate_file, "the server certificate", "check certificate_file in " + config_path),
      read_pem(config.private_key_file, "the server key", "check private_key_file in " + config_path + ", and run this as root")};
  const auto before = server::describe_certificate(current.certificate_pem);
  const auto renewed = server::renew_server_certificate(ca, current, days);
  const auto after = server::describe_certificate(renewed);
  if (after.public_key_sha256 != before.public_key_sha256) {
    throw std::runtime_error("the renewed certificate has another key; nothing was written");
  }
  server::replace_file(config.certificate_file, renewed, 0644);
  const auto when = [](std::int64_t t) { return server::log::iso_time(static_cast<std::uint64_t>(t) * 1000); };
  std::cout << "renewed " << config.certificate_file << " for the same key\n"
            << "public-key pin (unchanged): " << after.public_key_sha256 << "\n"
            << "valid until: " << when(after.not_after) << " (" << days << " days; was " << when(before.not_after) << ")\n"
            << "the running server serves the old certificate until it is restarted: systemctl restart caresync-server\n";
  return 0;
}

/// `text` as a TOML basic string, quoted and escaped: a device id can never add keys.
std::string toml_string(const std::string& text) {
  std::string out = "\"";
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20 || c == 0x7f) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\u%04x", c);
      out += escaped;
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

int add_device(const std::string& config_path, const std::string& device_id) {
  const auto config = server::load_config(config_path);  // refuses a broken file before we touch it
  for (const auto& d : config.devices) {
    if (d.device_id == device_id) {
      std::cerr << "caresync-server: device '" << device_id << "' is already configured" << std::endl;
      return k_exit_usage;
    }
  }
  const auto token = server::random_token();
  const auto hash = server::hash_token(token);
  std::ifstream in(config_path, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in.good() && !in.eof()) throw std::runtime_error("cannot read '" + config_path + "'");
  if (!text.empty() && text.back() != '\n') text += '\n';
  text += "\n[[devices]]\ndevice_id = " + toml_string(device_id) + "\ntoken_sha256 = \"" + hash + "\"\n";

  // Written beside the config, checked as the server will read it, then renamed over it:
  // the config is never left half-written, and keeps its permissions.
  struct stat st {};
  const unsigned mode = ::stat(config_path.c_str(), &st) == 0 ? (st.st_mode & 07777) : 0600;
  const auto staged = config_path + ".new";
  server::write_file(staged, text, mode);
  // Keep the owner and group too (e.g. root:caresync in the .deb), or the service could
  // no longer read its config; only root can give a file away, so others skip this.
  if (::geteuid() == 0 && ::stat(config_path.c_str(), &st) == 0) {
    if (::chown(staged.c_str(), st.st_uid, st.st_gid) != 0) {
      std::cerr << "caresync-server: cannot keep the config's owner on " << staged << std::endl;
    }
  }
  try {
    const auto updated = server::load_config(staged);
    if (updated.devices.size() != config.devices.size() + 1 || updated.devices.back().device_id != device_id) {
      throw std::runtime_error("the updated config did not read back as written");
    }
    server::validate(updated);
  } catch (...) {
    std::error_code ignored;
    fs::remove(staged, ignored);
    throw;
  }
  fs::rename(staged, config_path);
  std::cout << "device " << device_id << " added; its token (shown once, give it to the device):\n" << token << "\n";
  return 0;
}

nlohmann::json to_json(const value& v) {
  return std::visit(
      [](const auto& x) -> nlohmann::json {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::monostate>) {
          return nullptr;
        } else if constexpr (std::is_same_v<T, blob>) {
          static constexpr char k_hex[] = "0123456789abcdef";
          std::string hex;
          for (const auto b : x.bytes) {
            hex.push_back(k_hex[b >> 4]);
            hex.push_back(k_hex[b & 15]);
          }
          return nlohmann::json{{"bytes_hex", hex}};
        } else {
          return x;
        }
      },
      v);
}

/// Prints every accepted change of one record as JSON lines, oldest first. The output
/// holds the record's contents: it is for an administrator at the server, never a log.
int history(const std::string& config_path, const std::string& db_override, const std::string& collection,
            const std::string& id_text) {
  const auto id = record_id::parse(id_text);
  if (!id) {
    std::cerr << "caresync-server: '" << id_text << "' is not a record id (a UUID such as 0a1b2c3d-4e5f-4a6b-8c7d-8e9fa0b1c2d3)\n";
    return k_exit_usage;
  }
  const auto database = db_override.empty() ? server::load_config(config_path).database_file : db_override;
  auto log = server::open_sqlite_change_store(database);
  const auto entries = log->history(collection, *id);
  for (const auto& e : entries) {
    nlohmann::json line;
    line["seq"] = e.seq;
    line["received"] = server::log::iso_time(e.received_ms);
    line["device"] = e.device;
    char node[24];
    std::snprintf(node, sizeof node, "%016llx", static_cast<unsigned long long>(e.body.ver.node));
    line["node"] = node;
    line["written"] = server::log::iso_time(e.body.ver.stamp.wall_ms());
    line["kind"] = e.body.kind == change_kind::remove ? "delete" : "upsert";
    nlohmann::json fields = nlohmann::json::object();
    for (const auto& f : e.body.fields) fields[f.name] = to_json(f.val);
    line["fields"] = fields;
    std::cout << line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  }
  std::cerr << "caresync-server: " << entries.size() << " change(s) of " << collection << "/" << id->to_string() << "\n";
  return entries.empty() ? k_exit_failure : 0;
}

/// The two ways a maintenance command finds the server's database: --config or --db.
void add_database_options(CLI::App* cmd, std::string& config, std::string& db) {
  cmd->add_option("-c,--config", config, "Config file (TOML), for database_file")->check(CLI::ExistingFile);
  cmd->add_option("--db", db, "The server's database file (instead of --config)");
}

/// The database a command works on: --db, else the config's database_file.
std::string database_of(const std::string& config_path, const std::string& db_override) {
  return db_override.empty() ? server::load_config(config_path).database_file : db_override;
}

/// Prints a one-time enrollment code for `user_id`, valid for `hours`.
void print_code(server::change_store& store, const std::string& user_id, int hours) {
  const auto issued = server::issue_enrollment_code(store, user_id, std::chrono::hours(hours), system_time_ms());
  std::cout << "enrollment code for " << user_id << " (shown once; valid until " << server::log::iso_time(issued.expires_ms)
            << ", for one device):\n"
            << issued.code << "\n";
}

/// Empty when `unit` may be given to a user: once the org unit tree has units, it must be
/// one of them; before (stores made before the tree, and tests), any unit is taken as a
/// root of its own, whose scope is that unit alone.
std::string check_unit_known(server::change_store& store, const std::string& unit) {
  const auto tree = store.org_units();
  if (tree.empty() || std::any_of(tree.begin(), tree.end(), [&](const server::org_unit& u) { return u.id == unit; })) return {};
  return "org unit '" + unit + "' is not in the org unit tree; add it with add-org-unit, or see the tree with org-units";
}

int add_user(const std::string& database, const server::user_record& user, int hours) {
  if (const auto why = server::check_user(user); !why.empty()) {
    std::cerr << "caresync-server: " << why << std::endl;
    return k_exit_usage;
  }
  auto store = server::open_sqlite_change_store(database);
  if (const auto why = check_unit_known(*store, user.org_unit); !why.empty()) {
    std::cerr << "caresync-server: " << why << std::endl;
    return k_exit_usage;
  }
  if (store->find_user(user.user_id)) {
    std::cerr << "caresync-server: user '" << user.user_id << "' exists; enroll-code gives her another code" << std::endl;
    return k_exit_usage;
  }
  store->add_user(user);
  std::cout << "user " << user.user_id << " added (" << user.role << ", " << user.org_unit << ")\n";
  if (hours > 0) print_code(*store, user.user_id, hours);
  return 0;
}

int revoke_device(const std::string& config_path, const std::string& database, const std::string& device_id) {
  auto store = server::open_sqlite_change_store(database);
  if (store->revoke_device(device_id, system_time_ms())) {
    std::cout << "device " << device_id
              << " revoked: its next connection is refused and told to wipe its local data\n";
    return 0;
  }
  if (!config_path.empty()) {
    for (const auto& d : server::load_config(config_path).devices) {
      if (d.device_id == device_id) {
        std::cerr << "caresync-server: device '" << device_id
                  << "' is listed in the config file, not enrolled: remove its [[devices]] entry and restart the server"
                  << std::endl;
        return k_exit_failure;
      }
    }
  }
  std::cerr << "caresync-server: no enrolled device '" << device_id << "'" << std::endl;
  return k_exit_failure;
}

/// Lists devices with what they last reported, as JSON lines, flagging those that need a
/// supervisor: never synced, silent for `silent_days` or more, changes waiting, refused
/// changes unresolved. With `only_silent`, lists only the silent ones.
int devices(const std::string& config_path, const std::string& db_override, int silent_days, bool only_silent) {
  std::map<std::string, server::device_health> by_id;
  std::set<std::string> configured;
  std::string database = db_override;
  if (!config_path.empty()) {
    const auto config = server::load_config(config_path);
    if (database.empty()) database = config.database_file;
    for (const auto& d : config.devices) {
      configured.insert(d.device_id);
      by_id[d.device_id].device = d.device_id;
    }
  }
  auto log = server::open_sqlite_change_store(database);
  for (auto& h : log->fleet()) by_id[h.device] = std::move(h);
  std::map<std::string, server::device_record> enrolled;
  for (auto& d : log->devices()) {
    by_id[d.device_id].device = d.device_id;
    enrolled[d.device_id] = std::move(d);
  }
  const auto now = system_time_ms();
  constexpr std::uint64_t k_day_ms = 86'400'000;
  std::size_t listed = 0;
  for (const auto& [id, h] : by_id) {
    const bool never = h.last_ok_ms == 0;
    const auto days = never ? 0 : (now - std::min(now, h.last_ok_ms)) / k_day_ms;
    const bool silent = never || days >= static_cast<std::uint64_t>(silent_days);
    if (only_silent && !silent) continue;
    nlohmann::ordered_json line;
    line["device"] = id;
    line["configured"] = config_path.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(configured.count(id) > 0);
    const auto e = enrolled.find(id);
    line["user"] = e == enrolled.end() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(e->second.user_id);
    line["revoked"] = e == enrolled.end() || e->second.revoked_ms == 0
                          ? nlohmann::ordered_json(nullptr)
                          : nlohmann::ordered_json(server::log::iso_time(e->second.revoked_ms));
    line["app_version"] = h.app_version;
    line["last_seen"] = h.last_seen_ms ? nlohmann::ordered_json(server::log::iso_time(h.last_seen_ms)) : nlohmann::ordered_json(nullptr);
    line["last_ok"] = never ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(server::log::iso_time(h.last_ok_ms));
    line["days_since_ok"] = never ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(days);
    line["outbox"] = h.outbox;
    line["quarantined"] = h.quarantined;
    line["open_conflicts"] = h.open_conflicts;
    line["last_outcome"] = h.last_outcome;
    std::vector<std::string> attention;
    if (never) attention.push_back(h.last_seen_ms ? "never synced to the end" : "never connected");
    if (!never && days >= static_cast<std::uint64_t>(silent_days)) attention.push_back("silent " + std::to_string(days) + " days");
    if (h.outbox > 0 && h.last_outcome != "closed by device") {
      attention.push_back(std::to_string(h.outbox) + " changes waiting, last session: " + h.last_outcome);
    }
    if (h.quarantined > 0) attention.push_back(std::to_string(h.quarantined) + " refused changes to resolve");
    if (h.open_conflicts > 0) attention.push_back(std::to_string(h.open_conflicts) + " open conflicts to resolve");
    line["attention"] = attention;
    std::cout << line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) << "\n";
    ++listed;
  }
  std::cerr << "caresync-server: " << listed << " device(s) listed\n";
  return 0;
}

int add_org_unit(const std::string& database, const server::org_unit& unit) {
  // The same rule as a user's org unit (check_user): what a user names must be addable.
  const auto bad_id = [](const std::string& id) {
    return !server::check_user(server::user_record{"u", "u", "admin", id, 0}).empty();
  };
  if (bad_id(unit.id) || (!unit.parent.empty() && bad_id(unit.parent))) {
    std::cerr << "caresync-server: an org unit id is 1-128 printable ASCII characters without spaces" << std::endl;
    return k_exit_usage;
  }
  if (unit.name.empty() || unit.name.size() > 200) {
    std::cerr << "caresync-server: an org unit's name is 1-200 bytes" << std::endl;
    return k_exit_usage;
  }
  auto store = server::open_sqlite_change_store(database);
  const auto tree = store->org_units();
  const auto has = [&](const std::string& id) {
    return std::any_of(tree.begin(), tree.end(), [&](const server::org_unit& u) { return u.id == id; });
  };
  if (has(unit.id)) {
    std::cerr << "caresync-server: org unit '" << unit.id << "' exists already" << std::endl;
    return k_exit_usage;
  }
  if (!unit.parent.empty() && !has(unit.parent)) {
    std::cerr << "caresync-server: the parent org unit '" << unit.parent << "' does not exist; add it first" << std::endl;
    return k_exit_usage;
  }
  store->add_org_unit(unit);
  std::cout << "org unit " << unit.id << " added" << (unit.parent.empty() ? " as a root" : " under " + unit.parent) << "\n";
  return 0;
}

/// Prints the org unit tree, one unit a line, indented under its parent.
int org_units(const std::string& database) {
  auto store = server::open_sqlite_change_store(database);
  const auto tree = store->org_units();
  std::set<std::string> ids;
  for (const auto& u : tree) ids.insert(u.id);
  std::set<std::string> printed;
  std::function<void(const std::string&, int)> print = [&](const std::string& parent, int depth) {
    for (const auto& u : tree) {
      if (u.parent != parent || !printed.insert(u.id).second) continue;
      std::cout << std::string(static_cast<std::size_t>(depth) * 2, ' ') << u.id << "  (" << u.name << ")\n";
      print(u.id, depth + 1);
    }
  };
  print("", 0);
  std::cerr << "caresync-server: " << tree.size() << " org unit(s)\n";
  return 0;
}

/// move-user (a new unit) and set-role (a new role): effective at the user's devices' next sync.
int change_user(const std::string& database, const std::string& user_id, const std::string& unit, const std::string& role) {
  auto store = server::open_sqlite_change_store(database);
  auto user = store->find_user(user_id);
  if (!user) {
    std::cerr << "caresync-server: there is no user '" << user_id << "'" << std::endl;
    return k_exit_failure;
  }
  if (!unit.empty()) user->org_unit = unit;
  if (!role.empty()) user->role = role;
  if (const auto why = server::check_user(*user); !why.empty()) {
    std::cerr << "caresync-server: " << why << std::endl;
    return k_exit_usage;
  }
  if (const auto why = check_unit_known(*store, user->org_unit); !why.empty()) {
    std::cerr << "caresync-server: " << why << std::endl;
    return k_exit_usage;
  }
  store->update_user(*user);
  std::cout << "user " << user->user_id << " is now " << user->role << " in " << user->org_unit
            << "; her devices get the records of their new scope, and purge the others, at their next sync\n";
  return 0;
}

/// Milliseconds since the epoch of a date YYYY-MM-DD at 00:00 UTC; nullopt if not a date.
std::optional<std::uint64_t> day_start_ms(const std::string& date) {
  std::tm tm{};
  int y = 0, m = 0, d = 0;
  char extra = 0;
  if (date.size() != 10 || std::sscanf(date.c_str(), "%4d-%2d-%2d%c", &y, &m, &d, &extra) != 3) return std::nullopt;
  if (y < 1970 || m < 1 || m > 12 || d < 1 || d > 31) return std::nullopt;
  tm.tm_year = y - 1900;
  tm.tm_mon = m - 1;
  tm.tm_mday = d;
  const auto t = timegm(&tm);
  if (t < 0 || tm.tm_mday != d) return std::nullopt;  // 2026-02-30 normalises to March
  return static_cast<std::uint64_t>(t) * 1000;
}

/// Prints the audit lines from the start of `from` to the end of `to` (UTC days) as CSV.
int audit(const std::string& database, const std::string& from, const std::string& to, const std::string& device,
          const std::string& user) {
  const auto start = day_start_ms(from);
  const auto end = day_start_ms(to);
  if (!start || !end) {
    std::cerr << "caresync-server: --from and --to are dates like 2026-11-01" << std::endl;
    return k_exit_usage;
  }
  if (*end < *start) {
    std::cerr << "caresync-server: --to is before --from" << std::endl;
    return k_exit_usage;
  }
  auto store = server::open_sqlite_change_store(database);
  std::uint64_t lines = 0;
  // Device, user and collection names are quoted, so that no name can break a column.
  const auto csv = [](const std::string& field) {
    std::string out = "\"";
    for (const char c : field) out += c == '"' ? std::string("\"\"") : std::string(1, c);
    return out + "\"";
  };
  std::cout << "at,device,user,action,collection,record_id,seq\n";
  store->audit(server::audit_query{*start, *end + 86'400'000ULL, device, user}, [&](const server::audit_entry& e) {
    std::cout << server::log::iso_time(e.at_ms) << "," << csv(e.device) << "," << csv(e.user) << "," << e.action << ","
              << csv(e.collection) << "," << e.record.to_string() << "," << e.seq << "\n";
    ++lines;
  });
  std::cerr << "caresync-server: " << lines << " audit line(s)\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Everything the server writes (database, -wal, -shm, backups, keys, configs and their
  // directories) is its user's alone, whatever umask it was started with.
  ::umask(077);
  CLI::App app{"caresync-server: the caresync sync server (TLS, SQLite change log)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("caresync-server ") + k_version);

  serve_args sa;
  auto* serve_cmd = app.add_subcommand("serve", "Serve devices until SIGINT or SIGTERM");
  serve_cmd->add_option("-c,--config", sa.config, "Config file (TOML)")->required()->check(CLI::ExistingFile);
  serve_cmd->add_option("--listen", sa.listen, "Override listen_address");
  serve_cmd->add_option("--port", sa.port, "Override port (0: any free port)")->check(CLI::Range(0, 65535));
  serve_cmd->add_option("--admin-port", sa.admin_port, "Override admin.port (0: any free port)")->check(CLI::Range(0, 65535));
  serve_cmd->add_option("--db", sa.database, "Override database_file");
  serve_cmd->add_option("--log-level", sa.log_level, "Override log_level (info, error)");

  std::string check_path = "/etc/caresync/caresync-server.toml";
  auto* check_cmd = app.add_subcommand(
      "check-config", "Check a config as serve would (keys, addresses, certificate and key, database place); print config OK");
  check_cmd->add_option("-c,--config", check_path, "Config file (TOML)")->capture_default_str();

  std::string init_dir;
  std::vector<std::string> init_hosts, init_ips;
  auto* init_cmd = app.add_subcommand("init", "Make a CA, a server certificate and key, and a config in a directory");
  init_cmd->add_option("-d,--dir", init_dir, "Directory to write into")->required();
  init_cmd->add_option("--host", init_hosts, "Extra DNS name for the certificate (repeatable)");
  init_cmd->add_option("--ip", init_ips, "Extra IP address for the certificate (repeatable)");
  std::string init_database = "caresync-server.db";
  init_cmd->add_option("--database", init_database, "database_file for the config (relative: to the config's directory)")
      ->capture_default_str();
  int init_days = server::k_server_certificate_days;
  init_cmd->add_option("--days", init_days, "Days the server certificate is valid (at most 366)")
      ->check(CLI::Range(1, server::k_max_server_certificate_days))
      ->capture_default_str();
  ca_key_choice init_ca_key;
  auto* ca_key_out = init_cmd->add_option(
      "--ca-key-out", init_ca_key.out,
      "Write the CA private key here, outside --dir (e.g. a USB key to take offline), not to DIR/ca-key.pem");
  init_cmd->add_flag("--no-ca-key", init_ca_key.discard,
                     "Keep the CA private key nowhere: nothing can renew the certificate, a new CA is needed then")
      ->excludes(ca_key_out);

  std::string renew_config = "/etc/caresync/caresync-server.toml", renew_ca, renew_ca_key;
  int renew_days = server::k_server_certificate_days;
  auto* renew_cmd = app.add_subcommand(
      "renew-certificate",
      "Issue a new server certificate for the same key (the tablets' pin stays valid) and the same names, signed by the "
      "CA; the server serves it once restarted");
  renew_cmd->add_option("-c,--config", renew_config, "Config file (TOML): its certificate_file and private_key_file")
      ->capture_default_str();
  renew_cmd->add_option("--ca", renew_ca, "The CA certificate (default: ca.pem beside the config)");
  renew_cmd->add_option("--ca-key", renew_ca_key, "The CA private key (default: ca-key.pem beside the config)");
  renew_cmd->add_option("--days", renew_days, "Days the new certificate is valid (at most 366)")
      ->check(CLI::Range(1, server::k_max_server_certificate_days))
      ->capture_default_str();
  bool renew_new_key = false;
  renew_cmd->add_flag("--new-key", renew_new_key,
                      "Key rotation: make a NEW key (a new pin) and its certificate as FILE.next beside the current "
                      "ones; serves nothing until they are moved in place");

  std::string token_arg;
  auto* hash_cmd = app.add_subcommand("hash-token", "Print the SHA-256 of a token, as the config stores it");
  hash_cmd->add_option("token", token_arg, "The token, or - to read it from standard input")->required();

  std::string device_config, device_id;
  auto* device_cmd = app.add_subcommand("add-device", "Add a device with a new random token to a config file");
  device_cmd->add_option("-c,--config", device_config, "Config file (TOML)")->required()->check(CLI::ExistingFile);
  device_cmd->add_option("--device-id", device_id, "The device's id")->required();

  std::string history_config, history_db, history_collection, history_id;
  auto* history_cmd = app.add_subcommand(
      "history", "Print every accepted change of one record, oldest first, as JSON lines (contains record contents)");
  add_database_options(history_cmd, history_config, history_db);
  history_cmd->add_option("--collection", history_collection, "The record's collection")->required();
  history_cmd->add_option("--id", history_id, "The record's id")->required();

  std::string devices_config, devices_db;
  int silent_days = 7;
  bool only_silent = false;
  auto* devices_cmd = app.add_subcommand(
      "devices", "List devices with their last sync, queue depth, refused changes and open conflicts, as JSON lines (fleet health)");
  devices_cmd->add_option("-c,--config", devices_config, "Config file (TOML): its devices and database_file")
      ->check(CLI::ExistingFile);
  devices_cmd->add_option("--db", devices_db, "The server's database file (only devices that connected)");
  devices_cmd->add_option("--silent-days", silent_days, "Flag devices without a clean sync for this many days")
      ->check(CLI::Range(0, 36500))
      ->capture_default_str();
  devices_cmd->add_flag("--only-silent", only_silent, "List only the devices flagged silent or never synced");

  std::string user_config, user_db;
  server::user_record new_user;
  int code_hours = 72;
  auto* user_cmd = app.add_subcommand("add-user", "Add a user and print a one-time enrollment code for her device");
  add_database_options(user_cmd, user_config, user_db);
  user_cmd->add_option("--user", new_user.user_id, "The user's id, e.g. jana.novakova")->required();
  user_cmd->add_option("--name", new_user.name, "The user's name, as the app greets her")->required();
  user_cmd->add_option("--role", new_user.role, "field_worker, coordinator, registry_admin or admin")->required();
  user_cmd->add_option("--org-unit", new_user.org_unit, "Her org unit, e.g. kraj/orp-benesov/team-2")->required();
  user_cmd->add_option("--code-hours", code_hours, "Hours the enrollment code stays valid (0: no code now)")
      ->check(CLI::Range(0, 24 * 90))
      ->capture_default_str();

  std::string code_config, code_db, code_user;
  int more_code_hours = 72;
  auto* code_cmd = app.add_subcommand("enroll-code", "Print a new one-time enrollment code for an existing user (another device)");
  add_database_options(code_cmd, code_config, code_db);
  code_cmd->add_option("--user", code_user, "The user's id")->required();
  code_cmd->add_option("--code-hours", more_code_hours, "Hours the code stays valid")
      ->check(CLI::Range(1, 24 * 90))
      ->capture_default_str();

  std::string revoke_config, revoke_db, revoke_id;
  auto* revoke_cmd = app.add_subcommand(
      "revoke-device", "Revoke an enrolled device (lost or stolen): its next connection is refused and told to wipe");
  add_database_options(revoke_cmd, revoke_config, revoke_db);
  revoke_cmd->add_option("--device", revoke_id, "The device's id (caresync-server devices lists them)")->required();

  std::string report_config, report_db;
  server::activity_range report_range;
  auto* report_cmd = app.add_subcommand(
      "report",
      "Print activity figures as CSV: per org unit, month and visit kind, the done visits, hours, distinct clients and "
      "caregivers supported (figures only; reads the whole log)");
  add_database_options(report_cmd, report_config, report_db);
  report_cmd->add_option("--from", report_range.from, "First month, YYYY-MM (default: the first there is)");
  report_cmd->add_option("--to", report_range.to, "Last month, YYYY-MM (default: the last there is)");

  std::string import_config, import_db, import_csv;
  server::registry_import_options import_options;
  auto* import_cmd = app.add_subcommand(
      "import-registry",
      "Import the services registry from CSV (a header of field[:type] names; one key column) as server-side writes: "
      "only what changed is written, in one transaction");
  add_database_options(import_cmd, import_config, import_db);
  import_cmd->add_option("--csv", import_csv, "The CSV file (UTF-8, RFC 4180)")->required()->check(CLI::ExistingFile);
  import_cmd->add_option("--collection", import_options.collection, "The registry's collection")->capture_default_str();
  import_cmd->add_option("--key", import_options.key, "The column that identifies a service")->capture_default_str();
  import_cmd->add_flag("--delete-missing", import_options.delete_missing,
                       "Delete the collection's records whose key is not in the file (default: keep and count them)");

  std::string backup_config, backup_db, backup_to;
  auto* backup_cmd = app.add_subcommand(
      "backup", "Copy the change store to a new file while the server runs (SQLite online backup; consistent snapshot)");
  add_database_options(backup_cmd, backup_config, backup_db);
  backup_cmd->add_option("--to", backup_to, "The new backup file")->required();

  std::string journal_config, journal_db;
  auto* journal_cmd = app.add_subcommand(
      "reset-auth-journal",
      "Start the administrative journal anew from the database as it is (when the server refuses a lost or foreign "
      "journal); the server must be stopped");
  add_database_options(journal_cmd, journal_config, journal_db);

  std::string unit_config, unit_db;
  server::org_unit new_unit;
  auto* unit_cmd = app.add_subcommand("add-org-unit", "Add an org unit to the tree (no --parent: a root, e.g. a region)");
  add_database_options(unit_cmd, unit_config, unit_db);
  unit_cmd->add_option("--id", new_unit.id, "The unit's id, e.g. kraj/orp-benesov/team-2")->required();
  unit_cmd->add_option("--parent", new_unit.parent, "The parent unit's id (none: a root)");
  unit_cmd->add_option("--name", new_unit.name, "The unit's name, for people")->required();

  std::string units_config, units_db;
  auto* units_cmd = app.add_subcommand("org-units", "Print the org unit tree");
  add_database_options(units_cmd, units_config, units_db);

  std::string move_config, move_db, move_user, move_unit;
  auto* move_cmd = app.add_subcommand("move-user", "Reassign a user to another org unit (at her devices' next sync)");
  add_database_options(move_cmd, move_config, move_db);
  move_cmd->add_option("--user", move_user, "The user's id")->required();
  move_cmd->add_option("--org-unit", move_unit, "Her new org unit")->required();

  std::string role_config, role_db, role_user, role_name;
  auto* role_cmd = app.add_subcommand("set-role", "Give a user another role (at her devices' next sync)");
  add_database_options(role_cmd, role_config, role_db);
  role_cmd->add_option("--user", role_user, "The user's id")->required();
  role_cmd->add_option("--role", role_name, "field_worker, coordinator, registry_admin or admin")->required();

  std::string audit_config, audit_db, audit_from, audit_to, audit_device, audit_user;
  auto* audit_cmd = app.add_subcommand(
      "audit", "Print who pushed and received which record ids from --from to --to (UTC days, inclusive) as CSV; no contents");
  add_database_options(audit_cmd, audit_config, audit_db);
  audit_cmd->add_option("--from", audit_from, "First day, YYYY-MM-DD")->required();
  audit_cmd->add_option("--to", audit_to, "Last day, YYYY-MM-DD")->required();
  audit_cmd->add_option("--device", audit_device, "Only this device");
  audit_cmd->add_option("--user", audit_user, "Only this user");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // app.exit prints the help or the error; every usage error exits 2, as documented.
    return app.exit(e) == 0 ? 0 : k_exit_usage;
  }
  try {
    if (*serve_cmd) return serve(sa);
    if (*init_cmd) return init(init_dir, init_hosts, init_ips, init_database, init_days, init_ca_key);
    if (*renew_cmd) return renew_certificate(renew_config, renew_ca, renew_ca_key, renew_days, renew_new_key);
    if (*check_cmd) {
      check_config(check_path);
      std::cout << "config OK: " << check_path << "\n";
      return 0;
    }
    if (*hash_cmd) {
      if (token_arg == "-") {
        // From standard input, so the token is not left in shell history or `ps`.
        token_arg.clear();
        std::getline(std::cin, token_arg);
        if (!token_arg.empty() && token_arg.back() == '\r') token_arg.pop_back();
      }
      if (token_arg.empty()) {
        std::cerr << "caresync-server: the token is empty; pass it, or - and the token on standard input" << std::endl;
        return k_exit_usage;
      }
      std::cout << server::hash_token(token_arg) << "\n";
      return 0;
    }
    if (*device_cmd) return add_device(device_config, device_id);
    if (*devices_cmd) {
      if (devices_config.empty() && devices_db.empty()) {
        std::cerr << "caresync-server: devices needs --config or --db\n";
        return k_exit_usage;
      }
      return devices(devices_config, devices_db, silent_days, only_silent);
    }
    if (*backup_cmd) {
      if (backup_config.empty() == backup_db.empty()) {
        std::cerr << "caresync-server: backup needs exactly one of --config and --db\n";
        return k_exit_usage;
      }
      const auto source = backup_db.empty() ? server::load_config(backup_config).database_file : backup_db;
      const auto done = server::backup_sqlite_store(source, backup_to);
      std::cout << "backup written to " << backup_to << ": log head " << done.log_head << ", " << done.bytes
                << " bytes, integrity_check ok\n"
                << "the administrative journal " << server::auth_journal_file(source)
                << " is not in the backup: a restore keeps it in place and replays it (docs/operations.md)\n";
      return 0;
    }
    if (*journal_cmd) {
      if (journal_config.empty() == journal_db.empty()) {
        std::cerr << "caresync-server: reset-auth-journal needs exactly one of --config and --db\n";
        return k_exit_usage;
      }
      const auto database = journal_db.empty() ? server::load_config(journal_config).database_file : journal_db;
      const auto moved = server::reset_sqlite_auth_journal(database);
      if (!moved.empty()) std::cout << "the old administrative journal was moved to " << moved << "\n";
      std::cout << "a new administrative journal starts from " << database
                << " as it is at the server's next start; re-apply every revocation, user and code change made since "
                   "this database's backup\n";
      return 0;
    }
    const auto one_source = [](const char* command, const std::string& config, const std::string& db) {
      if (config.empty() == db.empty()) {
        std::cerr << "caresync-server: " << command << " needs exactly one of --config and --db\n";
        return false;
      }
      return true;
    };
    if (*user_cmd) {
      if (!one_source("add-user", user_config, user_db)) return k_exit_usage;
      new_user.created_ms = system_time_ms();
      return add_user(database_of(user_config, user_db), new_user, code_hours);
    }
    if (*code_cmd) {
      if (!one_source("enroll-code", code_config, code_db)) return k_exit_usage;
      auto store = server::open_sqlite_change_store(database_of(code_config, code_db));
      print_code(*store, code_user, more_code_hours);
      return 0;
    }
    if (*revoke_cmd) {
      if (!one_source("revoke-device", revoke_config, revoke_db)) return k_exit_usage;
      return revoke_device(revoke_config, database_of(revoke_config, revoke_db), revoke_id);
    }
    if (*import_cmd) {
      if (!one_source("import-registry", import_config, import_db)) return k_exit_usage;
      std::ifstream in(import_csv, std::ios::binary);
      if (!in) {
        std::cerr << "caresync-server: cannot read " << import_csv << "\n";
        return k_exit_failure;
      }
      const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      auto store = server::open_sqlite_change_store(database_of(import_config, import_db));
      const auto r = server::import_registry(*store, text, import_options);
      std::cout << "imported " << r.rows << " row(s) into " << import_options.collection << ": " << r.created << " new, "
                << r.updated << " changed, " << r.unchanged << " unchanged, " << r.deleted << " deleted, " << r.missing_kept
                << " not in the file kept";
      if (r.last_seq) std::cout << " (log positions " << r.first_seq << "-" << r.last_seq << ")";
      std::cout << "\n";
      return 0;
    }
    if (*report_cmd) {
      if (!one_source("report", report_config, report_db)) return k_exit_usage;
      auto store = server::open_sqlite_change_store(database_of(report_config, report_db));
      const auto rows = server::activity_figures(store->materialize(), report_range);
      std::cout << server::activity_csv(rows);
      std::cerr << "caresync-server: " << rows.size() << " row(s) of activity figures\n";
      return 0;
    }
    if (*unit_cmd) {
      if (!one_source("add-org-unit", unit_config, unit_db)) return k_exit_usage;
      return add_org_unit(database_of(unit_config, unit_db), new_unit);
    }
    if (*units_cmd) {
      if (!one_source("org-units", units_config, units_db)) return k_exit_usage;
      return org_units(database_of(units_config, units_db));
    }
    if (*move_cmd) {
      if (!one_source("move-user", move_config, move_db)) return k_exit_usage;
      return change_user(database_of(move_config, move_db), move_user, move_unit, {});
    }
    if (*role_cmd) {
      if (!one_source("set-role", role_config, role_db)) return k_exit_usage;
      return change_user(database_of(role_config, role_db), role_user, {}, role_name);
    }
    if (*audit_cmd) {
      if (!one_source("audit", audit_config, audit_db)) return k_exit_usage;
      return audit(database_of(audit_config, audit_db), audit_from, audit_to, audit_device, audit_user);
    }
    if (*history_cmd) {
      if (history_config.empty() == history_db.empty()) {
        std::cerr << "caresync-server: history needs exactly one of --config and --db\n";
        return k_exit_usage;
      }
      return history(history_config, history_db, history_collection, history_id);
    }
  } catch (const caresync::error& e) {
    std::cerr << "caresync-server: " << e.what() << std::endl;
    return e.code() == storage_errc::invalid_argument ? k_exit_usage : k_exit_failure;
  } catch (const std::exception& e) {
    std::cerr << "caresync-server: " << e.what() << std::endl;
    return k_exit_failure;
  }
  return k_exit_usage;
}
