#pragma once
// Runs a program through the shell, as an administrator or a field worker would type it,
// and keeps what it printed: for tests of the command-line tools.

#include <catch2/catch.hpp>

#include <sys/wait.h>

#include <cstdio>
#include <string>

namespace caresync::testing {

/// What a command printed on its standard output (and its standard error, if the command
/// redirects it there with 2>&1), and its exit status (-1: it did not exit, e.g. a signal).
struct command_result {
  std::string output;
  int exit_code = -1;
};

/// Runs `command` with /bin/sh and reads its output to the end.
inline command_result run_command(const std::string& command) {
  FILE* pipe = popen(command.c_str(), "r");
  REQUIRE(pipe);
  command_result r;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) r.output.append(buf, n);
  const int status = pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

}  // namespace caresync::testing
