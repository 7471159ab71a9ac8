#pragma once
/// Self-signed certificates for first runs, demos and tests (OpenSSL).
/// Thread contract: free functions.

#include <string>
#include <vector>

namespace caresync::server {

/// A PEM key pair and certificate.
struct pem_identity {
  std::string certificate_pem;
  std::string private_key_pem;
};

/// Makes a CA certificate (EC P-256 key, valid `days` days from now), self-signed.
/// Throws caresync::error on OpenSSL failure.
pem_identity make_certificate_authority(const std::string& common_name, int days = 3650);

/// Makes a server certificate signed by `ca` for the given DNS names and IP addresses
/// (subjectAltName), valid from now + `not_before_days` for `days` days (a negative
/// not_before_days with a small `days` makes an expired certificate for tests).
pem_identity make_server_certificate(const pem_identity& ca, const std::vector<std::string>& dns_names,
                                     const std::vector<std::string>& ip_addresses, int days = 825,
                                     int not_before_days = 0);

/// The lowercase hex SHA-256 of the DER SubjectPublicKeyInfo of a PEM certificate: the
/// value a client pins. Throws caresync::error if the PEM cannot be parsed.
std::string public_key_sha256(const std::string& certificate_pem);

/// Writes `text` to `path` with the given mode (0600 for keys), replacing the file.
/// Throws caresync::error on failure.
void write_file(const std::string& path, const std::string& text, unsigned mode);

}  // namespace caresync::server
