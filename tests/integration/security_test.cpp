// Who may connect: tokens, certificates, host names, pins.

#include "../support/sql_probe.hpp"
#include "fixture.hpp"

#include "store_impl.hpp"

#include <caresync/protocol/errors.hpp>

#include <catch2/catch.hpp>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <stdexcept>

using namespace caresync;
using caresync::testing::open_tablet;
using caresync::testing::temp_dir;
using caresync::testing::test_pki;
using caresync::testing::test_server;

namespace {

/// Runs a sync that must fail and returns its error.
caresync::error failing_sync(store& s, const sync_options& o) {
  try {
    sync_client(s, o).sync();
  } catch (const caresync::error& e) {
    return e;
  }
  FAIL("the sync should have been refused");
  throw std::logic_error("unreachable");
}

/// A server certificate for localhost and 127.0.0.1 signed by its own key: right names,
/// valid dates, and no CA behind it. Throws std::runtime_error if OpenSSL fails.
server::pem_identity self_signed_certificate() {
  const auto need = [](bool ok, const char* what) {
    if (!ok) throw std::runtime_error(std::string("cannot make a self-signed certificate: ") + what);
  };
  const std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(EVP_EC_gen("P-256"), EVP_PKEY_free);
  need(key != nullptr, "key");
  const std::unique_ptr<X509, decltype(&X509_free)> cert(X509_new(), X509_free);
  need(cert != nullptr, "certificate");
  need(X509_set_version(cert.get(), 2) == 1, "version");
  need(ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 4711) == 1, "serial");
  need(X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600) != nullptr, "not before");
  need(X509_gmtime_adj(X509_getm_notAfter(cert.get()), 30L * 86400) != nullptr, "not after");
  need(X509_set_pubkey(cert.get(), key.get()) == 1, "public key");
  X509_NAME* name = X509_get_subject_name(cert.get());
  need(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0) == 1,
       "subject");
  need(X509_set_issuer_name(cert.get(), name) == 1, "issuer");  // itself
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert.get(), cert.get(), nullptr, nullptr, 0);
  const std::unique_ptr<X509_EXTENSION, decltype(&X509_EXTENSION_free)> san(
      X509V3_EXT_conf_nid(nullptr, &ctx, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1"), X509_EXTENSION_free);
  need(san != nullptr && X509_add_ext(cert.get(), san.get(), -1) == 1, "subjectAltName");
  need(X509_sign(cert.get(), key.get(), EVP_sha256()) > 0, "signature");
  const auto pem = [&](auto write) {
    const std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
    need(bio != nullptr && write(bio.get()) == 1, "PEM");
    char* data = nullptr;
    const long n = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, static_cast<std::size_t>(n));
  };
  server::pem_identity out;
  out.certificate_pem = pem([&](BIO* b) { return PEM_write_bio_X509(b, cert.get()); });
  out.private_key_pem = pem([&](BIO* b) { return PEM_write_bio_PrivateKey(b, key.get(), nullptr, nullptr, 0, nullptr, nullptr); });
  return out;
}

}  // namespace

TEST_CASE("a wrong token or unknown device is refused with a clear error", "[sync][security]") {
  temp_dir dir;
  test_server server(dir);
  auto a = open_tablet(dir, "a");
  a->create("visits", {{"note", std::string("must not reach the server")}});
  auto o = server.options(0);
  SECTION("wrong token") { o.token = "not-the-token"; }
  SECTION("unknown device") { o.device_id = "tablet-99"; }
  SECTION("another device's token") { o.token = test_server::token(1); }
  const auto e = failing_sync(*a, o);
  CHECK(e.code() == protocol_errc::auth_failed);
  CHECK_FALSE(is_transient(e.code()));
  CHECK_THAT(e.what(), Catch::Contains("token"));
  CHECK(a->outbox_size() == 1);
  CHECK(server.get().store().head() == 0);
  CHECK(server.get().stats().sessions_refused >= 1);
}

TEST_CASE("the tablet refuses a server it cannot verify, before sending its token", "[sync][security]") {
  temp_dir dir;
  test_server server(dir);
  auto a = open_tablet(dir, "a");
  a->create("visits", {{"status", std::string("done")}});
  auto o = server.options(0);

  SECTION("certificate signed by another CA") {
    const auto other = test_pki::make(dir, "impostor");
    o.ca_file = other.ca_file;
    const auto e = failing_sync(*a, o);
    CHECK(e.code() == network_errc::certificate_untrusted);
    CHECK_FALSE(is_transient(e.code()));
    CHECK_THAT(e.what(), Catch::Contains("certificate"));
  }
  SECTION("certificate for another host name") {
    o.host = "localhost";  // the certificate names localhost: fine
    CHECK(sync_client(*a, o).sync().pushed == 1);
    // A certificate that names neither 127.0.0.1 nor localhost.
    const auto wrong = server::make_server_certificate(server.pki().ca, {"elsewhere.example"}, {});
    server::write_file(server.config().certificate_file, wrong.certificate_pem, 0644);
    server::write_file(server.config().private_key_file, wrong.private_key_pem, 0600);
    server.restart();
    o = server.options(0);
    const auto e = failing_sync(*a, o);
    CHECK(e.code() == network_errc::certificate_untrusted);
    CHECK_THAT(e.what(), Catch::Contains("mismatch"));
  }
  SECTION("expired certificate") {
    const auto expired = server::make_server_certificate(server.pki().ca, {"localhost"}, {"127.0.0.1"}, 1, -10);
    server::write_file(server.config().certificate_file, expired.certificate_pem, 0644);
    server::write_file(server.config().private_key_file, expired.private_key_pem, 0600);
    server.restart();
    o = server.options(0);
    const auto e = failing_sync(*a, o);
    CHECK(e.code() == network_errc::certificate_untrusted);
    CHECK_THAT(e.what(), Catch::Contains("expired"));
  }
  SECTION("a self-signed certificate, for the right names, that no trusted CA signed") {
    const auto self_signed = self_signed_certificate();
    server::write_file(server.config().certificate_file, self_signed.certificate_pem, 0644);
    server::write_file(server.config().private_key_file, self_signed.private_key_pem, 0600);
    server.restart();
    o = server.options(0);
    const auto e = failing_sync(*a, o);
    CHECK(e.code() == network_errc::certificate_untrusted);
    CHECK_FALSE(is_transient(e.code()));
    CHECK_THAT(e.what(), Catch::Contains("certificate was refused"));
    CHECK_THAT(e.what(), Catch::Contains("self-signed") || Catch::Contains("self signed"));  // OpenSSL 3 / 1.1
    CHECK_THAT(e.what(), Catch::Contains("CA file"));  // what to do
    CHECK(a->outbox_size() == 1);
    CHECK(server.get().stats().sessions_accepted == 0);  // refused before hello: the token was never sent
  }
  SECTION("pinned key: the right pin alone is enough, a wrong pin is refused") {
    o.ca_file.clear();
    o.pinned_key_sha256 = server.pki().pin;
    CHECK(sync_client(*a, o).sync().pushed == 1);
    a->create("visits", {{"status", std::string("planned")}});
    o.pinned_key_sha256 = std::string(64, '0');
    const auto e = failing_sync(*a, o);
    CHECK(e.code() == network_errc::pin_mismatch);
    CHECK(a->outbox_size() == 1);
  }
  SECTION("a CA file that does not exist") {
    o.ca_file = dir.file("missing-ca.pem");
    const auto e = failing_sync(*a, o);
    CHECK(e.code() == storage_errc::invalid_argument);
    CHECK_THAT(e.what(), Catch::Contains("CA file"));
  }
}

TEST_CASE("sync options without a way to verify the server are refused", "[sync][security]") {
  temp_dir dir;
  auto a = open_tablet(dir, "a");
  sync_options o;
  o.device_id = "tablet-0";
  o.token = "t";
  CHECK_THROWS_AS(sync_client(*a, o), caresync::error);
}

TEST_CASE("the server refuses forged versions and a node id of 0", "[sync][security]") {
  temp_dir dir;
  test_server server(dir);
  auto a = open_tablet(dir, "a");
  a->create("visits", {{"note", std::string("words that must not be overwritten by a forger")}});
  auto batch = a->internal().next_batch(10);
  REQUIRE(batch);
  auto changes = batch->decode_changes();

  SECTION("a change stamped with another replica's node id is stored as the pusher's (version 7)") {
    // A push carries no node id: whatever the device meant, the change is its own.
    changes[0].ver.node = a->node() ^ 1;
    const auto answer = caresync::testing::exchange_raw(server.options(0), a->node(), wire::push{batch->id, changes});
    REQUIRE(std::holds_alternative<wire::push_result>(answer));
    CHECK(std::get<wire::push_result>(answer).accepted == 1);
    const auto stored = caresync::testing::sql_int(server.config().database_file, "SELECT node FROM changes");
    CHECK(static_cast<node_id>(stored) == a->node());
    return;
  }
  SECTION("a compressed frame when compression was not agreed") {
    const auto compression = GENERATE(wire::codec::deflate, wire::codec::zstd);
    changes[0].fields[0].val = std::string(4000, 'x');  // large enough to be compressed
    const auto answer = caresync::testing::exchange_raw(server.options(0), a->node(),
                                                        wire::push{batch->id, changes}, compression);
    REQUIRE(std::holds_alternative<wire::error>(answer));
    CHECK_THAT(std::get<wire::error>(answer).message, Catch::Contains("compression was not agreed"));
  }
  SECTION("hello with node id 0") {
    const auto answer = caresync::testing::exchange_raw(server.options(0), 0, wire::ping{1});
    REQUIRE(std::holds_alternative<wire::error>(answer));
    CHECK(std::get<wire::error>(answer).code == static_cast<std::uint16_t>(protocol_errc::malformed));
  }
  CHECK(server.get().store().head() == 0);
}
