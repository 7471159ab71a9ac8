// Token rotation's config key and store functions (docs/security.md, "Token rotation"):
// [auth] token_rotation_days is read and bounded; the SQLite store promotes a pending
// token and stores a new one only while the token they depend on is unchanged.

#include <caresync/protocol/errors.hpp>
#include <caresync/server/change_store.hpp>
#include <caresync/server/config.hpp>

#include "../support/temp_dir.hpp"

#include <catch2/catch.hpp>

#include <fstream>
#include <string>

using namespace caresync;
using caresync::testing::temp_dir;

namespace {

server::server_config load(const temp_dir& dir, const std::string& text) {
  const auto path = dir.file("rotation.toml");
  std::ofstream(path) << text;
  auto c = server::load_config(path);
  server::validate(c);
  return c;
}

std::string hash(char c) { return std::string(64, c); }

}  // namespace

TEST_CASE("token rotation config: [auth] token_rotation_days, default 30, 0 off, at most 3650", "[server][token_rotation]") {
  temp_dir dir;
  const std::string files = "certificate_file = \"c.pem\"\nprivate_key_file = \"k.pem\"\n";
  CHECK(load(dir, files).token_rotation_days == 30);
  CHECK(load(dir, files + "[auth]\ntoken_rotation_days = 0\n").token_rotation_days == 0);
  CHECK(load(dir, files + "[auth]\ntoken_rotation_days = 7\n").token_rotation_days == 7);
  const auto refused = [&](const std::string& text) {
    try {
      (void)load(dir, files + text);
    } catch (const error& e) {
      CHECK(e.code() == storage_errc::invalid_argument);
      return std::string(e.what());
    }
    return std::string();
  };
  CHECK_THAT(refused("[auth]\ntoken_rotation_days = 3651\n"), Catch::Contains("auth.token_rotation_days"));
  CHECK_THAT(refused("[auth]\ntoken_rotation_days = -1\n"), Catch::Contains("auth.token_rotation_days"));
  CHECK_THAT(refused("[auth]\nrotation_days = 3\n"), Catch::Contains("auth.rotation_days"));
}

TEST_CASE("token rotation store: pending tokens are promoted and replaced only as expected", "[server][store][token_rotation]") {
  temp_dir dir;
  auto store = server::open_sqlite_change_store(dir.file("server.db"));
  store->add_user(server::user_record{"u", "U", "field_worker", "unit", 1});
  server::device_record d;
  d.device_id = "d-1";
  d.token_sha256 = hash('a');
  store->add_enrollment(hash('c'), "u", 10'000);
  REQUIRE(store->redeem_enrollment(hash('c'), 5'000, d).result == server::redemption::outcome::enrolled);
  CHECK_FALSE(store->find_tokens("d-2"));

  auto t = store->find_tokens("d-1");
  REQUIRE(t);
  CHECK(t->current_sha256 == hash('a'));
  CHECK(t->pending_sha256.empty());
  CHECK(t->issued_ms == 5'000);  // never rotated: issued at enrollment

  CHECK_FALSE(store->promote_token("d-1", "", 6'000));          // nothing pending: nothing to promote
  CHECK_FALSE(store->set_pending_token("d-1", hash('x'), hash('b')));  // not the current token
  REQUIRE(store->set_pending_token("d-1", hash('a'), hash('b')));
  REQUIRE(store->set_pending_token("d-1", hash('a'), hash('d')));  // replaces the pending one
  CHECK(store->find_tokens("d-1")->pending_sha256 == hash('d'));
  CHECK_FALSE(store->promote_token("d-1", hash('b'), 6'000));   // replaced: worthless
  REQUIRE(store->promote_token("d-1", hash('d'), 7'000));
  t = store->find_tokens("d-1");
  CHECK(t->current_sha256 == hash('d'));
  CHECK(t->pending_sha256.empty());
  CHECK(t->issued_ms == 7'000);
  CHECK_FALSE(store->promote_token("d-1", hash('d'), 8'000));   // once
  CHECK_FALSE(store->set_pending_token("d-1", hash('a'), hash('e')));  // the old token is not current any more
  // The rest of the device is untouched.
  const auto device = store->find_device("d-1");
  REQUIRE(device);
  CHECK(device->token_sha256 == hash('d'));
  CHECK(device->revoked_ms == 0);
}
