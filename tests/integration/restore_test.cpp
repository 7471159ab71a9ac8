// A restore from backup keeps what the administrator did after the backup (issue 20):
// the administrative journal beside the database brings a restored database back up to
// it, over the real TLS server, so a tablet revoked after the backup stays revoked and
// wiped, a user added after it can enroll, a role change holds. A journal behind its
// database, lost, or another database's is refused until reset-auth-journal.

#include "fixture.hpp"

#include <caresync/protocol/errors.hpp>
#include <caresync/server/enrollment.hpp>

#include <catch2/catch.hpp>

#include <filesystem>
#include <string>
#include <vector>

using namespace caresync;
using caresync::testing::open_tablet;
using caresync::testing::temp_dir;
using caresync::testing::test_server;

namespace {

server::user_record user(const std::string& id, const std::string& role = "field_worker") {
  return server::user_record{id, "Name of " + id, role, "kraj/orp-benesov/team-2", 1};
}

sync_options as_device(test_server& server, const enrollment& got) {
  auto o = server.options(0);
  o.device_id = got.device_id;
  o.token = got.token;
  return o;
}

enrollment enroll_user(test_server& server, const std::string& user_id) {
  auto& store = server.get().store();
  const auto code = server::issue_enrollment_code(store, user_id, std::chrono::hours(1), system_time_ms()).code;
  auto o = server.options(0);
  o.device_id.clear();
  o.token.clear();
  return enroll(o, code);
}

/// What an administrator does to restore: the server stopped, the database and its -wal
/// and -shm moved aside, the backup copied in its place.
void restore(const std::string& backup, const std::string& database) {
  for (const char* suffix : {"", "-wal", "-shm"}) {
    std::error_code ec;
    std::filesystem::rename(database + suffix, database + ".aside" + suffix, ec);
  }
  std::filesystem::copy_file(backup, database);
}

bool refused_as_revoked(store& tablet, const sync_options& o) {
  try {
    sync_client(tablet, o).sync();
  } catch (const caresync::error& e) {
    return e.code() == make_error_code(protocol_errc::device_revoked);
  }
  return false;
}

}  // namespace

TEST_CASE("a restore from backup keeps revocations, users and role changes made after the backup", "[restore][security]") {
  temp_dir dir;
  test_server server(dir);
  const auto database = server.config().database_file;
  auto& store = server.get().store();
  store.add_user(user("jana"));
  store.add_user(user("petr"));
  const auto lost = enroll_user(server, "jana");
  const auto kept = enroll_user(server, "petr");
  auto lost_tablet = open_tablet(dir, "lost");
  lost_tablet->create("visits", {{"note", std::string("seen")}, {"org_unit", std::string("kraj/orp-benesov/team-2")}});
  sync_client(*lost_tablet, as_device(server, lost)).sync();

  const auto backup = dir.file("backup.db");
  server::backup_sqlite_store(database, backup);

  // After the backup: the tablet is lost and revoked, a user joins, another changes role.
  REQUIRE(store.revoke_device(lost.device_id, system_time_ms()));
  store.add_user(user("eva"));
  store.add_org_unit({"kraj-tabor", "", "Tábor"});
  auto petr = user("petr");
  petr.role = "coordinator";
  REQUIRE(store.update_user(petr));
  server.stop();

  restore(backup, database);
  server.start();
  auto& restored = server.get().store();
  const auto device = restored.find_device(lost.device_id);
  REQUIRE(device);
  CHECK(device->revoked_ms > 0);
  CHECK(restored.find_user("eva"));
  CHECK(restored.org_units() == std::vector<server::org_unit>{{"kraj-tabor", "", "Tábor"}});
  REQUIRE(restored.find_user("petr"));
  CHECK(restored.find_user("petr")->role == "coordinator");

  // The lost tablet is refused and wiped, as before the restore; the kept one syncs; the
  // new user enrolls.
  CHECK(refused_as_revoked(*lost_tablet, as_device(server, lost)));
  CHECK(lost_tablet->count("visits") == 0);
  auto kept_tablet = open_tablet(dir, "kept");
  CHECK(sync_client(*kept_tablet, as_device(server, kept)).sync().pulled == 1);
  const auto eva = enroll_user(server, "eva");
  auto eva_tablet = open_tablet(dir, "eva");
  CHECK_NOTHROW(sync_client(*eva_tablet, as_device(server, eva)).sync());

  // A second restart finds the database and journal agreeing: nothing replayed twice.
  server.restart();
  CHECK(server.get().store().find_device(lost.device_id)->revoked_ms > 0);
}

TEST_CASE("a journal behind its database, lost, or another database's is refused until reset", "[restore][security]") {
  temp_dir dir;
  const auto database = dir.file("server.db");
  const auto journal = server::auth_journal_file(database);
  CHECK(journal == dir.file("server.auth-journal"));
  {
    auto store = server::open_sqlite_change_store(database);
    store->add_user(user("jana"));
  }
  std::filesystem::copy_file(journal, dir.file("old-journal"));
  {
    auto store = server::open_sqlite_change_store(database);
    store->add_user(user("petr"));
  }

  SECTION("a journal restored from an older copy") {
    std::filesystem::remove(journal);
    std::filesystem::copy_file(dir.file("old-journal"), journal);
    CHECK_THROWS_WITH(server::open_sqlite_change_store(database), Catch::Contains("reset-auth-journal") &&
                                                                     Catch::Contains("older copy"));
  }
  SECTION("a lost journal") {
    std::filesystem::remove(journal);
    CHECK_THROWS_WITH(server::open_sqlite_change_store(database), Catch::Contains("missing"));
    // Refused again: the refusal made no new journal.
    CHECK_THROWS_WITH(server::open_sqlite_change_store(database), Catch::Contains("missing"));
  }
  SECTION("another database's journal") {
    const auto other = dir.file("other.db");
    { server::open_sqlite_change_store(other)->add_user(user("eva")); }
    std::filesystem::remove(journal);
    std::filesystem::copy_file(server::auth_journal_file(other), journal);
    CHECK_THROWS_WITH(server::open_sqlite_change_store(database), Catch::Contains("another database"));
  }
  // reset-auth-journal starts anew from the database as it is.
  server::reset_sqlite_auth_journal(database);
  CHECK_FALSE(std::filesystem::exists(journal));
  auto store = server::open_sqlite_change_store(database);
  CHECK(store->find_user("jana"));
  CHECK(store->find_user("petr"));
  CHECK(std::filesystem::exists(journal));
}

TEST_CASE("a database made before journals starts its journal with its rows, and a backup of that time is brought up to it",
          "[restore]") {
  temp_dir dir;
  const auto database = dir.file("server.db");
  { server::open_sqlite_change_store(database)->add_user(user("jana")); }
  // As a build before journals left it: no journal, no journal position.
  const auto moved = server::reset_sqlite_auth_journal(database);
  REQUIRE_FALSE(moved.empty());
  std::filesystem::remove(moved);
  const auto backup = dir.file("backup.db");
  server::backup_sqlite_store(database, backup);

  // This build: the journal starts with jana; petr joins after the backup.
  { server::open_sqlite_change_store(database)->add_user(user("petr")); }
  restore(backup, database);
  auto store = server::open_sqlite_change_store(database);
  CHECK(store->find_user("jana"));
  CHECK(store->find_user("petr"));
}
