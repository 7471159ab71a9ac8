#pragma once
// A unique temporary directory for one test, removed with everything in it when the
// object goes out of scope. Declare it before any store opened inside it.

#include <filesystem>
#include <random>
#include <string>
#include <system_error>

namespace caresync::client_tests {

class temp_dir {
 public:
  temp_dir() {
    std::random_device rd;
    const auto base = std::filesystem::temp_directory_path();
    for (;;) {
      path_ = base / ("caresync-client-test-" + std::to_string(rd()) + std::to_string(rd()));
      if (std::filesystem::create_directory(path_)) break;  // false: the name was taken
    }
  }
  ~temp_dir() {
    std::error_code ignored;  // a leftover temp dir must not turn a passing test into a crash
    std::filesystem::remove_all(path_, ignored);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;

  const std::filesystem::path& path() const noexcept { return path_; }

  /// The path of `name` inside the directory, as a string for store_options::path.
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

}  // namespace caresync::client_tests
