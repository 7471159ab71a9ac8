// The caresync-server child process of the demo (see server_process.hpp).

#include "server_process.hpp"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <vector>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace caresync::demo {
namespace {

std::string read_file_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string tail(const std::string& text, std::size_t max_chars) {
  return text.size() <= max_chars ? text : "..." + text.substr(text.size() - max_chars);
}

/// The port of the server's "caresync-server: ... listening on 127.0.0.1:PORT" line, or 0.
std::uint16_t announced_port(const std::string& log) {
  const auto at = log.find("listening on ");
  if (at == std::string::npos) return 0;
  const auto end = log.find('\n', at);
  if (end == std::string::npos) return 0;  // the line is still being written
  const auto line = log.substr(at, end - at);
  const auto colon = line.rfind(':');
  if (colon == std::string::npos) return 0;
  try {
    const int port = std::stoi(line.substr(colon + 1));
    return port > 0 && port < 65536 ? static_cast<std::uint16_t>(port) : 0;
  } catch (const std::exception&) {
    return 0;
  }
}

}  // namespace

server_process::server_process(const std::string& binary, const std::string& config_file,
                               const std::string& log_path, std::chrono::milliseconds timeout) {
  if (access(binary.c_str(), X_OK) != 0) {
    throw std::runtime_error("cannot run the server binary " + binary + ": " + std::strerror(errno) +
                             "; build it (cmake --build build --target caresync-server) or pass --server PATH");
  }
  // The port is chosen by the server itself (--port 0) and read back from its log: no
  // window in which another program could take a port we picked for it.
  std::vector<std::string> args{binary, "serve", "--config", config_file, "--port", "0"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  const int rc = posix_spawn(&pid_, binary.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    pid_ = -1;
    throw std::runtime_error("cannot start the server binary " + binary + ": " + std::strerror(rc) +
                             "; pass --server PATH to use another one");
  }

  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    port_ = announced_port(read_file_text(log_path));
    if (port_ != 0) return;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      throw std::runtime_error("the server " + describe_wait_status(status) + " before listening; its log (" +
                               log_path + ") ends with:\n" + tail(read_file_text(log_path), 2000));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
  throw std::runtime_error("the server did not start listening within " + std::to_string(timeout.count()) +
                           " ms; see its log " + log_path);
}

server_process::~server_process() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
}

int server_process::stop() {
  if (pid_ <= 0) throw std::logic_error("the server was stopped already");
  kill(pid_, SIGTERM);
  int status = 0;
  while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
  return status;
}

std::string describe_wait_status(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return "was killed by signal " + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
  }
  return "ended with wait status " + std::to_string(status);
}

}  // namespace caresync::demo
