// The care rules both sides apply (protocol/care_rules.hpp): codes, dates and times, the
// referral state machine, and the check of one change's care fields a server runs.
#include <caresync/care.hpp>
#include <caresync/protocol/care_rules.hpp>

#include <catch2/catch.hpp>

#include <set>
#include <string>

using namespace caresync;
using namespace caresync::care;

TEST_CASE("dates are calendar dates written YYYY-MM-DD", "[care][rules]") {
  CHECK(is_valid_date("2026-11-23"));
  CHECK(is_valid_date("2024-02-29"));  // leap year
  CHECK(is_valid_date("2000-02-29"));  // divisible by 400
  CHECK(is_valid_date("1900-01-01"));
  CHECK(is_valid_date("2199-12-31"));
  CHECK_FALSE(is_valid_date("2026-02-30"));
  CHECK_FALSE(is_valid_date("2023-02-29"));
  CHECK_FALSE(is_valid_date("2100-02-29"));  // divisible by 100, not 400
  CHECK_FALSE(is_valid_date("2026-04-31"));
  CHECK_FALSE(is_valid_date("2026-13-01"));
  CHECK_FALSE(is_valid_date("2026-00-10"));
  CHECK_FALSE(is_valid_date("2026-01-00"));
  CHECK_FALSE(is_valid_date("1899-12-31"));
  CHECK_FALSE(is_valid_date("2200-01-01"));
  CHECK_FALSE(is_valid_date("2026-1-5"));
  CHECK_FALSE(is_valid_date("23.11.2026"));
  CHECK_FALSE(is_valid_date("2026-11-23T08:00:00Z"));
  CHECK_FALSE(is_valid_date(""));
  CHECK_FALSE(is_valid_date("2026-+1-05"));
  CHECK(parse_date("1970-01-01") == 0);
  CHECK(parse_date("2026-11-23") == 20780);
  CHECK(format_date(20780) == "2026-11-23");
  CHECK(format_date(-1) == "1969-12-31");
}

TEST_CASE("times are UTC, written YYYY-MM-DDTHH:MM:SSZ", "[care][rules]") {
  CHECK(parse_utc_time("2026-11-23T10:00:00Z") == 1'795'428'000);
  CHECK(parse_utc_time("1970-01-01T00:00:00Z") == 0);
  CHECK(parse_utc_time("2026-11-23T23:59:59Z") == 1'795'478'399);
  CHECK_FALSE(parse_utc_time("2026-11-23T24:00:00Z"));
  CHECK_FALSE(parse_utc_time("2026-11-23T10:60:00Z"));
  CHECK_FALSE(parse_utc_time("2026-11-23T10:00:60Z"));
  CHECK_FALSE(parse_utc_time("2026-11-23T10:00:00"));         // no zone
  CHECK_FALSE(parse_utc_time("2026-11-23T10:00:00+01:00"));   // not UTC
  CHECK_FALSE(parse_utc_time("2026-11-23 10:00:00Z"));
  CHECK_FALSE(parse_utc_time("2026-02-30T10:00:00Z"));
  CHECK_FALSE(parse_utc_time("2026-11-23T10:00:00.000Z"));
  CHECK(format_utc_time(1'795'428'000) == "2026-11-23T10:00:00Z");
  CHECK(format_utc_time(parse_utc_time("2024-02-29T13:14:15Z").value()) == "2024-02-29T13:14:15Z");
}

TEST_CASE("the referral state machine: every pair of states", "[care][rules][referral]") {
  using s = referral_state;
  const std::set<std::pair<s, s>> legal{{s::new_, s::accepted},
                                        {s::new_, s::declined},
                                        {s::accepted, s::in_progress},
                                        {s::accepted, s::declined},
                                        {s::in_progress, s::closed}};
  const s all[] = {s::new_, s::accepted, s::in_progress, s::closed, s::declined};
  int legal_seen = 0;
  for (const auto from : all) {
    for (const auto to : all) {
      INFO(std::string(to_code(from)) + " -> " + std::string(to_code(to)));
      const bool expected = legal.count({from, to}) == 1;
      CHECK(legal_referral_transition(from, to) == expected);
      legal_seen += expected;
    }
  }
  CHECK(legal_seen == 5);
  for (const auto st : all) CHECK(parse_referral_state(to_code(st)) == st);
  CHECK(to_code(s::new_) == "new");
  CHECK(to_code(s::in_progress) == "in_progress");
  CHECK_FALSE(parse_referral_state("New"));
  CHECK_FALSE(parse_referral_state(""));
}

TEST_CASE("code tables: unique codes, the Act's service types by paragraph", "[care][rules]") {
  for (const auto& table : {activity_codes(), visit_kinds(), caregiver_relations(), client_statuses(),
                            care_allowance_levels(), visit_statuses(), referral_urgencies(), referral_handovers(),
                            referral_states()}) {
    std::set<std::string_view> codes;
    for (const auto& c : table) {
      CHECK(codes.insert(c.code).second);
      CHECK_FALSE(c.label.empty());
    }
  }
  std::set<std::string_view> codes;
  for (const auto& t : service_types()) {
    INFO(t.code);
    CHECK(codes.insert(t.code).second);
    // Codes are ASCII, lowercase, with underscores: stable in SQL and CSV.
    CHECK(std::all_of(t.code.begin(), t.code.end(), [](char c) { return (c >= 'a' && c <= 'z') || c == '_'; }));
  }
  CHECK(service_types().size() == 33);
  CHECK(find_service_type("pecovatelska_sluzba")->paragraph == "40");
  CHECK(find_service_type("odborne_socialni_poradenstvi")->paragraph == "37");
  CHECK(find_service_type("socialni_rehabilitace")->paragraph == "70");
  CHECK(find_service_type("intervencni_centra")->paragraph == "60a");
  CHECK(find_service_type("terenni_programy")->label == "terénní programy");
  CHECK(find_service_type("pečovatelská_služba") == nullptr);
  CHECK(find_service_type("") == nullptr);
}

TEST_CASE("the typed API's enumerations are stored as the codes of the tables", "[care][rules]") {
  CHECK(to_code(client_status::paused) == "paused");
  CHECK(to_code(care_allowance::none) == "none");
  CHECK(to_code(care_allowance::level_1) == "I");
  CHECK(to_code(care_allowance::level_4) == "IV");
  CHECK(to_code(visit_status::no_one_home) == "no_one_home");
  CHECK(to_code(visit_status::cancelled) == "cancelled");
  CHECK(to_code(referral_urgency::crisis) == "crisis");
  CHECK(to_code(handover::temporary) == "temporary");
  CHECK(client_statuses().size() == 3);
  CHECK(care_allowance_levels().size() == 5);
  CHECK(visit_statuses().size() == 4);
  CHECK(referral_urgencies().size() == 3);
  CHECK(referral_handovers().size() == 3);
}

TEST_CASE("check_care_value: one field's rule", "[care][rules]") {
  SECTION("codes") {
    CHECK(check_care_value("visits", "status", std::string("done")).empty());
    CHECK(check_care_value("visits", "status", std::string("finished")) ==
          "visits.status 'finished' is not a known code (known: planned, done, cancelled, no_one_home)");
    CHECK_FALSE(check_care_value("clients", "care_allowance", std::string("V")).empty());
    CHECK(check_care_value("clients", "care_allowance", std::string("III")).empty());
    CHECK_FALSE(check_care_value("services", "service_type", std::string("spa")).empty());
    CHECK(check_care_value("services", "service_type", std::string("osobni_asistence")).empty());
  }
  SECTION("required fields may not be null or empty") {
    CHECK(check_care_value("clients", "name", value{}) == "clients.name is required");
    CHECK(check_care_value("clients", "name", std::string()) == "clients.name is required");
    CHECK(check_care_value("clients", "contact", value{}).empty());
  }
  SECTION("types") {
    CHECK(check_care_value("services", "capacity", std::string("12")) == "services.capacity must be an integer");
    CHECK(check_care_value("services", "capacity", std::int64_t{-1}) == "services.capacity must not be negative");
    CHECK(check_care_value("services", "capacity", std::int64_t{40}).empty());
    CHECK(check_care_value("clients", "name", std::int64_t{1}) == "clients.name must be text");
  }
  SECTION("dates, times, ids, lists; the message never quotes them") {
    const auto problem = check_care_value("clients", "birth_date", std::string("1941-02-30"));
    CHECK(problem == "clients.birth_date must be a calendar date written YYYY-MM-DD (year 1900-2199)");
    CHECK(problem.find("1941") == std::string::npos);
    CHECK_FALSE(check_care_value("visits", "start_at", std::string("2026-11-23 08:00")).empty());
    CHECK_FALSE(check_care_value("visits", "client_id", std::string("client-7")).empty());
    CHECK(check_care_value("visits", "activity_codes", std::string("[\"hygiene\",\"meals\"]")).empty());
    CHECK_FALSE(check_care_value("visits", "activity_codes", std::string("[\"hygiene\",\"flying\"]")).empty());
    CHECK_FALSE(check_care_value("visits", "activity_codes", std::string("hygiene")).empty());
    CHECK(check_care_value("services", "municipalities", std::string("[\"Horní Lhota\"]")).empty());
    CHECK(check_care_value("services", "municipalities", std::string("[\"A\",\"A\"]")) ==
          "services.municipalities lists an element twice");
    CHECK_FALSE(check_care_value("services", "municipalities", std::string("[1]")).empty());
  }
  SECTION("text: length, UTF-8, control characters") {
    CHECK(check_care_value("clients", "name", std::string(k_max_short_text, 'a')).empty());
    CHECK_FALSE(check_care_value("clients", "name", std::string(k_max_short_text + 1, 'a')).empty());
    CHECK(check_care_value("visits", "note", std::string(k_max_long_text, 'a')).empty());
    CHECK_FALSE(check_care_value("visits", "note", std::string(k_max_long_text + 1, 'a')).empty());
    CHECK(check_care_value("clients", "name", std::string("Žofie Vzorová")).empty());
    CHECK(check_care_value("clients", "name", std::string("\xC3\x28")) == "clients.name is not valid UTF-8 text");
    CHECK_FALSE(check_care_value("clients", "name", std::string("\xC0\xAF")).empty());        // overlong '/'
    CHECK_FALSE(check_care_value("clients", "name", std::string("\xED\xA0\x80")).empty());    // a surrogate
    CHECK_FALSE(check_care_value("clients", "name", std::string("\xE2\x82")).empty());        // cut short
    CHECK(check_care_value("clients", "name", std::string("a\x01" "b")) == "clients.name contains control characters");
    CHECK(check_care_value("visits", "note", std::string("line\nline\ttab")).empty());
  }
  SECTION("fields and collections the care schema does not declare pass") {
    CHECK(check_care_value("visits", "mood", std::int64_t{3}).empty());
    CHECK(check_care_value("inventory", "status", std::string("anything")).empty());
  }
}

TEST_CASE("check_care_change: what a server refuses of a push", "[care][rules]") {
  change c;
  c.collection = "visits";
  c.id = record_id::generate();
  c.fields = {{"status", std::string("done")}, {"note", std::string("synthetic")}};
  CHECK(check_care_change(c).empty());

  SECTION("an unknown code in a field") {
    c.fields.push_back({"kind", std::string("teleportation")});
    CHECK(check_care_change(c).rfind("visits.kind 'teleportation' is not a known code", 0) == 0);
  }
  SECTION("an unknown activity code added to the set") {
    c.items.push_back(item_op{"activity_codes", item_policy::set_union, {"meals", "juggling"}, {}});
    CHECK(check_care_change(c).rfind("visits.activity_codes 'juggling' is not a known code", 0) == 0);
  }
  SECTION("a follow-up over the length bound") {
    c.items.push_back(item_op{"follow_ups", item_policy::append, {std::string(k_max_long_text + 1, 'x')}, {}});
    CHECK_FALSE(check_care_change(c).empty());
  }
  SECTION("an invalid date in a client") {
    c.collection = "clients";
    c.fields = {{"birth_date", std::string("2026-02-30")}};
    CHECK(check_care_change(c) == "clients.birth_date must be a calendar date written YYYY-MM-DD (year 1900-2199)");
  }
  SECTION("removes and other collections pass") {
    c.fields.push_back({"kind", std::string("teleportation")});
    c.collection = "inventory";
    CHECK(check_care_change(c).empty());
    c.collection = "visits";
    c.kind = change_kind::remove;
    c.fields.clear();
    CHECK(check_care_change(c).empty());
  }
}

TEST_CASE("the registry's fields are the server_only ones, in the rules and the schema", "[care][rules]") {
  std::set<std::string> listed;
  for (const auto f : server_only_fields()) listed.insert(std::string(f));
  std::set<std::string> marked;
  std::size_t service_fields = 0;
  for (const auto& c : care::schema().collections) {
    for (const auto& f : c.fields) {
      if (f.server_only) marked.insert(c.name + "." + f.name);
      if (c.name == "services") ++service_fields;
    }
  }
  CHECK(marked == listed);
  CHECK(listed.size() == service_fields);
}
