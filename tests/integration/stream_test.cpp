// Streamed pulls (docs/protocol.md, "5 pull"): with k_feature_stream granted, the server
// sends a pull's pages in a row without being asked for each; without it, one page per
// pull. Spoken message by message over the real TLS channel, and through sync_client.

#include "fixture.hpp"

#include <caresync/protocol/codec.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <variant>

using namespace caresync;
using caresync::testing::open_tablet;
using caresync::testing::raw_session;
using caresync::testing::temp_dir;
using caresync::testing::test_server;

namespace {

constexpr std::uint64_t k_records = 50;

void add_visits(store& s, std::uint64_t n) {
  s.transaction([&] {
    for (std::uint64_t i = 0; i < n; ++i) {
      s.create("visits", {{"worker", std::string("marie")}, {"duration_min", static_cast<std::int64_t>(i)}});
    }
  });
}

/// The page that comes next; fails the test on anything else.
wire::changes_page receive_page(raw_session& s) {
  auto m = s.receive();
  REQUIRE(std::holds_alternative<wire::changes_page>(m));
  return std::get<wire::changes_page>(std::move(m));
}

/// The features the server granted in its welcome.
std::uint32_t granted(const raw_session& s) {
  REQUIRE(std::holds_alternative<wire::welcome>(s.welcome()));
  return std::get<wire::welcome>(s.welcome()).features;
}

/// Tablet A (device 0) records `n` visits and pushes them.
std::unique_ptr<store> pushed_visits(const temp_dir& dir, test_server& server, std::uint64_t n) {
  auto a = open_tablet(dir, "a");
  add_visits(*a, n);
  REQUIRE(sync_client(*a, server.options(0)).sync().pushed == n);
  return a;
}

/// After the last answer expected, a ping's pong must come next: nothing unasked is
/// on the way.
void expect_nothing_more(raw_session& s) {
  s.send(wire::ping{77});
  const auto m = s.receive();
  REQUIRE(std::holds_alternative<wire::pong>(m));
  CHECK(std::get<wire::pong>(m).nonce == 77);
}

}  // namespace

TEST_CASE("a pull answered as a stream sends every page unasked, in order, and stops at the end", "[sync][stream]") {
  temp_dir dir;
  test_server server(dir);
  const auto a = pushed_visits(dir, server, k_records);

  raw_session s(server.options(1), 0x5eed, wire::k_feature_stream);
  REQUIRE((granted(s) & wire::k_feature_stream) != 0);
  s.send(wire::pull{0, 10, 0, {}, 0});
  std::uint64_t cursor = 0, items = 0;
  int pages = 0;
  for (;;) {
    const auto page = receive_page(s);
    ++pages;
    REQUIRE(page.scope_epoch == 0);
    for (const auto& item : page.items) {
      CHECK(item.seq == cursor + 1);  // contiguous: no page lost, none sent twice
      cursor = item.seq;
      ++items;
    }
    CHECK(page.next_cursor == cursor);
    if (!page.more) break;
    REQUIRE(pages < 20);
  }
  CHECK(pages == 5);
  CHECK(items == k_records);
  expect_nothing_more(s);

  // A pull after the stream ended is answered, as a stream again, from its cursor.
  s.send(wire::pull{30, 10, 0, {}, 0});
  CHECK(receive_page(s).next_cursor == 40);
  CHECK(!receive_page(s).more);
  expect_nothing_more(s);
}

TEST_CASE("without the stream feature a pull is answered by one page", "[sync][stream]") {
  temp_dir dir;
  test_server server(dir);
  const auto a = pushed_visits(dir, server, k_records);

  raw_session s(server.options(1), 0x5eed, 0);
  CHECK((granted(s) & wire::k_feature_stream) == 0);
  s.send(wire::pull{0, 10, 0, {}, 0});
  const auto page = receive_page(s);
  CHECK(page.items.size() == 10);
  CHECK(page.more);
  expect_nothing_more(s);
}

TEST_CASE("a sync with streamed pulls gets what one without gets, asking once", "[sync][stream]") {
  temp_dir dir;
  test_server server(dir);
  const auto a = pushed_visits(dir, server, 1000);

  auto b = open_tablet(dir, "b");
  auto streamed = server.options(1);
  streamed.pull_page_changes = 100;
  streamed.size_to_link = false;  // one stream to the end (sized to the link, it asks every 8 pages)
  const auto rb = sync_client(*b, streamed).sync();
  auto c = open_tablet(dir, "c");
  auto asked = server.options(2);
  asked.pull_page_changes = 100;
  asked.stream_pulls = false;
  asked.size_to_link = false;
  const auto rc = sync_client(*c, asked).sync();

  CHECK(rb.pulled == 1000);
  CHECK(rc.pulled == 1000);
  CHECK(rb.pages == 10);
  CHECK(rc.pages == 10);
  CHECK(b->state_digest() == a->state_digest());
  CHECK(c->state_digest() == a->state_digest());
  // One pull where the other sent ten (bytes_sent counts frames; a pull's is 19 bytes).
  CHECK(rb.bytes_sent + 9 * 15 < rc.bytes_sent);
}
