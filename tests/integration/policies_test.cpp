// Each merge policy over the real TLS server (issue 3): logs, sets, deletes against
// concurrent edits, and an app's own resolver. Two tablets work offline, then sync; the
// server's digest is the merge of its log, so all three must agree.

#include "fixture.hpp"

#include <caresync/protocol/errors.hpp>

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

using namespace caresync;
using caresync::testing::temp_dir;
using caresync::testing::test_server;

namespace {

schema policy_schema() {
  return schema{{
      collection_def{"clients",
                     {{"name", value_kind::text},
                      {"situation", value_kind::text, merge_policy::keep_both},
                      {"flags", value_kind::text, merge_policy::set_union}}},
      collection_def{"visits",
                     {{"status", value_kind::text},
                      {"note", value_kind::text, merge_policy::keep_both},
                      {"followups", value_kind::text, merge_policy::append}}},
  }};
}

std::unique_ptr<store> open_policy_tablet(const temp_dir& dir, const std::string& name,
                                          std::map<std::string, conflict_resolver, std::less<>> resolvers = {}) {
  store_options o{dir.file(name + ".db"), policy_schema(), durability::normal};
  o.resolvers = std::move(resolvers);
  return store::open(o);
}

std::vector<std::string> json_list(const value& v) {
  std::vector<std::string> out;
  for (const auto& e : nlohmann::json::parse(std::get<std::string>(v))) out.push_back(e.get<std::string>());
  return out;
}

/// Both tablets sync twice, so each has the other's changes.
void exchange(test_server& server, store& a, store& b) {
  for (int round = 0; round < 2; ++round) {
    sync_client(a, server.options(0)).sync();
    sync_client(b, server.options(1)).sync();
  }
}

}  // namespace

TEST_CASE("append: follow-ups written on two tablets offline are all kept, in the same order everywhere", "[sync][policy]") {
  temp_dir dir;
  test_server server(dir);
  auto a = open_policy_tablet(dir, "a");
  auto b = open_policy_tablet(dir, "b");
  const auto id = a->create("visits", {{"status", std::string("done")}, {"followups", std::string("call the GP")}});
  exchange(server, *a, *b);
  a->update("visits", id, {{"followups", std::string("bring the forms")}});
  b->update("visits", id, {{"followups", std::string("check the heating")}});
  b->update("visits", id, {{"followups", std::string("ask about the stairs")}});
  exchange(server, *a, *b);

  const auto log = json_list(a->get("visits", id)->at("followups"));
  REQUIRE(log.size() == 4);
  CHECK(log.front() == "call the GP");
  CHECK(std::count(log.begin(), log.end(), "bring the forms") == 1);
  CHECK(std::count(log.begin(), log.end(), "check the heating") == 1);
  CHECK(b->get("visits", id)->at("followups") == a->get("visits", id)->at("followups"));
  CHECK(a->conflict_count() == 0);
  CHECK(a->state_digest() == b->state_digest());
  CHECK(a->state_digest() == server.digest());
  // An entry is text, one at a time.
  CHECK_THROWS_AS(a->update("visits", id, {{"followups", std::string()}}), caresync::error);
}

TEST_CASE("set_union: a flag added on one tablet and removed on the other at the same time stays", "[sync][policy]") {
  temp_dir dir;
  test_server server(dir);
  auto a = open_policy_tablet(dir, "a");
  auto b = open_policy_tablet(dir, "b");
  const auto id = a->create("clients", {{"name", std::string("Jana")}, {"flags", std::string(R"(["lives_alone"])")}});
  exchange(server, *a, *b);
  // A removes lives_alone and adds dementia; B, not knowing, removes lives_alone too and
  // adds it again (a new add), and adds oxygen.
  a->update("clients", id, {{"flags", std::string(R"(["dementia"])")}});
  b->update("clients", id, {{"flags", std::string(R"([])")}});
  b->update("clients", id, {{"flags", std::string(R"(["lives_alone","oxygen"])")}});
  exchange(server, *a, *b);

  const auto flags = json_list(a->get("clients", id)->at("flags"));
  CHECK(flags == std::vector<std::string>{"dementia", "lives_alone", "oxygen"});
  CHECK(b->get("clients", id)->at("flags") == a->get("clients", id)->at("flags"));
  CHECK(a->state_digest() == server.digest());
  CHECK(b->state_digest() == server.digest());
  // A set is written whole, as a JSON array of strings.
  CHECK_THROWS_AS(a->update("clients", id, {{"flags", std::string("dementia")}}), caresync::error);
}

TEST_CASE("a delete against a concurrent edit: the delete stands and the edit stays visible until dismissed",
          "[sync][policy]") {
  temp_dir dir;
  test_server server(dir);
  auto a = open_policy_tablet(dir, "a");
  auto b = open_policy_tablet(dir, "b");
  const auto id = a->create("visits", {{"status", std::string("planned")}, {"note", std::string("first")}});
  exchange(server, *a, *b);
  // The coordinator deletes the visit while the worker, offline, records what happened.
  a->remove("visits", id);
  b->update("visits", id, {{"status", std::string("done")}, {"note", std::string("she was well, ate lunch")}});
  exchange(server, *a, *b);

  for (store* s : {a.get(), b.get()}) {
    CHECK_FALSE(s->get("visits", id));  // delete wins
    const auto open = s->conflicts("visits", id);
    REQUIRE(open.size() == 2);          // the worker's note and status, kept visible
    CHECK(open[0].record_deleted);
    CHECK(open[0].field == "note");
    REQUIRE(open[0].others.size() == 1);
    CHECK(open[0].others[0].val == value{std::string("she was well, ate lunch")});
    CHECK(open[0].others[0].ver.node == b->node());
  }
  CHECK(a->state_digest() == b->state_digest());
  CHECK(a->state_digest() == server.digest());
  // Resolving would bring the record back: refused; dismissing is a delete that saw it.
  CHECK_THROWS_AS(a->resolve_conflict("visits", id, "note", std::string("x")), caresync::error);
  a->dismiss_conflict("visits", id, "note");
  CHECK(a->conflicts("visits", id).empty());
  exchange(server, *a, *b);
  CHECK(b->conflicts("visits", id).empty());
  CHECK(b->state_digest() == server.digest());
}

TEST_CASE("an app's resolver settles a conflict once, on the tablet that wrote the value shown", "[sync][policy]") {
  temp_dir dir;
  test_server server(dir);
  std::size_t calls = 0;
  // Joins the two texts, the value shown first.
  const conflict_resolver join = [&calls](const open_conflict& c) -> std::optional<value> {
    ++calls;
    std::string merged = std::get<std::string>(c.current.val);
    for (const auto& o : c.others) merged += " / " + std::get<std::string>(o.val);
    return value{merged};
  };
  auto a = open_policy_tablet(dir, "a", {{"clients", join}});
  auto b = open_policy_tablet(dir, "b", {{"clients", join}});
  const auto id = a->create("clients", {{"name", std::string("Jana")}, {"situation", std::string("lives alone")}});
  exchange(server, *a, *b);
  a->update("clients", id, {{"situation", std::string("daughter visits on Sundays")}});
  b->update("clients", id, {{"situation", std::string("needs help with shopping")}});
  exchange(server, *a, *b);

  CHECK(calls == 1);  // only the tablet whose value won ran it
  CHECK(a->conflict_count() == 0);
  CHECK(b->conflict_count() == 0);
  const auto merged = std::get<std::string>(a->get("clients", id)->at("situation"));
  CHECK(merged.find("daughter visits on Sundays") != std::string::npos);
  CHECK(merged.find("needs help with shopping") != std::string::npos);
  CHECK(b->get("clients", id)->at("situation") == value{merged});
  CHECK(a->state_digest() == server.digest());
}
