// What docs/protocol.md and docs/operations.md say the reference server does where a
// client could read the page two ways (issue 21), checked on the real server over TLS:
// too many changes in a push, a late hello, the order of the checks for messages a
// client never sends, the push_result accounting of server_only refusals, and which
// sessions the sessions_total counter calls refused.

#include "fixture.hpp"

#include <caresync/protocol/errors.hpp>
#include <caresync/server/enrollment.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

using namespace caresync;
using namespace std::chrono_literals;
using caresync::testing::raw_session;
using caresync::testing::temp_dir;
using caresync::testing::test_server;

namespace {

/// An upsert of record `n` by `node`, writing `fields`, as a device would push it.
change upsert_of(std::uint8_t n, node_id node, std::vector<field_write> fields, std::string collection = "visits") {
  change c;
  c.collection = std::move(collection);
  c.id.bytes[0] = 0x01;
  c.id.bytes[15] = n;
  c.ver = version{hlc_stamp::make(system_time_ms(), n), node};
  c.kind = change_kind::upsert;
  c.fields = std::move(fields);
  return c;
}

std::uint16_t code_of(protocol_errc e) { return static_cast<std::uint16_t>(e); }

}  // namespace

TEST_CASE("protocol.md: a push over max_push_changes is answered by an error, not a push_result", "[protocol][sync]") {
  temp_dir dir;
  test_server server(dir);
  server.config().max_push_changes = 3;
  server.restart();
  raw_session s(server.options(0), 0x77, 0);
  REQUIRE(std::holds_alternative<wire::welcome>(s.welcome()));
  CHECK(std::get<wire::welcome>(s.welcome()).max_push_changes == 3);

  wire::push p;
  p.batch = numbered_batch(1);
  for (std::uint8_t i = 1; i <= 4; ++i) p.changes.push_back(upsert_of(i, 0x77, {{"note", value{std::string("n")}}}));
  const auto answer = s.ask(p);
  REQUIRE(std::holds_alternative<wire::error>(answer));
  CHECK(std::get<wire::error>(answer).code == code_of(protocol_errc::limit_exceeded));
  CHECK(server.get().store().head() == 0);  // nothing of it stored
}

TEST_CASE("protocol.md: a late hello gets a bare close, no error 11", "[protocol][sync]") {
  temp_dir dir;
  test_server server(dir);
  server.config().handshake_timeout = 300ms;
  server.restart();
  const auto before = server.get().stats();
  auto o = server.options(0);
  tls_channel channel(o);
  channel.connect();  // TLS done; no hello follows
  std::this_thread::sleep_for(600ms);
  try {
    const auto m = channel.receive(wire::k_default_max_frame);
    FAIL("the server sent a '" << wire::to_string(wire::type_of(m)) << "' message instead of closing");
  } catch (const caresync::error& e) {
    CHECK(e.code() == make_error_code(network_errc::connection_lost));
  }
  // operations.md: counted neither accepted nor refused.
  const auto after = server.get().stats();
  CHECK(after.sessions_accepted == before.sessions_accepted);
  CHECK(after.sessions_refused == before.sessions_refused);
}

TEST_CASE("protocol.md: a message a client never sends is malformed when it does not decode, else unexpected",
          "[protocol][sync]") {
  temp_dir dir;
  test_server server(dir);
  auto o = server.options(0);

  SECTION("a welcome from the client, well formed: unexpected_message") {
    raw_session s(o, 0x77, 0);
    wire::welcome w;
    w.server_name = "not a server";
    CHECK(std::get<wire::error>(s.ask(w)).code == code_of(protocol_errc::unexpected_message));
  }
  SECTION("a push_result whose bytes do not decode: malformed") {
    tls_channel channel(o);
    channel.connect();
    wire::hello hello;
    hello.device_id = o.device_id;
    hello.token = o.token;
    hello.node = 0x77;
    channel.send(wire::make_frame(hello));
    REQUIRE(std::holds_alternative<wire::welcome>(channel.receive(wire::k_default_max_frame)));
    const std::vector<std::uint8_t> garbage{0x01, 0xff};
    channel.send(wire::make_frame(wire::message_type::push_result, garbage));
    const auto answer = channel.receive(wire::k_default_max_frame);
    REQUIRE(std::holds_alternative<wire::error>(answer));
    CHECK(std::get<wire::error>(answer).code == code_of(protocol_errc::malformed));
  }
  SECTION("hello again: unexpected_message") {
    raw_session s(o, 0x77, 0);
    wire::hello again;
    again.device_id = o.device_id;
    again.token = o.token;
    again.node = 0x77;
    CHECK(std::get<wire::error>(s.ask(again)).code == code_of(protocol_errc::unexpected_message));
  }
}

TEST_CASE("protocol.md: accepted + refusals other than server_only equal the change count", "[protocol][sync]") {
  temp_dir dir;
  test_server server(dir);
  server.config().server_only_fields = {"visits.status"};
  server.restart();
  raw_session s(server.options(0), 0x77, 0);
  REQUIRE(std::holds_alternative<wire::welcome>(s.welcome()));

  wire::push p;
  p.batch = numbered_batch(1);
  p.changes.push_back(upsert_of(1, 0x77, {{"note", value{std::string("fine")}}}));
  p.changes.push_back(upsert_of(2, 0x77, {{"note", value{std::string("x")}}, {"status", value{std::string("done")}}}));
  p.changes.push_back(upsert_of(3, 0x77, {{"cs_bad", value{std::string("reserved name")}}}));
  const auto answer = s.ask(p);
  REQUIRE(std::holds_alternative<wire::push_result>(answer));
  const auto& r = std::get<wire::push_result>(answer);
  REQUIRE(r.refused.size() == 2);
  CHECK(r.refused[0].index == 1);
  CHECK(r.refused[0].code == code_of(protocol_errc::server_only));
  CHECK(r.refused[1].index == 2);
  CHECK(r.refused[1].code == code_of(protocol_errc::limit_exceeded));
  CHECK(r.accepted == 2);  // changes 0 and 1 (without status) are stored
  CHECK(r.accepted + r.refused.size() == p.changes.size() + 1);
  CHECK(r.last_seq - r.first_seq + 1 == r.accepted);
}

TEST_CASE("operations.md: a successful enrollment counts as enrolled, not refused", "[protocol][enrollment]") {
  temp_dir dir;
  test_server server(dir);
  auto& store = server.get().store();
  store.add_user(server::user_record{"jana.novakova", "Jana Nováková", "field_worker", "kraj", 1});
  const auto issued = server::issue_enrollment_code(store, "jana.novakova", std::chrono::hours(1), system_time_ms());
  auto o = server.options(0);
  o.device_id.clear();
  o.token.clear();
  const auto before = server.get().stats();
  const auto me = enroll(o, issued.code);
  CHECK_FALSE(me.device_id.empty());
  const auto after = server.get().stats();
  CHECK(after.sessions_refused == before.sessions_refused);
  CHECK(after.sessions_accepted == before.sessions_accepted);
  CHECK(after.sessions_enrolled == before.sessions_enrolled + 1);
}
