// The C API (caresync.h) without a server: records in and out as JSON with every value
// kind, the schema as JSON, and every error path a C caller can reach (bad JSON,
// unknown collection or field, values that do not fit, missing records, NULL
// arguments), each with its status, its message and NULL out-parameters. Sync against
// the real server is in tests/integration/c_api_sync_test.cpp.
#include "../support/temp_dir.hpp"
#include "c_api_support.hpp"

#include <caresync/caresync.h>
#include <caresync/store.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

using caresync::testing::c_api_schema;
using caresync::testing::c_store;
using caresync::testing::c_string;
using caresync::testing::temp_dir;
using json = nlohmann::json;

namespace {

/// Opens a store with c_api_schema() in `dir`; fails the test if it cannot.
void open(const temp_dir& dir, c_store& s, const char* name = "tablet.db") {
  const auto status = cs_store_open(dir.file(name).c_str(), c_api_schema(), &s.p);
  INFO(cs_open_error());
  REQUIRE(status == CS_OK);
  REQUIRE(s.p != nullptr);
}

std::string create(cs_store* s, const char* fields) {
  c_string id;
  const auto status = cs_create(s, "visits", fields, id.out());
  INFO(cs_last_error(s));
  REQUIRE(status == CS_OK);
  return id.str();
}

json get(cs_store* s, const std::string& id) {
  c_string record;
  const auto status = cs_get(s, "visits", id.c_str(), record.out());
  INFO(cs_last_error(s));
  REQUIRE(status == CS_OK);
  return json::parse(record.str());
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("c_api: a record goes in and comes out as JSON with every value kind", "[c_api][store]") {
  temp_dir dir;
  std::string id;
  {
    c_store s;
    open(dir, s);
    // Bytes 0x00 0xff 0x10 0x80 0x7f: base64 "AP8QgH8=".
    id = create(s, R"({"date": "2026-11-23", "duration_min": 45, "score": 3, "photo": {"base64": "AP8QgH8="},
                       "note": "Paní Vzorová (synthetic) — kávu ☕", "tasks": "[\"shopping\",\"meds\"]"})");
    CHECK(id.size() == 36);
    CHECK(std::string(cs_last_error(s)).empty());

    const auto r = get(s, id);
    CHECK(r.at("id") == id);
    CHECK(r.at("date") == "2026-11-23");
    CHECK(r.at("duration_min").is_number_integer());
    CHECK(r.at("duration_min") == 45);
    CHECK(r.at("score").is_number_float());  // 3 was given for a real field: stored as 3.0
    CHECK(r.at("score").get<double>() == 3.0);
    CHECK(r.at("photo") == json{{"base64", "AP8QgH8="}});
    CHECK(r.at("note") == "Paní Vzorová (synthetic) — kávu ☕");
    CHECK(r.at("tasks") == R"(["meds","shopping"])");  // set_union shows its elements sorted
    CHECK(r.size() == 7);
    // The record object starts with "id".
    c_string raw;
    REQUIRE(cs_get(s, "visits", id.c_str(), raw.out()) == CS_OK);
    CHECK(raw.str().rfind(R"({"id":")" + id + "\"", 0) == 0);

    SECTION("an update changes the fields given, keeps the others, and null clears one") {
      REQUIRE(cs_update(s, "visits", id.c_str(), R"({"duration_min": -9223372036854775808, "score": 0.1, "date": null,
                                                      "photo": {"base64": ""}})") == CS_OK);
      const auto u = get(s, id);
      CHECK(u.at("duration_min").get<std::int64_t>() == INT64_MIN);
      CHECK(u.at("score").get<double>() == 0.1);
      CHECK(u.at("photo") == json{{"base64", ""}});
      CHECK(u.at("note") == "Paní Vzorová (synthetic) — kávu ☕");
      CHECK((!u.contains("date") || u.at("date").is_null()));
    }
    SECTION("base64 of every length round-trips") {
      for (const char* b64 : {"QQ==", "QUI=", "QUJD", "QUJDRA==", "/+/+"}) {
        const auto fields = std::string(R"({"photo": {"base64": ")") + b64 + "\"}}";
        REQUIRE(cs_update(s, "visits", id.c_str(), fields.c_str()) == CS_OK);
        CHECK(get(s, id).at("photo").at("base64") == b64);
      }
    }
  }
  // The same file through the C++ API: the kinds are real integers, reals and bytes.
  caresync::schema cpp{{caresync::collection_def{"visits",
                                                 {{"date", caresync::value_kind::text},
                                                  {"duration_min", caresync::value_kind::integer},
                                                  {"score", caresync::value_kind::real},
                                                  {"photo", caresync::value_kind::bytes}}}}};
  auto local = caresync::store::open(caresync::store_options{dir.file("tablet.db"), cpp});
  const auto fields = local->get("visits", *caresync::record_id::parse(id));
  REQUIRE(fields);
  CHECK(std::holds_alternative<std::int64_t>(fields->at("duration_min")));
  CHECK(std::holds_alternative<double>(fields->at("score")));
  REQUIRE(std::holds_alternative<caresync::blob>(fields->at("photo")));
}

TEST_CASE("c_api: remove, then the record is not found", "[c_api][store]") {
  temp_dir dir;
  c_store s;
  open(dir, s);
  const auto id = create(s, R"({"date": "2026-11-23"})");
  REQUIRE(cs_remove(s, "visits", id.c_str()) == CS_OK);

  c_string record;
  record.p = static_cast<char*>(std::malloc(1));  // a stale value the call must reset (and not leak: c_string frees it)
  char* stale = record.p;
  CHECK(cs_get(s, "visits", id.c_str(), &record.p) == CS_NOT_FOUND);
  cs_free(stale);
  CHECK(record.p == nullptr);
  CHECK(contains(cs_last_error(s), id));
  CHECK(contains(cs_last_error(s), "does not exist or was deleted"));
  CHECK(cs_update(s, "visits", id.c_str(), R"({"date": "2026-11-24"})") == CS_NOT_FOUND);
  CHECK(cs_remove(s, "visits", id.c_str()) == CS_NOT_FOUND);
  // A well-formed id nobody made.
  CHECK(cs_get(s, "visits", "0b7c5c3e-6f1d-4a52-9d0e-2f3a4b5c6d7e", record.out()) == CS_NOT_FOUND);
  CHECK_FALSE(cs_is_transient(CS_NOT_FOUND));
  // A success clears the message.
  create(s, "{}");
  CHECK(std::string(cs_last_error(s)).empty());
}

TEST_CASE("c_api: values and JSON that do not fit are refused with a message", "[c_api][store]") {
  temp_dir dir;
  c_store s;
  open(dir, s);
  const auto id = create(s, R"({"date": "2026-11-23", "duration_min": 30})");

  struct refusal {
    const char* fields;
    const char* says;
  };
  const std::vector<refusal> refused = {
      {R"({"date": )", "not valid JSON"},
      {"", "not valid JSON"},
      {R"(["date", "2026-11-23"])", "JSON object"},
      {R"({"date": 20261123})", "holds text"},
      {R"({"duration_min": "45"})", "holds integer"},
      {R"({"duration_min": 4.5})", "holds integer"},
      {R"({"duration_min": 9223372036854775808})", "beyond a 64-bit signed integer"},
      {R"({"duration_min": true})", "boolean is not a caresync value"},
      {R"({"note": ["a", "b"]})", "array is not a caresync value"},
      {R"({"photo": {"hex": "00ff"}})", "object is not a caresync value"},
      {R"({"photo": {"base64": "AP8"}})", "base64 text is not valid"},
      {R"({"photo": {"base64": "A=P8"}})", "base64 text is not valid"},
      {R"({"photo": {"base64": "AP!8"}})", "base64 text is not valid"},
      {R"({"photo": "AP8QgH8="})", "holds bytes"},
      {R"({"mood": "fine"})", "no field 'mood'"},
      {R"({"id": "0b7c5c3e-6f1d-4a52-9d0e-2f3a4b5c6d7e"})", "'id'"},
  };
  for (const auto& r : refused) {
    INFO(r.fields);
    c_string made;
    CHECK(cs_create(s, "visits", r.fields, made.out()) == CS_INVALID_ARGUMENT);
    CHECK(made.p == nullptr);
    CHECK(contains(cs_last_error(s), r.says));
    CHECK(cs_update(s, "visits", id.c_str(), r.fields) == CS_INVALID_ARGUMENT);
    CHECK(contains(cs_last_error(s), r.says));
  }
  // Nothing of the refused writes reached the record.
  const auto r = get(s, id);
  CHECK(r.at("duration_min") == 30);
  CHECK(r.size() == 3);

  SECTION("unknown collection") {
    c_string out;
    CHECK(cs_create(s, "referrals", "{}", out.out()) == CS_INVALID_ARGUMENT);
    CHECK(contains(cs_last_error(s), "collection 'referrals' is not declared"));
    CHECK(cs_get(s, "referrals", id.c_str(), out.out()) == CS_INVALID_ARGUMENT);
    CHECK(cs_update(s, "referrals", id.c_str(), "{}") == CS_INVALID_ARGUMENT);
    CHECK(cs_remove(s, "referrals", id.c_str()) == CS_INVALID_ARGUMENT);
  }
  SECTION("malformed record id") {
    c_string out;
    CHECK(cs_get(s, "visits", "visit-1", out.out()) == CS_INVALID_ARGUMENT);
    CHECK(contains(cs_last_error(s), "'visit-1' is not a record id"));
    CHECK(cs_update(s, "visits", "", "{}") == CS_INVALID_ARGUMENT);
    CHECK(cs_remove(s, "visits", "0b7c5c3e-6f1d-4a52-9d0e") == CS_INVALID_ARGUMENT);
    CHECK(cs_resolve_conflict(s, "visits", "x", "note", "null") == CS_INVALID_ARGUMENT);
    CHECK(cs_dismiss_conflict(s, "visits", "x", "note") == CS_INVALID_ARGUMENT);
  }
}

TEST_CASE("c_api: NULL arguments are refused, never dereferenced", "[c_api][store]") {
  temp_dir dir;
  c_store s;
  open(dir, s);
  const auto id = create(s, "{}");
  c_string out;

  SECTION("a NULL store: the message is the thread's") {
    const auto null_store = [&](cs_status status, const char* function) {
      CHECK(status == CS_INVALID_ARGUMENT);
      CHECK(contains(cs_open_error(), std::string(function) + ": the store is NULL"));
      CHECK(std::string(cs_last_error(nullptr)) == cs_open_error());
    };
    null_store(cs_create(nullptr, "visits", "{}", out.out()), "cs_create");
    CHECK(out.p == nullptr);
    null_store(cs_update(nullptr, "visits", id.c_str(), "{}"), "cs_update");
    null_store(cs_remove(nullptr, "visits", id.c_str()), "cs_remove");
    null_store(cs_get(nullptr, "visits", id.c_str(), out.out()), "cs_get");
    null_store(cs_conflicts(nullptr, out.out()), "cs_conflicts");
    null_store(cs_resolve_conflict(nullptr, "visits", id.c_str(), "note", "null"), "cs_resolve_conflict");
    null_store(cs_dismiss_conflict(nullptr, "visits", id.c_str(), "note"), "cs_dismiss_conflict");
    null_store(cs_sync(nullptr, "{}", nullptr, nullptr, out.out()), "cs_sync");
    cs_store_close(nullptr);  // ignored
    cs_free(nullptr);         // ignored
  }
  SECTION("NULL arguments with a store: the message is the store's") {
    const auto null_arg = [&](cs_status status, const std::string& says) {
      CHECK(status == CS_INVALID_ARGUMENT);
      CHECK(std::string(cs_last_error(s)) == says + " is NULL");
    };
    null_arg(cs_create(s, nullptr, "{}", out.out()), "cs_create: collection");
    null_arg(cs_create(s, "visits", nullptr, out.out()), "cs_create: fields_json");
    null_arg(cs_create(s, "visits", "{}", nullptr), "cs_create: id_out");
    null_arg(cs_update(s, nullptr, id.c_str(), "{}"), "cs_update: collection");
    null_arg(cs_update(s, "visits", nullptr, "{}"), "cs_update: id");
    null_arg(cs_update(s, "visits", id.c_str(), nullptr), "cs_update: fields_json");
    null_arg(cs_remove(s, nullptr, id.c_str()), "cs_remove: collection");
    null_arg(cs_remove(s, "visits", nullptr), "cs_remove: id");
    null_arg(cs_get(s, nullptr, id.c_str(), out.out()), "cs_get: collection");
    null_arg(cs_get(s, "visits", nullptr, out.out()), "cs_get: id");
    null_arg(cs_get(s, "visits", id.c_str(), nullptr), "cs_get: record_json_out");
    null_arg(cs_conflicts(s, nullptr), "cs_conflicts: json_out");
    null_arg(cs_resolve_conflict(s, nullptr, id.c_str(), "note", "null"), "cs_resolve_conflict: collection");
    null_arg(cs_resolve_conflict(s, "visits", nullptr, "note", "null"), "cs_resolve_conflict: id");
    null_arg(cs_resolve_conflict(s, "visits", id.c_str(), nullptr, "null"), "cs_resolve_conflict: field");
    null_arg(cs_resolve_conflict(s, "visits", id.c_str(), "note", nullptr), "cs_resolve_conflict: value_json");
    null_arg(cs_dismiss_conflict(s, nullptr, id.c_str(), "note"), "cs_dismiss_conflict: collection");
    null_arg(cs_dismiss_conflict(s, "visits", nullptr, "note"), "cs_dismiss_conflict: id");
    null_arg(cs_dismiss_conflict(s, "visits", id.c_str(), nullptr), "cs_dismiss_conflict: field");
    null_arg(cs_sync(s, nullptr, nullptr, nullptr, out.out()), "cs_sync: options_json");
    // The store still works, and the record was not touched.
    CHECK(get(s, id).size() == 1);
  }
  SECTION("NULL arguments to calls without a store") {
    cs_store* opened = nullptr;
    CHECK(cs_store_open(nullptr, c_api_schema(), &opened) == CS_INVALID_ARGUMENT);
    CHECK(std::string(cs_open_error()) == "cs_store_open: path is NULL");
    CHECK(cs_store_open(dir.file("other.db").c_str(), nullptr, &opened) == CS_INVALID_ARGUMENT);
    CHECK(std::string(cs_open_error()) == "cs_store_open: schema_json is NULL");
    CHECK(cs_store_open(dir.file("other.db").c_str(), c_api_schema(), nullptr) == CS_INVALID_ARGUMENT);
    CHECK(std::string(cs_open_error()) == "cs_store_open: out is NULL");
    CHECK(opened == nullptr);
    CHECK(cs_enroll(nullptr, "CODE", out.out()) == CS_INVALID_ARGUMENT);
    CHECK(std::string(cs_open_error()) == "cs_enroll: options_json is NULL");
    CHECK(cs_enroll("{}", nullptr, out.out()) == CS_INVALID_ARGUMENT);
    CHECK(std::string(cs_open_error()) == "cs_enroll: code is NULL");
    CHECK(cs_enroll("{}", "CODE", nullptr) == CS_INVALID_ARGUMENT);
    CHECK(std::string(cs_open_error()) == "cs_enroll: enrollment_json_out is NULL");
  }
}

TEST_CASE("c_api: the schema comes as JSON and a bad one is refused", "[c_api][store]") {
  temp_dir dir;
  cs_store* s = nullptr;
  struct refusal {
    const char* schema;
    const char* says;
  };
  const std::vector<refusal> refused = {
      {R"({"collections": [)", "schema_json is not valid JSON"},
      {R"([])", "\"collections\" array"},
      {R"({"collections": {}})", "\"collections\" array"},
      {R"({"collections": [], "version": 2})", "\"version\" is not a key it takes"},
      {R"({"collections": ["visits"]})", "must be an object"},
      {R"({"collections": [{"fields": []}]})", "needs \"name\" as a string"},
      {R"({"collections": [{"name": "visits"}]})", "needs a \"fields\" array"},
      {R"({"collections": [{"name": "visits", "fields": [{"name": "note"}]}]})", "needs \"type\" as a string"},
      {R"({"collections": [{"name": "visits", "fields": [{"name": "note", "type": "string"}]}]})",
       "type 'string' is unknown"},
      {R"({"collections": [{"name": "visits", "fields": [{"name": "note", "type": "null"}]}]})", "needs a type"},
      {R"({"collections": [{"name": "visits", "fields": [{"name": "note", "type": "text", "policy": "newest"}]}]})",
       "policy 'newest' is unknown"},
      {R"({"collections": [{"name": "visits", "fields": [{"name": "note", "type": "text", "merge": "x"}]}]})",
       "\"merge\" is not a key it takes"},
      {R"({"collections": [{"name": "Visits", "fields": []}]})", "collection name 'Visits' is invalid"},
      {R"({"collections": [{"name": "visits", "fields": [{"name": "n", "type": "integer", "policy": "append"}]}]})",
       "declare it text"},
      {R"({"collections": [{"name": "clients", "deletes": "revive", "fields": []}]})", "deletes 'revive' is unknown"},
      {R"({"collections": [{"name": "clients", "deletes": "update_revives", "fields": [{"name": "level", "type": "integer", "server_only": true}]}]})",
       "update_revives"},
  };
  for (const auto& r : refused) {
    INFO(r.schema);
    s = reinterpret_cast<cs_store*>(&dir);  // a stale value the call must reset
    CHECK(cs_store_open(dir.file("tablet.db").c_str(), r.schema, &s) == CS_INVALID_ARGUMENT);
    CHECK(s == nullptr);
    CHECK(contains(cs_open_error(), r.says));
  }

  SECTION("a store whose tables differ from the schema") {
    {
      c_store first;
      open(dir, first);
    }
    const char* other = R"({"collections": [{"name": "visits", "fields": [{"name": "date", "type": "integer"}]}]})";
    CHECK(cs_store_open(dir.file("tablet.db").c_str(), other, &s) == CS_STORAGE);
    CHECK(s == nullptr);
    CHECK(std::string(cs_open_error()).size() > 10);
    CHECK_FALSE(cs_is_transient(CS_STORAGE));
  }
  SECTION("a file that cannot be created") {
    CHECK(cs_store_open(dir.file("no-such-directory/tablet.db").c_str(), c_api_schema(), &s) == CS_STORAGE);
    CHECK(s == nullptr);
    CHECK(contains(cs_open_error(), "no-such-directory"));
  }
  SECTION("a good schema opens, and an open clears the thread's message") {
    c_store ok;
    REQUIRE(cs_store_open(dir.file("tablet.db").c_str(), c_api_schema(), &ok.p) == CS_OK);
    CHECK(std::string(cs_open_error()).empty());
    CHECK(std::string(cs_last_error(ok)).empty());
  }
}

TEST_CASE("c_api: conflicts on a store without any are an empty list, and resolving one is not found",
          "[c_api][store]") {
  temp_dir dir;
  c_store s;
  open(dir, s);
  const auto id = create(s, R"({"note": "Visit note (synthetic)."})");
  c_string list;
  REQUIRE(cs_conflicts(s, list.out()) == CS_OK);
  CHECK(list.str() == "[]");
  CHECK(cs_resolve_conflict(s, "visits", id.c_str(), "note", R"("merged")") == CS_NOT_FOUND);
  CHECK(contains(cs_last_error(s), "note"));
  CHECK(cs_dismiss_conflict(s, "visits", id.c_str(), "note") == CS_NOT_FOUND);
  CHECK(cs_resolve_conflict(s, "visits", id.c_str(), "note", R"("unterminated)") == CS_INVALID_ARGUMENT);
  CHECK(contains(cs_last_error(s), "value_json is not valid JSON"));
  CHECK(cs_resolve_conflict(s, "visits", id.c_str(), "note", "[1]") == CS_INVALID_ARGUMENT);
  CHECK(get(s, id).at("note") == "Visit note (synthetic).");
}

TEST_CASE("c_api: sync and enroll refuse bad options before connecting, and report an unreachable server",
          "[c_api][sync]") {
  temp_dir dir;
  c_store s;
  open(dir, s);
  c_string report;
  const auto refused = [&](const char* options, const char* says) {
    INFO(options);
    CHECK(cs_sync(s, options, nullptr, nullptr, report.out()) == CS_INVALID_ARGUMENT);
    CHECK(report.p == nullptr);
    CHECK(contains(cs_last_error(s), says));
  };
  refused(R"({"host": )", "options_json is not valid JSON");
  refused(R"([])", "must be a JSON object");
  refused(R"({"hostname": "a"})", "\"hostname\" is not a key it takes");
  refused(R"({"host": 1})", "needs \"host\" as a string");
  refused(R"({"port": "7443"})", "\"port\" must be an integer from 1 to 65535");
  refused(R"({"port": 70000})", "\"port\" must be an integer from 1 to 65535");
  refused(R"({"max_attempts": 0})", "\"max_attempts\" must be an integer from 1");
  refused(R"({"io_timeout_ms": -5})", "\"io_timeout_ms\" must be an integer");
  refused(R"({"device_id": "tablet-1", "token": "t", "port": 7443})", "CA file");  // no CA, no pin
  refused(R"({"ca_file": "ca.pem", "port": 7443})", "");                           // no device id or token

  // Nothing listens on port 1 of loopback: refused at once, a transient network error.
  const auto status = cs_sync(s, R"({"host": "127.0.0.1", "port": 1, "device_id": "tablet-1", "token": "t",
                                     "pinned_key_sha256": "0000000000000000000000000000000000000000000000000000000000000000",
                                     "max_attempts": 1, "connect_timeout_ms": 5000})",
                              nullptr, nullptr, report.out());
  CHECK(status == CS_NETWORK);
  CHECK(cs_is_transient(status));
  CHECK(report.p == nullptr);
  CHECK_FALSE(std::string(cs_last_error(s)).empty());

  c_string enrollment;
  CHECK(cs_enroll(R"({"port": 7443})", "ABCD-EFGH", enrollment.out()) == CS_INVALID_ARGUMENT);
  CHECK(contains(cs_open_error(), "CA file"));
  CHECK(cs_enroll(R"({"ca_file": "ca.pem"})", "", enrollment.out()) == CS_INVALID_ARGUMENT);
  CHECK(contains(cs_open_error(), "code"));
  CHECK(cs_enroll(R"({"tls": true})", "ABCD", enrollment.out()) == CS_INVALID_ARGUMENT);
  CHECK(enrollment.p == nullptr);
}

TEST_CASE("c_api: status names and which statuses are transient", "[c_api]") {
  CHECK(std::string(cs_status_name(CS_OK)) == "CS_OK");
  CHECK(std::string(cs_status_name(CS_NOT_FOUND)) == "CS_NOT_FOUND");
  CHECK(std::string(cs_status_name(CS_REVOKED)) == "CS_REVOKED");
  CHECK(std::string(cs_status_name(static_cast<cs_status>(99))) == "CS_UNKNOWN");
  std::vector<cs_status> transient;
  for (int i = 0; i <= CS_INTERNAL; ++i) {
    const auto status = static_cast<cs_status>(i);
    CHECK(std::string(cs_status_name(status)) != "CS_UNKNOWN");
    if (cs_is_transient(status)) transient.push_back(status);
  }
  CHECK(transient == std::vector<cs_status>{CS_STORAGE_BUSY, CS_NETWORK, CS_SERVER_BUSY});
}

TEST_CASE("c_api: a collection's deletes may revive, and a revived record's conflict is dismissed with field \"\"",
          "[c_api][store][revive]") {
  temp_dir dir;
  c_store s;
  const char* schema = R"({"collections": [{"name": "clients", "deletes": "update_revives",
                                            "fields": [{"name": "name", "type": "text"}]},
                                           {"name": "visits", "deletes": "delete_wins",
                                            "fields": [{"name": "date", "type": "text"}]}]})";
  REQUIRE(cs_store_open(dir.file("tablet.db").c_str(), schema, &s.p) == CS_OK);
  c_string id;
  REQUIRE(cs_create(s, "clients", R"({"name": "Synthetic"})", id.out()) == CS_OK);
  REQUIRE(cs_remove(s, "clients", id.p) == CS_OK);
  // Hidden as any deleted record; nothing revived it, so there is nothing to dismiss.
  c_string record;
  CHECK(cs_get(s, "clients", id.p, record.out()) == CS_NOT_FOUND);
  CHECK(cs_dismiss_conflict(s, "clients", id.p, "") == CS_NOT_FOUND);
  c_string listed;
  REQUIRE(cs_conflicts(s, listed.out()) == CS_OK);
  CHECK(json::parse(listed.p).empty());
}
