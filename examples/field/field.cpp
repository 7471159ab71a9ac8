// caresync-field: a field tablet on the command line (issue 5). One store file per
// tablet; its connection settings live beside it in STORE.device (mode 0600: it holds the
// device's token). Every command works offline except enroll and sync.
//
//   caresync-field --store jana.db enroll --host H --port P --ca ca.pem --code CODE
//   caresync-field --store jana.db add-client --name "…" --org-unit kraj/orp-a/team-1
//   caresync-field --store jana.db clients novakova
//   caresync-field --store jana.db record-visit --client ID --start "23.11.2026 8:00" --end 9:15 --note "…"
//   caresync-field --store jana.db visits [--date 23.11.2026]
//   caresync-field --store jana.db sync [--until-done [--deadline 10m]]
//   caresync-field --store jana.db pending
//
// `caresync-field --help` lists every command. Times are typed and shown in the
// system's zone (local_time.hpp) and stored UTC; messages are Czech under a Czech locale
// (messages.hpp). Record contents are printed only to the terminal of the person using
// the tablet, never logged.

#include "client_commands.hpp"
#include "conflict_commands.hpp"
#include "input.hpp"
#include "messages.hpp"
#include "pending_command.hpp"
#include "sync_command.hpp"
#include "visit_commands.hpp"

#include <caresync/care.hpp>
#include <caresync/protocol/errors.hpp>
#include <caresync/store.hpp>
#include <caresync/sync_client.hpp>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <ctime>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace {

using namespace caresync;

constexpr int k_exit_failure = 1;
constexpr int k_exit_usage = 2;

std::string device_file(const std::string& store_path) { return store_path + ".device"; }

/// The connection settings saved by enroll or configure.
sync_options load_device(const std::string& store_path) {
  std::ifstream in(device_file(store_path));
  if (!in) {
    throw error(make_error_code(storage_errc::invalid_argument),
                "this tablet has no server yet: run 'enroll' (with a code from the administrator) or 'configure' first");
  }
  nlohmann::json j;
  try {
    in >> j;
    sync_options o;
    o.host = j.at("host").get<std::string>();
    o.port = j.at("port").get<std::uint16_t>();
    o.ca_file = j.value("ca_file", std::string());
    o.pinned_key_sha256 = j.value("pinned_key_sha256", std::string());
    o.device_id = j.at("device_id").get<std::string>();
    o.token = j.at("token").get<std::string>();
    return o;
  } catch (const nlohmann::json::exception&) {
    throw error(make_error_code(storage_errc::corrupt), device_file(store_path) + " is damaged; run 'configure' again");
  }
}

/// Writes `bytes` to `path` whole or not at all, even across a power cut: a temporary file
/// created 0600 (whatever the umask) beside it, synced, renamed over it, and the
/// directory synced. A rotated token must not be lost once the server may have stopped
/// accepting the old one (docs/security.md, "Token rotation").
void write_atomically(const std::string& path, const std::string& bytes) {
  const auto tmp = path + ".tmp";
  const auto failed = [&](const std::string& what) {
    return error(make_error_code(storage_errc::io_failed), "cannot write " + what + ": " + std::strerror(errno));
  };
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) throw failed(tmp);
  bool ok = ::fchmod(fd, 0600) == 0;  // a leftover temporary file may have had another mode
  for (std::size_t done = 0; ok && done < bytes.size();) {
    const auto n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) done += static_cast<std::size_t>(n);
  }
  ok = ok && ::fsync(fd) == 0;
  const auto e = errno;
  ::close(fd);
  errno = e;
  if (!ok) throw failed(tmp);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw failed(path);
  auto dir = std::filesystem::path(path).parent_path();
  if (dir.empty()) dir = ".";
  if (const int d = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); d >= 0) {
    const bool synced = ::fsync(d) == 0;
    ::close(d);
    if (!synced) throw failed(dir.string());
  }
}

void save_device(const std::string& store_path, const sync_options& o) {
  const nlohmann::json j{{"host", o.host},   {"port", o.port},           {"ca_file", o.ca_file},
                         {"pinned_key_sha256", o.pinned_key_sha256}, {"device_id", o.device_id}, {"token", o.token}};
  write_atomically(device_file(store_path), j.dump(2) + "\n");
}

/// The settings of STORE.device, saving a token the server hands out (token rotation)
/// into that file before the sync uses it.
sync_options rotating_device(const std::string& store_path) {
  auto o = load_device(store_path);
  o.on_new_token = [store_path, saved = o](const std::string& token) {
    auto next = saved;
    next.token = token;
    save_device(store_path, next);
  };
  return o;
}

std::unique_ptr<store> open_store(const std::string& path) {
  return store::open(store_options{path, care::schema()});
}

}  // namespace

int main(int argc, char** argv) {
  field::init_messages();
  CLI::App app{"caresync-field: a field tablet of caresync on the command line (docs/care.md)"};
  app.require_subcommand(1);
  std::string store_path = "tablet.db";
  app.add_option("--store", store_path, "The tablet's store file")->capture_default_str();

  sync_options server;
  std::string code;
  const auto server_options = [&](CLI::App* cmd) {
    cmd->add_option("--host", server.host, "The server's host name")->required();
    cmd->add_option("--port", server.port, "The server's port")->required();
    cmd->add_option("--ca", server.ca_file, "The CA file that signed the server's certificate")->check(CLI::ExistingFile);
    cmd->add_option("--pin", server.pinned_key_sha256, "The server's public-key SHA-256 (instead of --ca)");
  };
  auto* enroll_cmd = app.add_subcommand("enroll", "Enroll this tablet with a one-time code from the administrator");
  server_options(enroll_cmd);
  enroll_cmd->add_option("--code", code, "The enrollment code")->required();
  auto* configure_cmd = app.add_subcommand("configure", "Use a device id and token from the server's config (before enrollment)");
  server_options(configure_cmd);
  configure_cmd->add_option("--device-id", server.device_id, "The device id")->required();
  configure_cmd->add_option("--token", server.token, "The device token (keep it secret)")->required();

  field::client_commands clients(app);
  field::visit_commands visits(app);
  field::pending_command pending(app);

  care::service_query query;
  auto* search_cmd = app.add_subcommand("search", "Search the services registry offline");
  search_cmd->add_option("text", query.text, "Words to find (diacritics do not matter)");
  search_cmd->add_option("--type", query.type, "A service type code (docs/care.md)");
  search_cmd->add_option("--municipality", query.municipality,
                         "A municipality the service serves (case and diacritics do not matter)");

  care::referral new_referral;
  std::string referral_client;
  auto* refer_cmd = app.add_subcommand("refer", "Refer a client to another unit; prints the referral's id");
  refer_cmd->add_option("--client", referral_client, "The client's id")->required();
  refer_cmd->add_option("--to-unit", new_referral.to_unit, "The receiving unit")->required();
  refer_cmd->add_option("--reason", new_referral.reason, "Why")->required();

  std::string referral_id, referral_action, decline_reason;
  auto* referral_cmd = app.add_subcommand("referral", "Move a referral: accept, start, close or decline");
  referral_cmd->add_option("action", referral_action, "accept, start, close or decline")
      ->required()
      ->check(CLI::IsMember({"accept", "start", "close", "decline"}));
  referral_cmd->add_option("id", referral_id, "The referral's id")->required();
  referral_cmd->add_option("--reason", decline_reason, "Why (decline)");
  auto* inbox_cmd = app.add_subcommand("inbox", "List the new referrals to a unit");
  std::string inbox_unit;
  inbox_cmd->add_option("--unit", inbox_unit, "The receiving unit")->required();

  auto* sync_cmd = app.add_subcommand("sync", "Exchange changes with the server, with a progress bar");
  field::sync_command_options sync_how;
  sync_cmd->add_flag("--until-done", sync_how.until_done,
                     "Keep trying, with pauses, until the tablet has everything (for a weak signal)");
  std::int64_t deadline_seconds = 0;
  sync_cmd
      ->add_option("--deadline", deadline_seconds, "With --until-done: stop trying after this long (e.g. 90, 90s, 10m, 1h)")
      ->transform(CLI::AsNumberWithUnit(std::map<std::string, std::int64_t>{{"s", 1}, {"m", 60}, {"min", 60}, {"h", 3600}},
                                        CLI::AsNumberWithUnit::CASE_INSENSITIVE))
      ->check(CLI::PositiveNumber);

  field::conflict_commands conflicts(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : k_exit_usage;
  }
  try {
    if (*enroll_cmd || *configure_cmd) {
      if (server.ca_file.empty() == server.pinned_key_sha256.empty()) {
        std::cerr << "caresync-field: give exactly one of --ca and --pin\n";
        return k_exit_usage;
      }
      if (*enroll_cmd) {
        const auto e = enroll(server, code);
        server.device_id = e.device_id;
        server.token = e.token;
        std::cout << "enrolled as device " << e.device_id << " of " << e.user_name << "\n";
      }
      save_device(store_path, server);
      open_store(store_path);  // creates the store now, so the first command finds it
      return 0;
    }
    auto local = open_store(store_path);
    care::records records(*local);
    if (const auto status = clients.run(records)) return *status;
    if (const auto status = visits.run(records)) return *status;
    if (const auto status = pending.run(records)) return *status;
    if (const auto status = conflicts.run(records)) return *status;
    if (*search_cmd) {
      const auto found = records.services().search(query);
      for (const auto& s : found) {
        std::cout << s.id.to_string() << "  " << s.service_name << "  (" << s.provider << ", " << s.service_type << ")\n";
      }
      if (found.empty()) {
        std::cerr << field::tr("no service in the registry on this tablet matches; try fewer words, or sync to get the "
                               "registry")
                  << "\n";
      } else {
        std::cerr << field::fill(field::trn("{} service(s) found", "{} service(s) found", found.size()),
                                 {std::to_string(found.size())});
        if (found.size() == query.limit) {
          std::cerr << field::fill(field::tr(" (the first {}; add words to narrow it)"), {std::to_string(query.limit)});
        }
        std::cerr << "\n";
      }
    } else if (*refer_cmd) {
      new_referral.client_id = field::id_option(referral_client, "--client");
      std::cout << records.referrals().add(new_referral).to_string() << "\n";
    } else if (*referral_cmd) {
      const auto id = field::id_option(referral_id, "id");
      if (referral_action == "accept") records.referrals().accept(id);
      if (referral_action == "start") records.referrals().start(id);
      if (referral_action == "close") records.referrals().close(id);
      if (referral_action == "decline") records.referrals().decline(id, decline_reason);
      std::cout << field::fill(field::tr("referral {}: {}"),
                               {referral_id, std::string(care::to_code(records.referrals().find(id)->state))})
                << "\n";
    } else if (*inbox_cmd) {
      const auto waiting = records.referrals().to_unit(inbox_unit);
      for (const auto& r : waiting) {
        std::cout << r.id.to_string() << "  "
                  << field::fill(field::tr("client {}  from {}"), {r.client_id.to_string(), r.from_unit}) << "  "
                  << r.reason << "\n";
      }
      std::cerr << field::fill(field::trn("{} new referral(s) to {}", "{} new referral(s) to {}", waiting.size()),
                               {std::to_string(waiting.size()), inbox_unit})
                << "\n";
    } else if (*sync_cmd) {
      if (deadline_seconds > 0) sync_how.deadline = std::chrono::seconds(deadline_seconds);
      if (sync_how.deadline && !sync_how.until_done) {
        std::cerr << "caresync-field: " << field::tr("--deadline goes with --until-done") << "\n";
        return k_exit_usage;
      }
      return field::run_sync(*local, rotating_device(store_path), sync_how);
    }
    return 0;
  } catch (const error& e) {
    // Fixed messages (the device file's, say) are in the catalog as they are.
    std::cerr << "caresync-field: " << field::tr(e.what()) << "\n";
    return e.code() == make_error_code(storage_errc::invalid_argument) ? k_exit_usage : k_exit_failure;
  }
}
