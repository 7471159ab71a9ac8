// The first request sent with the hello (docs/protocol.md, "The conversation"): a
// reconnecting client with nothing to push asks for its first page before the welcome
// arrives, a round trip sooner, and a refusal still reaches it.

#include "../support/fault_proxy.hpp"
#include "../support/sql_probe.hpp"
#include "fixture.hpp"

#include <caresync/protocol/errors.hpp>
#include <caresync/server/enrollment.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <functional>
#include <random>
#include <string>

using namespace caresync;
using namespace std::chrono_literals;
using caresync::testing::fault_proxy;
using caresync::testing::link_faults;
using caresync::testing::open_tablet;
using caresync::testing::temp_dir;
using caresync::testing::test_server;

namespace {

using clock_type = std::chrono::steady_clock;

double seconds_of(const std::function<void()>& f) {
  const auto started = clock_type::now();
  f();
  return std::chrono::duration<double>(clock_type::now() - started).count();
}

/// A sync the link cuts: it must fail, and transiently.
void sync_is_cut(sync_client& client) {
  bool cut = false;
  try {
    client.sync();
  } catch (const caresync::error& e) {
    INFO(e.what());
    REQUIRE(is_transient(e.code()));
    cut = true;
  }
  REQUIRE(cut);
}

}  // namespace

TEST_CASE("a client whose last connection was welcomed sends its first pull with the hello, a round trip sooner",
          "[sync][link]") {
  temp_dir dir;
  test_server server(dir);
  auto office = open_tablet(dir, "office");
  for (int i = 0; i < 20; ++i) office->create("visits", {{"note", "visit " + std::to_string(i)}});
  sync_client(*office, server.options(0)).sync();

  // A link of long delay and no bandwidth limit: a sync with nothing to pull costs round
  // trips only (the TLS handshake, the hello, the pull, the close).
  link_faults slow;
  slow.delay = 500ms;
  fault_proxy proxy(server.port(), slow);
  auto tablet = open_tablet(dir, "tablet");
  auto o = server.options(1, proxy.port());
  sync_client(*tablet, o).sync();  // pulls the 20 visits
  REQUIRE(tablet->count("visits") == 20);

  // A new client knows nothing of the server: it waits for the welcome. Its second sync
  // follows a welcomed connection: the pull goes with the hello.
  sync_client client(*tablet, o);
  const double waiting = seconds_of([&] { client.sync(); });
  const double early = seconds_of([&] { client.sync(); });
  INFO("first sync " << waiting << " s, second " << early << " s, round trip 1 s");
  CHECK(waiting - early > 0.5);  // a round trip (1 s) saved; half of one is noise's margin

  // Both left the tablet where the server is.
  CHECK(tablet->state_digest() == server.digest());
  CHECK(tablet->cursor() == server.get().store().head());

  // With something to push the push goes first, after the welcome, as before.
  tablet->create("visits", {{"note", std::string("written offline")}});
  const auto pushed = client.sync();
  CHECK(pushed.pushed == 1);
  CHECK(tablet->state_digest() == server.digest());
}

TEST_CASE("a priority phase cut mid-way resumes with its next page sent with the hello", "[sync][link][prime]") {
  temp_dir dir;
  test_server server(dir);
  auto office = open_tablet(dir, "office");
  std::mt19937 rng(7);  // notes of random letters: pages that do not shrink to nothing
  office->transaction([&] {
    for (int i = 0; i < 400; ++i) {
      std::string note(300, ' ');
      for (auto& c : note) c = static_cast<char>('a' + rng() % 26);
      office->create("visits", {{"note", note}, {"date", std::string(i % 2 ? "2026-11-30" : "2026-11-01")}});
    }
  });
  sync_client(*office, server.options(0)).sync();

  // Cut the first connection once a few pages of the phase came down; the next
  // connections are not cut.
  link_faults cut_early;
  cut_early.cut_after_down_bytes = 12000;
  fault_proxy proxy(server.port(), cut_early);
  auto tablet = open_tablet(dir, "tablet");
  auto o = server.options(1, proxy.port());
  o.priority = {priority_tier::at_least("visits", "date", std::string("2026-11-15"))};
  o.pull_page_changes = 20;  // many pages, so the cut lands inside the phase
  o.retry.max_attempts = 1;
  sync_client client(*tablet, o);
  sync_is_cut(client);
  const auto primed_before = tablet->count("visits");
  CHECK(primed_before > 0);
  CHECK(primed_before < 200);  // cut inside the phase
  proxy.set_faults({});
  const auto rest = client.sync();
  CHECK(rest.primed + primed_before == 200);
  CHECK(tablet->count("visits") == 400);
  CHECK(tablet->state_digest() == server.digest());
  CHECK(tablet->cursor() == server.get().store().head());
}

TEST_CASE("a device revoked after a welcomed connection hears of it and is wiped, though it asked for a page early",
          "[sync][security][enrollment]") {
  temp_dir dir;
  test_server server(dir);
  auto& directory = server.get().store();
  const server::user_record jana{"jana.novakova", "Jana Nováková", "field_worker", "kraj/orp-benesov/team-2", 1};
  directory.add_user(jana);
  auto o = server.options(0);
  o.device_id.clear();
  o.token.clear();
  const auto code = server::issue_enrollment_code(directory, jana.user_id, std::chrono::hours(1), system_time_ms()).code;
  const auto got = enroll(o, code);
  o.device_id = got.device_id;
  o.token = got.token;
  o.retry.max_attempts = 1;  // each call one connection: the test sees each

  auto office = open_tablet(dir, "office");
  office->create("visits", {{"note", std::string("in the region")}, {"org_unit", jana.org_unit}});
  sync_client(*office, server.options(0)).sync();

  auto tablet = open_tablet(dir, "lost");
  sync_client client(*tablet, o);
  client.sync();
  REQUIRE(tablet->count("visits") == 1);

  REQUIRE(directory.revoke_device(got.device_id, system_time_ms()));
  // The first call sends its pull with the hello; the server refuses the hello and
  // closes with the pull unread, which may reset the connection before the error is
  // read: then the call fails as a lost connection, and the next one, which waits for
  // the welcome, hears the refusal. Within two calls the device is told and wiped.
  std::error_code last;
  for (int call = 0; call < 2 && last != make_error_code(protocol_errc::device_revoked); ++call) {
    try {
      client.sync();
      FAIL("a revoked device synced");
    } catch (const caresync::error& e) {
      last = e.code();
      INFO(e.what());
      CHECK((e.code() == make_error_code(protocol_errc::device_revoked) || e.code() == network_errc::connection_lost));
    }
  }
  CHECK(last == make_error_code(protocol_errc::device_revoked));
  CHECK(tablet->count("visits") == 0);
}

TEST_CASE("a push cut mid-way resends its unacknowledged batch with the hello, and the server stores it once",
          "[sync][link][faults]") {
  temp_dir dir;
  test_server server(dir);
  auto tablet = open_tablet(dir, "tablet");
  std::mt19937 rng(11);
  tablet->transaction([&] {
    for (int i = 0; i < 300; ++i) {
      std::string note(400, ' ');
      for (auto& c : note) c = static_cast<char>('a' + rng() % 26);
      tablet->create("visits", {{"note", note}});
    }
  });

  // Cut the first connection inside the push (its batches are ~50 changes each).
  link_faults cut_early;
  cut_early.cut_after_bytes = 40'000;
  fault_proxy proxy(server.port(), cut_early);
  auto o = server.options(0, proxy.port());
  o.push_batch_changes = 50;
  o.retry.max_attempts = 1;
  sync_client client(*tablet, o);
  sync_is_cut(client);
  const auto left = tablet->outbox_size();
  CHECK(left > 0);
  CHECK(left < 300);
  proxy.set_faults({});
  const auto rest = client.sync();
  CHECK(rest.pushed <= left);  // a batch the server had is answered, not counted again
  CHECK(tablet->outbox_size() == 0);
  CHECK(caresync::testing::sql_int(server.config().database_file, "SELECT count(*) FROM changes") == 300);
  CHECK(caresync::testing::duplicates_in_log(server.config().database_file) == 0);
  CHECK(tablet->state_digest() == server.digest());
}
