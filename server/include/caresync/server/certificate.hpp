#pragma once
/// The region's CA and the server's certificates (OpenSSL): made by `caresync-server
/// init`, renewed for the same key by `renew-certificate` (docs/operations.md,
/// "Certificates"), and made for demos and tests.
/// Thread contract: free functions.

#include <cstdint>
#include <string>
#include <vector>

namespace caresync::server {

/// The longest a server certificate made here lives: 366 days, the bound the deployment
/// audit (issue 20) set. Tablets trust only the region's own CA, so no browser root
/// programme applies; the bound keeps a stolen certificate's life short all the same.
inline constexpr int k_max_server_certificate_days = 366;
/// How long `init` and `renew-certificate` make a server certificate live unless told.
inline constexpr int k_server_certificate_days = 365;

/// A PEM key pair and certificate.
struct pem_identity {
  std::string certificate_pem;
  std::string private_key_pem;
};

/// Makes a CA certificate (EC P-256 key, valid `days` days from now), self-signed.
/// Throws caresync::error on OpenSSL failure.
pem_identity make_certificate_authority(const std::string& common_name, int days = 3650);

/// Makes a server certificate and a new EC P-256 key, signed by `ca`, for the given DNS
/// names and IP addresses (subjectAltName), valid from now + `not_before_days` for `days`
/// days (a negative not_before_days with a small `days` makes an expired certificate for
/// tests). Throws caresync::error (storage_errc::invalid_argument) if `days` is not 1 to
/// k_max_server_certificate_days, or on OpenSSL failure.
pem_identity make_server_certificate(const pem_identity& ca, const std::vector<std::string>& dns_names,
                                     const std::vector<std::string>& ip_addresses,
                                     int days = k_server_certificate_days, int not_before_days = 0);

/// What a PEM certificate (the first of a chain) says about itself.
struct certificate_summary {
  std::int64_t not_before = 0;  ///< Unix time, seconds
  std::int64_t not_after = 0;   ///< Unix time, seconds
  std::string public_key_sha256;  ///< the pin, as public_key_sha256() gives it
  std::vector<std::string> dns_names;      ///< of its subjectAltName, in order
  std::vector<std::string> ip_addresses;   ///< of its subjectAltName, in order
};

/// Reads `certificate_pem`. Throws caresync::error (storage_errc::invalid_argument) if it
/// is not a PEM certificate.
certificate_summary describe_certificate(const std::string& certificate_pem);

/// A new certificate for the key of `current` (its certificate and private key): the same
/// key, hence the same pin, the same subject and subjectAltName, signed by `ca`, valid
/// from now for `days` days. Returns the certificate's PEM; the key does not change.
/// Throws caresync::error (storage_errc::invalid_argument) with what to do when `days` is
/// not 1 to k_max_server_certificate_days, a PEM cannot be read, the CA key is not the CA
/// certificate's, the server key is not the server certificate's, `ca` did not issue
/// `current`, or the CA is not valid now or expires before the new certificate would.
std::string renew_server_certificate(const pem_identity& ca, const pem_identity& current,
                                     int days = k_server_certificate_days);

/// A certificate for a NEW EC P-256 key (hence a new pin) with the subject and
/// subjectAltName of `current_certificate_pem`, signed by `ca`, valid from now for `days`
/// days: the key rotation of docs/operations.md, "Certificates". Throws caresync::error
/// (storage_errc::invalid_argument) as renew_server_certificate() does, less the check of
/// the old key.
pem_identity rekey_server_certificate(const pem_identity& ca, const std::string& current_certificate_pem,
                                      int days = k_server_certificate_days);

/// The lowercase hex SHA-256 of the DER SubjectPublicKeyInfo of a PEM certificate: the
/// value a client pins. Throws caresync::error if the PEM cannot be parsed.
std::string public_key_sha256(const std::string& certificate_pem);

/// Writes `text` to `path` with the given mode (0600 for keys), replacing the file.
/// Throws caresync::error on failure.
void write_file(const std::string& path, const std::string& text, unsigned mode);

/// Replaces `path` by `text` atomically: writes `path`.new, flushes it, renames it over
/// `path` and flushes the directory, so a reader (or a crash) sees the old file or the
/// new one, never a part. The new file keeps the mode of the one it replaces (and, run
/// as root, its owner and group), or takes those of `like` when given; with neither
/// there, it gets `mode`. Throws caresync::error on failure, leaving `path` as it was.
void replace_file(const std::string& path, const std::string& text, unsigned mode, const std::string& like = {});

}  // namespace caresync::server
