// caresync-field: a field tablet on the command line (issue 5). One store file per
// tablet; its connection settings live beside it in STORE.device (mode 0600: it holds the
// device's token). Every command works offline except enroll and sync.
//
//   caresync-field --store jana.db enroll --host H --port P --ca ca.pem --code CODE
//   caresync-field --store jana.db add-client --name "…" --org-unit kraj/orp-a/team-1
//   caresync-field --store jana.db record-visit --client ID --start … --end … --note "…"
//   caresync-field --store jana.db visits [--date YYYY-MM-DD]
//   caresync-field --store jana.db sync [--until-done [--deadline 10m]]
//
// `caresync-field --help` lists every command. Record contents are printed only to the
// terminal of the person using the tablet, never logged.

#include "sync_command.hpp"

#include <caresync/care.hpp>
#include <caresync/protocol/errors.hpp>
#include <caresync/store.hpp>
#include <caresync/sync_client.hpp>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <sqlite3.h>

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

record_id parse_id(const std::string& text, const char* what) {
  const auto id = record_id::parse(text);
  if (!id) throw error(make_error_code(storage_errc::invalid_argument), std::string(what) + " '" + text + "' is not a record id");
  return *id;
}

std::string today_utc() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char day[16];
  std::strftime(day, sizeof day, "%Y-%m-%d", &tm);
  return day;
}

/// Visits starting on `day`, read with plain SQL as any app reads its store.
int list_visits(const std::string& store_path, const std::string& day) {
  sqlite3* raw = nullptr;
  if (sqlite3_open_v2(store_path.c_str(), &raw, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    sqlite3_close(raw);
    std::cerr << "caresync-field: cannot open " << store_path << "\n";
    return k_exit_failure;
  }
  const std::unique_ptr<sqlite3, int (*)(sqlite3*)> db(raw, sqlite3_close);
  sqlite3_stmt* raw_stmt = nullptr;
  const char* sql =
      "SELECT v.id, v.start_at, v.end_at, v.kind, v.status, coalesce(c.name, '?') FROM visits v"
      " LEFT JOIN clients c ON c.id = v.client_id WHERE substr(v.start_at, 1, 10) = ? ORDER BY v.start_at, v.id";
  if (sqlite3_prepare_v2(db.get(), sql, -1, &raw_stmt, nullptr) != SQLITE_OK) {
    std::cerr << "caresync-field: " << sqlite3_errmsg(db.get()) << "\n";
    return k_exit_failure;
  }
  const std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> stmt(raw_stmt, sqlite3_finalize);
  sqlite3_bind_text(stmt.get(), 1, day.c_str(), -1, SQLITE_TRANSIENT);
  const auto text = [&](int col) {
    const auto* t = sqlite3_column_text(stmt.get(), col);
    return t ? std::string(reinterpret_cast<const char*>(t)) : std::string();
  };
  int n = 0;
  while (sqlite3_step(stmt.get()) == SQLITE_ROW) {
    std::cout << text(0) << "  " << text(1).substr(11, 5) << "-" << text(2).substr(std::min<std::size_t>(11, text(2).size()), 5)
              << "  " << text(3) << "  " << text(4) << "  " << text(5) << "\n";
    ++n;
  }
  std::cerr << n << " visit(s) on " << day << "\n";
  return 0;
}

std::string value_text(const value& v) {
  if (const auto* s = std::get_if<std::string>(&v)) return *s;
  if (const auto* i = std::get_if<std::int64_t>(&v)) return std::to_string(*i);
  if (const auto* d = std::get_if<double>(&v)) return std::to_string(*d);
  if (std::holds_alternative<std::monostate>(v)) return "(none)";
  return "(bytes)";
}

}  // namespace

int main(int argc, char** argv) {
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

  care::client new_client;
  auto* client_cmd = app.add_subcommand("add-client", "Add a client; prints its id");
  client_cmd->add_option("--name", new_client.name, "Name")->required();
  client_cmd->add_option("--org-unit", new_client.org_unit, "The unit that owns the client")->required();
  client_cmd->add_option("--municipality", new_client.municipality, "Municipality");
  client_cmd->add_option("--birth-date", new_client.birth_date, "YYYY-MM-DD");

  care::visit new_visit;
  std::string visit_client, visit_status = "done";
  auto* visit_cmd = app.add_subcommand("record-visit", "Record a visit to a client; prints its id");
  visit_cmd->add_option("--client", visit_client, "The client's id")->required();
  visit_cmd->add_option("--worker", new_visit.worker_id, "The worker's id")->required();
  visit_cmd->add_option("--start", new_visit.start_at, "Start, UTC: YYYY-MM-DDTHH:MM:SSZ")->required();
  visit_cmd->add_option("--end", new_visit.end_at, "End, UTC: YYYY-MM-DDTHH:MM:SSZ")->required();
  visit_cmd->add_option("--kind", new_visit.kind, "A visit kind code (docs/care.md)")->capture_default_str();
  visit_cmd->add_option("--activity", new_visit.activity_codes, "Activity codes (docs/care.md)");
  visit_cmd->add_option("--note", new_visit.note, "What happened");
  visit_cmd->add_option("--status", visit_status, "planned, done, cancelled or no_one_home")->capture_default_str();

  std::string day;
  auto* visits_cmd = app.add_subcommand("visits", "List the visits of a day (today, UTC, by default)");
  visits_cmd->add_option("--date", day, "YYYY-MM-DD");

  care::service_query query;
  auto* search_cmd = app.add_subcommand("search", "Search the services registry offline");
  search_cmd->add_option("text", query.text, "Words to find (diacritics do not matter)");
  search_cmd->add_option("--type", query.type, "A service type code (docs/care.md)");
  search_cmd->add_option("--municipality", query.municipality, "A municipality the service serves");

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

  auto* conflicts_cmd = app.add_subcommand("conflicts", "List open conflicts (concurrent edits kept for a person)");
  std::string resolve_collection, resolve_id, resolve_field, resolve_value;
  auto* resolve_cmd = app.add_subcommand("resolve", "Resolve a conflict with the value to keep");
  resolve_cmd->add_option("--collection", resolve_collection, "Collection")->required();
  resolve_cmd->add_option("--id", resolve_id, "Record id")->required();
  resolve_cmd->add_option("--field", resolve_field, "Field")->required();
  resolve_cmd->add_option("--value", resolve_value, "The text to keep (one of the values, or both merged)")->required();

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
    if (*visits_cmd) {
      open_store(store_path);  // creates the tables if the store is new
      return list_visits(store_path, day.empty() ? today_utc() : day);
    }
    auto local = open_store(store_path);
    care::records records(*local);
    if (*client_cmd) {
      std::cout << records.clients().add(new_client).to_string() << "\n";
    } else if (*visit_cmd) {
      new_visit.client_id = parse_id(visit_client, "client");
      bool known = false;
      for (const auto s : {care::visit_status::planned, care::visit_status::done, care::visit_status::cancelled,
                           care::visit_status::no_one_home}) {
        if (care::to_code(s) == visit_status) new_visit.status = s, known = true;
      }
      if (!known) {
        std::cerr << "caresync-field: --status must be planned, done, cancelled or no_one_home\n";
        return k_exit_usage;
      }
      std::cout << records.visits().add(new_visit).to_string() << "\n";
    } else if (*search_cmd) {
      for (const auto& s : records.services().search(query)) {
        std::cout << s.id.to_string() << "  " << s.service_name << "  (" << s.provider << ", " << s.service_type << ")\n";
      }
    } else if (*refer_cmd) {
      new_referral.client_id = parse_id(referral_client, "client");
      std::cout << records.referrals().add(new_referral).to_string() << "\n";
    } else if (*referral_cmd) {
      const auto id = parse_id(referral_id, "referral");
      if (referral_action == "accept") records.referrals().accept(id);
      if (referral_action == "start") records.referrals().start(id);
      if (referral_action == "close") records.referrals().close(id);
      if (referral_action == "decline") records.referrals().decline(id, decline_reason);
      std::cout << "referral " << referral_id << ": " << care::to_code(records.referrals().find(id)->state) << "\n";
    } else if (*inbox_cmd) {
      for (const auto& r : records.referrals().to_unit(inbox_unit)) {
        std::cout << r.id.to_string() << "  client " << r.client_id.to_string() << "  from " << r.from_unit << "  " << r.reason << "\n";
      }
    } else if (*sync_cmd) {
      if (deadline_seconds > 0) sync_how.deadline = std::chrono::seconds(deadline_seconds);
      if (sync_how.deadline && !sync_how.until_done) {
        std::cerr << "caresync-field: --deadline goes with --until-done\n";
        return k_exit_usage;
      }
      return field::run_sync(*local, rotating_device(store_path), sync_how);
    } else if (*conflicts_cmd) {
      for (const auto& c : local->conflicts()) {
        std::cout << c.collection << " " << c.record.to_string() << " " << c.field << (c.record_deleted ? " (record deleted)" : "")
                  << (c.record_revived ? "(record brought back after a delete; dismiss with field \"\")" : "")
                  << "\n  shown: " << value_text(c.current.val) << "\n";
        for (const auto& o : c.others) std::cout << "  also:  " << value_text(o.val) << "\n";
      }
      std::cerr << local->conflict_count() << " open conflict(s)\n";
    } else if (*resolve_cmd) {
      local->resolve_conflict(resolve_collection, parse_id(resolve_id, "record"), resolve_field, value{resolve_value});
      std::cout << "resolved\n";
    }
    return 0;
  } catch (const error& e) {
    std::cerr << "caresync-field: " << e.what() << "\n";
    return e.code() == make_error_code(storage_errc::invalid_argument) ? k_exit_usage : k_exit_failure;
  }
}
