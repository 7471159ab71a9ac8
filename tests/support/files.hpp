#pragma once
// A file's bytes and its permission bits, for tests that check what a program wrote.

#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <fstream>
#include <iterator>
#include <string>

namespace caresync::testing {

/// The bytes of the file at `path` (empty if it cannot be read).
inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// The permission bits (and setuid, setgid, sticky) of the file at `path`; the test fails
/// if it does not exist.
inline unsigned mode_of(const std::string& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return static_cast<unsigned>(st.st_mode) & 07777u;
}

}  // namespace caresync::testing
