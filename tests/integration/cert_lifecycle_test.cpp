// The server certificate's life as an operator runs it (docs/operations.md,
// "Certificates"): `init` issues at most 366 days and says where the CA key went,
// `renew-certificate` re-issues for the same key so that pinned tablets keep syncing,
// and the server warns in its log and in /metrics before the certificate expires.

#include "../support/command.hpp"
#include "../support/files.hpp"
#include "../support/server_process.hpp"
#include "fixture.hpp"

#include <caresync/protocol/errors.hpp>

#include <catch2/catch.hpp>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <sys/stat.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>

using namespace caresync;
using caresync::testing::open_tablet;
using caresync::testing::server_process;
using caresync::testing::temp_dir;
using Catch::Contains;

namespace {

namespace fs = std::filesystem;
constexpr std::int64_t k_day = 86400;
constexpr const char* k_token = "token-of-tablet-0-long-enough-to-be-found-if-logged";

std::int64_t now() { return static_cast<std::int64_t>(std::time(nullptr)); }

using run_result = caresync::testing::command_result;

/// Runs caresync-server with `args` (a shell word list): its exit code and output (stdout
/// and stderr).
run_result run_server_binary(const std::string& args) {
  return caresync::testing::run_command(std::string(CARESYNC_SERVER_BINARY) + " " + args + " 2>&1");
}

using caresync::testing::read_text;

using caresync::testing::mode_of;

/// The files under `dir` that hold a private key.
std::vector<std::string> key_files_in(const fs::path& dir) {
  std::vector<std::string> found;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (entry.is_regular_file() && read_text(entry.path().string()).find("PRIVATE KEY") != std::string::npos) {
      found.push_back(entry.path().filename().string());
    }
  }
  return found;
}

/// The line of the server's log with event `event`, waiting up to `wait` for it (the
/// watch logs from the server's I/O threads, not in the order of the start lines).
std::optional<nlohmann::json> wait_for_event(const server_process& proc, const std::string& event,
                                             std::chrono::milliseconds wait = std::chrono::seconds(5)) {
  const auto deadline = std::chrono::steady_clock::now() + wait;
  do {
    std::istringstream lines(proc.log());
    std::string line;
    while (std::getline(lines, line)) {
      const auto j = nlohmann::json::parse(line, nullptr, false);
      if (!j.is_discarded() && j.value("event", "") == event) return j;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  } while (std::chrono::steady_clock::now() < deadline);
  return std::nullopt;
}

/// caresync_certificate_expiry_seconds from the server's /metrics.
double expiry_seconds(const server_process& proc) {
  const auto admin = wait_for_event(proc, "admin_listening");
  REQUIRE(admin);
  httplib::Client http("127.0.0.1", (*admin)["port"].get<int>());
  const auto res = http.Get("/metrics");
  REQUIRE(res);
  REQUIRE(res->status == 200);
  std::istringstream in(res->body);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("caresync_certificate_expiry_seconds ", 0) == 0) return std::stod(line.substr(line.find(' ') + 1));
  }
  FAIL("no caresync_certificate_expiry_seconds in /metrics");
  return 0;
}

/// A config for the server on `cert` and `key`, with the admin listener on a free port.
std::string write_config(const temp_dir& dir, const std::string& cert, const std::string& key) {
  server::server_config c;
  c.port = 0;
  c.certificate_file = cert;
  c.private_key_file = key;
  c.database_file = dir.file("server.db");
  c.devices.push_back({"tablet-0", server::hash_token(k_token)});
  const auto path = dir.file("server.toml");
  caresync::testing::write_server_config(path, c);
  std::ofstream(path, std::ios::app) << "[admin]\nenabled = true\nlisten_address = \"127.0.0.1\"\nport = 0\n";
  return path;
}

}  // namespace

TEST_CASE("init issues a server certificate of at most 366 days and says where the CA key is", "[security][certificates]") {
  temp_dir dir;
  const auto etc = dir.file("etc");
  const auto started = now();
  const auto r = run_server_binary("init --dir " + etc);
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  const auto cert = server::describe_certificate(read_text(etc + "/server-cert.pem"));
  CHECK(cert.not_after <= started + 366 * k_day + 5);
  CHECK(cert.not_after >= started + 365 * k_day - 60);
  CHECK(cert.dns_names.front() == "localhost");
  // The default keeps the CA key in the directory, 0600, and says to move it.
  CHECK(mode_of(etc + "/ca-key.pem") == 0600u);
  CHECK_THAT(r.output, Contains("CA private key: " + etc + "/ca-key.pem"));
  CHECK_THAT(r.output, Contains("move it off this host"));
  CHECK_THAT(r.output, Contains(cert.public_key_sha256));

  SECTION("--days sets a shorter life and refuses a longer one") {
    const auto shorter = run_server_binary("init --days 30 --dir " + dir.file("short"));
    REQUIRE(shorter.exit_code == 0);
    CHECK(server::describe_certificate(read_text(dir.file("short/server-cert.pem"))).not_after <= now() + 30 * k_day);
    const auto longer = run_server_binary("init --days 367 --dir " + dir.file("long"));
    CHECK(longer.exit_code == 2);
    CHECK_FALSE(fs::exists(dir.file("long/server-cert.pem")));
  }
}

TEST_CASE("init --ca-key-out leaves no CA key in the config directory and --no-ca-key keeps none", "[security][certificates]") {
  temp_dir dir;
  const auto etc = dir.file("etc");
  fs::create_directory(dir.file("offline"));

  SECTION("--ca-key-out") {
    const auto out = dir.file("offline/ca-key.pem");
    const auto r = run_server_binary("init --dir " + etc + " --ca-key-out " + out);
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
    CHECK(key_files_in(etc) == std::vector<std::string>{"server-key.pem"});
    CHECK(mode_of(out) == 0600u);
    CHECK_THAT(r.output, Contains("CA private key: " + out));
    // It is the CA's key: it renews the certificate.
    const auto renewed = run_server_binary("renew-certificate --config " + etc + "/caresync-server.toml --ca-key " + out);
    INFO(renewed.output);
    CHECK(renewed.exit_code == 0);
  }
  SECTION("--ca-key-out inside the config directory, or over a file, is refused") {
    const auto inside = run_server_binary("init --dir " + etc + " --ca-key-out " + etc + "/keys/ca-key.pem");
    CHECK(inside.exit_code == 2);
    CHECK_THAT(inside.output, Contains("inside --dir"));
    std::ofstream(dir.file("offline/taken.pem")) << "something else\n";
    const auto over = run_server_binary("init --dir " + etc + " --ca-key-out " + dir.file("offline/taken.pem"));
    CHECK(over.exit_code == 2);
    CHECK(read_text(dir.file("offline/taken.pem")) == "something else\n");
    CHECK_FALSE(fs::exists(etc + "/caresync-server.toml"));
  }
  SECTION("--no-ca-key") {
    const auto r = run_server_binary("init --dir " + etc + " --no-ca-key");
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
    CHECK(key_files_in(etc) == std::vector<std::string>{"server-key.pem"});
    CHECK(key_files_in(dir.file("offline")).empty());
    CHECK_THAT(r.output, Contains("not kept"));
    const auto renewal = run_server_binary("renew-certificate --config " + etc + "/caresync-server.toml");
    CHECK(renewal.exit_code == 2);
    CHECK_THAT(renewal.output, Contains("cannot read the CA key"));
    CHECK_THAT(renewal.output, Contains("--no-ca-key"));
  }
  SECTION("not both") {
    CHECK(run_server_binary("init --dir " + etc + " --no-ca-key --ca-key-out " + dir.file("offline/k.pem")).exit_code == 2);
  }
}

TEST_CASE("renew-certificate keeps the pin and extends the certificate: a tablet pinned before syncs after",
          "[security][certificates][sync]") {
  temp_dir dir;
  const auto etc = dir.file("etc");
  const auto config = etc + "/caresync-server.toml";
  REQUIRE(run_server_binary("init --days 10 --dir " + etc).exit_code == 0);
  const auto added = run_server_binary("add-device --config " + config + " --device-id tablet-0");
  REQUIRE(added.exit_code == 0);
  // Its last line is the token.
  auto token = added.output.substr(0, added.output.find_last_not_of('\n') + 1);
  token = token.substr(token.rfind('\n') + 1);
  const auto old_pem = read_text(etc + "/server-cert.pem");
  const auto old_key = read_text(etc + "/server-key.pem");
  const auto before = server::describe_certificate(old_pem);

  const auto r = run_server_binary("renew-certificate --config " + config);
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  const auto after = server::describe_certificate(read_text(etc + "/server-cert.pem"));
  CHECK(after.public_key_sha256 == before.public_key_sha256);
  CHECK(after.dns_names == before.dns_names);
  CHECK(after.ip_addresses == before.ip_addresses);
  CHECK(after.not_after > before.not_after + 300 * k_day);
  CHECK(after.not_after <= now() + 366 * k_day);
  CHECK(read_text(etc + "/server-key.pem") == old_key);
  CHECK(mode_of(etc + "/server-cert.pem") == 0644u);
  CHECK_FALSE(fs::exists(etc + "/server-cert.pem.new"));
  CHECK_THAT(r.output, Contains("public-key pin (unchanged): " + before.public_key_sha256));
  CHECK_THAT(r.output, Contains("restarted"));

  // The server started on the renewed certificate serves it: a tablet that pinned the
  // key at init (and checks the CA file too) syncs, and /metrics counts a year.
  server_process proc(CARESYNC_SERVER_BINARY, config, {"--port", "0", "--admin-port", "0"});
  auto a = open_tablet(dir, "a");
  a->create("visits", {{"status", std::string("planned")}});
  sync_options o;
  o.port = proc.port();
  o.ca_file = etc + "/ca.pem";
  o.pinned_key_sha256 = before.public_key_sha256;
  o.device_id = "tablet-0";
  o.token = token;
  o.retry.max_attempts = 1;
  CHECK_NOTHROW(sync_client(*a, o).sync());
  CHECK(a->outbox_size() == 0);
  CHECK(expiry_seconds(proc) > 300.0 * k_day);
  // One check at start writes one of these: the info line, not the warning of 10 days.
  REQUIRE(wait_for_event(proc, "certificate"));
  CHECK_FALSE(wait_for_event(proc, "certificate_expiring", std::chrono::milliseconds(0)));
  CHECK(proc.log().find(token) == std::string::npos);
}

TEST_CASE("renew-certificate refuses what would not keep tablets trusting the server", "[security][certificates]") {
  temp_dir dir;
  const auto etc = dir.file("etc");
  const auto config = etc + "/caresync-server.toml";
  REQUIRE(run_server_binary("init --dir " + etc).exit_code == 0);
  REQUIRE(run_server_binary("init --dir " + dir.file("other")).exit_code == 0);
  const auto pem = read_text(etc + "/server-cert.pem");
  const auto refused = [&](const std::string& args) {
    const auto r = run_server_binary("renew-certificate --config " + config + " " + args);
    CHECK(r.exit_code == 2);
    CHECK(read_text(etc + "/server-cert.pem") == pem);  // nothing written
    return r.output;
  };
  SECTION("a missing CA key") {
    CHECK_THAT(refused("--ca-key " + dir.file("nowhere.pem")), Contains("cannot read the CA key"));
  }
  SECTION("the key of another CA") {
    CHECK_THAT(refused("--ca-key " + dir.file("other/ca-key.pem")), Contains("CA key is not the key of the CA certificate"));
  }
  SECTION("another CA") {
    CHECK_THAT(refused("--ca " + dir.file("other/ca.pem") + " --ca-key " + dir.file("other/ca-key.pem")),
               Contains("did not issue"));
  }
  SECTION("a server key that is not the certificate's") {
    fs::copy_file(dir.file("other/server-key.pem"), etc + "/server-key.pem", fs::copy_options::overwrite_existing);
    CHECK_THAT(refused(""), Contains("server key is not the key of the server certificate"));
  }
  SECTION("more than 366 days") {
    refused("--days 367");
  }
}

TEST_CASE("a certificate near its expiry makes the server warn in its log and /metrics", "[security][certificates]") {
  temp_dir dir;
  const auto ca = server::make_certificate_authority("caresync test CA");
  const auto write_leaf = [&](const server::pem_identity& leaf) {
    server::write_file(dir.file("cert.pem"), leaf.certificate_pem, 0644);
    server::write_file(dir.file("key.pem"), leaf.private_key_pem, 0600);
    return write_config(dir, dir.file("cert.pem"), dir.file("key.pem"));
  };

  SECTION("10 days left: a warning, and the seconds left") {
    server_process proc(CARESYNC_SERVER_BINARY, write_leaf(server::make_server_certificate(ca, {"localhost"}, {"127.0.0.1"}, 10)));
    const auto line = wait_for_event(proc, "certificate_expiring");
    INFO(proc.log());
    REQUIRE(line);
    CHECK((*line)["level"] == "warning");
    // 10 days less the seconds since it was made, rounded down: 9, or 10 within its first second.
    CHECK((*line)["days_left"].get<int>() >= 9);
    CHECK((*line)["days_left"].get<int>() <= 10);
    CHECK((*line)["certificate_file"] == dir.file("cert.pem"));
    CHECK_THAT((*line)["msg"].get<std::string>(), Contains("renew-certificate"));
    const auto left = expiry_seconds(proc);
    CHECK(left > 9.9 * k_day);
    CHECK(left <= 10.0 * k_day);
    CHECK(proc.log().find("PRIVATE KEY") == std::string::npos);
  }
  SECTION("expired: an error, and a negative gauge") {
    server_process proc(CARESYNC_SERVER_BINARY, write_leaf(server::make_server_certificate(ca, {"localhost"}, {"127.0.0.1"}, 1, -10)));
    const auto line = wait_for_event(proc, "certificate_expired");
    INFO(proc.log());
    REQUIRE(line);
    CHECK((*line)["level"] == "error");
    CHECK(expiry_seconds(proc) < -8.0 * k_day);
    // As docs/operations.md says: a tablet checking the CA file stops at the expiry, one
    // that pins the key alone checks no dates.
    auto a = open_tablet(dir, "a");
    sync_options o;
    o.port = proc.port();
    o.device_id = "tablet-0";
    o.token = k_token;
    o.retry.max_attempts = 1;
    o.ca_file = dir.file("ca.pem");
    server::write_file(o.ca_file, ca.certificate_pem, 0644);
    try {
      sync_client(*a, o).sync();
      FAIL("an expired certificate was accepted with the CA file");
    } catch (const caresync::error& e) {
      CHECK(e.code() == network_errc::certificate_untrusted);
    }
    o.ca_file.clear();
    o.pinned_key_sha256 = server::public_key_sha256(read_text(dir.file("cert.pem")));
    CHECK_NOTHROW(sync_client(*a, o).sync());
  }
  SECTION("a year left: an info line, no warning") {
    server_process proc(CARESYNC_SERVER_BINARY, write_leaf(server::make_server_certificate(ca, {"localhost"}, {"127.0.0.1"})));
    REQUIRE(wait_for_event(proc, "certificate"));
    CHECK_FALSE(wait_for_event(proc, "certificate_expiring", std::chrono::milliseconds(0)));
    CHECK(expiry_seconds(proc) > 364.0 * k_day);
  }
}

TEST_CASE("renew-certificate --new-key prepares a rotation: a new pin, served once moved in place",
          "[security][certificates][sync]") {
  temp_dir dir;
  const auto etc = dir.file("etc");
  const auto config = etc + "/caresync-server.toml";
  REQUIRE(run_server_binary("init --dir " + etc).exit_code == 0);
  const auto added = run_server_binary("add-device --config " + config + " --device-id tablet-0");
  REQUIRE(added.exit_code == 0);
  auto token = added.output.substr(0, added.output.find_last_not_of('\n') + 1);
  token = token.substr(token.rfind('\n') + 1);
  const auto old_pem = read_text(etc + "/server-cert.pem");
  const auto old_pin = server::public_key_sha256(old_pem);

  const auto r = run_server_binary("renew-certificate --new-key --config " + config);
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK(read_text(etc + "/server-cert.pem") == old_pem);  // nothing served changes yet
  const auto next = server::describe_certificate(read_text(etc + "/server-cert.pem.next"));
  CHECK(next.public_key_sha256 != old_pin);
  CHECK(next.dns_names == server::describe_certificate(old_pem).dns_names);
  CHECK(mode_of(etc + "/server-key.pem.next") == 0600u);
  CHECK_THAT(r.output, Contains("NEW public-key pin: " + next.public_key_sha256));
  CHECK(run_server_binary("renew-certificate --new-key --config " + config).exit_code == 2);  // never over a rotation

  fs::rename(etc + "/server-cert.pem.next", etc + "/server-cert.pem");
  fs::rename(etc + "/server-key.pem.next", etc + "/server-key.pem");
  server_process proc(CARESYNC_SERVER_BINARY, config, {"--port", "0", "--admin-port", "0"});
  auto a = open_tablet(dir, "a");
  sync_options o;
  o.port = proc.port();
  o.device_id = "tablet-0";
  o.token = token;
  o.retry.max_attempts = 1;
  SECTION("a tablet with the old pin is refused") {
    o.pinned_key_sha256 = old_pin;
    try {
      sync_client(*a, o).sync();
      FAIL("the old pin was accepted");
    } catch (const caresync::error& e) {
      CHECK(e.code() == network_errc::pin_mismatch);
    }
  }
  SECTION("a tablet with the new pin syncs") {
    o.pinned_key_sha256 = next.public_key_sha256;
    CHECK_NOTHROW(sync_client(*a, o).sync());
  }
  SECTION("a tablet that checks the CA file alone syncs") {
    o.ca_file = etc + "/ca.pem";
    CHECK_NOTHROW(sync_client(*a, o).sync());
  }
}
