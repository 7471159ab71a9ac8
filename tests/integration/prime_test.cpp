// Prioritised initial sync over the real TLS server: a new tablet receives its active
// clients and this week's visits first, can read them while the rest arrives, and gets
// every change exactly once, also when the priority phase is cut and resumed.

#include "../support/fault_proxy.hpp"
#include "../support/sql_probe.hpp"
#include "fixture.hpp"

#include <caresync/protocol/errors.hpp>

#include <catch2/catch.hpp>

#include <ctime>
#include <string>
#include <vector>

using namespace caresync;
using caresync::testing::fault_proxy;
using caresync::testing::link_faults;
using caresync::testing::sql_int;
using caresync::testing::temp_dir;
using caresync::testing::test_server;

namespace {

/// Clients with a status, visits with an ISO date and a note kept on conflict.
schema field_schema() {
  field_def note{"note", value_kind::text};
  note.policy = merge_policy::keep_both;
  return schema{{
      collection_def{"clients", {{"name", value_kind::text}, {"status", value_kind::text}}},
      collection_def{"visits", {{"client_id", value_kind::text}, {"date", value_kind::text}, note}},
  }};
}

std::unique_ptr<store> tablet(const temp_dir& dir, const std::string& name) {
  return store::open(store_options{dir.file(name + ".db"), field_schema(), durability::normal});
}

constexpr const char* k_week_start = "2026-11-16";

/// What the region's log holds, and what a new tablet should get first.
struct region {
  std::size_t active_clients = 0;  ///< status "active" now
  std::size_t clients = 0;
  std::size_t this_week = 0;       ///< visits dated k_week_start or later
  std::size_t visits = 0;
  record_id contested;             ///< a visit of this week whose note conflict was resolved
};

/// Tablet A records 300 clients and 1,500 visits over twenty weeks; some clients change
/// status after creation, so only the merged state says who is active. Tablet C edits
/// one note of this week concurrently with A, and A resolves the conflict: the log then
/// holds two notes superseded by a third, which must never be delivered again after it.
region fill(test_server& server, store& a, store& c) {
  region r;
  std::vector<record_id> clients;
  for (int i = 0; i < 300; ++i) {
    const bool active_at_first = i % 3 == 0;
    clients.push_back(a.create("clients", {{"name", "Klient " + std::to_string(i)},
                                           {"status", std::string(active_at_first ? "active" : "closed")}}));
  }
  // Every 10th client changes status later: the active ones close, the others become active.
  for (int i = 0; i < 300; i += 10) {
    a.update("clients", clients[static_cast<std::size_t>(i)], {{"status", std::string(i % 3 == 0 ? "closed" : "active")}});
  }
  for (int i = 0; i < 300; ++i) {
    const bool active_at_first = i % 3 == 0;
    const bool changed = i % 10 == 0;
    if (active_at_first != changed) ++r.active_clients;
  }
  r.clients = clients.size();
  for (int i = 0; i < 1500; ++i) {
    // Ten visits a day from 2026-06-25 to 2026-11-21.
    std::tm day{};
    day.tm_year = 2026 - 1900;
    day.tm_mon = 5;
    day.tm_mday = 25 + i / 10;
    const std::time_t t = timegm(&day);
    char date[16];
    std::strftime(date, sizeof date, "%Y-%m-%d", std::gmtime(&t));
    const auto id = a.create("visits", {{"client_id", clients[static_cast<std::size_t>(i % 300)].to_string()},
                                        {"date", std::string(date)},
                                        {"note", "note " + std::to_string(i)}});
    if (std::string(date) >= k_week_start) {
      ++r.this_week;
      r.contested = id;
    }
  }
  r.visits = 1500;
  REQUIRE(r.this_week == 60);  // 2026-11-16 .. 2026-11-21
  sync_client(a, server.options(0)).sync();
  sync_client(c, server.options(2)).sync();
  c.update("visits", r.contested, {{"note", std::string("note from the coordinator")}});
  a.update("visits", r.contested, {{"note", std::string("note from the worker")}});
  sync_client(a, server.options(0)).sync();
  sync_client(c, server.options(2)).sync();
  sync_client(a, server.options(0)).sync();
  REQUIRE(a.conflict_count() == 1);
  REQUIRE(c.conflict_count() == 1);
  a.resolve_conflict("visits", r.contested, "note", std::string("both notes, merged"));
  sync_client(a, server.options(0)).sync();
  sync_client(c, server.options(2)).sync();
  REQUIRE(c.conflict_count() == 0);
  return r;
}

std::vector<priority_tier> active_clients_and_this_week() {
  return {priority_tier::equals("clients", "status", std::string("active")),
          priority_tier::at_least("visits", "date", std::string(k_week_start))};
}

std::int64_t log_size(test_server& server) { return sql_int(server.config().database_file, "SELECT count(*) FROM changes"); }

}  // namespace

TEST_CASE("a new tablet gets its active clients and this week's visits first and each change once",
          "[sync][prime]") {
  temp_dir dir;
  test_server server(dir);
  auto a = tablet(dir, "a");
  auto c = tablet(dir, "c");
  const auto r = fill(server, *a, *c);
  const auto in_log = log_size(server);

  auto b = tablet(dir, "b");
  auto o = server.options(1);
  o.priority = active_clients_and_this_week();
  o.pull_page_changes = 100;  // several pages after the priority phase
  const std::string b_file = dir.file("b.db");
  int ready_reports = 0;
  std::int64_t active_when_ready = -1, week_when_ready = -1, visits_when_ready = -1, clients_when_ready = -1;
  std::uint64_t last_bytes = 0, last_pulled = 0;
  bool monotonic = true;
  sync_progress last;
  o.on_progress = [&](const sync_progress& p) {
    monotonic = monotonic && p.pulled_bytes >= last_bytes && p.pulled >= last_pulled && p.to_pull >= p.pulled &&
                p.to_pull_bytes >= p.pulled_bytes;
    last_bytes = p.pulled_bytes;
    last_pulled = p.pulled;
    last = p;
    if (p.priority_ready && ready_reports++ == 0) {
      // What the app sees at that moment, with plain SQL on its own connection.
      active_when_ready = sql_int(b_file, "SELECT count(*) FROM clients WHERE status = 'active'");
      clients_when_ready = sql_int(b_file, "SELECT count(*) FROM clients");
      week_when_ready = sql_int(b_file, std::string("SELECT count(*) FROM visits WHERE date >= '") + k_week_start + "'");
      visits_when_ready = sql_int(b_file, "SELECT count(*) FROM visits");
    }
  };
  const auto report = sync_client(*b, o).sync();

  // Usable before the rest arrived: every active client and every visit of this week,
  // and nothing else yet.
  CHECK(ready_reports >= 1);
  CHECK(active_when_ready == static_cast<std::int64_t>(r.active_clients));
  CHECK(clients_when_ready == static_cast<std::int64_t>(r.active_clients));
  CHECK(week_when_ready == static_cast<std::int64_t>(r.this_week));
  CHECK(visits_when_ready == static_cast<std::int64_t>(r.this_week));

  // Every change of the log arrived once: the pulls left out what the priority phase sent.
  CHECK(report.pulled == static_cast<std::size_t>(in_log));
  // The priority phase sent each picked record's whole history: the active clients'
  // creates and status changes, the week's creates, and the contested visit's two
  // concurrent notes and the resolution.
  const std::size_t reactivated = 300 / 10 - 300 / 30;  // changed from closed to active
  CHECK(report.primed == r.active_clients + reactivated + r.this_week + 3);
  CHECK(report.pages > 3);

  // The same state as everybody, and the resolved conflict stays resolved.
  CHECK(b->state_digest() == server.digest());
  CHECK(b->state_digest() == a->state_digest());
  CHECK(b->conflict_count() == 0);
  CHECK(b->count("clients") == r.clients);
  CHECK(b->count("visits") == r.visits);

  // Progress: monotonic, and it ends at what it expected, in records and bytes.
  CHECK(monotonic);
  CHECK(last.pulled == static_cast<std::size_t>(in_log));
  CHECK(last.to_pull == last.pulled);
  CHECK(last.pulled_bytes > 0);
  CHECK(last.to_pull_bytes == last.pulled_bytes);

  // The phase is over: the store keeps nothing of it, and a later sync asks for none.
  CHECK(sql_int(b_file, "SELECT count(*) FROM cs_prime") == 0);
  CHECK(sql_int(b_file, "SELECT count(*) FROM cs_primed") == 0);
  a->update("visits", r.contested, {{"note", std::string("one more word")}});
  sync_client(*a, server.options(0)).sync();
  const auto again = sync_client(*b, o).sync();
  CHECK(again.primed == 0);
  CHECK(again.pulled == 1);
  CHECK(b->state_digest() == a->state_digest());
}

TEST_CASE("a priority phase cut mid-way resumes where it stopped and delivers nothing twice", "[sync][prime][faults]") {
  temp_dir dir;
  test_server server(dir);
  auto a = tablet(dir, "a");
  auto c = tablet(dir, "c");
  const auto r = fill(server, *a, *c);
  const auto in_log = log_size(server);

  auto b = tablet(dir, "b");
  const std::string b_file = dir.file("b.db");
  // The first connection is cut after some pages of the priority phase; later ones pass.
  link_faults cut;
  cut.cut_after_down_bytes = 6'000;
  cut.only_first = 1;
  fault_proxy proxy(server.port(), cut);
  auto o = server.options(1);
  o.port = proxy.port();
  o.priority = active_clients_and_this_week();
  o.pull_page_changes = 20;
  o.compress = false;  // so that the cut lands after a few pages

  CHECK_THROWS_AS(sync_client(*b, o).sync(), caresync::error);
  REQUIRE(proxy.cuts() == 1);
  const auto position = sql_int(b_file, "SELECT position FROM cs_prime");
  CHECK(position > 0);
  CHECK(sql_int(b_file, "SELECT done FROM cs_prime") == 0);
  CHECK(sql_int(b_file, "SELECT count(*) FROM cs_primed") == position);

  // The app now asks for other tiers: the phase begun goes on with the tiers it began with.
  o.priority = {priority_tier::all("visits")};
  const auto report = sync_client(*b, o).sync();
  const std::size_t reactivated = 300 / 10 - 300 / 30;
  const std::size_t primed_in_all = r.active_clients + reactivated + r.this_week + 3;
  CHECK(report.primed == primed_in_all - static_cast<std::size_t>(position));
  CHECK(report.pulled + static_cast<std::size_t>(position) == static_cast<std::size_t>(in_log));
  CHECK(b->state_digest() == server.digest());
  CHECK(b->conflict_count() == 0);
  CHECK(sql_int(b_file, "SELECT count(*) FROM cs_prime") == 0);
}

TEST_CASE("priority tiers: a tablet that has pulled before gets none, and bad tiers are refused at once",
          "[sync][prime]") {
  temp_dir dir;
  test_server server(dir);
  auto a = tablet(dir, "a");
  for (int i = 0; i < 5; ++i) a->create("clients", {{"name", "K" + std::to_string(i)}, {"status", std::string("active")}});
  sync_client(*a, server.options(0)).sync();

  auto b = tablet(dir, "b");
  sync_client(*b, server.options(1)).sync();  // pulled once, in log order
  a->create("clients", {{"name", std::string("K5")}, {"status", std::string("active")}});
  sync_client(*a, server.options(0)).sync();
  auto o = server.options(1);
  o.priority = {priority_tier::all("clients")};
  const auto report = sync_client(*b, o).sync();
  CHECK(report.primed == 0);
  CHECK(report.pulled == 1);

  // A fresh tablet on an empty server: nothing to prioritise, nothing asked.
  temp_dir other;
  test_server empty(other);
  auto fresh = tablet(other, "fresh");
  auto oe = empty.options(1);
  oe.priority = {priority_tier::all("clients")};
  CHECK(sync_client(*fresh, oe).sync().primed == 0);

  const auto refused = [&](std::vector<priority_tier> tiers) {
    auto bad = server.options(1);
    bad.priority = std::move(tiers);
    try {
      sync_client client(*b, bad);
    } catch (const caresync::error& e) {
      return e.code() == make_error_code(storage_errc::invalid_argument);
    }
    return false;
  };
  CHECK(refused({priority_tier::all("Clients")}));
  CHECK(refused({priority_tier::all("cs_state")}));
  CHECK(refused({priority_tier::equals("clients", "", std::string("x"))}));
  CHECK(refused({priority_tier::equals("clients", "status", value{})}));
  CHECK(refused({priority_tier::at_least("visits", "score", std::nan(""))}));
  CHECK(refused({priority_tier::equals("clients", "photo", blob{{1, 2}})}));
  CHECK(refused(std::vector<priority_tier>(17, priority_tier::all("clients"))));
  CHECK_FALSE(refused(std::vector<priority_tier>(16, priority_tier::all("clients"))));
}
