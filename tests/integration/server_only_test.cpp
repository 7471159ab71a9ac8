// server_only fields over the real TLS server (issue 3): only the server side writes
// them. A field tablet's store refuses such a write at once; a write that gets through
// (an app whose schema does not say so) is refused by the server, which names the
// fields and sends its values, and the tablet shows them again while the rest of its
// change is stored. Every replica ends equal.

#include "fixture.hpp"

#include <caresync/protocol/errors.hpp>

#include <catch2/catch.hpp>

using namespace caresync;
using caresync::testing::temp_dir;
using caresync::testing::test_server;

namespace {

constexpr int k_office = 2;  // the config device marked server_side

/// clients with a care allowance level only the region's office sets. `declared`: the
/// app knows the field is server_only (a current app) or not (an older one).
schema level_schema(bool declared) {
  collection_def clients{"clients", {{"name", value_kind::text}, {"care_level", value_kind::text}}};
  clients.fields[1].server_only = declared;
  return schema{{clients, collection_def{"visits", {{"note", value_kind::text, merge_policy::keep_both}}}}};
}

std::unique_ptr<store> open_store(const temp_dir& dir, const std::string& name, bool declared, bool server_side) {
  store_options o{dir.file(name + ".db"), level_schema(declared), durability::normal};
  o.server_side = server_side;
  return store::open(o);
}

void configure(test_server& server) {
  server.config().server_only_fields = {"clients.care_level"};
  server.config().devices[k_office].server_side = true;
  server.restart();
}

value field(const store& s, const record_id& id, const std::string& name) {
  const auto r = s.get("clients", id);
  REQUIRE(r);
  const auto it = r->find(name);
  return it == r->end() ? value{} : it->second;
}

}  // namespace

TEST_CASE("server_only: a field store refuses to write the field, a server-side store writes it", "[sync][policy]") {
  temp_dir dir;
  auto tablet = open_store(dir, "tablet", true, false);
  try {
    tablet->create("clients", {{"name", std::string("Jana")}, {"care_level", std::string("II")}});
    FAIL("a field store wrote a server_only field");
  } catch (const error& e) {
    CHECK(e.code() == make_error_code(storage_errc::invalid_argument));
    CHECK(std::string(e.what()).find("care_level") != std::string::npos);
  }
  const auto id = tablet->create("clients", {{"name", std::string("Jana")}});
  CHECK_THROWS_AS(tablet->update("clients", id, {{"care_level", std::string("IV")}}), error);
  CHECK(tablet->outbox_size() == 1);  // the refused writes left nothing behind

  auto office = open_store(dir, "office", true, true);
  const auto other = office->create("clients", {{"name", std::string("Petr")}, {"care_level", std::string("I")}});
  CHECK(field(*office, other, "care_level") == value{std::string("I")});

  // A schema marking a field server_only under another policy is refused at open.
  schema bad = level_schema(true);
  bad.collections[0].fields[1].policy = merge_policy::keep_both;
  CHECK_THROWS_AS(store::open(store_options{dir.file("bad.db"), bad, durability::normal}), error);
}

TEST_CASE("server_only: the server refuses a tablet's write of the field, the tablet shows the server's value again and "
          "the rest of its change is stored",
          "[sync][policy]") {
  temp_dir dir;
  test_server server(dir);
  configure(server);
  auto office = open_store(dir, "office", true, true);
  auto tablet = open_store(dir, "tablet", false, false);  // an older app: the field is not marked
  auto coordinator = open_store(dir, "coordinator", true, false);

  const auto jana = office->create("clients", {{"name", std::string("Jana")}, {"care_level", std::string("II")}});
  sync_client(*office, server.options(k_office)).sync();
  sync_client(*tablet, server.options(0)).sync();
  REQUIRE(field(*tablet, jana, "care_level") == value{std::string("II")});

  // One change writes a field the tablet may write and one it may not; a new record
  // sets the level too, and a visit carries no server_only field at all.
  tablet->update("clients", jana, {{"name", std::string("Jana Nováková")}, {"care_level", std::string("IV")}});
  const auto petr = tablet->create("clients", {{"name", std::string("Petr")}, {"care_level", std::string("III")}});
  const auto visit = tablet->create("visits", {{"note", std::string("brought the forms")}});
  const auto report = sync_client(*tablet, server.options(0)).sync();

  CHECK(report.reverted == 2);
  CHECK(report.quarantined == 0);
  CHECK(tablet->quarantined().empty());
  CHECK(tablet->outbox_size() == 0);
  // The server's values are back; the words the tablet may write reached the server.
  CHECK(field(*tablet, jana, "care_level") == value{std::string("II")});
  CHECK(field(*tablet, jana, "name") == value{std::string("Jana Nováková")});
  CHECK(field(*tablet, petr, "care_level") == value{});
  CHECK(field(*tablet, petr, "name") == value{std::string("Petr")});
  CHECK(tablet->is_synced("clients", jana));
  CHECK(tablet->is_synced("clients", petr));
  CHECK(tablet->is_synced("visits", visit));

  // Nobody else ever sees the refused values, and the office's write stays.
  sync_client(*office, server.options(k_office)).sync();
  sync_client(*coordinator, server.options(1)).sync();
  for (const auto* s : {office.get(), coordinator.get()}) {
    CHECK(field(*s, jana, "care_level") == value{std::string("II")});
    CHECK(field(*s, jana, "name") == value{std::string("Jana Nováková")});
    CHECK(field(*s, petr, "care_level") == value{});
    CHECK(s->get("visits", visit));
  }
  for (const auto& entry : server.get().store().history("clients", jana)) {
    for (const auto& f : entry.body.fields) {
      if (f.name == "care_level") CHECK(f.val == value{std::string("II")});
    }
  }

  // The office changes the level later; the tablet, whose revert carried the server's
  // version, takes it as any other change.
  office->update("clients", jana, {{"care_level", std::string("III")}});
  sync_client(*office, server.options(k_office)).sync();
  sync_client(*tablet, server.options(0)).sync();
  CHECK(field(*tablet, jana, "care_level") == value{std::string("III")});

  const auto digest = server.digest();
  CHECK(tablet->state_digest() == digest);
  CHECK(office->state_digest() == digest);
  sync_client(*coordinator, server.options(1)).sync();
  CHECK(coordinator->state_digest() == digest);
}

TEST_CASE("server_only: a server-side writer that is a tablet of the config is refused like any other", "[sync][policy]") {
  // Without server_side in its config entry the office's own store is refused by the
  // server too: the server decides whom it takes the field from, not the app.
  temp_dir dir;
  test_server server(dir);
  server.config().server_only_fields = {"clients.care_level"};
  server.restart();
  auto office = open_store(dir, "office", true, true);
  const auto id = office->create("clients", {{"name", std::string("Jana")}, {"care_level", std::string("II")}});
  const auto report = sync_client(*office, server.options(k_office)).sync();
  CHECK(report.reverted == 1);
  CHECK(field(*office, id, "care_level") == value{});
  CHECK(field(*office, id, "name") == value{std::string("Jana")});
  CHECK(office->state_digest() == server.digest());
}
