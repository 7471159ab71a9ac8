// Activity figures (issue 5): what counts, how it is grouped, and the CSV it prints.

#include <caresync/protocol/errors.hpp>
#include <caresync/server/activity_report.hpp>

#include <catch2/catch.hpp>

using namespace caresync;
using namespace caresync::server;

namespace {

record_state record(std::initializer_list<std::pair<const char*, const char*>> fields) {
  record_state r;
  for (const auto& [name, text] : fields) r.fields[name] = field_state{value{std::string(text)}, version{}};
  return r;
}

record_key key(const char* collection, std::uint8_t n) {
  record_id id;
  id.bytes[15] = n;
  return {collection, id};
}

}  // namespace

TEST_CASE("activity: done visits by unit, month and kind, with hours, distinct clients and their caregivers", "[report]") {
  std::map<record_key, record_state> records;
  const auto visit = [&](std::uint8_t n, const char* unit, const char* start, const char* end, const char* kind,
                         const char* client, const char* status) {
    records[key("visits", n)] = record({{"org_unit", unit}, {"start_at", start}, {"end_at", end}, {"kind", kind},
                                        {"client_id", client}, {"status", status}, {"note", "Paní Vzorová, private words"}});
  };
  visit(1, "orp-a", "2026-10-05T08:00:00Z", "2026-10-05T09:30:00Z", "home_care", "c1", "done");
  visit(2, "orp-a", "2026-10-06T08:00:00Z", "2026-10-06T08:45:00Z", "home_care", "c1", "done");
  visit(3, "orp-a", "2026-10-07T08:00:00Z", "2026-10-07T09:00:00Z", "home_care", "c2", "done");
  visit(4, "orp-a", "2026-10-08T08:00:00Z", "2026-10-08T09:00:00Z", "home_care", "c3", "planned");    // not done
  visit(5, "orp-a", "2026-11-02T08:00:00Z", "2026-11-02T10:00:00Z", "home_care", "c1", "done");       // next month
  visit(6, "orp-b", "2026-10-05T08:00:00Z", "2026-10-05T07:00:00Z", "field_social_work", "c4", "done");  // end before start
  visit(7, "orp-a", "2026-10-09T08:00:00Z", "2026-10-09T09:00:00Z", "home_care", "c2", "done");
  records[key("visits", 7)].deleted = version{};  // deleted: not counted
  // A time not in the stored form ("YYYY-MM-DDTHH:MM:SSZ") is not counted in hours.
  visit(8, "orp-b", "2026-10-06T08:00Z", "2026-10-06T09:00:00Z", "field_social_work", "c4", "done");
  records[key("caregivers", 1)] = record({{"client_id", "c1"}, {"name", "syn"}});
  records[key("caregivers", 2)] = record({{"client_id", "c1"}});
  records[key("caregivers", 3)] = record({{"client_id", "c2"}});
  records[key("caregivers", 4)] = record({{"client_id", "c2"}});
  records[key("caregivers", 4)].deleted = version{};
  records[key("caregivers", 5)] = record({{"client_id", "c9"}});  // a client not visited

  const auto rows = activity_figures(records, {});
  REQUIRE(rows.size() == 3);
  const auto& october = rows.at({"orp-a", "2026-10", "home_care"});
  CHECK(october.visits == 3);
  CHECK(october.hours == Approx(1.5 + 0.75 + 1.0));
  CHECK(october.distinct_clients == 2);
  CHECK(october.caregivers_supported == 3);  // two of c1, one live of c2
  CHECK(rows.at({"orp-a", "2026-11", "home_care"}).visits == 1);
  const auto& b = rows.at({"orp-b", "2026-10", "field_social_work"});
  CHECK(b.visits == 2);
  CHECK(b.visits_without_times == 2);
  CHECK(b.hours == 0);

  // A range of months, both ends included.
  CHECK(activity_figures(records, {"2026-11", "2026-11"}).size() == 1);
  CHECK(activity_figures(records, {"2026-09", "2026-10"}).size() == 2);
  CHECK_THROWS_AS(activity_figures(records, {"2026-9", ""}), error);
  CHECK_THROWS_AS(activity_figures(records, {"", "2026-13"}), error);

  const auto csv = activity_csv(rows);
  CHECK(csv.rfind("org_unit,month,kind,visits,hours,visits_without_times,distinct_clients,caregivers_supported\r\n", 0) == 0);
  CHECK(csv.find("orp-a,2026-10,home_care,3,3.25,0,2,3\r\n") != std::string::npos);
  CHECK(csv.find("Vzorová") == std::string::npos);  // figures only
  CHECK(csv.find("c1") == std::string::npos);
}

TEST_CASE("activity: CSV cells are quoted, and formulas are defused", "[report]") {
  std::map<record_key, record_state> records;
  records[key("visits", 1)] = record({{"org_unit", "kraj, \"jih\""}, {"start_at", "2026-10-05T08:00:00Z"},
                                      {"end_at", "2026-10-05T09:00:00Z"}, {"kind", "=HYPERLINK(\"x\")"}, {"status", "done"}});
  const auto csv = activity_csv(activity_figures(records, {}));
  CHECK(csv.find("\"kraj, \"\"jih\"\"\",2026-10,\"'=HYPERLINK(\"\"x\"\")\",1,1.00,0,0,0\r\n") != std::string::npos);
}
