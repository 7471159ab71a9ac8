// The demo's state directory (see state_directory.hpp).

#include "state_directory.hpp"

#include <caresync/server/certificate.hpp>
#include <caresync/server/config.hpp>

#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>

namespace caresync::demo {
namespace {

namespace fs = std::filesystem;

constexpr int k_renew_days_before_expiry = 30;

struct bio_deleter {
  void operator()(BIO* b) const noexcept { BIO_free(b); }
};
struct x509_deleter {
  void operator()(X509* x) const noexcept { X509_free(x); }
};

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path.string());
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

/// Whole days until the PEM certificate expires (negative once expired).
int days_until_expiry(const std::string& certificate_pem) {
  std::unique_ptr<BIO, bio_deleter> bio(BIO_new_mem_buf(certificate_pem.data(), static_cast<int>(certificate_pem.size())));
  std::unique_ptr<X509, x509_deleter> cert(bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  int days = 0;
  int seconds = 0;
  if (!cert || ASN1_TIME_diff(&days, &seconds, nullptr, X509_get0_notAfter(cert.get())) != 1) {
    return -1;  // unreadable: treat as expired so that it is made again
  }
  return days;
}

/// 32 random bytes in hex: a device token.
std::string random_token() {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof bytes) != 1) throw std::runtime_error("the system's random source failed");
  static constexpr char k_hex[] = "0123456789abcdef";
  std::string token;
  for (const unsigned char b : bytes) {
    token.push_back(k_hex[b >> 4]);
    token.push_back(k_hex[b & 0xf]);
  }
  return token;
}

/// "name token" lines.
std::map<std::string, std::string> read_tokens(const fs::path& path) {
  std::map<std::string, std::string> tokens;
  if (!fs::exists(path)) return tokens;
  std::istringstream lines(read_text(path));
  std::string name;
  std::string token;
  while (lines >> name >> token) tokens[name] = token;
  return tokens;
}

void make_certificates(const fs::path& dir, std::ostream& out) {
  const auto ca = server::make_certificate_authority("caresync demo CA (synthetic)");
  const auto leaf = server::make_server_certificate(ca, {"localhost"}, {"127.0.0.1"});
  server::write_file((dir / "ca.pem").string(), ca.certificate_pem, 0644);
  server::write_file((dir / "ca-key.pem").string(), ca.private_key_pem, 0600);
  server::write_file((dir / "server-cert.pem").string(), leaf.certificate_pem, 0644);
  server::write_file((dir / "server-key.pem").string(), leaf.private_key_pem, 0600);
  out << "generated a CA (" << (dir / "ca.pem").string() << ") and a server certificate for localhost and 127.0.0.1 ("
      << (dir / "server-cert.pem").string() << "); keys are mode 0600\n";
}

void renew_server_certificate(const fs::path& dir, std::ostream& out) {
  const server::pem_identity ca{read_text(dir / "ca.pem"), read_text(dir / "ca-key.pem")};
  const auto leaf = server::make_server_certificate(ca, {"localhost"}, {"127.0.0.1"});
  server::write_file((dir / "server-cert.pem").string(), leaf.certificate_pem, 0644);
  server::write_file((dir / "server-key.pem").string(), leaf.private_key_pem, 0600);
  out << "renewed the server certificate " << (dir / "server-cert.pem").string() << " (the old one was about to expire)\n";
}

std::string server_config_text(const std::map<std::string, std::string>& tokens) {
  std::string text =
      "# caresync-server config written by caresync-demo (every key: packaging/caresync-server.toml).\n"
      "# Only the SHA-256 of each tablet's token is kept here.\n"
      "listen_address = \"127.0.0.1\"\n"
      "port = 0  # the demo lets the OS pick a free port\n"
      "certificate_file = \"server-cert.pem\"\n"
      "private_key_file = \"server-key.pem\"\n"
      "database_file = \"server.db\"\n"
      "server_name = \"caresync-demo\"\n";
  for (const auto& [name, token] : tokens) {
    text += "\n[[devices]]\ndevice_id = \"" + name + "\"\ntoken_sha256 = \"" + server::hash_token(token) + "\"\n";
  }
  return text;
}

}  // namespace

demo_state prepare_state_directory(const std::string& dir_name, const std::vector<std::string>& tablets,
                                   std::ostream& out) {
  const fs::path dir = fs::absolute(dir_name);
  fs::create_directories(dir);
  fs::permissions(dir, fs::perms::owner_all, fs::perm_options::replace);

  demo_state state;
  state.dir = dir.string();
  state.ca_file = (dir / "ca.pem").string();
  state.config_file = (dir / "server.toml").string();
  state.database_file = (dir / "server.db").string();
  state.log_file = (dir / "server.log").string();

  const bool have_certificates = fs::exists(dir / "ca.pem") && fs::exists(dir / "ca-key.pem") &&
                                 fs::exists(dir / "server-cert.pem") && fs::exists(dir / "server-key.pem");
  if (!have_certificates) {
    make_certificates(dir, out);
  } else if (days_until_expiry(read_text(dir / "server-cert.pem")) < k_renew_days_before_expiry) {
    renew_server_certificate(dir, out);
  } else {
    out << "reusing certificate " << (dir / "server-cert.pem").string() << " (CA " << state.ca_file << ")\n";
  }
  state.public_key_pin = server::public_key_sha256(read_text(dir / "server-cert.pem"));

  // Tokens stay with the tablets (here: one 0600 file standing in for each tablet's
  // secure storage); the server is told only their hashes.
  const auto tokens_path = dir / "tablet-tokens";
  state.tokens = read_tokens(tokens_path);
  std::size_t made = 0;
  for (const auto& name : tablets) {
    if (state.tokens.count(name) == 0) {
      state.tokens[name] = random_token();
      ++made;
    }
  }
  if (made > 0) {
    std::string text;
    for (const auto& [name, token] : state.tokens) text += name + " " + token + "\n";
    server::write_file(tokens_path.string(), text, 0600);
    out << "generated device tokens for " << made << " tablet(s) (" << tokens_path.string() << ", mode 0600)\n";
  }
  if (made < tablets.size()) out << "reusing device tokens of " << tablets.size() - made << " tablet(s)\n";
  server::write_file(state.config_file, server_config_text(state.tokens), 0600);
  out << "server config " << state.config_file << " lists " << state.tokens.size()
      << " device(s) by token hash only\n";
  return state;
}

std::string tablet_store_path(const demo_state& state, const std::string& tablet) {
  return (fs::path(state.dir) / ("tablet-" + tablet + ".db")).string();
}

std::size_t remove_replicas(const demo_state& state) {
  std::size_t removed = 0;
  for (const auto& entry : fs::directory_iterator(state.dir)) {
    const auto name = entry.path().filename().string();
    const bool tablet_store = name.rfind("tablet-", 0) == 0 && name.find(".db") != std::string::npos;
    const bool server_log = name.rfind("server.db", 0) == 0;
    if (tablet_store || server_log) removed += fs::remove(entry.path()) ? 1 : 0;
  }
  return removed;
}

}  // namespace caresync::demo
