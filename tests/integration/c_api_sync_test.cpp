// The C API (caresync.h) against the real server over real TLS on 127.0.0.1: two stores
// sync a visit through it with a progress callback, keep both of two concurrent notes
// and close the conflict everywhere; a wrong token, an untrusted server, an enrollment
// code used twice and a revoked device come back as their statuses; and the C example
// (examples/c/field_note.c) syncs its visit.
#include "../client/c_api_support.hpp"
#include "fixture.hpp"

#include <caresync/caresync.h>
#include <caresync/server/enrollment.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

using caresync::testing::c_api_schema;
using caresync::testing::c_store;
using caresync::testing::c_string;
using caresync::testing::temp_dir;
using caresync::testing::test_server;
using json = nlohmann::json;

namespace {

/// cs_sync's options for device `i` of `server` (or `device_id` and `token`).
std::string options(const test_server& server, int i, std::string device_id = {}, std::string token = {}) {
  const auto o = server.options(i);
  return json{{"host", o.host},
              {"port", o.port},
              {"ca_file", o.ca_file},
              {"device_id", device_id.empty() ? o.device_id : device_id},
              {"token", token.empty() ? o.token : token},
              {"app_version", "c_api_sync_test 1.0"},
              {"max_attempts", 1},
              {"io_timeout_ms", 20000}}
      .dump();
}

void open(const temp_dir& dir, c_store& s, const std::string& name) {
  const auto status = cs_store_open(dir.file(name + ".db").c_str(), c_api_schema(), &s.p);
  INFO(cs_open_error());
  REQUIRE(status == CS_OK);
}

/// Syncs and returns the report; fails the test with the message if the sync fails.
json sync(cs_store* s, const std::string& opts, cs_progress_fn progress = nullptr, void* user = nullptr) {
  c_string report;
  const auto status = cs_sync(s, opts.c_str(), progress, user, report.out());
  INFO(cs_status_name(status) << ": " << cs_last_error(s));
  REQUIRE(status == CS_OK);
  return json::parse(report.str());
}

json get(cs_store* s, const std::string& id) {
  c_string record;
  const auto status = cs_get(s, "visits", id.c_str(), record.out());
  INFO(cs_last_error(s));
  REQUIRE(status == CS_OK);
  return json::parse(record.str());
}

json conflicts(cs_store* s) {
  c_string list;
  REQUIRE(cs_conflicts(s, list.out()) == CS_OK);
  return json::parse(list.str());
}

struct progress_log {
  std::vector<cs_progress> seen;
  static void on(const cs_progress* p, void* user) { static_cast<progress_log*>(user)->seen.push_back(*p); }
};

}  // namespace

TEST_CASE("c_api: two stores sync a visit and settle a conflict over TLS", "[c_api][sync][integration]") {
  temp_dir dir;
  test_server server(dir);
  c_store a;
  c_store b;
  open(dir, a, "a");
  open(dir, b, "b");

  c_string made;
  REQUIRE(cs_create(a, "visits", R"({"date": "2026-11-23", "duration_min": 45, "photo": {"base64": "AP8QgH8="}})",
                    made.out()) == CS_OK);
  const std::string id = made.str();
  REQUIRE(cs_create(a, "clients", R"j({"name": "Paní Vzorová (synthetic)"})j", made.out()) == CS_OK);

  progress_log log;
  const auto pushed = sync(a, options(server, 0), &progress_log::on, &log);
  CHECK(pushed.at("pushed") == 2);
  CHECK(pushed.at("quarantined") == 0);
  CHECK(pushed.at("attempts") == 1);
  CHECK(pushed.at("bytes_sent").get<std::uint64_t>() > 0);
  CHECK(pushed.size() == 17);
  CHECK(pushed.at("reverted") == 0);
  REQUIRE_FALSE(log.seen.empty());
  CHECK(log.seen.back().pushed == 2);
  CHECK(log.seen.back().to_push == 2);
  CHECK(log.seen.back().bytes_sent > 0);
  CHECK(log.seen.back().priority_ready == 0);

  log.seen.clear();
  const auto pulled = sync(b, options(server, 1), &progress_log::on, &log);
  CHECK(pulled.at("pulled") == 2);
  CHECK(pulled.at("pushed") == 0);
  CHECK(pulled.at("cursor").get<std::uint64_t>() >= 2);
  REQUIRE_FALSE(log.seen.empty());
  CHECK(log.seen.back().pulled == 2);
  CHECK(log.seen.back().pulled_bytes > 0);
  CHECK(get(b, id) == get(a, id));
  CHECK(get(b, id).at("photo") == json{{"base64", "AP8QgH8="}});

  // Both write the note offline; the note is keep_both, so neither is lost.
  REQUIRE(cs_update(a, "visits", id.c_str(), R"({"note": "Visit note (synthetic): from A."})") == CS_OK);
  REQUIRE(cs_update(b, "visits", id.c_str(), R"({"note": "Visit note (synthetic): from B."})") == CS_OK);
  sync(a, options(server, 0));
  CHECK(sync(b, options(server, 1)).at("conflicts") == 1);
  sync(a, options(server, 0));

  for (cs_store* s : {a.p, b.p}) {
    const auto open_conflicts = conflicts(s);
    REQUIRE(open_conflicts.size() == 1);
    const auto& c = open_conflicts[0];
    CHECK(c.at("collection") == "visits");
    CHECK(c.at("id") == id);
    CHECK(c.at("field") == "note");
    CHECK(c.at("record_deleted") == false);
    CHECK(c.at("record_revived") == false);
    REQUIRE(c.at("others").size() == 1);
    // One value each, the two stores listing the same pair.
    std::vector<std::string> notes{c.at("current").at("value").get<std::string>(),
                                   c.at("others")[0].at("value").get<std::string>()};
    std::sort(notes.begin(), notes.end());
    CHECK(notes == std::vector<std::string>{"Visit note (synthetic): from A.", "Visit note (synthetic): from B."});
    CHECK(c.at("current").at("node").get<std::string>().size() == 16);
    CHECK(c.at("current").at("node") != c.at("others")[0].at("node"));
    CHECK(c.at("current").at("at_ms").get<std::uint64_t>() > 1'700'000'000'000ULL);
    CHECK(get(s, id).at("note") == c.at("current").at("value"));
  }
  CHECK(conflicts(a) == conflicts(b));

  REQUIRE(cs_resolve_conflict(b, "visits", id.c_str(), "note", R"("Visit note (synthetic): from A and B.")") == CS_OK);
  CHECK(conflicts(b).empty());
  sync(b, options(server, 1));
  sync(a, options(server, 0));
  CHECK(conflicts(a).empty());
  CHECK(get(a, id).at("note") == "Visit note (synthetic): from A and B.");
  CHECK(get(a, id) == get(b, id));

  // A delete syncs too.
  REQUIRE(cs_remove(a, "visits", id.c_str()) == CS_OK);
  sync(a, options(server, 0));
  sync(b, options(server, 1));
  c_string gone;
  CHECK(cs_get(b, "visits", id.c_str(), gone.out()) == CS_NOT_FOUND);
}

TEST_CASE("c_api: a wrong token, an untrusted server and an unknown pin are refused for good", "[c_api][sync][integration]") {
  temp_dir dir;
  test_server server(dir);
  c_store s;
  open(dir, s, "tablet");
  c_string report;

  auto status = cs_sync(s, options(server, 0, {}, "not-the-token").c_str(), nullptr, nullptr, report.out());
  CHECK(status == CS_AUTH);
  CHECK_FALSE(cs_is_transient(status));
  CHECK_FALSE(std::string(cs_last_error(s)).empty());
  CHECK(report.p == nullptr);

  // Another CA: the server's certificate is not trusted.
  const auto other = caresync::testing::test_pki::make(dir, "other");
  auto o = json::parse(options(server, 0));
  o["ca_file"] = other.ca_file;
  status = cs_sync(s, o.dump().c_str(), nullptr, nullptr, report.out());
  CHECK(status == CS_TLS);
  CHECK_FALSE(cs_is_transient(status));

  // A pin of another key, and no CA.
  o.erase("ca_file");
  o["pinned_key_sha256"] = other.pin;
  status = cs_sync(s, o.dump().c_str(), nullptr, nullptr, report.out());
  CHECK(status == CS_TLS);
  // The right pin alone is enough.
  o["pinned_key_sha256"] = server.pki().pin;
  CHECK(cs_sync(s, o.dump().c_str(), nullptr, nullptr, report.out()) == CS_OK);
  CHECK(json::parse(report.str()).at("attempts") == 1);
}

TEST_CASE("c_api: enroll with a one-time code, sync with what it gave, and a revoked device is wiped",
          "[c_api][sync][security][integration]") {
  temp_dir dir;
  test_server server(dir);
  auto& store = server.get().store();
  store.add_user(caresync::server::user_record{"jana.novakova", "Jana Nováková", "field_worker",
                                               "kraj/orp-benesov/team-2", 1});
  const auto code = caresync::server::issue_enrollment_code(store, "jana.novakova", std::chrono::hours(1),
                                                            caresync::system_time_ms())
                        .code;
  auto unenrolled = json::parse(options(server, 0));
  unenrolled.erase("device_id");
  unenrolled.erase("token");

  c_string enrollment;
  auto status = cs_enroll(unenrolled.dump().c_str(), code.c_str(), enrollment.out());
  INFO(cs_open_error());
  REQUIRE(status == CS_OK);
  CHECK(std::string(cs_open_error()).empty());
  const auto me = json::parse(enrollment.str());
  CHECK(me.at("user_id") == "jana.novakova");
  CHECK(me.at("user_name") == "Jana Nováková");
  CHECK_FALSE(me.at("device_id").get<std::string>().empty());
  CHECK(me.at("token").get<std::string>().size() >= 20);

  // The code was used: refused, not transient, with a reason.
  c_string again;
  status = cs_enroll(unenrolled.dump().c_str(), code.c_str(), again.out());
  CHECK(status == CS_ENROLLMENT_REFUSED);
  CHECK_FALSE(cs_is_transient(status));
  CHECK(again.p == nullptr);
  CHECK_FALSE(std::string(cs_open_error()).empty());

  c_store tablet;
  open(dir, tablet, "enrolled");
  const auto device_id = me.at("device_id").get<std::string>();
  const auto mine = options(server, 0, device_id, me.at("token").get<std::string>());
  c_string id;
  // An enrolled device is scoped: a new visit names an org unit of its user's.
  REQUIRE(cs_create(tablet, "visits", R"({"note": "Visit note (synthetic): before the loss.", "org_unit": "kraj/orp-benesov/team-2"})",
                    id.out()) == CS_OK);
  CHECK(sync(tablet, mine).at("pushed") == 1);

  REQUIRE(store.revoke_device(device_id, caresync::system_time_ms()));
  c_string report;
  status = cs_sync(tablet, mine.c_str(), nullptr, nullptr, report.out());
  CHECK(status == CS_REVOKED);
  CHECK_FALSE(cs_is_transient(status));
  CHECK(std::string(cs_last_error(tablet)).find("wiped") != std::string::npos);
  // The handle is still good; the store is empty.
  c_string record;
  CHECK(cs_get(tablet, "visits", id.str().c_str(), record.out()) == CS_NOT_FOUND);
  CHECK(conflicts(tablet).empty());
}

#ifdef CARESYNC_C_EXAMPLE
TEST_CASE("c_api: the C example syncs its visit with the server", "[c_api][sync][integration]") {
  temp_dir dir;
  test_server server(dir);
  const auto o = server.options(0);
  const std::string command = std::string(CARESYNC_C_EXAMPLE) + " " + dir.file("field_note.db") +
                              " --host 127.0.0.1 --port " + std::to_string(o.port) + " --ca " + o.ca_file +
                              " --device " + o.device_id + " --token " + o.token + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  REQUIRE(pipe);
  std::string out;
  char buf[4096];
  while (std::fgets(buf, sizeof buf, pipe)) out += buf;
  const int status = pclose(pipe);
  INFO(out);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  // Four local changes: each of the two visits was written twice (create and update,
  // create and delete).
  CHECK(out.find("progress: pushed 4 of 4") != std::string::npos);
  const auto at = out.find("synced (");
  REQUIRE(at != std::string::npos);
  const auto report = json::parse(out.substr(out.find('{', at), out.find('\n', at) - out.find('{', at)));
  CHECK(report.at("pushed") == 4);
  CHECK(out.find(o.token) == std::string::npos);  // the token is never printed

  // The server holds the visit the example wrote, and the deleted one as deleted.
  std::size_t live = 0, deleted = 0;
  for (const auto& [key, state] : server.get().store().materialize()) {
    if (key.first != "visits") continue;
    ++(state.deleted ? deleted : live);
  }
  CHECK(live == 1);
  CHECK(deleted == 1);
}
#endif
