// Token rotation (issue 20; docs/security.md, "Token rotation") over the real TLS
// server and real SQLite files: an enrolled device whose token is due is handed a new
// one at sync, through the app's callback; presenting it confirms it and the old token
// (a copy of it) then fails; a device that never stores the new token keeps syncing with
// the old one; a client without the callback, a device of the config file and a server
// with rotation off never rotate; revocation works with either token; the C API and the
// field CLI store the new token.

#include "../client/c_api_support.hpp"
#include "../support/fault_proxy.hpp"
#include "../support/sql_probe.hpp"
#include "fixture.hpp"

#include <caresync/caresync.h>
#include <caresync/protocol/errors.hpp>
#include <caresync/server/enrollment.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

using namespace caresync;
using caresync::testing::fault_proxy;
using caresync::testing::open_tablet;
using caresync::testing::sql_int;
using caresync::testing::sql_text;
using caresync::testing::temp_dir;
using caresync::testing::test_server;

namespace {

constexpr const char* k_unit = "kraj/orp-benesov/team-2";

/// Runs `sql` on the SQLite file `path`, read-write (what an operator's sqlite3 would do).
void sql_write(const std::string& path, const std::string& sql) {
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READWRITE, nullptr);
  const std::unique_ptr<sqlite3, decltype(&sqlite3_close)> db(raw, &sqlite3_close);
  if (rc != SQLITE_OK) throw std::runtime_error("cannot open " + path);
  sqlite3_busy_timeout(raw, 5000);
  if (sqlite3_exec(raw, sql.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) {
    throw std::runtime_error("test SQL failed: " + sql + ": " + sqlite3_errmsg(raw));
  }
}

/// Enrolls a new device of a user of `k_unit` (made once) and returns what it got.
enrollment enroll_one(test_server& server, const std::string& user = "jana.novakova") {
  auto& store = server.get().store();
  if (!store.find_user(user)) store.add_user(server::user_record{user, "Jana Nováková", "field_worker", k_unit, 1});
  const auto code = server::issue_enrollment_code(store, user, std::chrono::hours(1), system_time_ms()).code;
  auto o = server.options(0);
  o.device_id.clear();
  o.token.clear();
  return enroll(o, code);
}

/// Options for an enrolled device.
sync_options options_of(const test_server& server, const std::string& device_id, const std::string& token) {
  auto o = server.options(0);
  o.device_id = device_id;
  o.token = token;
  return o;
}

/// Makes the device's current token old enough to be due (issued at 1 ms after the epoch).
void age_token(test_server& server, const std::string& device_id) {
  sql_write(server.config().database_file,
            "UPDATE enrolled_devices SET token_issued_ms = 1 WHERE device_id = '" + device_id + "'");
}

std::string current_hash(test_server& server, const std::string& device_id) {
  return sql_text(server.config().database_file,
                  "SELECT token_sha256 FROM enrolled_devices WHERE device_id = '" + device_id + "'");
}
std::string pending_hash(test_server& server, const std::string& device_id) {
  return sql_text(server.config().database_file,
                  "SELECT pending_sha256 FROM enrolled_devices WHERE device_id = '" + device_id + "'");
}

/// The protocol error a sync ends with, or {} if it succeeds.
std::error_code sync_failure(store& local, const sync_options& o) {
  try {
    (void)sync_client(local, o).sync();
  } catch (const caresync::error& e) {
    return e.code();
  }
  return {};
}

/// A visit the enrolled device may write (its user's unit).
void add_visit(store& local, const std::string& note) {
  (void)local.create("visits", {{"org_unit", std::string(k_unit)}, {"note", note}});
}

bool lower_hex_64(const std::string& s) {
  return s.size() == 64 && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

}  // namespace

TEST_CASE("token rotation: a due token is replaced at sync, and the old one (a copy) goes stale once the new one is used",
          "[security][token_rotation]") {
  temp_dir dir;
  test_server server(dir);
  const auto me = enroll_one(server);
  auto tablet = open_tablet(dir, "jana");
  std::vector<std::string> handed;
  auto o = options_of(server, me.device_id, me.token);
  o.on_new_token = [&handed](const std::string& t) { handed.push_back(t); };

  // A fresh token is not due: nothing handed out.
  add_visit(*tablet, "first visit (synthetic)");
  sync_client client(*tablet, o);
  auto r = client.sync();
  CHECK(r.pushed == 1);
  CHECK(r.tokens_stored == 0);
  CHECK(handed.empty());
  CHECK(pending_hash(server, me.device_id).empty());

  // Due: the sync hands a new token to the callback; the server keeps only its hash, as
  // pending, and the old token is still the current one.
  age_token(server, me.device_id);
  add_visit(*tablet, "second visit (synthetic)");
  r = client.sync();
  CHECK(r.pushed == 1);
  CHECK(r.tokens_stored == 1);
  REQUIRE(handed.size() == 1);
  const auto fresh = handed[0];
  CHECK(lower_hex_64(fresh));
  CHECK(fresh != me.token);
  CHECK(pending_hash(server, me.device_id) == server::hash_token(fresh));
  CHECK(current_hash(server, me.device_id) == server::hash_token(me.token));

  // The same client's next sync presents the new token: confirmed, now the current one.
  r = client.sync();
  CHECK(r.tokens_stored == 0);
  CHECK(handed.size() == 1);  // not due any more
  CHECK(current_hash(server, me.device_id) == server::hash_token(fresh));
  CHECK(pending_hash(server, me.device_id).empty());

  // A copy of the old token is refused like any wrong token, for good.
  auto thief = open_tablet(dir, "thief");
  const auto stale = sync_failure(*thief, options_of(server, me.device_id, me.token));
  CHECK(stale == make_error_code(protocol_errc::auth_failed));
  CHECK_FALSE(is_transient(stale));
  // The new one works from another client too (an app restarted with what it stored).
  auto restarted = open_tablet(dir, "restarted");
  CHECK(sync_failure(*restarted, options_of(server, me.device_id, fresh)) == std::error_code{});
  CHECK(sql_int(server.config().database_file, "SELECT count(*) FROM changes WHERE device = '" + me.device_id + "'") == 2);
}

TEST_CASE("token rotation: a device that never stores the new token keeps syncing with the old one",
          "[security][token_rotation]") {
  temp_dir dir;
  test_server server(dir);
  const auto me = enroll_one(server);
  auto tablet = open_tablet(dir, "jana");
  age_token(server, me.device_id);

  SECTION("the callback throws: the library keeps the old token") {
    unsigned calls = 0;
    auto o = options_of(server, me.device_id, me.token);
    o.on_new_token = [&calls](const std::string&) {
      ++calls;
      throw std::runtime_error("the secure storage is locked");
    };
    sync_client client(*tablet, o);
    add_visit(*tablet, "a visit (synthetic)");
    auto r = client.sync();
    CHECK(r.pushed == 1);
    CHECK(r.tokens_stored == 0);
    CHECK(calls == 1);
    const auto first_pending = pending_hash(server, me.device_id);
    CHECK_FALSE(first_pending.empty());
    // The next sync presents the old token again: accepted, and another token replaces
    // the pending one.
    add_visit(*tablet, "another visit (synthetic)");
    r = client.sync();
    CHECK(r.pushed == 1);
    CHECK(calls == 2);
    CHECK(current_hash(server, me.device_id) == server::hash_token(me.token));
    CHECK_FALSE(pending_hash(server, me.device_id).empty());
    CHECK(pending_hash(server, me.device_id) != first_pending);
  }
  SECTION("a token handed out and lost: the old token gets a fresh one, and the lost one is worthless") {
    std::vector<std::string> handed;
    auto o = options_of(server, me.device_id, me.token);
    o.on_new_token = [&handed](const std::string& t) { handed.push_back(t); };
    // The app "stored" it but kept using the old token (a fresh client each time, given
    // the old token: as an app whose storage write was lost).
    REQUIRE(sync_client(*tablet, o).sync().tokens_stored == 1);
    REQUIRE(sync_client(*tablet, o).sync().tokens_stored == 1);
    REQUIRE(handed.size() == 2);
    CHECK(handed[0] != handed[1]);
    CHECK(pending_hash(server, me.device_id) == server::hash_token(handed[1]));
    // The first was replaced by the second: refused.
    auto other = open_tablet(dir, "other");
    CHECK(sync_failure(*other, options_of(server, me.device_id, handed[0])) == make_error_code(protocol_errc::auth_failed));
    // The second confirms, and then the old one fails.
    CHECK(sync_failure(*tablet, options_of(server, me.device_id, handed[1])) == std::error_code{});
    CHECK(sync_failure(*tablet, options_of(server, me.device_id, me.token)) == make_error_code(protocol_errc::auth_failed));
  }
}

TEST_CASE("token rotation: a later connection of the same sync presents the new token", "[security][token_rotation][faults]") {
  temp_dir dir;
  test_server server(dir);
  const auto me = enroll_one(server);
  // Enough to pull that the first connection is cut mid-pull, after its welcome.
  auto writer = open_tablet(dir, "writer");
  for (int i = 0; i < 400; ++i) add_visit(*writer, std::string(400, static_cast<char>('a' + i % 26)));
  REQUIRE(sync_failure(*writer, options_of(server, me.device_id, me.token)) == std::error_code{});
  age_token(server, me.device_id);

  testing::link_faults cut;
  cut.cut_after_down_bytes = 40'000;
  cut.only_first = 1;
  fault_proxy proxy(server.port(), cut);
  auto tablet = open_tablet(dir, "jana");
  std::vector<std::string> handed;
  auto o = options_of(server, me.device_id, me.token);
  o.port = proxy.port();
  o.retry.max_attempts = 4;
  o.compress = false;  // the pull's bytes, not zstd's ratio, decide where the cut falls
  o.on_new_token = [&handed](const std::string& t) { handed.push_back(t); };
  const auto r = sync_client(*tablet, o).sync();
  CHECK(proxy.cuts() == 1);
  CHECK(r.attempts >= 2);
  REQUIRE(handed.size() == 1);
  CHECK(r.tokens_stored == 1);
  CHECK(r.pulled > 0);
  // The retry presented the new token: confirmed within the one sync.
  CHECK(current_hash(server, me.device_id) == server::hash_token(handed[0]));
  CHECK(pending_hash(server, me.device_id).empty());
}

TEST_CASE("token rotation: no new token without the callback, for a config file's device, or with rotation off",
          "[security][token_rotation]") {
  temp_dir dir;
  test_server server(dir);
  const auto me = enroll_one(server);
  age_token(server, me.device_id);
  const auto offer = wire::k_feature_zstd | wire::k_feature_token_rotation;

  SECTION("a client without the callback does not offer the bit and gets nothing") {
    auto tablet = open_tablet(dir, "jana");
    const auto r = sync_client(*tablet, options_of(server, me.device_id, me.token)).sync();
    CHECK(r.tokens_stored == 0);
    CHECK(pending_hash(server, me.device_id).empty());
    // An older client's hello (no bit): a welcome as before, without the field.
    testing::raw_session raw(options_of(server, me.device_id, me.token), 77, wire::k_feature_zstd);
    REQUIRE(std::holds_alternative<wire::welcome>(raw.welcome()));
    const auto& w = std::get<wire::welcome>(raw.welcome());
    CHECK((w.features & wire::k_feature_token_rotation) == 0);
    CHECK(w.new_token.empty());
    CHECK(pending_hash(server, me.device_id).empty());
  }
  SECTION("the bit offered: granted with a token") {
    testing::raw_session raw(options_of(server, me.device_id, me.token), 77, offer);
    REQUIRE(std::holds_alternative<wire::welcome>(raw.welcome()));
    const auto& w = std::get<wire::welcome>(raw.welcome());
    CHECK((w.features & wire::k_feature_token_rotation) != 0);
    CHECK(lower_hex_64(w.new_token));
    CHECK(pending_hash(server, me.device_id) == server::hash_token(w.new_token));
    // The conversation goes on as ever.
    CHECK(std::holds_alternative<wire::pong>(raw.ask(wire::ping{5})));
  }
  SECTION("a device of the config file is never rotated") {
    testing::raw_session raw(server.options(0), 77, offer);
    REQUIRE(std::holds_alternative<wire::welcome>(raw.welcome()));
    CHECK((std::get<wire::welcome>(raw.welcome()).features & wire::k_feature_token_rotation) == 0);
  }
  SECTION("rotation off: [auth] token_rotation_days = 0") {
    server.config().token_rotation_days = 0;
    server.restart();
    testing::raw_session raw(options_of(server, me.device_id, me.token), 77, offer);
    REQUIRE(std::holds_alternative<wire::welcome>(raw.welcome()));
    CHECK((std::get<wire::welcome>(raw.welcome()).features & wire::k_feature_token_rotation) == 0);
    CHECK(pending_hash(server, me.device_id).empty());
  }
  SECTION("not yet due: a token younger than token_rotation_days") {
    sql_write(server.config().database_file, "UPDATE enrolled_devices SET token_issued_ms = " +
                                                 std::to_string(system_time_ms() - 29ULL * 86'400'000) +
                                                 " WHERE device_id = '" + me.device_id + "'");
    testing::raw_session raw(options_of(server, me.device_id, me.token), 77, offer);
    REQUIRE(std::holds_alternative<wire::welcome>(raw.welcome()));
    CHECK((std::get<wire::welcome>(raw.welcome()).features & wire::k_feature_token_rotation) == 0);
  }
}

TEST_CASE("token rotation: a revoked device is told to wipe whichever of its tokens it presents", "[security][token_rotation]") {
  temp_dir dir;
  test_server server(dir);
  const auto me = enroll_one(server);
  age_token(server, me.device_id);
  std::string fresh;
  auto o = options_of(server, me.device_id, me.token);
  o.on_new_token = [&fresh](const std::string& t) { fresh = t; };
  auto tablet = open_tablet(dir, "jana");
  REQUIRE(sync_client(*tablet, o).sync().tokens_stored == 1);
  REQUIRE_FALSE(fresh.empty());
  const auto pending = pending_hash(server, me.device_id);
  REQUIRE(server.get().store().revoke_device(me.device_id, system_time_ms()));

  unsigned handed_after = 0;
  int copies = 0;
  for (const auto& token : {me.token, fresh}) {
    auto copy = open_tablet(dir, "copy-" + std::to_string(copies++));
    add_visit(*copy, "kept until the wipe (synthetic)");
    auto with = options_of(server, me.device_id, token);
    with.on_new_token = [&handed_after](const std::string&) { ++handed_after; };
    CHECK(sync_failure(*copy, with) == make_error_code(protocol_errc::device_revoked));
    CHECK(copy->outbox_size() == 0);  // wiped
  }
  // Revocation changed neither token; nothing was promoted or handed out.
  CHECK(handed_after == 0);
  CHECK(current_hash(server, me.device_id) == server::hash_token(me.token));
  CHECK(pending_hash(server, me.device_id) == pending);
}

TEST_CASE("token rotation: a store made before rotation gains its columns and rotates tokens by their enrollment date",
          "[security][token_rotation][store]") {
  temp_dir dir;
  test_server server(dir);
  const auto me = enroll_one(server);
  server.stop();
  // The device table as a store of the previous build has it, enrolled long ago.
  const auto db = server.config().database_file;
  sql_write(db, "ALTER TABLE enrolled_devices DROP COLUMN pending_sha256; ALTER TABLE enrolled_devices DROP COLUMN token_issued_ms;"
                " UPDATE enrolled_devices SET enrolled_ms = 1");
  REQUIRE(sql_int(db, "SELECT count(*) FROM pragma_table_info('enrolled_devices') WHERE name = 'pending_sha256'") == 0);
  server.start();
  CHECK(sql_int(db, "SELECT count(*) FROM pragma_table_info('enrolled_devices') WHERE name IN ('pending_sha256', 'token_issued_ms')") == 2);
  std::string fresh;
  auto o = options_of(server, me.device_id, me.token);
  o.on_new_token = [&fresh](const std::string& t) { fresh = t; };
  auto tablet = open_tablet(dir, "jana");
  CHECK(sync_client(*tablet, o).sync().tokens_stored == 1);
  CHECK(pending_hash(server, me.device_id) == server::hash_token(fresh));
}

TEST_CASE("token rotation: a token rotated after a backup is still the device's after a restore (the journal)",
          "[security][token_rotation][restore]") {
  temp_dir dir;
  test_server server(dir);
  const auto database = server.config().database_file;
  const auto me = enroll_one(server);
  age_token(server, me.device_id);
  const auto backup = dir.file("backup.db");
  server::backup_sqlite_store(database, backup);

  std::string fresh;
  auto o = options_of(server, me.device_id, me.token);
  o.on_new_token = [&fresh](const std::string& t) { fresh = t; };
  auto tablet = open_tablet(dir, "jana");
  sync_client client(*tablet, o);
  REQUIRE(client.sync().tokens_stored == 1);
  (void)client.sync();  // confirms it
  REQUIRE(current_hash(server, me.device_id) == server::hash_token(fresh));

  // The administrator's restore: the database and its -wal and -shm aside, the backup in.
  server.stop();
  for (const char* suffix : {"", "-wal", "-shm"}) {
    std::error_code ec;
    std::filesystem::rename(database + suffix, database + ".aside" + suffix, ec);
  }
  std::filesystem::copy_file(backup, database);
  server.start();
  CHECK(current_hash(server, me.device_id) == server::hash_token(fresh));
  CHECK(sync_failure(*tablet, options_of(server, me.device_id, fresh)) == std::error_code{});
  auto thief = open_tablet(dir, "thief");
  CHECK(sync_failure(*thief, options_of(server, me.device_id, me.token)) == make_error_code(protocol_errc::auth_failed));
}

namespace {

struct token_box {
  std::vector<std::string> stored;
  int answer = 0;  // what the callback returns
  static int on(const char* token, void* user) {
    auto* box = static_cast<token_box*>(user);
    box->stored.emplace_back(token);
    return box->answer;
  }
};

std::string c_options(const test_server& server, const std::string& device_id, const std::string& token) {
  const auto o = server.options(0);
  return nlohmann::json{{"host", o.host},           {"port", o.port},   {"ca_file", o.ca_file}, {"device_id", device_id},
                        {"token", token},           {"max_attempts", 1}, {"io_timeout_ms", 20000}}
      .dump();
}

nlohmann::json c_sync(cs_store* s, const std::string& opts, cs_status expected = CS_OK) {
  testing::c_string report;
  const auto status = cs_sync(s, opts.c_str(), nullptr, nullptr, report.out());
  INFO(cs_status_name(status) << ": " << cs_last_error(s));
  REQUIRE(status == expected);
  return status == CS_OK ? nlohmann::json::parse(report.str()) : nlohmann::json{};
}

}  // namespace

TEST_CASE("token rotation: the C API hands the new token to the store's callback", "[security][token_rotation][c_api]") {
  temp_dir dir;
  test_server server(dir);
  const auto me = enroll_one(server);
  age_token(server, me.device_id);
  testing::c_store tablet;
  REQUIRE(cs_store_open(dir.file("c.db").c_str(), testing::c_api_schema(), &tablet.p) == CS_OK);
  CHECK(cs_set_token_callback(nullptr, &token_box::on, nullptr) == CS_INVALID_ARGUMENT);

  // Without a callback, nothing is offered.
  CHECK(c_sync(tablet, c_options(server, me.device_id, me.token)).at("tokens_stored") == 0);
  CHECK(pending_hash(server, me.device_id).empty());

  token_box box;
  REQUIRE(cs_set_token_callback(tablet, &token_box::on, &box) == CS_OK);
  SECTION("stored (0): counted, and the new token is the device's from its next sync") {
    CHECK(c_sync(tablet, c_options(server, me.device_id, me.token)).at("tokens_stored") == 1);
    REQUIRE(box.stored.size() == 1);
    CHECK(lower_hex_64(box.stored[0]));
    CHECK(c_sync(tablet, c_options(server, me.device_id, box.stored[0])).at("tokens_stored") == 0);
    CHECK(current_hash(server, me.device_id) == server::hash_token(box.stored[0]));
    c_sync(tablet, c_options(server, me.device_id, me.token), CS_AUTH);
  }
  SECTION("not stored (nonzero): not counted, and the old token goes on working") {
    box.answer = 1;
    CHECK(c_sync(tablet, c_options(server, me.device_id, me.token)).at("tokens_stored") == 0);
    CHECK(box.stored.size() == 1);
    REQUIRE(cs_set_token_callback(tablet, nullptr, nullptr) == CS_OK);
    CHECK(c_sync(tablet, c_options(server, me.device_id, me.token)).at("tokens_stored") == 0);
    CHECK(box.stored.size() == 1);
    CHECK(current_hash(server, me.device_id) == server::hash_token(me.token));
  }
}

#ifdef CARESYNC_FIELD_BINARY
TEST_CASE("token rotation: the field CLI saves the new token in its device file, atomically and 0600",
          "[security][token_rotation][cli]") {
  temp_dir dir;
  test_server server(dir);
  auto& store = server.get().store();
  store.add_user(server::user_record{"jana.novakova", "Jana Nováková", "field_worker", k_unit, 1});
  const auto code = server::issue_enrollment_code(store, "jana.novakova", std::chrono::hours(1), system_time_ms()).code;
  const auto field = [&](const std::string& args) {
    const auto cmd = std::string("'") + CARESYNC_FIELD_BINARY + "' --store '" + dir.file("jana.db") + "' " + args + " > '" +
                     dir.file("out.txt") + "' 2>&1";
    const int raw = std::system(cmd.c_str());
    return WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  };
  const auto device_file = dir.file("jana.db.device");
  const auto saved = [&] {
    std::ifstream in(device_file);
    return nlohmann::json::parse(in);
  };
  REQUIRE(field("enroll --host 127.0.0.1 --port " + std::to_string(server.port()) + " --ca '" + server.pki().ca_file +
                "' --code " + code) == 0);
  const auto enrolled = saved();
  const auto device_id = enrolled.at("device_id").get<std::string>();
  const auto old_token = enrolled.at("token").get<std::string>();
  age_token(server, device_id);

  REQUIRE(field("sync") == 0);
  const auto after = saved();
  const auto new_token = after.at("token").get<std::string>();
  CHECK(new_token != old_token);
  CHECK(lower_hex_64(new_token));
  CHECK(after.at("host") == enrolled.at("host"));
  CHECK(after.at("ca_file") == enrolled.at("ca_file"));
  CHECK(pending_hash(server, device_id) == server::hash_token(new_token));
  struct stat st{};
  REQUIRE(::stat(device_file.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK_FALSE(std::filesystem::exists(device_file + ".tmp"));

  // The next sync presents it: confirmed; the old token is refused.
  REQUIRE(field("sync") == 0);
  CHECK(saved().at("token") == new_token);
  CHECK(current_hash(server, device_id) == server::hash_token(new_token));
  auto thief = open_tablet(dir, "thief");
  CHECK(sync_failure(*thief, options_of(server, device_id, old_token)) == make_error_code(protocol_errc::auth_failed));
}
#endif
