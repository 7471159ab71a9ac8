#pragma once
// The nice value of each thread of this process, from /proc (Linux only): for tests of
// which threads run at a background priority.

#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <string>

#include <unistd.h>

namespace caresync::testing {

/// Each thread of this process (by its id, as text) and its nice value
/// (/proc/self/task/<tid>/stat, field 19).
inline std::map<std::string, int> thread_nice_values() {
  std::map<std::string, int> out;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream in(task.path() / "stat");
    const std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto end_of_name = stat.rfind(')');
    if (end_of_name == std::string::npos) continue;  // the thread ended meanwhile
    std::istringstream fields(stat.substr(end_of_name + 2));
    std::string field;
    for (int i = 3; i <= 19 && fields >> field; ++i) {
      if (i == 19) out[task.path().filename().string()] = std::stoi(field);
    }
  }
  return out;
}

/// The calling thread's id as thread_nice_values() names it.
inline std::string this_thread_id() { return std::to_string(::gettid()); }

}  // namespace caresync::testing
