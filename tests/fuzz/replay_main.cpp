// Replays fuzz inputs without libFuzzer: runs every file of the directories (and every
// file) named on the command line through LLVMFuzzerTestOneInput, in name order.
// Built with the project's own compiler and flags and run by CTest, so every build
// replays the corpus, and the sanitizer build replays it under ASan and UBSan.
//
//   caresync-fuzz-frame-replay DIR_OR_FILE...
//
// Exits 0 when every input ran; 2 on a usage error or an unreadable or empty corpus
// (a wrong path must not pass as a clean replay). A bug found by an input aborts the
// program (the target calls std::abort) after the input's name has been printed.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <system_error>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

namespace fs = std::filesystem;

/// The regular files named by `arg`: itself, or the files directly inside it.
bool collect(const fs::path& arg, std::vector<fs::path>& files) {
  std::error_code ec;
  if (fs::is_directory(arg, ec)) {
    for (const auto& entry : fs::directory_iterator(arg, ec)) {
      if (entry.is_regular_file()) files.push_back(entry.path());
    }
    return !ec;
  }
  if (fs::is_regular_file(arg, ec)) {
    files.push_back(arg);
    return true;
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s DIR_OR_FILE...\nRuns every file through the fuzz target once.\n", argv[0]);
    return 2;
  }
  std::vector<fs::path> files;
  for (int i = 1; i < argc; ++i) {
    if (!collect(argv[i], files)) {
      std::fprintf(stderr, "%s is neither a readable directory nor a file; check the corpus path.\n", argv[i]);
      return 2;
    }
  }
  if (files.empty()) {
    std::fprintf(stderr, "no input files found; check the corpus path.\n");
    return 2;
  }
  std::sort(files.begin(), files.end());
  std::size_t total = 0;
  for (const auto& file : files) {
    std::ifstream in(file, std::ios::binary);
    const std::vector<std::uint8_t> input((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad()) {
      std::fprintf(stderr, "cannot read %s\n", file.c_str());
      return 2;
    }
    // Printed first, so that the last name in the log is the input that aborted.
    std::printf("%s (%zu bytes)\n", file.c_str(), input.size());
    std::fflush(stdout);
    LLVMFuzzerTestOneInput(input.data(), input.size());
    total += input.size();
  }
  std::printf("replayed %zu inputs, %zu bytes: no fault\n", files.size(), total);
  return 0;
}
