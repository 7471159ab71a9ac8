// The admin listener over real HTTP: /healthz and /metrics answer while devices sync,
// and the counters say what happened. Never a token or a record's contents.

#include "fixture.hpp"

#include <catch2/catch.hpp>
#include <httplib.h>

#include <atomic>
#include <map>
#include <sstream>
#include <string>
#include <thread>

using namespace caresync;
using caresync::testing::open_tablet;
using caresync::testing::temp_dir;
using caresync::testing::test_server;

namespace {

/// The samples of a Prometheus text page: "name{labels}" -> value.
std::map<std::string, double> parse_metrics(const std::string& text) {
  std::map<std::string, double> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const auto space = line.rfind(' ');
    out[line.substr(0, space)] = std::stod(line.substr(space + 1));
  }
  return out;
}

}  // namespace

TEST_CASE("/healthz and /metrics answer over HTTP while devices sync", "[admin]") {
  temp_dir dir;
  test_server server(dir);
  server.config().admin_enabled = true;
  server.config().admin_port = 0;
  server.config().max_value_bytes = 1000;
  server.restart();
  REQUIRE(server.get().admin_port() != 0);
  httplib::Client http("127.0.0.1", server.get().admin_port());

  auto a = open_tablet(dir, "a");
  auto b = open_tablet(dir, "b");
  a->transaction([&] {
    for (int i = 0; i < 300; ++i) a->create("visits", {{"note", std::string("secret words of visit ") + std::to_string(i)}});
    a->create("visits", {{"note", std::string(2000, 'x')}});  // over the limit: refused
  });

  // Syncs run on another thread while the listener is asked.
  std::atomic<bool> done{false};
  std::thread syncing([&] {
    auto o = server.options(0);
    o.push_batch_changes = 50;
    sync_client(*a, o).sync();
    sync_client(*b, server.options(1)).sync();
    done = true;
  });
  int answered = 0;
  while (!done) {
    const auto health = http.Get("/healthz");
    REQUIRE(health);
    CHECK(health->status == 200);
    CHECK(health->body == "ok\n");
    const auto metrics = http.Get("/metrics");
    REQUIRE(metrics);
    CHECK(metrics->status == 200);
    ++answered;
  }
  syncing.join();
  CHECK(answered > 0);

  const auto page = http.Get("/metrics");
  REQUIRE(page);
  CHECK(page->get_header_value("Content-Type").rfind("text/plain", 0) == 0);
  const auto m = parse_metrics(page->body);
  CHECK(m.at("caresync_sessions_total{result=\"accepted\"}") == 2);
  CHECK(m.at("caresync_changes_in_total") == 300);
  CHECK(m.at("caresync_changes_refused_total") == 1);
  CHECK(m.at("caresync_changes_out_total") == 300);
  CHECK(m.at("caresync_push_seconds_count") == 7);  // 301 changes in batches of 50
  CHECK(m.at("caresync_push_seconds_bucket{le=\"+Inf\"}") == 7);
  CHECK(m.at("caresync_push_seconds_bucket{le=\"5\"}") <= 7);
  CHECK(m.at("caresync_bytes_total{direction=\"in\"}") > 0);
  CHECK(m.at("caresync_log_head") == 300);
  CHECK(m.at("caresync_store_bytes") > 0);
  CHECK(m.at("caresync_errors_total{code=\"auth_failed\"}") == 0);
  CHECK(page->body.find("secret words") == std::string::npos);
  CHECK(page->body.find(test_server::token(0)) == std::string::npos);

  // A refused device shows up as an error by code.
  auto wrong = server.options(0);
  wrong.token = "not-the-token";
  CHECK_THROWS(sync_client(*a, wrong).sync());
  CHECK(parse_metrics(http.Get("/metrics")->body).at("caresync_errors_total{code=\"auth_failed\"}") == 1);

  CHECK(http.Get("/nothing-here")->status == 404);
  server.stop();
  CHECK_FALSE(http.Get("/healthz"));  // the listener stops with the server
}
