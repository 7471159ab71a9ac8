// The field CLI (issue 5): the README's two-tablet story, run as a person would run it,
// through the caresync-field binary against the real server over TLS.

#include "../support/field_cli.hpp"
#include "fixture.hpp"

#include <caresync/care.hpp>

#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#ifdef CARESYNC_FIELD_BINARY

using namespace caresync;
using caresync::testing::temp_dir;
using caresync::testing::test_server;

namespace {

using caresync::testing::first_line;
using caresync::testing::run_result;

/// Runs caresync-field with `args` on store `tablet`.
run_result field(const temp_dir& dir, const std::string& tablet, const std::vector<std::string>& args) {
  return caresync::testing::run_field(CARESYNC_FIELD_BINARY, dir, tablet, args);
}

}  // namespace

TEST_CASE("field CLI: two tablets record, sync, see and hand over a client", "[sync][care][cli]") {
  temp_dir dir;
  test_server server(dir);
  const auto port = std::to_string(server.port());
  for (int i : {0, 1}) {
    const auto r = field(dir, i == 0 ? "jana" : "petr",
                         {"configure", "--host", "127.0.0.1", "--port", port, "--ca", server.pki().ca_file, "--device-id",
                          test_server::device(i), "--token", test_server::token(i)});
    REQUIRE(r.status == 0);
  }
  // The token is kept beside the store, readable by its owner only.
  struct stat st{};
  REQUIRE(::stat(dir.file("jana.db.device").c_str(), &st) == 0);
  CHECK((st.st_mode & 077) == 0);

  // Jana, offline: a client and a visit.
  auto r = field(dir, "jana", {"add-client", "--name", "Marie Vzorová (synthetic)", "--org-unit", "kraj/orp-a/team-1"});
  REQUIRE(r.status == 0);
  const auto client = first_line(r.out);
  REQUIRE(record_id::parse(client));
  r = field(dir, "jana", {"record-visit", "--client", client, "--worker", "jana", "--start", "2026-11-23T08:00:00Z", "--end",
                          "2026-11-23T09:15:00Z", "--note", "brought the forms"});
  REQUIRE(r.status == 0);
  const auto visit = first_line(r.out);
  // A visit ending before it starts is refused with a clear error, and nothing is written.
  r = field(dir, "jana", {"record-visit", "--client", client, "--worker", "jana", "--start", "2026-11-23T10:00:00Z", "--end",
                          "2026-11-23T09:00:00Z"});
  CHECK(r.status == 2);
  CHECK_THAT(r.err, Catch::Contains("end"));

  r = field(dir, "jana", {"sync"});
  REQUIRE(r.status == 0);
  CHECK_THAT(r.out, Catch::Contains("2 pushed"));
  CHECK_THAT(r.err, Catch::Contains("sent 2 of 2"));  // the progress bar

  // Petr syncs and sees the visit of the day, with the client's name.
  REQUIRE(field(dir, "petr", {"sync"}).status == 0);
  r = field(dir, "petr", {"visits", "--date", "2026-11-23"});
  REQUIRE(r.status == 0);
  CHECK_THAT(r.out, Catch::Contains(visit) && Catch::Contains("08:00-09:15") && Catch::Contains("Marie Vzorová"));
  CHECK_THAT(r.err, Catch::Contains("1 visit(s)"));

  // Petr refers the client to the hospital's social unit; Jana, there, accepts it.
  r = field(dir, "petr", {"refer", "--client", client, "--to-unit", "kraj/nemocnice/soc", "--reason", "propuštění (synthetic)"});
  REQUIRE(r.status == 0);
  const auto referral = first_line(r.out);
  REQUIRE(field(dir, "petr", {"sync"}).status == 0);
  REQUIRE(field(dir, "jana", {"sync"}).status == 0);
  r = field(dir, "jana", {"inbox", "--unit", "kraj/nemocnice/soc"});
  CHECK_THAT(r.out, Catch::Contains(referral));
  r = field(dir, "jana", {"referral", "accept", referral});
  CHECK(r.status == 0);
  CHECK_THAT(r.out, Catch::Contains("accepted"));
  r = field(dir, "jana", {"referral", "close", referral});  // not started: refused
  CHECK(r.status != 0);
  REQUIRE(field(dir, "jana", {"sync"}).status == 0);
  REQUIRE(field(dir, "petr", {"sync"}).status == 0);
  r = field(dir, "petr", {"conflicts"});
  CHECK_THAT(r.err, Catch::Contains("0 open conflict(s)"));

  // Both tablets hold the same records, as the server does.
  for (const char* name : {"jana", "petr"}) {
    auto s = store::open(store_options{dir.file(std::string(name) + ".db"), care::schema()});
    CHECK(s->state_digest() == server.digest());
    CHECK(care::records(*s).referrals().find(*record_id::parse(referral))->state == care::referral_state::accepted);
  }
}

TEST_CASE("field CLI: sync before configure, and bad ids, are refused with a clear error", "[care][cli]") {
  temp_dir dir;
  auto r = field(dir, "t", {"sync"});
  CHECK(r.status == 2);
  CHECK_THAT(r.err, Catch::Contains("configure"));
  r = field(dir, "t", {"referral", "accept", "not-an-id"});
  CHECK(r.status == 2);
  CHECK_THAT(r.err, Catch::Contains("not a record id"));
  r = field(dir, "t", {"referral", "reopen", "x"});
  CHECK(r.status == 2);
}

#endif
