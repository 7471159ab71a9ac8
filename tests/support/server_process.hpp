#pragma once
// The caresync-server binary as a child process, started from a config file the way an
// operator starts it. Used by the SIGTERM test and the kill -9 loop.
// Thread contract: one thread drives the object; it runs one thread of its own that
// drains the server's stderr.

#include <caresync/server/config.hpp>

#include <csignal>
#include <cstdint>
#include <mutex>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace caresync::testing {

/// Writes the keys of `c` that a test sets (listen address, port, certificate, key,
/// database, threads, devices, and the per-address connection limit when not the
/// default) as a caresync-server TOML config at `path`.
inline void write_server_config(const std::string& path, const server::server_config& c) {
  std::ofstream out(path);
  out << "listen_address = \"" << c.listen_address << "\"\n"
      << "port = " << c.port << "\n"
      << "certificate_file = \"" << c.certificate_file << "\"\n"
      << "private_key_file = \"" << c.private_key_file << "\"\n"
      << "database_file = \"" << c.database_file << "\"\n"
      << "threads = " << c.threads << "\n";
  for (const auto& d : c.devices) {
    out << "[[devices]]\n"
        << "device_id = \"" << d.device_id << "\"\n"
        << "token_sha256 = \"" << d.token_sha256 << "\"\n";
  }
  if (c.max_connections_per_address != server::server_config{}.max_connections_per_address) {
    out << "[limits]\n"
        << "max_connections_per_address = " << c.max_connections_per_address << "\n";
  }
  if (!out.flush()) throw std::runtime_error("cannot write " + path);
}

/// A caresync-server child process; killed with SIGKILL when the object goes.
class server_process {
 public:
  /// Runs `binary serve --config config [extra...]` and waits until it listens.
  /// Throws std::runtime_error if it cannot start or exits before listening.
  server_process(const std::string& binary, const std::string& config, const std::vector<std::string>& extra = {}) {
    int fds[2];
    if (pipe(fds) != 0) throw std::runtime_error("pipe failed");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDERR_FILENO);
    posix_spawn_file_actions_addclose(&actions, fds[0]);
    std::vector<std::string> args{binary, "serve", "--config", config};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int rc = posix_spawn(&pid_, binary.c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    if (rc != 0) {
      close(fds[0]);
      throw std::runtime_error("cannot start " + binary);
    }
    stderr_ = fds[0];
    // The server announces "... listening on ADDRESS:PORT" once it accepts.
    std::string line;
    char c;
    while (read(stderr_, &c, 1) == 1) {
      if (c != '\n') {
        line.push_back(c);
        continue;
      }
      log_ += line + "\n";
      if (line.find("listening on") != std::string::npos) {
        port_ = static_cast<std::uint16_t>(std::stoi(line.substr(line.rfind(':') + 1)));
        break;
      }
      line.clear();
    }
    if (port_ == 0) {
      kill_and_reap();
      close(stderr_);
      throw std::runtime_error("the server did not start listening; its log:\n" + log_);
    }
    // Keep reading (a server whose stderr pipe fills up blocks on its next log line),
    // and keep what it says.
    drain_ = std::thread([this] {
      char buf[4096];
      ssize_t n;
      while ((n = read(stderr_, buf, sizeof buf)) > 0) {
        const std::lock_guard lock(log_mutex_);
        log_.append(buf, static_cast<std::size_t>(n));
      }
    });
  }
  ~server_process() {
    kill_and_reap();
    if (drain_.joinable()) drain_.join();  // ends at EOF, once the server has exited
    close(stderr_);
  }
  server_process(const server_process&) = delete;
  server_process& operator=(const server_process&) = delete;

  std::uint16_t port() const noexcept { return port_; }
  pid_t pid() const noexcept { return pid_; }
  /// What the server has logged so far (complete once it has exited).
  std::string log() const {
    const std::lock_guard lock(log_mutex_);
    return log_;
  }

  /// Sends `signal`, waits for the process to end and returns its wait status.
  int stop(int signal) {
    if (pid_ <= 0) return 0;
    kill(pid_, signal);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }

 private:
  void kill_and_reap() {
    if (pid_ > 0) stop(SIGKILL);
  }

  pid_t pid_ = -1;
  int stderr_ = -1;
  std::uint16_t port_ = 0;
  mutable std::mutex log_mutex_;
  std::string log_;  // guarded by log_mutex_ once drain_ runs
  std::thread drain_;
};

}  // namespace caresync::testing
