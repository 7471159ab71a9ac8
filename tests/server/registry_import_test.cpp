// Registry import from CSV (issue 5) into a real SQLite change log: what is written,
// that a second import of the same file writes nothing, and that bad files are refused
// whole, naming the record, before anything is written.

#include "../support/temp_dir.hpp"

#include <caresync/protocol/errors.hpp>
#include <caresync/server/registry_import.hpp>

#include <catch2/catch.hpp>

using namespace caresync;
using namespace caresync::server;
using caresync::testing::temp_dir;

namespace {

const std::string k_header = "registration_id,name,service_type,municipalities,capacity:integer\r\n";

std::string error_of(change_store& store, const std::string& csv, const registry_import_options& o = {}) {
  try {
    import_registry(store, csv, o);
  } catch (const error& e) {
    CHECK(e.code() == make_error_code(storage_errc::invalid_argument));
    return e.what();
  }
  FAIL("the import was not refused");
  return {};
}

const record_state& service(const std::map<record_key, record_state>& all, const std::string& key) {
  for (const auto& [k, state] : all) {
    if (k.first != "services" || state.deleted) continue;
    const auto f = state.fields.find("registration_id");
    if (f != state.fields.end() && f->second.val == value{key}) return state;
  }
  FAIL("no live service " << key);
  throw std::logic_error("unreachable");
}

}  // namespace

TEST_CASE("registry import: rows become services, a second import writes nothing, a change writes only what changed",
          "[registry]") {
  temp_dir dir;
  auto store = open_sqlite_change_store(dir.file("server.db"));
  registry_import_options o;
  o.now_ms = 1'790'000'000'000;
  const std::string csv = k_header +
                          "4711001,\"Vzorová pečovatelská služba, s.r.o.\",pecovatelska_sluzba,\"Horní Lhota; Dolní Lhota\",40\r\n"
                          "4711002,Fiktivní osobní asistence,osobni_asistence,Horní Lhota,\r\n"
                          "4711003,\"Poradna \"\"U lípy\"\"\",odborne_socialni_poradenstvi,Dolní Lhota,12\r\n";
  const auto first = import_registry(*store, csv, o);
  CHECK(first.rows == 3);
  CHECK(first.created == 3);
  CHECK(first.last_seq - first.first_seq == 2);
  auto all = store->materialize();
  CHECK(all.size() == 3);
  const auto& s1 = service(all, "4711001");
  CHECK(s1.fields.at("name").val == value{std::string("Vzorová pečovatelská služba, s.r.o.")});
  CHECK(s1.fields.at("capacity").val == value{std::int64_t{40}});
  CHECK(service(all, "4711003").fields.at("name").val == value{std::string("Poradna \"U lípy\"")});
  CHECK(service(all, "4711002").fields.count("capacity") == 0);  // empty cell: no value
  CHECK(all.count({"services", registry_record_id("services", "4711001")}) == 1);  // a stable id

  const auto head = store->head();
  const auto again = import_registry(*store, csv, o);
  CHECK(again.unchanged == 3);
  CHECK(again.last_seq == 0);
  CHECK(store->head() == head);

  // One capacity changes, one service is gone from the file, one is new.
  const std::string changed = k_header +
                              "4711001,\"Vzorová pečovatelská služba, s.r.o.\",pecovatelska_sluzba,\"Horní Lhota; Dolní Lhota\",45\r\n"
                              "4711002,Fiktivní osobní asistence,osobni_asistence,Horní Lhota,\r\n"
                              "4711004,Fiktivní terénní program,terenni_programy,Horní Lhota,5\r\n";
  const auto third = import_registry(*store, changed, o);
  CHECK(third.updated == 1);
  CHECK(third.created == 1);
  CHECK(third.unchanged == 1);
  CHECK(third.missing_kept == 1);
  CHECK(third.deleted == 0);
  const auto history = store->history("services", registry_record_id("services", "4711001"));
  REQUIRE(history.size() == 2);
  REQUIRE(history.back().body.fields.size() == 1);  // only the capacity was written
  CHECK(history.back().body.fields[0] == field_write{"capacity", value{std::int64_t{45}}});
  CHECK(history.back().body.ver > history.front().body.ver);

  // A full replacement deletes what the file no longer lists; importing it again later
  // brings it back under a new id (tombstones are final).
  o.delete_missing = true;
  CHECK(import_registry(*store, changed, o).deleted == 1);
  all = store->materialize();
  CHECK(all.at({"services", registry_record_id("services", "4711003")}).deleted);
  const auto back = import_registry(*store, csv, o);
  CHECK(back.created == 1);
  CHECK(back.deleted == 1);  // 4711004 is not in the first file
  all = store->materialize();
  CHECK(service(all, "4711003").fields.at("capacity").val == value{std::int64_t{12}});
}

TEST_CASE("registry import: a bad file is refused whole, naming the record, and nothing is written", "[registry]") {
  temp_dir dir;
  auto store = open_sqlite_change_store(dir.file("server.db"));
  const std::string good = "4711001,Služba,pecovatelska_sluzba,Horní Lhota,40\r\n";
  CHECK_THAT(error_of(*store, ""), Catch::Contains("empty"));
  CHECK_THAT(error_of(*store, k_header + good + "4711002,\"unterminated,x,y,1\r\n"), Catch::Contains("not valid"));
  CHECK_THAT(error_of(*store, k_header + good + "4711002,two,columns\r\n"), Catch::Contains("record 3 has 3 columns"));
  CHECK_THAT(error_of(*store, k_header + good + good), Catch::Contains("record 3 repeats registration_id '4711001'"));
  CHECK_THAT(error_of(*store, k_header + ",no key,x,y,1\r\n"), Catch::Contains("record 2 has no registration_id"));
  CHECK_THAT(error_of(*store, k_header + "4711002,x,y,z,forty\r\n"), Catch::Contains("'capacity': 'forty' is not an integer"));
  CHECK_THAT(error_of(*store, "name,service_type\r\nx,y\r\n"), Catch::Contains("no key column 'registration_id'"));
  CHECK_THAT(error_of(*store, "registration_id,Name\r\n1,x\r\n"), Catch::Contains("'Name' is not a field name"));
  CHECK_THAT(error_of(*store, "registration_id,capacity:float\r\n1,2\r\n"), Catch::Contains("integer, real or text"));
  CHECK_THAT(error_of(*store, "registration_id,a,a\r\n1,2,3\r\n"), Catch::Contains("'a' appears twice"));
  registry_import_options small;
  small.limits.max_value_bytes = 8;
  CHECK_THAT(error_of(*store, k_header + good, small), Catch::Contains("record 2"));
  CHECK(store->head() == 0);

  // A byte order mark and a missing final line end are fine.
  const auto r = import_registry(*store, "\xEF\xBB\xBF" + k_header + "4711001,Služba,pecovatelska_sluzba,Horní Lhota,40", {});
  CHECK(r.created == 1);
}
