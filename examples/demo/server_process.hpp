#pragma once
/// The real caresync-server binary run as a child process, as an operator would run it:
/// `caresync-server serve --config FILE --port 0`, its standard error in a log file.
/// Thread contract: one owning thread.

#include <chrono>
#include <cstdint>
#include <string>
#include <sys/types.h>

namespace caresync::demo {

class server_process {
 public:
  /// Starts `binary` on the config file, letting the OS pick a free port, and waits up to
  /// `timeout` for the server to announce "listening on ADDRESS:PORT" in `log_path`
  /// (which it truncates). Throws std::runtime_error saying what went wrong and what to
  /// do: the binary is missing or not executable, it exited early (with the log's tail),
  /// or it did not start listening in time.
  server_process(const std::string& binary, const std::string& config_file, const std::string& log_path,
                 std::chrono::milliseconds timeout);
  /// Kills the server with SIGKILL if stop() was not called (the demo failed midway).
  ~server_process();
  server_process(const server_process&) = delete;
  server_process& operator=(const server_process&) = delete;

  /// The port the server listens on (127.0.0.1).
  std::uint16_t port() const noexcept { return port_; }
  /// The child's process id.
  pid_t pid() const noexcept { return pid_; }

  /// Sends SIGTERM, waits for the server to exit and returns its wait status.
  int stop();

 private:
  pid_t pid_ = -1;
  std::uint16_t port_ = 0;
};

/// "exited with status 0", "killed by signal 9 (Killed)", ...
std::string describe_wait_status(int status);

}  // namespace caresync::demo
