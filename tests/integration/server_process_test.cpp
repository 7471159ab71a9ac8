// The caresync-server binary as an operator runs it: started from a config file,
// stopped with SIGTERM, without losing a change it acknowledged.

#include "fixture.hpp"

#include <caresync/protocol/errors.hpp>

#include <catch2/catch.hpp>

#include <fstream>
#include <thread>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

using namespace caresync;
using caresync::testing::open_tablet;
using caresync::testing::temp_dir;
using caresync::testing::test_pki;

namespace {

/// A caresync-server child process; killed with SIGKILL if the test ends early.
class server_process {
 public:
  explicit server_process(const std::string& config) {
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDERR_FILENO);
    posix_spawn_file_actions_addclose(&actions, fds[0]);
    std::string binary = CARESYNC_SERVER_BINARY;
    std::vector<std::string> args{binary, "serve", "--config", config};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int rc = posix_spawn(&pid_, binary.c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    REQUIRE(rc == 0);
    // The server announces "... listening on ADDRESS:PORT" once it accepts.
    std::string line;
    char c;
    while (read(fds[0], &c, 1) == 1) {
      if (c != '\n') {
        line.push_back(c);
        continue;
      }
      log_ += line + "\n";
      if (const auto at = line.find("listening on"); at != std::string::npos) {
        port_ = static_cast<std::uint16_t>(std::stoi(line.substr(line.rfind(':') + 1)));
        break;
      }
      line.clear();
    }
    stderr_ = fds[0];
    INFO(log_);
    REQUIRE(port_ != 0);
    // Keep reading: a server whose stderr pipe fills up blocks on its next log line.
    drain_ = std::thread([fd = stderr_] {
      char buf[4096];
      while (read(fd, buf, sizeof buf) > 0) {
      }
    });
  }
  ~server_process() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (drain_.joinable()) drain_.join();  // ends at EOF, once the server has exited
    close(stderr_);
  }

  std::uint16_t port() const noexcept { return port_; }

  /// Sends `signal` and returns the exit status.
  int stop(int signal) {
    kill(pid_, signal);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }

 private:
  pid_t pid_ = -1;
  int stderr_ = -1;
  std::uint16_t port_ = 0;
  std::string log_;
  std::thread drain_;
};

std::string write_config(const temp_dir& dir, const test_pki& pki) {
  const auto path = dir.file("server.toml");
  std::ofstream out(path);
  out << "listen_address = \"127.0.0.1\"\n"
      << "port = 0\n"
      << "certificate_file = \"" << pki.cert_file << "\"\n"
      << "private_key_file = \"" << pki.key_file << "\"\n"
      << "database_file = \"" << dir.file("server.db") << "\"\n"
      << "[[devices]]\n"
      << "device_id = \"tablet-0\"\n"
      << "token_sha256 = \"" << server::hash_token("token-0") << "\"\n";
  return path;
}

}  // namespace

TEST_CASE("SIGTERM stops the server cleanly and keeps every acknowledged change", "[sync][faults]") {
  temp_dir dir;
  const auto pki = test_pki::make(dir);
  const auto config = write_config(dir, pki);
  auto a = open_tablet(dir, "a");
  std::vector<record_id> ids;

  server_process proc(config);
  sync_options o;
  o.port = proc.port();
  o.ca_file = pki.ca_file;
  o.device_id = "tablet-0";
  o.token = "token-0";
  o.connect_timeout = std::chrono::milliseconds(2000);

  // A worker thread owns the tablet: it keeps recording and syncing while the test
  // thread stops the server under it, most likely mid-push or mid-pull.
  std::size_t syncs_ok = 0;
  std::string last_error;
  bool last_error_transient = false;
  std::thread tablet([&] {
    for (int round = 0; round < 100000; ++round) {
      a->transaction([&] {
        for (int i = 0; i < 5; ++i) ids.push_back(a->create("visits", {{"duration_min", std::int64_t{round}}}));
      });
      try {
        sync_client(*a, o).sync();
        ++syncs_ok;
      } catch (const caresync::error& e) {
        last_error = e.what();
        last_error_transient = is_transient(e.code());
        return;
      }
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  const int status = proc.stop(SIGTERM);
  tablet.join();
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(syncs_ok >= 5);
  INFO(last_error);
  CHECK(last_error_transient);

  // Every record the tablet holds a receipt for is in the server's log.
  auto log = server::open_sqlite_change_store(dir.file("server.db"));
  const auto state = log->materialize();
  std::size_t acknowledged = 0;
  for (const auto& id : ids) {
    if (!a->is_synced("visits", id)) continue;
    ++acknowledged;
    CHECK(state.count({"visits", id}) == 1);
  }
  CHECK(acknowledged >= 25);
  CHECK(log->head() >= acknowledged);
}
