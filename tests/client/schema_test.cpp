#include "../support/temp_dir.hpp"

#include <caresync/protocol/errors.hpp>
#include <caresync/schema.hpp>
#include <caresync/store.hpp>

#include <catch2/catch.hpp>

#include <filesystem>
#include <string>

using caresync::collection_def;
using caresync::field_def;
using caresync::schema;
using caresync::storage_errc;
using caresync::value_kind;

namespace {

schema good_schema() {
  return schema{{
      collection_def{"visits", {{"client", value_kind::text}, {"minutes", value_kind::integer},
                                {"temperature", value_kind::real}, {"signature", value_kind::bytes}}},
      collection_def{"caregivers", {{"name", value_kind::text}}},
  }};
}

struct refusal {
  std::error_code code;
  std::string message;
};

/// What validate() throws for `s`; an empty code if it accepts it.
refusal refusal_of(const schema& s) {
  try {
    caresync::validate(s);
  } catch (const caresync::error& e) {
    return {e.code(), e.what()};
  }
  return {};
}

}  // namespace

TEST_CASE("validate accepts a well-formed schema", "[store]") {
  CHECK_NOTHROW(caresync::validate(good_schema()));
  CHECK_NOTHROW(caresync::validate(schema{}));
  CHECK_NOTHROW(caresync::validate(schema{{collection_def{"empty_collection", {}}}}));
  // The longest valid name: 63 characters, a letter first, digits and _ after.
  const std::string longest = "a" + std::string(61, '0') + "_";
  REQUIRE(longest.size() == 63);
  CHECK_NOTHROW(caresync::validate(schema{{collection_def{longest, {{longest, value_kind::integer}}}}}));
}

TEST_CASE("validate refuses bad schemas with invalid_argument naming the fault", "[store]") {
  schema s = good_schema();
  std::string culprit;

  SECTION("a collection declared twice") {
    s.collections.push_back(collection_def{"visits", {{"other", value_kind::text}}});
    culprit = "visits";
  }
  SECTION("a field declared twice") {
    s.collections[0].fields.push_back(field_def{"minutes", value_kind::real});
    culprit = "minutes";
  }
  SECTION("a field named id") {
    s.collections[1].fields.push_back(field_def{"id", value_kind::text});
    culprit = "'id'";
  }
  SECTION("an uppercase collection name") {
    s.collections[0].name = "Visits";
    culprit = "Visits";
  }
  SECTION("an uppercase field name") {
    s.collections[0].fields[0].name = "clientName";
    culprit = "clientName";
  }
  SECTION("a name starting with a digit") {
    s.collections[1].fields[0].name = "2nd_name";
    culprit = "2nd_name";
  }
  SECTION("a collection name with the reserved cs_ prefix") {
    s.collections[0].name = "cs_visits";
    culprit = "cs_visits";
  }
  SECTION("a field name with the reserved cs_ prefix") {
    s.collections[0].fields[0].name = "cs_client";
    culprit = "cs_client";
  }
  SECTION("a 64-character name") {
    culprit = "a" + std::string(63, 'b');
    s.collections[1].name = culprit;
  }
  SECTION("an empty name") {
    s.collections[0].fields[1].name = "";
    culprit = "''";
  }
  SECTION("a name with a hyphen") {
    s.collections[1].name = "care-givers";
    culprit = "care-givers";
  }
  SECTION("a field of type null") {
    s.collections[0].fields[2].type = value_kind::null;
    culprit = "temperature";
  }
  SECTION("a field of a type that does not exist") {
    s.collections[0].fields[3].type = static_cast<value_kind>(9);
    culprit = "signature";
  }
  SECTION("a delete policy that does not exist") {
    s.collections[1].deletes = static_cast<caresync::delete_policy>(7);
    culprit = "delete policy";
  }
  SECTION("a server_only field in a collection whose deletes revive") {
    s.collections[1].deletes = caresync::delete_policy::update_revives;
    s.collections[1].fields[0].server_only = true;
    culprit = "update_revives";
  }

  const auto r = refusal_of(s);
  CHECK(r.code == make_error_code(storage_errc::invalid_argument));
  CHECK_THAT(r.message, Catch::Contains(culprit));
}

TEST_CASE("schema lookups find collections and fields by exact name", "[store]") {
  const schema s = good_schema();
  const collection_def* visits = s.find("visits");
  REQUIRE(visits != nullptr);
  CHECK(visits == &s.collections[0]);
  CHECK(s.find("caregivers") == &s.collections[1]);
  CHECK(s.find("visit") == nullptr);
  CHECK(s.find("VISITS") == nullptr);
  CHECK(s.find("") == nullptr);

  const field_def* minutes = visits->find("minutes");
  REQUIRE(minutes != nullptr);
  CHECK(minutes->type == value_kind::integer);
  CHECK(visits->find("temperature") == &visits->fields[2]);
  CHECK(visits->find("id") == nullptr);
  CHECK(visits->find("name") == nullptr);
}

TEST_CASE("store::open checks the schema before touching the file", "[store]") {
  caresync::testing::temp_dir dir;
  const auto path = dir.file("tablet.db");
  schema s = good_schema();
  s.collections[0].fields.push_back(field_def{"client", value_kind::text});  // declared twice
  try {
    (void)caresync::store::open({path, s});
    FAIL("open accepted a schema with a duplicate field");
  } catch (const caresync::error& e) {
    CHECK(e.code() == make_error_code(storage_errc::invalid_argument));
    CHECK_THAT(std::string(e.what()), Catch::Contains("client"));
  }
  CHECK_FALSE(std::filesystem::exists(path));
}
