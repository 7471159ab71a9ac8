#include <caresync/protocol/errors.hpp>
#include <caresync/protocol/sha256.hpp>

#include <openssl/evp.h>

namespace caresync {

std::string to_hex(std::span<const std::uint8_t> bytes) {
  static constexpr char k_hex[] = "0123456789abcdef";
  std::string s;
  s.reserve(bytes.size() * 2);
  for (const auto b : bytes) {
    s.push_back(k_hex[b >> 4]);
    s.push_back(k_hex[b & 0xf]);
  }
  return s;
}

std::string sha256_hex(std::span<const std::uint8_t> bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), digest, &n, EVP_sha256(), nullptr) != 1) {
    throw error(make_error_code(storage_errc::invalid_argument), "OpenSSL could not compute a SHA-256");
  }
  return to_hex({digest, n});
}

std::string sha256_hex(std::string_view text) {
  return sha256_hex({reinterpret_cast<const std::uint8_t*>(text.data()), text.size()});
}

}  // namespace caresync
