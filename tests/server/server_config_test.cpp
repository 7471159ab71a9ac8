// caresync-server's config file, validate() on configs built in code, the token hash,
// and the certificate helpers used by `caresync-server init`.

#include <caresync/protocol/errors.hpp>
#include <caresync/server/certificate.hpp>
#include <caresync/server/config.hpp>

#include "../support/files.hpp"
#include "../support/temp_dir.hpp"

#include <catch2/catch.hpp>

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>

namespace {

using namespace caresync;
using caresync::testing::temp_dir;

const std::string k_hash_1 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
const std::string k_hash_2 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

std::string write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

using caresync::testing::read_text;

/// The message of the caresync::error (storage_errc::invalid_argument) `f` throws.
template <class F>
std::string refusal(F&& f) {
  try {
    f();
  } catch (const error& e) {
    CHECK(e.code() == storage_errc::invalid_argument);
    return e.what();
  }
  FAIL("nothing was thrown");
  return {};
}

/// Writes `text` as a config file and returns the message load_config refuses it with.
std::string load_refusal(const temp_dir& dir, const std::string& text) {
  const auto path = write_text(dir.file("server.toml"), text);
  return refusal([&] { server::load_config(path); });
}

const std::string k_required = "certificate_file = \"cert.pem\"\nprivate_key_file = \"key.pem\"\n";

/// A config that passes validate().
server::server_config valid_config() {
  server::server_config c;
  c.certificate_file = "/etc/caresync/cert.pem";
  c.private_key_file = "/etc/caresync/key.pem";
  c.devices = {{"tablet-1", k_hash_1}, {"tablet-2", k_hash_2}};
  return c;
}

bool is_lower_hex_64(const std::string& s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

template <class T, void (*F)(T*)>
struct openssl_free {
  void operator()(T* p) const noexcept { F(p); }
};
using x509_ptr = std::unique_ptr<X509, openssl_free<X509, X509_free>>;
using pkey_ptr = std::unique_ptr<EVP_PKEY, openssl_free<EVP_PKEY, EVP_PKEY_free>>;
using bio_ptr = std::unique_ptr<BIO, openssl_free<BIO, BIO_free_all>>;

x509_ptr parse_certificate(const std::string& pem) {
  const bio_ptr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  return x509_ptr(bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr);
}

pkey_ptr parse_private_key(const std::string& pem) {
  const bio_ptr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  return pkey_ptr(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr);
}

using caresync::testing::mode_of;

}  // namespace

TEST_CASE("a config file with every key loads every value, paths resolved against its directory", "[config]") {
  temp_dir dir;
  std::filesystem::create_directory(dir.path() / "etc");
  const auto path = write_text(dir.file("etc/caresync.toml"), R"(# every key, none at its default
listen_address = "192.0.2.10"
port = 9443
certificate_file = "tls/server-cert.pem"
private_key_file = "../secrets/server-key.pem"
database_file = "/var/lib/caresync/log.db"
server_name = "clinic-east"
threads = 8
log_level = "error"

[limits]
max_frame_bytes = 4194304
max_push_changes = 250
page_max_changes = 125
page_max_bytes = 1048576
max_value_bytes = 65536
max_clock_ahead_ms = 60000
handshake_timeout_ms = 2500
idle_timeout_ms = 45000
max_connections_per_address = 8

[admin]
enabled = true
listen_address = "127.0.0.2"
port = 9444

[[devices]]
device_id = "tablet-17"
token_sha256 = ")" + k_hash_1 + R"("

[[devices]]
device_id = "tablet-18"
token_sha256 = ")" + k_hash_2 + R"("
)");
  // Loaded from another working directory, so relative paths cannot resolve against it.
  const auto c = server::load_config(path);
  CHECK(c.listen_address == "192.0.2.10");
  CHECK(c.port == 9443);
  CHECK(c.certificate_file == (dir.path() / "etc" / "tls" / "server-cert.pem").string());
  CHECK(c.private_key_file == (dir.path() / "secrets" / "server-key.pem").string());
  CHECK(c.database_file == "/var/lib/caresync/log.db");
  CHECK(c.server_name == "clinic-east");
  CHECK(c.threads == 8);
  CHECK(c.log_level == "error");
  CHECK(c.max_frame_bytes == 4194304u);
  CHECK(c.max_push_changes == 250u);
  CHECK(c.page_max_changes == 125u);
  CHECK(c.page_max_bytes == 1048576u);
  CHECK(c.max_value_bytes == 65536u);
  CHECK(c.max_clock_ahead == std::chrono::milliseconds(60000));
  CHECK(c.handshake_timeout == std::chrono::milliseconds(2500));
  CHECK(c.idle_timeout == std::chrono::milliseconds(45000));
  CHECK(c.max_connections_per_address == 8u);
  CHECK(c.admin_enabled);
  CHECK(c.admin_listen_address == "127.0.0.2");
  CHECK(c.admin_port == 9444);
  REQUIRE(c.devices.size() == 2);
  CHECK(c.devices[0].device_id == "tablet-17");
  CHECK(c.devices[0].token_sha256 == k_hash_1);
  CHECK(c.devices[1].device_id == "tablet-18");
  CHECK(c.devices[1].token_sha256 == k_hash_2);
  CHECK_NOTHROW(server::validate(c));
}

TEST_CASE("a default database_file is resolved against the config's directory too", "[config]") {
  temp_dir dir;
  const auto c = server::load_config(write_text(dir.file("server.toml"), k_required));
  CHECK(c.database_file == (dir.path() / "caresync-server.db").string());
  CHECK(c.certificate_file == (dir.path() / "cert.pem").string());
}

TEST_CASE("load_config names the key of each mistake", "[config]") {
  temp_dir dir;

  SECTION("an unknown top-level key") {
    const auto m = load_refusal(dir, k_required + "bogus = 1\n");
    CHECK_THAT(m, Catch::Contains("'bogus'"));
  }
  SECTION("an unknown key in [limits]") {
    const auto m = load_refusal(dir, k_required + "[limits]\nmax_push_changes = 10\nbogus = 1\n");
    CHECK_THAT(m, Catch::Contains("'limits.bogus'"));
  }
  SECTION("an unknown key in a [[devices]] entry") {
    const auto m = load_refusal(dir, k_required + "[[devices]]\ndevice_id = \"t\"\ntoken_sha256 = \"" + k_hash_1 +
                                         "\"\nbogus = true\n");
    CHECK_THAT(m, Catch::Contains("'devices[0].bogus'"));
  }
  SECTION("an unknown key in the second [[devices]] entry") {
    const std::string good = "[[devices]]\ndevice_id = \"t\"\ntoken_sha256 = \"" + k_hash_1 + "\"\n";
    const auto m = load_refusal(dir, k_required + good + "[[devices]]\ndevice_id = \"u\"\nbogus = 1\n");
    CHECK_THAT(m, Catch::Contains("'devices[1].bogus'"));
  }
  SECTION("an unknown key in [admin]") {
    CHECK_THAT(load_refusal(dir, k_required + "[admin]\nenabled = true\nbogus = 1\n"), Catch::Contains("'admin.bogus'"));
  }
  SECTION("admin.enabled not a boolean") {
    const auto m = load_refusal(dir, k_required + "[admin]\nenabled = \"yes\"\n");
    CHECK_THAT(m, Catch::Contains("'admin.enabled'"));
    CHECK_THAT(m, Catch::Contains("true or false"));
  }
  SECTION("admin.port out of range") {
    CHECK_THAT(load_refusal(dir, k_required + "[admin]\nport = 65536\n"), Catch::Contains("'admin.port'"));
  }
  SECTION("a string for the port") {
    const auto m = load_refusal(dir, k_required + "port = \"x\"\n");
    CHECK_THAT(m, Catch::Contains("'port'"));
  }
  SECTION("a port out of range") {
    const auto m = load_refusal(dir, k_required + "port = 70000\n");
    CHECK_THAT(m, Catch::Contains("'port'"));
    CHECK_THAT(m, Catch::Contains("70000"));
  }
  SECTION("a negative port") {
    CHECK_THAT(load_refusal(dir, k_required + "port = -1\n"), Catch::Contains("'port'"));
  }
  SECTION("a fractional thread count") {
    CHECK_THAT(load_refusal(dir, k_required + "threads = 2.5\n"), Catch::Contains("'threads'"));
  }
  SECTION("a limit beyond 32 bits") {
    CHECK_THAT(load_refusal(dir, k_required + "[limits]\nmax_frame_bytes = 4294967296\n"),
               Catch::Contains("'limits.max_frame_bytes'"));
  }
  SECTION("a connection limit beyond 32 bits") {
    CHECK_THAT(load_refusal(dir, k_required + "[limits]\nmax_connections_per_address = 4294967296\n"),
               Catch::Contains("'limits.max_connections_per_address'"));
  }
  SECTION("a zero timeout") {
    CHECK_THAT(load_refusal(dir, k_required + "[limits]\nidle_timeout_ms = 0\n"), Catch::Contains("'limits.idle_timeout_ms'"));
  }
  SECTION("a device id that is a number") {
    CHECK_THAT(load_refusal(dir, k_required + "[[devices]]\ndevice_id = 17\n"), Catch::Contains("'devices[0].device_id'"));
  }
  SECTION("devices as a plain table") {
    CHECK_THAT(load_refusal(dir, k_required + "[devices]\ndevice_id = \"t\"\n"), Catch::Contains("'devices'"));
  }
  SECTION("a TOML syntax error names its line") {
    const auto m = load_refusal(dir, k_required + "server_name = \"unterminated\n");
    CHECK_THAT(m, Catch::Contains("line 3"));
    CHECK_THAT(m, Catch::Contains("server.toml"));
  }
}

TEST_CASE("validate names the key at fault", "[config]") {
  auto c = valid_config();
  REQUIRE_NOTHROW(server::validate(c));

  SECTION("an unknown log level") {
    c.log_level = "debug";
    const auto m = refusal([&] { server::validate(c); });
    CHECK_THAT(m, Catch::Contains("'log_level'"));
    CHECK_THAT(m, Catch::Contains("\"info\" or \"error\""));
  }
  SECTION("a device without a token hash") {
    c.devices[1].token_sha256.clear();
    CHECK_THAT(refusal([&] { server::validate(c); }), Catch::Contains("'devices[1].token_sha256'"));
  }
  SECTION("a token hash in uppercase hex") {
    std::string upper = k_hash_1;
    std::transform(upper.begin(), upper.end(), upper.begin(), [](char ch) { return ch >= 'a' && ch <= 'f' ? ch - 32 : ch; });
    c.devices[0].token_sha256 = upper;
    CHECK_THAT(refusal([&] { server::validate(c); }), Catch::Contains("'devices[0].token_sha256'"));
  }
  SECTION("a token hash one character short") {
    c.devices[0].token_sha256 = k_hash_1.substr(1);
    CHECK_THAT(refusal([&] { server::validate(c); }), Catch::Contains("'devices[0].token_sha256'"));
  }
  SECTION("a token hash one character long") {
    c.devices[0].token_sha256 = k_hash_1 + "0";
    CHECK_THAT(refusal([&] { server::validate(c); }), Catch::Contains("'devices[0].token_sha256'"));
  }
  SECTION("a token hash with a non-hex letter") {
    c.devices[0].token_sha256 = "g" + k_hash_1.substr(1);
    CHECK_THAT(refusal([&] { server::validate(c); }), Catch::Contains("'devices[0].token_sha256'"));
  }
  SECTION("a device id listed twice") {
    c.devices.push_back({"tablet-1", k_hash_2});
    CHECK_THAT(refusal([&] { server::validate(c); }), Catch::Contains("'devices[2].device_id'"));
  }
  SECTION("an empty device id") {
    c.devices[0].device_id.clear();
    CHECK_THAT(refusal([&] { server::validate(c); }), Catch::Contains("'devices[0].device_id'"));
  }
  SECTION("no I/O threads") {
    c.threads = 0;
    CHECK_THAT(refusal([&] { server::validate(c); }), Catch::Contains("'threads'"));
  }
  SECTION("a page bound one byte over half a frame") {
    c.max_frame_bytes = 1 << 20;
    c.page_max_bytes = (1 << 19) + 1;
    CHECK_THAT(refusal([&] { server::validate(c); }), Catch::Contains("'limits.page_max_bytes'"));
  }
  SECTION("a value bound over half a frame") {
    c.max_frame_bytes = 1 << 20;
    c.page_max_bytes = 1 << 19;
    c.max_value_bytes = (1 << 19) + 1;
    CHECK_THAT(refusal([&] { server::validate(c); }), Catch::Contains("'limits.max_value_bytes'"));
  }
  SECTION("a clock bound under a second") {
    c.max_clock_ahead = std::chrono::milliseconds(999);
    CHECK_THAT(refusal([&] { server::validate(c); }), Catch::Contains("'limits.max_clock_ahead_ms'"));
  }
  SECTION("a connection limit over 65535") {
    c.max_connections_per_address = 65536;
    const auto m = refusal([&] { server::validate(c); });
    CHECK_THAT(m, Catch::Contains("'limits.max_connections_per_address'"));
    CHECK_THAT(m, Catch::Contains("0: no limit"));
  }
  SECTION("no certificate file") {
    c.certificate_file.clear();
    CHECK_THAT(refusal([&] { server::validate(c); }), Catch::Contains("'certificate_file'"));
  }
  SECTION("no private key file") {
    c.private_key_file.clear();
    CHECK_THAT(refusal([&] { server::validate(c); }), Catch::Contains("'private_key_file'"));
  }
}

TEST_CASE("validate accepts the limits at their edges", "[config]") {
  auto c = valid_config();
  c.max_frame_bytes = 1 << 20;
  c.page_max_bytes = 1 << 19;  // exactly half a frame
  c.max_value_bytes = 1 << 19;
  c.max_clock_ahead = std::chrono::milliseconds(1000);
  c.threads = 1;
  c.max_connections_per_address = 65535;
  CHECK_NOTHROW(server::validate(c));
  c.max_connections_per_address = 0;  // no limit
  CHECK_NOTHROW(server::validate(c));
  c.max_connections_per_address = 1;
  c.devices.clear();
  CHECK_NOTHROW(server::validate(c));
}

TEST_CASE("hash_token gives the SHA-256 test vector in lowercase hex", "[config]") {
  CHECK(server::hash_token("abc") == k_hash_1);
  CHECK(server::hash_token("abd") != k_hash_1);
  CHECK(is_lower_hex_64(server::hash_token("a token with spaces and ✓")));
}

TEST_CASE("a CA and a server certificate made here are PEMs OpenSSL reads", "[config][security]") {
  const auto ca = server::make_certificate_authority("caresync test CA");
  const auto srv = server::make_server_certificate(ca, {"localhost", "caresync.example"}, {"127.0.0.1", "::1"});

  const auto ca_cert = parse_certificate(ca.certificate_pem);
  const auto ca_key = parse_private_key(ca.private_key_pem);
  const auto srv_cert = parse_certificate(srv.certificate_pem);
  const auto srv_key = parse_private_key(srv.private_key_pem);
  REQUIRE(ca_cert);
  REQUIRE(ca_key);
  REQUIRE(srv_cert);
  REQUIRE(srv_key);

  // Each key belongs to its certificate; the CA signed both; only the CA is a CA.
  CHECK(X509_check_private_key(ca_cert.get(), ca_key.get()) == 1);
  CHECK(X509_check_private_key(srv_cert.get(), srv_key.get()) == 1);
  CHECK(X509_check_private_key(srv_cert.get(), ca_key.get()) == 0);
  CHECK(X509_verify(ca_cert.get(), X509_get0_pubkey(ca_cert.get())) == 1);
  CHECK(X509_verify(srv_cert.get(), X509_get0_pubkey(ca_cert.get())) == 1);
  CHECK(X509_check_ca(ca_cert.get()) == 1);
  CHECK(X509_check_ca(srv_cert.get()) == 0);
  // The names asked for, and no others.
  CHECK(X509_check_host(srv_cert.get(), "localhost", 0, 0, nullptr) == 1);
  CHECK(X509_check_host(srv_cert.get(), "caresync.example", 0, 0, nullptr) == 1);
  CHECK(X509_check_host(srv_cert.get(), "other.example", 0, 0, nullptr) == 0);
  CHECK(X509_check_ip_asc(srv_cert.get(), "127.0.0.1", 0) == 1);
  CHECK(X509_check_ip_asc(srv_cert.get(), "::1", 0) == 1);
  CHECK(X509_check_ip_asc(srv_cert.get(), "10.0.0.1", 0) == 0);
  // Valid now.
  CHECK(X509_cmp_current_time(X509_get0_notBefore(srv_cert.get())) < 0);
  CHECK(X509_cmp_current_time(X509_get0_notAfter(srv_cert.get())) > 0);

  const auto ca_pin = server::public_key_sha256(ca.certificate_pem);
  const auto srv_pin = server::public_key_sha256(srv.certificate_pem);
  CHECK(is_lower_hex_64(ca_pin));
  CHECK(is_lower_hex_64(srv_pin));
  CHECK(ca_pin != srv_pin);
  CHECK(server::public_key_sha256(srv.certificate_pem) == srv_pin);
  // A second certificate gets a fresh key, hence a different pin.
  const auto srv2 = server::make_server_certificate(ca, {"localhost"}, {});
  CHECK(server::public_key_sha256(srv2.certificate_pem) != srv_pin);

  SECTION("an expired certificate for tests") {
    const auto old = server::make_server_certificate(ca, {"localhost"}, {}, 1, -10);
    const auto old_cert = parse_certificate(old.certificate_pem);
    REQUIRE(old_cert);
    CHECK(X509_cmp_current_time(X509_get0_notAfter(old_cert.get())) < 0);
  }
  SECTION("a PEM that is not a certificate is refused") {
    CHECK_THROWS_AS(server::public_key_sha256(ca.private_key_pem), error);
    CHECK_THROWS_AS(server::public_key_sha256("not a pem"), error);
  }
  SECTION("a broken CA key is refused") {
    auto broken = ca;
    broken.private_key_pem = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
    CHECK_THROWS_AS(server::make_server_certificate(broken, {"localhost"}, {}), error);
  }
}

TEST_CASE("write_file creates with the mode asked and replaces content", "[config][security]") {
  temp_dir dir;
  const auto path = dir.file("server-key.pem");

  server::write_file(path, "first content, long enough to be longer than the second\n", 0600);
  CHECK(read_text(path) == "first content, long enough to be longer than the second\n");
  CHECK(mode_of(path) == 0600u);

  server::write_file(path, "second\n", 0600);
  CHECK(read_text(path) == "second\n");
  CHECK(mode_of(path) == 0600u);

  SECTION("an existing readable file is narrowed to 0600") {
    const auto other = write_text(dir.file("open.pem"), "old");
    REQUIRE(::chmod(other.c_str(), 0644) == 0);
    server::write_file(other, "new", 0600);
    CHECK(read_text(other) == "new");
    CHECK(mode_of(other) == 0600u);
  }
  SECTION("another mode") {
    const auto cert = dir.file("server-cert.pem");
    server::write_file(cert, "cert", 0644);
    CHECK(mode_of(cert) == 0644u);
  }
  SECTION("an empty text truncates") {
    server::write_file(path, "", 0600);
    CHECK(read_text(path).empty());
  }
  SECTION("a missing directory is an error naming the path") {
    const auto missing = dir.file("no-such-dir/key.pem");
    try {
      server::write_file(missing, "x", 0600);
      FAIL("write_file succeeded");
    } catch (const error& e) {
      CHECK(e.code() == storage_errc::open_failed);
      CHECK_THAT(e.what(), Catch::Contains(missing));
    }
  }
}
