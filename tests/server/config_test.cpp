// caresync-server's TOML config: a good file loads; each mistake is named by its key.

#include <caresync/protocol/errors.hpp>
#include <caresync/server/config.hpp>

#include "../support/temp_dir.hpp"

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <string>

namespace {

using namespace caresync;
using caresync::testing::temp_dir;

const std::string k_hash_a(64, 'a');

/// Writes `text` as a config file in `dir` and returns its path.
std::string write_config(const temp_dir& dir, const std::string& text) {
  const auto path = dir.file("caresync-server.toml");
  std::ofstream(path) << text;
  return path;
}

/// The message of the caresync::error that `load` throws; fails the test if none.
template <class F>
std::string error_of(F&& load) {
  try {
    load();
  } catch (const error& e) {
    CHECK(e.code() == storage_errc::invalid_argument);
    return e.what();
  }
  FAIL("no error was thrown");
  return {};
}

/// A config that passes validate(): certificate and key named.
std::string minimal() {
  return "certificate_file = \"cert.pem\"\n"
         "private_key_file = \"key.pem\"\n";
}

}  // namespace

TEST_CASE("a complete config loads with every key", "[config]") {
  temp_dir dir;
  const auto path = write_config(dir, R"(
listen_address = "0.0.0.0"
port = 8443
certificate_file = "tls/cert.pem"
private_key_file = "/etc/caresync/key.pem"
database_file = "data/log.db"
server_name = "region-north"
threads = 4

[limits]
max_frame_bytes = 8388608
max_push_changes = 100
page_max_changes = 50
page_max_bytes = 65536
max_value_bytes = 4096
handshake_timeout_ms = 3000
idle_timeout_ms = 60000
max_connections_per_address = 16

[policies]
server_only = ["clients.care_level", "services.registration_id"]

[[devices]]
device_id = "tablet-17"
token_sha256 = ")" + k_hash_a + R"("
server_side = true

[[devices]]
device_id = "tablet-18"
token_sha256 = ")" + std::string(64, 'b') + R"("
)");
  const auto c = server::load_config(path);
  CHECK(c.listen_address == "0.0.0.0");
  CHECK(c.port == 8443);
  const auto base = std::filesystem::path(path).parent_path();
  CHECK(c.certificate_file == (base / "tls/cert.pem").string());
  CHECK(c.private_key_file == "/etc/caresync/key.pem");
  CHECK(c.database_file == (base / "data/log.db").string());
  CHECK(c.server_name == "region-north");
  CHECK(c.threads == 4);
  CHECK(c.max_frame_bytes == 8388608);
  CHECK(c.max_push_changes == 100);
  CHECK(c.page_max_changes == 50);
  CHECK(c.page_max_bytes == 65536);
  CHECK(c.max_value_bytes == 4096);
  CHECK(c.handshake_timeout == std::chrono::milliseconds(3000));
  CHECK(c.idle_timeout == std::chrono::milliseconds(60000));
  CHECK(c.max_connections_per_address == 16u);
  REQUIRE(c.devices.size() == 2);
  CHECK(c.devices[0].device_id == "tablet-17");
  CHECK(c.devices[0].token_sha256 == k_hash_a);
  CHECK(c.devices[1].device_id == "tablet-18");
  CHECK(c.devices[0].server_side);
  CHECK_FALSE(c.devices[1].server_side);
  CHECK(c.server_only_fields == std::vector<std::string>{"clients.care_level", "services.registration_id"});
  CHECK_NOTHROW(server::validate(c));
}

TEST_CASE("keys left out keep their defaults", "[config]") {
  temp_dir dir;
  const auto c = server::load_config(write_config(dir, minimal()));
  const server::server_config defaults;
  CHECK(c.listen_address == defaults.listen_address);
  CHECK(c.port == defaults.port);
  CHECK(c.max_frame_bytes == defaults.max_frame_bytes);
  CHECK(c.idle_timeout == defaults.idle_timeout);
  CHECK(c.max_connections_per_address == defaults.max_connections_per_address);
  CHECK(defaults.max_connections_per_address == 64u);
  CHECK(c.devices.empty());
  CHECK_NOTHROW(server::validate(c));
}

TEST_CASE("config mistakes are refused with the key named", "[config]") {
  temp_dir dir;

  SECTION("an unknown top-level key") {
    const auto path = write_config(dir, minimal() + "listen_adress = \"0.0.0.0\"\n");
    CHECK_THAT(error_of([&] { server::load_config(path); }), Catch::Contains("'listen_adress'"));
  }
  SECTION("an unknown key names the file in use and where the keys are described once installed") {
    // packaging/ exists only in the source tree (issue 21).
    const auto path = write_config(dir, minimal() + "[limits]\nmax_frame = 1000\n");
    const auto message = error_of([&] { server::load_config(path); });
    CHECK_THAT(message, Catch::Contains("'" + path + "'") &&
                            Catch::Contains("/usr/share/doc/caresync-server/caresync-server.toml.example"));
    CHECK_THAT(message, !Catch::Contains("packaging/"));
  }
  SECTION("an unknown key in [limits]") {
    const auto path = write_config(dir, minimal() + "[limits]\nmax_frame = 1000\n");
    CHECK_THAT(error_of([&] { server::load_config(path); }), Catch::Contains("'limits.max_frame'"));
  }
  SECTION("an unknown key in a device") {
    const auto path =
        write_config(dir, minimal() + "[[devices]]\ndevice_id = \"t\"\ntoken = \"secret\"\ntoken_sha256 = \"" + k_hash_a + "\"\n");
    CHECK_THAT(error_of([&] { server::load_config(path); }), Catch::Contains("'devices[0].token'"));
  }
  SECTION("server_only entries that are not collection.field, or repeat") {
    for (const char* entry : {"care_level", "clients.", ".care_level", "Clients.care_level", "clients.care-level"}) {
      const auto path = write_config(dir, minimal() + "[policies]\nserver_only = [\"" + entry + "\"]\n");
      auto c = server::load_config(path);
      CHECK_THAT(error_of([&] { server::validate(c); }), Catch::Contains("'policies.server_only'") && Catch::Contains(entry));
    }
    auto twice = server::load_config(write_config(dir, minimal() + "[policies]\nserver_only = [\"a.b\", \"a.b\"]\n"));
    CHECK_THAT(error_of([&] { server::validate(twice); }), Catch::Contains("twice"));
    const auto not_strings = write_config(dir, minimal() + "[policies]\nserver_only = [1]\n");
    CHECK_THAT(error_of([&] { server::load_config(not_strings); }), Catch::Contains("'policies.server_only'"));
    const auto unknown = write_config(dir, minimal() + "[policies]\nserver_onyl = []\n");
    CHECK_THAT(error_of([&] { server::load_config(unknown); }), Catch::Contains("'policies.server_onyl'"));
  }
  SECTION("a string where a number belongs") {
    const auto path = write_config(dir, minimal() + "port = \"7443\"\n");
    const auto message = error_of([&] { server::load_config(path); });
    CHECK_THAT(message, Catch::Contains("'port'"));
    CHECK_THAT(message, Catch::Contains("integer"));
  }
  SECTION("a number where a string belongs") {
    const auto path = write_config(dir, minimal() + "database_file = 7\n");
    const auto message = error_of([&] { server::load_config(path); });
    CHECK_THAT(message, Catch::Contains("'database_file'"));
    CHECK_THAT(message, Catch::Contains("string"));
  }
  SECTION("a port out of range") {
    const auto path = write_config(dir, minimal() + "port = 70000\n");
    const auto message = error_of([&] { server::load_config(path); });
    CHECK_THAT(message, Catch::Contains("'port'"));
    CHECK_THAT(message, Catch::Contains("65535"));
  }
  SECTION("a negative limit") {
    const auto path = write_config(dir, minimal() + "[limits]\nmax_push_changes = -1\n");
    CHECK_THAT(error_of([&] { server::load_config(path); }), Catch::Contains("'limits.max_push_changes'"));
  }
  SECTION("a negative connection limit") {
    const auto path = write_config(dir, minimal() + "[limits]\nmax_connections_per_address = -1\n");
    CHECK_THAT(error_of([&] { server::load_config(path); }), Catch::Contains("'limits.max_connections_per_address'"));
  }
  SECTION("a connection limit no address can reach") {
    const auto c = server::load_config(write_config(dir, minimal() + "[limits]\nmax_connections_per_address = 65536\n"));
    CHECK_THAT(error_of([&] { server::validate(c); }), Catch::Contains("'limits.max_connections_per_address'"));
  }
  SECTION("a device without its token hash") {
    const auto path = write_config(dir, minimal() + "[[devices]]\ndevice_id = \"tablet-17\"\n");
    const auto c = server::load_config(path);
    CHECK_THAT(error_of([&] { server::validate(c); }), Catch::Contains("'devices[0].token_sha256'"));
  }
  SECTION("a device whose hash is not hex") {
    const auto path = write_config(dir, minimal() + "[[devices]]\ndevice_id = \"tablet-17\"\ntoken_sha256 = \"" +
                                            std::string(64, 'Z') + "\"\n");
    const auto c = server::load_config(path);
    CHECK_THAT(error_of([&] { server::validate(c); }), Catch::Contains("'devices[0].token_sha256'"));
  }
  SECTION("a device listed twice") {
    const std::string device = "[[devices]]\ndevice_id = \"tablet-17\"\ntoken_sha256 = \"" + k_hash_a + "\"\n";
    const auto c = server::load_config(write_config(dir, minimal() + device + device));
    CHECK_THAT(error_of([&] { server::validate(c); }), Catch::Contains("'devices[1].device_id'"));
  }
  SECTION("no certificate") {
    const auto c = server::load_config(write_config(dir, "private_key_file = \"key.pem\"\n"));
    CHECK_THAT(error_of([&] { server::validate(c); }), Catch::Contains("'certificate_file'"));
  }
  SECTION("no I/O threads") {
    const auto c = server::load_config(write_config(dir, minimal() + "threads = 0\n"));
    CHECK_THAT(error_of([&] { server::validate(c); }), Catch::Contains("'threads'"));
  }
  SECTION("a page larger than half a frame") {
    const auto c = server::load_config(
        write_config(dir, minimal() + "[limits]\nmax_frame_bytes = 65536\npage_max_bytes = 65536\n"));
    CHECK_THAT(error_of([&] { server::validate(c); }), Catch::Contains("'limits.page_max_bytes'"));
  }
  SECTION("limits that is not a table") {
    const auto path = write_config(dir, minimal() + "limits = 5\n");
    CHECK_THAT(error_of([&] { server::load_config(path); }), Catch::Contains("'limits'"));
  }
  SECTION("a file that is not TOML") {
    const auto path = write_config(dir, "port = = 3\n");
    CHECK_THAT(error_of([&] { server::load_config(path); }), Catch::Contains("line 1"));
  }
  SECTION("a file that does not exist") {
    const auto path = dir.file("missing.toml");
    CHECK_THAT(error_of([&] { server::load_config(path); }), Catch::Contains("missing.toml"));
  }
}

TEST_CASE("hash_token is lowercase hex SHA-256", "[config]") {
  CHECK(server::hash_token("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(server::hash_token("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST_CASE("the packaged example config loads and validates", "[config]") {
  const auto c = server::load_config(CARESYNC_EXAMPLE_CONFIG);
  CHECK_NOTHROW(server::validate(c));
  CHECK(c.devices.empty());
  // The example states the defaults.
  CHECK(c.max_connections_per_address == server::server_config{}.max_connections_per_address);
}

TEST_CASE("[scopes] replaces the default rules table by table, and a mistake is named", "[config][scope]") {
  temp_dir dir;
  SECTION("defaults: the care schema") {
    const auto c = server::load_config(write_config(dir, minimal()));
    CHECK(c.scopes == server::scope_rules::care_defaults());
    CHECK(c.scopes.fields_of("referrals")->size() == 2);
    CHECK(c.scopes.fields_of("services")->empty());
    CHECK(c.scopes.fields_of("notes") == nullptr);
    CHECK(c.scopes.read.at("admin").empty());
  }
  SECTION("a table given replaces that table; the others keep their defaults") {
    const auto path = write_config(dir, minimal() +
                                            "[scopes.unit_fields]\nclients = [\"team\"]\nservices = []\n"
                                            "[scopes.read]\nfield_worker = [\"clients\", \"services\"]\n");
    const auto c = server::load_config(path);
    CHECK(c.scopes.unit_fields.size() == 2);
    CHECK(*c.scopes.fields_of("clients") == std::vector<std::string>{"team"});
    CHECK(c.scopes.read.size() == 1);
    // The default write table names collections the new unit_fields lack: refused.
    CHECK_THAT(error_of([&] { server::validate(c); }), Catch::Contains("scopes.write"));
  }
  SECTION("mistakes") {
    const auto refused = [&](const std::string& toml, const std::string& named) {
      const auto path = write_config(dir, minimal() + toml);
      CHECK_THAT(error_of([&] { server::validate(server::load_config(path)); }), Catch::Contains(named));
    };
    refused("[scopes]\nroles = 1\n", "scopes.roles");
    refused("[scopes.read]\nfield_worker = \"clients\"\n", "scopes.read.field_worker");
    refused("[scopes.read]\nsuperuser = [\"clients\"]\n", "superuser");
    refused("[scopes.read]\nfield_worker = [\"notes\"]\n", "'notes'");
    refused("[scopes.unit_fields]\nClients = [\"org_unit\"]\n", "'Clients'");
    refused("[scopes.unit_fields]\nclients = [\"org unit\"]\n", "'org unit'");
    refused("[scopes.unit_fields]\nclients = [1]\n", "scopes.unit_fields.clients");
  }
}

TEST_CASE("a device's scope: the subtree of its unit, its role's collections, a fingerprint of both", "[scope]") {
  const std::vector<server::org_unit> tree{{"kraj", "", "Kraj"},
                                           {"kraj/a", "kraj", "A"},
                                           {"kraj/a/1", "kraj/a", "A1"},
                                           {"kraj/b", "kraj", "B"},
                                           {"loop", "loop", "a unit its own parent"}};
  const auto rules = server::scope_rules::care_defaults();
  const auto coordinator = server::scope_of("eva", "coordinator", "kraj/a", tree, rules);
  CHECK(coordinator.units == std::set<std::string, std::less<>>{"kraj/a", "kraj/a/1"});
  CHECK(coordinator.may_read("referrals"));
  CHECK(coordinator.sees("referrals", {std::string("kraj/b"), std::string("kraj/a/1")}));
  CHECK_FALSE(coordinator.sees("referrals", {std::string("kraj/b"), std::nullopt}));
  CHECK(coordinator.sees("services", {}));
  CHECK_FALSE(coordinator.sees("notes", {std::string("kraj/a")}));
  CHECK(server::subtree(tree, "loop") == std::set<std::string, std::less<>>{"loop"});
  CHECK(server::subtree(tree, "nowhere") == std::set<std::string, std::less<>>{"nowhere"});
  const auto worker = server::scope_of("eva", "field_worker", "kraj/a", tree, rules);
  CHECK_FALSE(worker.may_read("referrals"));
  CHECK(worker.fingerprint != coordinator.fingerprint);
  CHECK(server::scope_of("eva", "coordinator", "kraj", tree, rules).fingerprint != coordinator.fingerprint);
  CHECK(server::scope_of("other", "coordinator", "kraj/a", tree, rules).fingerprint == coordinator.fingerprint);
  const auto admin = server::scope_of("root", "admin", "kraj", tree, rules);
  CHECK(admin.read.empty());
  CHECK(admin.write.empty());
}
