// Deletes against concurrent edits over the real server and real TLS on 127.0.0.1
// (docs/conflicts.md, "Deletes"): tablet A deletes a client offline while tablet B edits
// it offline. Under update_revives the client comes back on A, B and in the server's
// fold of its log, with every field and B's edit, and the delete is an open conflict;
// under delete_wins (the default) the delete stands and B's edit is the conflict.

#include "fixture.hpp"

#include <caresync/protocol/errors.hpp>

#include <catch2/catch.hpp>

#include <string>

using namespace caresync;
using caresync::testing::care_schema;
using caresync::testing::open_tablet;
using caresync::testing::temp_dir;
using caresync::testing::test_server;

namespace {

schema clients_with(delete_policy deletes) {
  auto s = care_schema();
  for (auto& c : s.collections) {
    if (c.name == "clients") c.deletes = deletes;
  }
  return s;
}

std::string text_field(const store& s, const record_id& id, const std::string& field) {
  const auto r = s.get("clients", id);
  if (!r) return "<no record>";
  const auto it = r->find(field);
  if (it == r->end()) return "<no field>";
  const auto* t = std::get_if<std::string>(&it->second);
  return t ? *t : "<not text>";
}

/// The server's state of one record, folded from its log as it serves it.
record_state server_state(test_server& server, const record_id& id) {
  const auto all = server.get().store().materialize();
  const auto it = all.find({"clients", id});
  return it == all.end() ? record_state{} : it->second;
}

}  // namespace

TEST_CASE("a client deleted on one tablet and edited offline on another: update_revives brings it back, delete_wins keeps it deleted",
          "[sync][conflict][revive]") {
  const bool revives = GENERATE(true, false);
  INFO((revives ? "update_revives" : "delete_wins"));
  temp_dir dir;
  test_server server(dir);
  const auto s = clients_with(revives ? delete_policy::update_revives : delete_policy::delete_wins);
  auto a = open_tablet(dir, "a", s);
  auto b = open_tablet(dir, "b", s);
  const auto id = a->create("clients", {{"name", std::string("Synthetic Client One")},
                                        {"municipality", std::string("Tampere")},
                                        {"org_unit", std::string("east")}});
  sync_client(*a, server.options(0)).sync();
  sync_client(*b, server.options(1)).sync();
  REQUIRE(b->get("clients", id));

  // Offline on both: A deletes the client, B (not having seen that) corrects the municipality.
  a->remove("clients", id);
  b->update("clients", id, {{"municipality", std::string("Nokia")}});
  REQUIRE_FALSE(a->get("clients", id));

  sync_client(*a, server.options(0)).sync();
  sync_client(*b, server.options(1)).sync();  // receives A's delete
  sync_client(*a, server.options(0)).sync();  // receives B's edit

  CHECK(a->state_digest() == b->state_digest());
  CHECK(server.digest() == a->state_digest());
  const auto st = server_state(server, id);
  if (revives) {
    CHECK(is_revived(st));
    CHECK_FALSE(is_hidden(st));
    for (const store* t : {a.get(), b.get()}) {
      REQUIRE(t->get("clients", id));
      CHECK(text_field(*t, id, "name") == "Synthetic Client One");
      CHECK(text_field(*t, id, "municipality") == "Nokia");
      CHECK(text_field(*t, id, "org_unit") == "east");
      const auto conflicts = t->conflicts();
      REQUIRE(conflicts.size() == 1);
      CHECK(conflicts[0].record_revived);
      CHECK(conflicts[0].field.empty());
      CHECK(conflicts[0].current.ver.node == a->node());
      CHECK(t->conflict_count() == 1);
    }
    CHECK(st.fields.at("municipality").val == value{std::string("Nokia")});

    SECTION("dismissed on tablet A, the client stays and the conflict closes everywhere") {
      a->dismiss_conflict("clients", id, "");
      sync_client(*a, server.options(0)).sync();
      sync_client(*b, server.options(1)).sync();
      for (const store* t : {a.get(), b.get()}) {
        CHECK(t->conflicts().empty());
        CHECK(text_field(*t, id, "municipality") == "Nokia");
      }
      CHECK_FALSE(is_revived(server_state(server, id)));
      CHECK(b->state_digest() == a->state_digest());
      CHECK(server.digest() == a->state_digest());
    }
    SECTION("deleted again on tablet B, having seen the edit, it is gone everywhere") {
      b->remove("clients", id);
      sync_client(*b, server.options(1)).sync();
      sync_client(*a, server.options(0)).sync();
      for (const store* t : {a.get(), b.get()}) {
        CHECK_FALSE(t->get("clients", id));
        CHECK(t->conflicts().empty());
      }
      CHECK(is_hidden(server_state(server, id)));
      CHECK(b->state_digest() == a->state_digest());
      CHECK(server.digest() == a->state_digest());
    }
  } else {
    CHECK(st.deleted);
    for (const store* t : {a.get(), b.get()}) {
      CHECK_FALSE(t->get("clients", id));
      const auto conflicts = t->conflicts();
      REQUIRE(conflicts.size() == 1);
      CHECK(conflicts[0].record_deleted);
      CHECK_FALSE(conflicts[0].record_revived);
      CHECK(conflicts[0].field == "municipality");
      REQUIRE(conflicts[0].others.size() == 1);
      CHECK(conflicts[0].others[0].val == value{std::string("Nokia")});
    }
  }
}
