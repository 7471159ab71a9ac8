// What an outside security audit of the server found (issue 20), each over the real TLS
// server on loopback: one device's token cannot pin the server's memory, guesses are
// throttled and summed up in the log, the admin listener stays responsive and refuses a
// network address without a token, an unauthenticated peer is cut at handshake_timeout,
// TLS sessions carry no tickets, health data files are their owner's alone, and a pull
// cursor past 2^63 reads nothing.

#include "../support/server_process.hpp"
#include "fixture.hpp"
#include "raw_client.hpp"

#include <caresync/protocol/errors.hpp>
#include <caresync/server/enrollment.hpp>

#include <asio/read.hpp>
#include <asio/write.hpp>
#include <catch2/catch.hpp>
#include <httplib.h>
#include <openssl/ssl.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <latch>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <sys/stat.h>

using namespace caresync;
using namespace std::chrono_literals;
using caresync::testing::frame_header;
using caresync::testing::open_tablet;
using caresync::testing::raw_client;
using caresync::testing::server_process;
using caresync::testing::temp_dir;
using caresync::testing::test_server;
using caresync::testing::write_server_config;
using steady = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

#if defined(__SANITIZE_ADDRESS__)
// AddressSanitizer keeps freed memory in quarantine (256 MB by default) and adds shadow
// memory: the server's RSS then says nothing about what it holds. The bound is checked
// in the plain build; the sanitized one checks the rest.
constexpr bool k_rss_meaningful = false;
#else
constexpr bool k_rss_meaningful = true;
#endif

/// The resident memory of process `pid` in bytes (VmRSS). Throws std::runtime_error.
std::uint64_t rss_bytes(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  throw std::runtime_error("cannot read VmRSS of " + std::to_string(pid));
}

/// How one attacking session ended.
struct flood_session {
  bool welcomed = false;
  bool cut = false;            ///< the server had ended the connection when the flood was over
  std::uint64_t sent = 0;      ///< payload bytes the server took
};

/// Device `device`'s session from `from`: hello, then a push frame announcing `announce`
/// bytes of which `send` are sent, as fast as the server reads them. A write the server
/// does not take within 2 s (it stopped reading) ends the sending.
void flood(std::uint16_t port, const std::string& from, int device, std::uint32_t announce, std::uint64_t send,
           flood_session& out, raw_client*& keep) {
  auto* c = new raw_client(port, from);
  keep = c;
  if (!c->handshake()) return;
  const auto welcome = c->hello(device);
  out.welcomed = welcome && std::holds_alternative<wire::welcome>(*welcome);
  if (!out.welcomed) return;
  if (!c->send(frame_header(announce, wire::message_type::push))) return;
  const wire::bytes chunk(256u << 10, 0x42);
  while (out.sent < send) {
    try {
      if (!c->send(chunk, 2s)) return;
    } catch (const std::runtime_error&) {
      return;  // pushed back: the server stopped reading
    }
    out.sent += chunk.size();
  }
}

/// Runs `sessions` floods at once (device of session i: `device_of(i)`) against the
/// server process `p`, keeps them open while `meanwhile` runs, and returns the largest
/// RSS growth seen over `baseline`.
template <class DeviceOf, class Meanwhile>
std::uint64_t flood_and_measure(server_process& p, int sessions, DeviceOf device_of, std::vector<flood_session>& out,
                                Meanwhile meanwhile) {
  const auto baseline = rss_bytes(p.pid());
  out.assign(static_cast<std::size_t>(sessions), {});
  std::vector<raw_client*> clients(static_cast<std::size_t>(sessions), nullptr);
  std::atomic<std::uint64_t> peak{0};
  std::atomic<bool> sampling{true};
  std::thread sampler([&] {
    while (sampling) {
      try {
        const auto now = rss_bytes(p.pid());
        if (now > peak) peak = now;
      } catch (const std::exception&) {
        return;
      }
      std::this_thread::sleep_for(50ms);
    }
  });
  {
    std::vector<std::jthread> threads;
    for (int i = 0; i < sessions; ++i) {
      threads.emplace_back([&, i] {
        try {
          flood(p.port(), "127.0.0.31", device_of(i), (16u << 20) - 64, 15u << 20, out[static_cast<std::size_t>(i)],
                clients[static_cast<std::size_t>(i)]);
        } catch (const std::exception&) {
          // A connection the server refused or cut: counted as not welcomed or cut.
        }
      });
      std::this_thread::sleep_for(20ms);  // one after another: the newest is the last
    }
  }
  meanwhile();
  sampling = false;
  sampler.join();
  for (std::size_t i = 0; i < clients.size(); ++i) {
    if (clients[i] && !clients[i]->still_open()) out[i].cut = true;
    delete clients[i];
  }
  return peak > baseline ? peak - baseline : 0;
}

/// The lines of `log` that contain `needle`.
int count_lines(const std::string& log, const std::string& needle) {
  std::istringstream in(log);
  int n = 0;
  for (std::string line; std::getline(in, line);) n += line.find(needle) != std::string::npos;
  return n;
}

/// Device `device`'s hello with a wrong token from `from`: "answered" with auth_failed,
/// "shut out" (closed at once, no TLS), or "other".
std::string wrong_token_hello(std::uint16_t port, const std::string& from, const std::string& device) try {
  raw_client c(port, from);
  if (!c.handshake()) return "shut out";
  wire::hello h;
  h.device_id = device;
  h.token = "not-the-token";
  h.node = 0x5151;
  if (!c.send(wire::make_frame(h))) return "shut out";
  const auto answer = c.receive(10s);
  if (!answer) return "shut out";
  const auto* e = std::get_if<wire::error>(&*answer);
  if (!e) return "other";
  if (e->code == static_cast<std::uint16_t>(protocol_errc::auth_failed)) return "answered";
  if (e->code == static_cast<std::uint16_t>(protocol_errc::server_busy)) return "busy";
  return "other";
} catch (const std::system_error&) {
  return "shut out";  // reset by the server while connecting: closed at accept
}

mode_t mode_of(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw std::runtime_error("cannot stat " + path);
  return st.st_mode & 0777;
}

/// Runs `f` with the process's umask set to `mask`, then puts the old one back.
template <class F>
void with_umask(mode_t mask, F f) {
  const mode_t old = ::umask(mask);
  try {
    f();
  } catch (...) {
    ::umask(old);
    throw;
  }
  ::umask(old);
}

}  // namespace

TEST_CASE("sessions announcing 16 MiB pushes keep the server's memory bounded, and a tablet still syncs",
          "[security][audit][memory]") {
  temp_dir dir;
  test_server pki_holder(dir, 0);  // for its certificate; the server under test is the binary
  pki_holder.stop();
  auto c = pki_holder.config();
  c.database_file = dir.file("flood.db");
  for (int i = 0; i < 24; ++i) c.devices.push_back({test_server::device(i), server::hash_token(test_server::token(i))});
  const auto config = dir.file("flood.toml");
  write_server_config(config, c);
  server_process p(CARESYNC_SERVER_BINARY, config);
  // The bound: limits.max_frame_bytes_in_flight (64 MiB) and the first 64 KiB of each
  // frame, with room for TLS buffers, the allocator and the store's cache.
  constexpr std::uint64_t k_bound = 120u << 20;

  const auto tablet_syncs = [&] {
    temp_dir tablet_dir;
    auto tablet = open_tablet(tablet_dir, "tablet");
    (void)tablet->create("visits", {{"note", std::string("a visit")}});
    auto o = pki_holder.options(20, p.port());
    o.io_timeout = 20s;
    CHECK_NOTHROW(sync_client(*tablet, o).sync());
    CHECK(tablet->outbox_size() == 0);
  };

  SECTION("16 sessions of one device: only the newest 4 are kept") {
    std::vector<flood_session> sessions;
    const auto grew = flood_and_measure(p, 16, [](int) { return 0; }, sessions, tablet_syncs);
    int welcomed = 0, cut = 0;
    for (const auto& s : sessions) {
      welcomed += s.welcomed;
      cut += s.cut;
    }
    INFO("RSS grew by " << grew / 1048576 << " MiB; " << welcomed << " welcomed, " << cut << " cut");
    CHECK(welcomed == 16);
    CHECK(cut >= 12);  // superseded by newer sessions of the same device
    if (k_rss_meaningful) CHECK(grew < k_bound);
    CHECK(count_lines(p.log(), "superseded by a newer session") >= 12);
  }
  SECTION("16 sessions of 16 devices: the frame budget is shared") {
    std::vector<flood_session> sessions;
    const auto grew = flood_and_measure(p, 16, [](int i) { return i; }, sessions, tablet_syncs);
    int welcomed = 0;
    for (const auto& s : sessions) welcomed += s.welcomed;
    INFO("RSS grew by " << grew / 1048576 << " MiB; 16 x 15 MiB were offered");
    CHECK(welcomed == 16);
    if (k_rss_meaningful) CHECK(grew < k_bound);
  }
}

TEST_CASE("failed guesses from one address are throttled and summed up in one log line per interval",
          "[security][audit][guess]") {
  temp_dir dir;
  test_server pki_holder(dir, 0);
  pki_holder.stop();
  auto c = pki_holder.config();
  c.database_file = dir.file("guess.db");
  for (int i = 0; i < 8; ++i) c.devices.push_back({test_server::device(i), server::hash_token(test_server::token(i))});
  const auto config = dir.file("guess.toml");
  write_server_config(config, c);
  server_process p(CARESYNC_SERVER_BINARY, config);

  // 3 s of guesses as fast as one client makes them, from one address.
  int answered = 0, shut_out = 0, other = 0;
  const auto start = steady::now();
  while (steady::now() - start < 3s) {
    const auto r = wrong_token_hello(p.port(), "127.0.0.41", "no-such-device");
    answered += r == "answered";
    shut_out += r == "shut out";
    other += r != "answered" && r != "shut out";
  }
  const double seconds = std::chrono::duration<double>(steady::now() - start).count();
  INFO(answered << " guesses answered, " << shut_out << " shut out, " << other << " other, in " << seconds << " s");
  CHECK(other == 0);
  CHECK(shut_out > 0);
  CHECK(answered <= 10 + static_cast<int>(10 * seconds) + 2);  // the free ones, then at most ~10 a second

  // Another address is not affected: a tablet there syncs at once.
  {
    temp_dir tablet_dir;
    auto tablet = open_tablet(tablet_dir, "tablet");
    (void)tablet->create("visits", {{"note", std::string("a visit")}});
    CHECK_NOTHROW(sync_client(*tablet, pki_holder.options(1, p.port())).sync());
    CHECK(tablet->outbox_size() == 0);
  }

  // A device id guessed at from many addresses is shut out too; its own tablet is told
  // to come back later (transient), and gets in once the backoff has passed.
  int device_busy = 0;
  for (int i = 0; i < 14; ++i) {
    device_busy += wrong_token_hello(p.port(), "127.0.0." + std::to_string(50 + i), test_server::device(2)) == "busy";
  }
  CHECK(device_busy >= 3);
  std::this_thread::sleep_for(1500ms);
  {
    temp_dir tablet_dir;
    auto tablet = open_tablet(tablet_dir, "tablet");
    CHECK_NOTHROW(sync_client(*tablet, pki_holder.options(2, p.port())).sync());
  }

  // The log: no line per failed attempt, one summary per address per 10 s.
  std::this_thread::sleep_for(200ms);
  const auto log = p.log();
  const int failed_sessions = count_lines(log, "\"outcome\":\"auth refused\"");
  const int summaries_41 = count_lines(log, "\"event\":\"auth_failures\",\"peer\":\"127.0.0.41\"");
  INFO(log.substr(0, 4000));
  CHECK(failed_sessions == 0);
  CHECK(summaries_41 >= 1);
  CHECK(summaries_41 <= 2);  // the first at once, at most one more in 3 s (10 s interval)
  CHECK(log.find("not-the-token") == std::string::npos);
  CHECK(log.find("\"device_claimed\":\"no-such-device\"") != std::string::npos);
}

TEST_CASE("an unauthenticated peer is cut handshake_timeout after it connects, TLS handshake included",
          "[security][audit]") {
  temp_dir dir;
  test_server server(dir, 2);
  server.config().handshake_timeout = 4s;
  server.restart();
  raw_client c(server.port(), "127.0.0.61");
  std::this_thread::sleep_for(3s);  // most of the timeout spent before the TLS handshake
  REQUIRE(c.handshake());
  REQUIRE(c.wait_closed(20s));
  INFO("cut after " << c.lasted().count() << " ms");
  CHECK(c.lasted() < 5500ms);  // twice armed, it was 3 s + 4 s
}

TEST_CASE("a successful enrollment is counted as enrolled, not refused", "[security][audit][metrics]") {
  temp_dir dir;
  test_server server(dir, 1);
  server.config().admin_enabled = true;
  server.config().admin_port = 0;
  server.restart();
  auto& store = server.get().store();
  store.add_user(server::user_record{"jana.novakova", "Jana Nováková", "field_worker", "kraj/orp-a/team-1", 1});
  const auto issued = server::issue_enrollment_code(store, "jana.novakova", std::chrono::hours(1), system_time_ms());
  auto o = server.options(0);
  o.device_id.clear();
  o.token.clear();
  (void)enroll(o, issued.code);
  httplib::Client admin("127.0.0.1", server.get().admin_port());
  const auto res = admin.Get("/metrics");
  REQUIRE(res);
  CHECK(res->body.find("caresync_sessions_total{result=\"enrolled\"} 1") != std::string::npos);
  CHECK(res->body.find("caresync_sessions_total{result=\"refused\"} 0") != std::string::npos);
}

TEST_CASE("the admin listener answers /healthz while idle connections are held, and wants a token off loopback",
          "[security][audit][admin]") {
  temp_dir dir;
  test_server server(dir, 1);
  server.config().admin_enabled = true;
  server.config().admin_port = 0;
  server.restart();
  const auto port = server.get().admin_port();

  SECTION("16 idle connections do not keep /healthz waiting") {
    std::vector<std::unique_ptr<raw_client>> idle;
    for (int i = 0; i < 16; ++i) idle.push_back(std::make_unique<raw_client>(port, "127.0.0.71"));
    httplib::Client admin("127.0.0.1", port);
    admin.set_connection_timeout(4, 0);
    admin.set_read_timeout(4, 0);
    const auto started = steady::now();
    const auto res = admin.Get("/healthz");
    INFO("answered after " << std::chrono::duration_cast<milliseconds>(steady::now() - started).count() << " ms");
    REQUIRE(res);
    CHECK(res->status == 200);
  }
  SECTION("a non-loopback admin address needs a bearer token, which then every request carries") {
    auto c = server.config();
    c.admin_listen_address = "0.0.0.0";
    CHECK_THROWS_WITH(server::validate(c), Catch::Contains("bearer_token_file"));
    const auto token_file = dir.file("admin.token");
    {
      std::ofstream(token_file) << "0123456789abcdef0123456789abcdef0123456789\n";
    }
    ::chmod(token_file.c_str(), 0644);
    const auto toml = dir.file("admin.toml");
    std::ofstream(toml) << "certificate_file = \"" << c.certificate_file << "\"\nprivate_key_file = \"" << c.private_key_file
                        << "\"\n[admin]\nenabled = true\nlisten_address = \"0.0.0.0\"\nbearer_token_file = \"" << token_file
                        << "\"\n";
    CHECK_THROWS_WITH(server::load_config(toml), Catch::Contains("chmod 600"));
    ::chmod(token_file.c_str(), 0600);
    const auto loaded = server::load_config(toml);
    CHECK_NOTHROW(server::validate(loaded));
    server.config().admin_bearer_token = loaded.admin_bearer_token;
    server.restart();
    httplib::Client admin("127.0.0.1", server.get().admin_port());
    const auto bare = admin.Get("/metrics");
    REQUIRE(bare);
    CHECK(bare->status == 401);
    CHECK(bare->body.find("caresync_") == std::string::npos);
    const auto wrong = admin.Get("/metrics", {{"Authorization", "Bearer 0123456789abcdef0123456789abcdef0123456788"}});
    REQUIRE(wrong);
    CHECK(wrong->status == 401);
    const auto good = admin.Get("/metrics", {{"Authorization", "Bearer 0123456789abcdef0123456789abcdef0123456789"}});
    REQUIRE(good);
    CHECK(good->status == 200);
    CHECK(good->body.find("caresync_log_head") != std::string::npos);
  }
}

namespace {
std::atomic<int> g_tickets{0};
int count_ticket(SSL*, SSL_SESSION*) {
  ++g_tickets;
  return 0;  // not kept
}
}  // namespace

TEST_CASE("the server issues no TLS session tickets", "[security][audit][tls]") {
  temp_dir dir;
  test_server server(dir, 1);
  asio::io_context io;
  asio::ssl::context tls(asio::ssl::context::tls_client);
  SSL_CTX_set_session_cache_mode(tls.native_handle(), SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(tls.native_handle(), count_ticket);
  for (const int version : {TLS1_3_VERSION, TLS1_2_VERSION}) {
    SSL_CTX_set_max_proto_version(tls.native_handle(), version);
    g_tickets = 0;
    asio::ssl::stream<asio::ip::tcp::socket> s(io, tls);
    s.set_verify_mode(asio::ssl::verify_none);
    s.next_layer().connect({asio::ip::make_address("127.0.0.1"), server.port()});
    s.handshake(asio::ssl::stream_base::client);
    wire::hello h;
    h.device_id = test_server::device(0);
    h.token = test_server::token(0);
    h.node = 0x777;
    const auto frame = wire::make_frame(h);
    asio::write(s, asio::buffer(frame));
    std::array<std::uint8_t, wire::k_frame_header_size> header{};
    asio::read(s, asio::buffer(header));  // tickets, when sent, come before the welcome
    INFO("TLS version " << std::hex << version);
    CHECK(g_tickets == 0);
  }
}

TEST_CASE("health data files are their owner's alone whatever the umask", "[security][audit][files]") {
  temp_dir dir;
  with_umask(022, [&] {
    SECTION("a tablet's store, its -wal and -shm") {
      auto tablet = open_tablet(dir, "tablet");
      (void)tablet->create("visits", {{"note", std::string("a visit")}});
      CHECK(mode_of(dir.file("tablet.db")) == 0600);
      CHECK(mode_of(dir.file("tablet.db-wal")) == 0600);
      CHECK(mode_of(dir.file("tablet.db-shm")) == 0600);
    }
    SECTION("a store made under umask 022 by an older build is made private when opened") {
      { std::ofstream(dir.file("old.db")); }
      ::chmod(dir.file("old.db").c_str(), 0644);
      auto tablet = open_tablet(dir, "old");
      CHECK(mode_of(dir.file("old.db")) == 0600);
    }
    SECTION("the server's database, its backup, and what init writes") {
      {
        auto store = server::open_sqlite_change_store(dir.file("server.db"));
        (void)store->head();
      }
      CHECK(mode_of(dir.file("server.db")) == 0600);
      (void)server::backup_sqlite_store(dir.file("server.db"), dir.file("backup.db"));
      CHECK(mode_of(dir.file("backup.db")) == 0600);
      const auto init_dir = dir.file("etc-caresync");
      const std::string command = std::string("umask 022; '") + CARESYNC_SERVER_BINARY + "' init -d '" + init_dir + "' >/dev/null 2>&1";
      REQUIRE(std::system(command.c_str()) == 0);
      CHECK(mode_of(init_dir) == 0700);
      // The docs say care_rules is on in what init writes; so it is.
      CHECK(server::load_config(init_dir + "/caresync-server.toml").care_rules);
      for (const auto& entry : std::filesystem::directory_iterator(init_dir)) {
        // Certificates are public (the CA's is handed to every tablet); keys and the config are not.
        const auto name = entry.path().filename().string();
        INFO(name);
        if (name.find("cert") == std::string::npos && name != "ca.pem") CHECK((mode_of(entry.path().string()) & 077) == 0);
      }
    }
  });
}

TEST_CASE("a pull cursor past 2^63 reads an empty page, not the whole log", "[security][audit]") {
  temp_dir dir;
  test_server server(dir, 2);
  auto tablet = open_tablet(dir, "tablet");
  for (int i = 0; i < 3; ++i) (void)tablet->create("visits", {{"note", std::string("a visit")}});
  sync_client(*tablet, server.options(0)).sync();
  REQUIRE(tablet->outbox_size() == 0);
  for (const std::uint64_t cursor : {std::uint64_t{1} << 63, (std::uint64_t{1} << 63) + 5, ~std::uint64_t{0}}) {
    wire::pull pull;
    pull.cursor = cursor;
    const auto answer = testing::exchange_raw(server.options(1), 0x99, pull);
    const auto* page = std::get_if<wire::changes_page>(&answer);
    REQUIRE(page);
    CHECK(page->items.empty());
    CHECK(page->next_cursor >= cursor);
    CHECK_FALSE(page->more);
  }
}
