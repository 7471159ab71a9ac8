#pragma once
// Runs the caresync-field binary on a tablet's store in a test directory, as a person
// types it in a shell, and keeps what it printed (for the field CLI tests).

#include "temp_dir.hpp"

#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace caresync::testing {

/// How a caresync-field run ended and what it printed on each stream.
struct run_result {
  int status = -1;  ///< the exit status; -1 if it did not exit (a signal)
  std::string out;
  std::string err;
};

/// `s` single-quoted for the shell.
inline std::string shell_quoted(const std::string& s) {
  std::string q = "'";
  for (const char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

/// Runs `binary --store DIR/TABLET.db ARGS...` (each argument quoted), after `prefix` (e.g.
/// "env TZ=Europe/Prague"; empty: none).
inline run_result run_field(const std::string& binary, const temp_dir& dir, const std::string& tablet,
                            const std::vector<std::string>& args, const std::string& prefix = "") {
  std::string cmd = (prefix.empty() ? "" : prefix + " ") + shell_quoted(binary) + " --store " + shell_quoted(dir.file(tablet + ".db"));
  for (const auto& a : args) cmd += " " + shell_quoted(a);
  const auto out = dir.file("out.txt"), err = dir.file("err.txt");
  cmd += " > " + shell_quoted(out) + " 2> " + shell_quoted(err);
  run_result r;
  const int raw = std::system(cmd.c_str());
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  const auto slurp = [](const std::string& path) {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  };
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

inline std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

}  // namespace caresync::testing
