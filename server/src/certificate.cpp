#include <caresync/server/certificate.hpp>

#include <caresync/protocol/errors.hpp>
#include <caresync/protocol/sha256.hpp>

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <memory>

namespace caresync::server {

namespace {

template <class T, void (*F)(T*)>
struct deleter {
  void operator()(T* p) const noexcept { F(p); }
};
using pkey_ptr = std::unique_ptr<EVP_PKEY, deleter<EVP_PKEY, EVP_PKEY_free>>;
using x509_ptr = std::unique_ptr<X509, deleter<X509, X509_free>>;
using bio_ptr = std::unique_ptr<BIO, deleter<BIO, BIO_free_all>>;
using ext_ptr = std::unique_ptr<X509_EXTENSION, deleter<X509_EXTENSION, X509_EXTENSION_free>>;

[[noreturn]] void fail(const std::string& what) {
  throw error(make_error_code(storage_errc::invalid_argument), what + " (OpenSSL failed)");
}

/// A refusal of what the caller gave (not an OpenSSL failure): `what` says what to do.
[[noreturn]] void refuse(const std::string& what) {
  throw error(make_error_code(storage_errc::invalid_argument), what);
}

void check_days(int days) {
  if (days < 1 || days > k_max_server_certificate_days) {
    refuse("a server certificate lives 1 to " + std::to_string(k_max_server_certificate_days) + " days, not " +
           std::to_string(days) + "; renew it each year instead (caresync-server renew-certificate)");
  }
}

pkey_ptr make_key() {
  pkey_ptr key(EVP_EC_gen("P-256"));
  if (!key) fail("cannot generate an EC P-256 key");
  return key;
}

std::string to_pem(EVP_PKEY* key) {
  bio_ptr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    fail("cannot write a private key");
  }
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(n));
}

std::string to_pem(X509* cert) {
  bio_ptr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) fail("cannot write a certificate");
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(n));
}

x509_ptr read_cert(const std::string& pem, const char* what = "a PEM certificate") {
  bio_ptr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  x509_ptr cert(bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!cert) fail(std::string("cannot read ") + what);
  return cert;
}

pkey_ptr read_key(const std::string& pem, const char* what = "a PEM private key") {
  bio_ptr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  pkey_ptr key(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!key) fail(std::string("cannot read ") + what);
  return key;
}

std::int64_t unix_time(const ASN1_TIME* t) {
  std::tm tm{};
  if (!t || ASN1_TIME_to_tm(t, &tm) != 1) fail("cannot read a certificate's validity");
  return static_cast<std::int64_t>(::timegm(&tm));
}

/// 2027-12-07 (UTC), for messages.
std::string day_of(std::int64_t unix) {
  const auto t = static_cast<std::time_t>(unix);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[16];
  return std::string(buf, std::strftime(buf, sizeof buf, "%Y-%m-%d", &tm));
}

void add_extension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  ext_ptr ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str()));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1) fail("cannot add certificate extension " + value);
}

/// What every server certificate carries besides its names: not a CA, a TLS server's key.
void add_server_extensions(X509* cert, X509* ca_cert) {
  add_extension(cert, ca_cert, NID_basic_constraints, "critical,CA:FALSE");
  add_extension(cert, ca_cert, NID_key_usage, "critical,digitalSignature");
  add_extension(cert, ca_cert, NID_ext_key_usage, "serverAuth");
  add_extension(cert, ca_cert, NID_authority_key_identifier, "keyid:always");
}

/// A certificate with a random serial, a common name and a validity window.
x509_ptr new_certificate(EVP_PKEY* key, const std::string& common_name, int not_before_days, int days) {
  x509_ptr cert(X509_new());
  if (!cert) fail("cannot make a certificate");
  X509_set_version(cert.get(), 2);
  unsigned char serial[16];
  RAND_bytes(serial, sizeof serial);
  serial[0] &= 0x7f;  // positive
  std::unique_ptr<BIGNUM, deleter<BIGNUM, BN_free>> bn(BN_bin2bn(serial, sizeof serial, nullptr));
  if (!bn || !BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert.get()))) fail("cannot set a serial number");
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), static_cast<long>(not_before_days) * 86400 - 300);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), static_cast<long>(not_before_days + days) * 86400);
  X509_set_pubkey(cert.get(), key);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("caresync"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(common_name.c_str()), -1,
                             -1, 0);
  return cert;
}

}  // namespace

pem_identity make_certificate_authority(const std::string& common_name, int days) {
  auto key = make_key();
  auto cert = new_certificate(key.get(), common_name, 0, days);
  X509_set_issuer_name(cert.get(), X509_get_subject_name(cert.get()));
  add_extension(cert.get(), cert.get(), NID_basic_constraints, "critical,CA:TRUE,pathlen:0");
  add_extension(cert.get(), cert.get(), NID_key_usage, "critical,keyCertSign,cRLSign");
  add_extension(cert.get(), cert.get(), NID_subject_key_identifier, "hash");
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) == 0) fail("cannot sign the CA certificate");
  return {to_pem(cert.get()), to_pem(key.get())};
}

pem_identity make_server_certificate(const pem_identity& ca, const std::vector<std::string>& dns_names,
                                     const std::vector<std::string>& ip_addresses, int days, int not_before_days) {
  check_days(days);
  const auto ca_cert = read_cert(ca.certificate_pem);
  const auto ca_key = read_key(ca.private_key_pem);
  auto key = make_key();
  const std::string cn = !dns_names.empty() ? dns_names.front() : !ip_addresses.empty() ? ip_addresses.front() : "caresync-server";
  auto cert = new_certificate(key.get(), cn, not_before_days, days);
  X509_set_issuer_name(cert.get(), X509_get_subject_name(ca_cert.get()));
  std::string san;
  for (const auto& d : dns_names) san += (san.empty() ? "" : ",") + std::string("DNS:") + d;
  for (const auto& ip : ip_addresses) san += (san.empty() ? "" : ",") + std::string("IP:") + ip;
  if (!san.empty()) add_extension(cert.get(), ca_cert.get(), NID_subject_alt_name, san);
  add_server_extensions(cert.get(), ca_cert.get());
  if (X509_sign(cert.get(), ca_key.get(), EVP_sha256()) == 0) fail("cannot sign the server certificate");
  return {to_pem(cert.get()), to_pem(key.get())};
}

namespace {

std::string pin_of(X509* cert) {
  unsigned char* der = nullptr;
  const int len = i2d_PUBKEY(X509_get0_pubkey(cert), &der);
  if (len <= 0) fail("cannot encode the certificate's public key");
  const std::unique_ptr<unsigned char, void (*)(unsigned char*)> guard(der, [](unsigned char* p) { OPENSSL_free(p); });
  return sha256_hex({der, static_cast<std::size_t>(len)});
}

}  // namespace

std::string public_key_sha256(const std::string& certificate_pem) { return pin_of(read_cert(certificate_pem).get()); }

certificate_summary describe_certificate(const std::string& certificate_pem) {
  const auto cert = read_cert(certificate_pem);
  certificate_summary out;
  out.not_before = unix_time(X509_get0_notBefore(cert.get()));
  out.not_after = unix_time(X509_get0_notAfter(cert.get()));
  out.public_key_sha256 = pin_of(cert.get());
  using names_ptr = std::unique_ptr<GENERAL_NAMES, deleter<GENERAL_NAMES, GENERAL_NAMES_free>>;
  const names_ptr names(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert.get(), NID_subject_alt_name, nullptr, nullptr)));
  for (int i = 0; names && i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names.get(), i);
    if (name->type == GEN_DNS) {
      const auto* s = name->d.dNSName;
      out.dns_names.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                                 static_cast<std::size_t>(ASN1_STRING_length(s)));
    } else if (name->type == GEN_IPADD) {
      const auto* ip = name->d.iPAddress;
      const int length = ASN1_STRING_length(ip);
      char text[INET6_ADDRSTRLEN] = {};
      if ((length == 4 || length == 16) &&
          ::inet_ntop(length == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(ip), text, sizeof text)) {
        out.ip_addresses.emplace_back(text);
      }
    }
  }
  return out;
}

namespace {

/// The CA's certificate and key, checked to belong together and to be valid now and
/// `days` days on.
struct checked_ca {
  x509_ptr cert;
  pkey_ptr key;
};

checked_ca check_ca(const pem_identity& ca, int days) {
  checked_ca out{read_cert(ca.certificate_pem, "the CA certificate (a PEM certificate)"),
                 read_key(ca.private_key_pem, "the CA key (a PEM private key)")};
  if (X509_check_private_key(out.cert.get(), out.key.get()) != 1) {
    refuse("the CA key is not the key of the CA certificate; give the key init made with this ca.pem");
  }
  const auto now = static_cast<std::int64_t>(std::time(nullptr));
  const auto from = unix_time(X509_get0_notBefore(out.cert.get()));
  const auto until = unix_time(X509_get0_notAfter(out.cert.get()));
  if (from > now || until <= now) {
    refuse("the CA certificate is not valid now (valid " + day_of(from) + " to " + day_of(until) +
           "); a new CA is needed, and every tablet its ca.pem (docs/operations.md, \"Certificates\")");
  }
  if (until < now + static_cast<std::int64_t>(days) * 86400) {
    refuse("the CA certificate expires on " + day_of(until) + ", before a certificate of " + std::to_string(days) +
           " days would; pass fewer --days, and plan a new CA (docs/operations.md, \"Certificates\")");
  }
  return out;
}

/// Checks that `ca` issued `cert`: tablets that trust the CA file trust only its certificates.
void check_issued(const checked_ca& ca, X509* cert) {
  if (X509_check_issued(ca.cert.get(), cert) != X509_V_OK || X509_verify(cert, X509_get0_pubkey(ca.cert.get())) != 1) {
    refuse("this CA did not issue the server certificate, so tablets that trust the CA file would refuse the renewed one; "
           "give the CA that issued it");
  }
}

/// A certificate for `key` with the subject and subjectAltName of `old`, signed by `ca`,
/// valid from now for `days` days.
std::string issue_like(const checked_ca& ca, EVP_PKEY* key, X509* old, int days) {
  auto cert = new_certificate(key, "caresync-server", 0, days);
  if (X509_set_subject_name(cert.get(), X509_get_subject_name(old)) != 1 ||
      X509_set_issuer_name(cert.get(), X509_get_subject_name(ca.cert.get())) != 1) {
    fail("cannot copy the certificate's names");
  }
  // The subjectAltName exactly as it was: the names tablets check stay the same.
  if (const int at = X509_get_ext_by_NID(old, NID_subject_alt_name, -1); at >= 0) {
    if (X509_add_ext(cert.get(), X509_get_ext(old, at), -1) != 1) fail("cannot copy the subjectAltName");
  }
  add_server_extensions(cert.get(), ca.cert.get());
  if (X509_sign(cert.get(), ca.key.get(), EVP_sha256()) == 0) fail("cannot sign the server certificate");
  return to_pem(cert.get());
}

}  // namespace

std::string renew_server_certificate(const pem_identity& ca, const pem_identity& current, int days) {
  check_days(days);
  const auto checked = check_ca(ca, days);
  const auto old = read_cert(current.certificate_pem, "the server certificate (a PEM certificate)");
  const auto key = read_key(current.private_key_pem, "the server key (a PEM private key)");
  if (X509_check_private_key(old.get(), key.get()) != 1) {
    refuse("the server key is not the key of the server certificate; check certificate_file and private_key_file");
  }
  check_issued(checked, old.get());
  return issue_like(checked, key.get(), old.get(), days);
}

pem_identity rekey_server_certificate(const pem_identity& ca, const std::string& current_certificate_pem, int days) {
  check_days(days);
  const auto checked = check_ca(ca, days);
  const auto old = read_cert(current_certificate_pem, "the server certificate (a PEM certificate)");
  check_issued(checked, old.get());
  auto key = make_key();
  return {issue_like(checked, key.get(), old.get(), days), to_pem(key.get())};
}

void write_file(const std::string& path, const std::string& text, unsigned mode) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, static_cast<mode_t>(mode));
  if (fd < 0) {
    throw error(make_error_code(storage_errc::open_failed), "cannot write '" + path + "': " + std::strerror(errno));
  }
  std::size_t done = 0;
  while (done < text.size()) {
    const auto n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      ::close(fd);
      throw error(make_error_code(storage_errc::io_failed), "cannot write '" + path + "': " + std::strerror(err));
    }
    done += static_cast<std::size_t>(n);
  }
  ::fchmod(fd, static_cast<mode_t>(mode));  // O_CREAT's mode does not apply to an existing file
  const bool synced = ::fsync(fd) == 0;
  ::close(fd);
  if (!synced) throw error(make_error_code(storage_errc::io_failed), "cannot flush '" + path + "' to disk");
}

void replace_file(const std::string& path, const std::string& text, unsigned mode, const std::string& like) {
  struct stat old {};
  const bool existed = ::stat((like.empty() ? path : like).c_str(), &old) == 0;
  const auto staged = path + ".new";
  try {
    write_file(staged, text, existed ? (old.st_mode & 07777) : mode);
    // Keep the owner and group too (root:caresync in the .deb), or the service could no
    // longer read the file; only root can give a file away.
    if (existed && ::geteuid() == 0 && ::chown(staged.c_str(), old.st_uid, old.st_gid) != 0) {
      throw error(make_error_code(storage_errc::io_failed),
                  "cannot give '" + staged + "' the owner of '" + (like.empty() ? path : like) + "': " + std::strerror(errno));
    }
    if (::rename(staged.c_str(), path.c_str()) != 0) {
      throw error(make_error_code(storage_errc::io_failed),
                  "cannot rename '" + staged + "' to '" + path + "': " + std::strerror(errno));
    }
  } catch (...) {
    ::unlink(staged.c_str());
    throw;
  }
  // The rename is durable once the directory is flushed.
  const auto dir = std::filesystem::path(path).parent_path();
  const int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  const bool synced = fd >= 0 && ::fsync(fd) == 0;
  if (fd >= 0) ::close(fd);
  if (!synced) throw error(make_error_code(storage_errc::io_failed), "cannot flush the directory of '" + path + "' to disk");
}

}  // namespace caresync::server
