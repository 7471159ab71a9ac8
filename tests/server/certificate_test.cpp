// The server certificate's lifetime and its renewal for the same key
// (server/src/certificate.cpp), the atomic replace of a file, and the expiry watch's
// verdicts and periodic lines (server/src/certificate_watch.cpp).

#include <caresync/protocol/errors.hpp>
#include <caresync/server/certificate.hpp>

#include "../support/files.hpp"
#include "../support/temp_dir.hpp"
#include "certificate_watch.hpp"

#include <catch2/catch.hpp>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>
#include <thread>

namespace {

using namespace caresync;
using caresync::testing::temp_dir;
using Catch::Contains;

constexpr std::int64_t k_day = 86400;

std::int64_t now() { return static_cast<std::int64_t>(std::time(nullptr)); }

using caresync::testing::read_text;

using caresync::testing::mode_of;

std::string refusal(const std::function<void()>& f) {
  try {
    f();
  } catch (const error& e) {
    CHECK(e.code() == storage_errc::invalid_argument);
    return e.what();
  }
  FAIL("no error thrown");
  return {};
}

/// Whether `ca_pem`'s key signed `cert_pem`.
bool signed_by(const std::string& cert_pem, const std::string& ca_pem) {
  const auto read = [](const std::string& pem) {
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), &BIO_free);
    return std::unique_ptr<X509, decltype(&X509_free)>(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr), &X509_free);
  };
  const auto cert = read(cert_pem);
  const auto ca = read(ca_pem);
  return cert && ca && X509_verify(cert.get(), X509_get0_pubkey(ca.get())) == 1;
}

}  // namespace

TEST_CASE("a server certificate lives 365 days unless told, and never more than 366", "[security][certificates]") {
  const auto ca = server::make_certificate_authority("caresync test CA");
  const auto start = now();
  const auto leaf = server::describe_certificate(server::make_server_certificate(ca, {"localhost"}, {"127.0.0.1"}).certificate_pem);
  CHECK(leaf.not_after <= start + 366 * k_day);
  CHECK(leaf.not_after >= start + 365 * k_day - 60);
  CHECK(leaf.not_before <= start);

  const auto longest = server::describe_certificate(server::make_server_certificate(ca, {"localhost"}, {}, 366).certificate_pem);
  CHECK(longest.not_after <= now() + 366 * k_day);
  CHECK_THAT(refusal([&] { server::make_server_certificate(ca, {"localhost"}, {}, 367); }), Contains("1 to 366 days"));
  CHECK_THAT(refusal([&] { server::make_server_certificate(ca, {"localhost"}, {}, 825); }), Contains("not 825"));
  CHECK_THAT(refusal([&] { server::make_server_certificate(ca, {"localhost"}, {}, 0); }), Contains("1 to 366 days"));
}

TEST_CASE("describe_certificate reads the validity, the pin and the names", "[security][certificates]") {
  const auto ca = server::make_certificate_authority("caresync test CA");
  const auto leaf = server::make_server_certificate(ca, {"localhost", "sync.region.example"}, {"127.0.0.1", "::1"}, 10);
  const auto d = server::describe_certificate(leaf.certificate_pem);
  CHECK(d.public_key_sha256 == server::public_key_sha256(leaf.certificate_pem));
  CHECK(d.dns_names == std::vector<std::string>{"localhost", "sync.region.example"});
  CHECK(d.ip_addresses == std::vector<std::string>{"127.0.0.1", "::1"});
  CHECK(d.not_after > now() + 9 * k_day);
  CHECK(d.not_after <= now() + 10 * k_day);
  CHECK_THROWS_AS(server::describe_certificate(leaf.private_key_pem), error);
}

TEST_CASE("renew_server_certificate keeps the key, the pin and the names and extends the validity",
          "[security][certificates]") {
  const auto ca = server::make_certificate_authority("caresync test CA");
  const auto old = server::make_server_certificate(ca, {"localhost", "sync.region.example"}, {"127.0.0.1", "10.0.0.7"}, 10);
  const auto before = server::describe_certificate(old.certificate_pem);

  const auto renewed = server::renew_server_certificate(ca, old);
  const auto after = server::describe_certificate(renewed);
  CHECK(after.public_key_sha256 == before.public_key_sha256);
  CHECK(after.dns_names == before.dns_names);
  CHECK(after.ip_addresses == before.ip_addresses);
  CHECK(after.not_after > before.not_after + 300 * k_day);
  CHECK(after.not_after <= now() + 366 * k_day);
  CHECK(signed_by(renewed, ca.certificate_pem));
  CHECK(renewed != old.certificate_pem);

  SECTION("for fewer days when asked") {
    const auto short_lived = server::describe_certificate(server::renew_server_certificate(ca, old, 30));
    CHECK(short_lived.not_after <= now() + 30 * k_day);
    CHECK(short_lived.not_after > now() + 29 * k_day);
  }
  SECTION("never for more than 366 days") {
    CHECK_THAT(refusal([&] { server::renew_server_certificate(ca, old, 367); }), Contains("1 to 366 days"));
  }
  SECTION("a CA key that is not the CA certificate's is refused") {
    const auto other = server::make_certificate_authority("another CA");
    CHECK_THAT(refusal([&] { server::renew_server_certificate({ca.certificate_pem, other.private_key_pem}, old); }),
               Contains("CA key is not the key of the CA certificate"));
  }
  SECTION("another CA, which did not issue the certificate, is refused") {
    const auto other = server::make_certificate_authority("another CA");
    CHECK_THAT(refusal([&] { server::renew_server_certificate(other, old); }), Contains("did not issue"));
  }
  SECTION("a server key that is not the certificate's is refused") {
    const auto stranger = server::make_server_certificate(ca, {"localhost"}, {});
    CHECK_THAT(refusal([&] { server::renew_server_certificate(ca, {old.certificate_pem, stranger.private_key_pem}); }),
               Contains("server key is not the key of the server certificate"));
  }
  SECTION("a CA that expires before the new certificate would is refused") {
    const auto brief_ca = server::make_certificate_authority("a CA of 100 days", 100);
    const auto leaf = server::make_server_certificate(brief_ca, {"localhost"}, {}, 10);
    CHECK_THAT(refusal([&] { server::renew_server_certificate(brief_ca, leaf); }), Contains("fewer --days"));
    CHECK(server::describe_certificate(server::renew_server_certificate(brief_ca, leaf, 90)).public_key_sha256 ==
          server::public_key_sha256(leaf.certificate_pem));
  }
  SECTION("a PEM that is not a key is refused") {
    CHECK_THAT(refusal([&] { server::renew_server_certificate({ca.certificate_pem, "not a key"}, old); }),
               Contains("the CA key"));
  }
}

TEST_CASE("replace_file swaps a file whole and keeps its mode", "[security][certificates]") {
  temp_dir dir;
  const auto path = dir.file("server-cert.pem");
  server::replace_file(path, "first\n", 0644);
  CHECK(read_text(path) == "first\n");
  CHECK(mode_of(path) == 0644u);

  REQUIRE(::chmod(path.c_str(), 0640) == 0);
  server::replace_file(path, "second, longer than the first\n", 0644);
  CHECK(read_text(path) == "second, longer than the first\n");
  CHECK(mode_of(path) == 0640u);
  CHECK_FALSE(std::filesystem::exists(path + ".new"));

  SECTION("a failure leaves the old file as it was") {
    CHECK_THROWS_AS(server::replace_file(dir.file("no-such-dir/cert.pem"), "x", 0644), error);
    CHECK(read_text(path) == "second, longer than the first\n");
  }
}

TEST_CASE("the expiry watch's verdict: valid, expiring within 30 days, expired", "[security][certificates]") {
  const std::int64_t t = 1'800'000'000;
  CHECK(server::expiry_at(t + 31 * k_day, t) == server::certificate_expiry::valid);
  CHECK(server::expiry_at(t + 30 * k_day + 1, t) == server::certificate_expiry::valid);
  CHECK(server::expiry_at(t + 30 * k_day, t) == server::certificate_expiry::expiring);
  CHECK(server::expiry_at(t + 1, t) == server::certificate_expiry::expiring);
  CHECK(server::expiry_at(t, t) == server::certificate_expiry::expired);
  CHECK(server::expiry_at(t - 10 * k_day, t) == server::certificate_expiry::expired);
}

TEST_CASE("the expiry watch warns at start and again at each interval", "[security][certificates]") {
  temp_dir dir;
  const auto captured = dir.file("stderr.log");
  // The server's log goes to stderr: it is sent to a file for the length of the watch.
  std::fflush(stderr);
  const int saved = ::dup(STDERR_FILENO);
  REQUIRE(saved >= 0);
  FILE* file = std::fopen(captured.c_str(), "w");
  REQUIRE(file);
  ::dup2(::fileno(file), STDERR_FILENO);
  {
    asio::io_context io;
    // Ten days less a minute: nine whole days left.
    server::certificate_watch watch(io, "/etc/caresync/server-cert.pem", now() + 10 * k_day - 60,
                                    std::chrono::milliseconds(50));
    watch.start();
    io.run_for(std::chrono::milliseconds(320));
    watch.stop();
    io.run_for(std::chrono::milliseconds(20));
  }
  std::fflush(stderr);
  ::dup2(saved, STDERR_FILENO);
  ::close(saved);
  std::fclose(file);

  std::istringstream lines(read_text(captured));
  std::string line;
  int warnings = 0;
  while (std::getline(lines, line)) {
    INFO(line);
    CHECK_THAT(line, Contains("\"event\":\"certificate_expiring\""));
    CHECK_THAT(line, Contains("\"level\":\"warning\""));
    CHECK_THAT(line, Contains("\"days_left\":9"));
    CHECK_THAT(line, Contains("renew-certificate"));
    ++warnings;
  }
  // One at start and one each 50 ms after: 320 ms hold six more, less what scheduling loses.
  CHECK(warnings >= 4);
  CHECK(warnings <= 8);
}
