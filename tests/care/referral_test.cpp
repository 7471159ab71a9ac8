// Referrals on a tablet: every transition from every state, legal and illegal, checked
// against the state the store holds now (also after a synced change); the handover of
// the client; validation of a new referral.
#include "care_fixture.hpp"

#include <caresync/care.hpp>
#include <caresync/store.hpp>

#include <catch2/catch.hpp>

#include <map>
#include <string>

using namespace caresync;
using namespace caresync::care;
using caresync::testing::care_tablet;
using caresync::testing::error_of;
using caresync::testing::message_of;
using caresync::testing::transfer;

namespace {

const std::error_code k_constraint = make_error_code(storage_errc::constraint);
const std::error_code k_invalid = make_error_code(storage_errc::invalid_argument);
const std::error_code k_not_found = make_error_code(storage_errc::not_found);

referral referral_for(const record_id& client, handover h = handover::none) {
  referral r;
  r.client_id = client;
  r.to_unit = "kraj/nemocnice-x/socialni-oddeleni";
  r.reason = "propuštění z nemocnice, potřeba péče doma (synthetic)";
  r.urgency = referral_urgency::urgent;
  r.ownership = h;
  return r;
}

/// A referral brought to `state` along legal moves.
record_id referral_in(care_tablet& t, const record_id& client, referral_state state, handover h = handover::none) {
  auto& refs = t.care->referrals();
  const auto id = refs.add(referral_for(client, h));
  using s = referral_state;
  switch (state) {
    case s::new_: break;
    case s::accepted: refs.accept(id); break;
    case s::in_progress: refs.accept(id); refs.start(id); break;
    case s::closed: refs.accept(id); refs.start(id); refs.close(id); break;
    case s::declined: refs.decline(id, "kapacita naplněna"); break;
  }
  REQUIRE(refs.find(id)->state == state);
  return id;
}

enum class op { accept, start, close, decline };

const char* name_of(op o) {
  switch (o) {
    case op::accept: return "accept";
    case op::start: return "start";
    case op::close: return "close";
    case op::decline: return "decline";
  }
  return "?";
}

void run(referral_repository& refs, op o, const record_id& id) {
  switch (o) {
    case op::accept: refs.accept(id); break;
    case op::start: refs.start(id); break;
    case op::close: refs.close(id); break;
    case op::decline: refs.decline(id, "mimo spádovou oblast"); break;
  }
}

}  // namespace

TEST_CASE("every referral transition from every state, legal and illegal", "[care][referral]") {
  using s = referral_state;
  // Written out, not derived from legal_referral_transition, so a change to either shows.
  const std::map<std::pair<s, op>, s> legal{
      {{s::new_, op::accept}, s::accepted},    {{s::new_, op::decline}, s::declined},
      {{s::accepted, op::start}, s::in_progress}, {{s::accepted, op::decline}, s::declined},
      {{s::in_progress, op::close}, s::closed},
  };
  int legal_runs = 0, illegal_runs = 0;
  for (const auto from : {s::new_, s::accepted, s::in_progress, s::closed, s::declined}) {
    for (const auto o : {op::accept, op::start, op::close, op::decline}) {
      care_tablet t;
      const auto client = t.add_client();
      const auto id = referral_in(t, client, from);
      const auto before = *t.care->referrals().find(id);
      const auto outbox = t.local->outbox_size();
      INFO(std::string(to_code(from)) + " then " + name_of(o));
      const auto it = legal.find({from, o});
      if (it != legal.end()) {
        ++legal_runs;
        CHECK_NOTHROW(run(t.care->referrals(), o, id));
        const auto after = t.care->referrals().find(id);
        CHECK(after->state == it->second);
        CHECK(after->state_at == "2026-11-23T10:00:00Z");
        if (o == op::decline) CHECK(after->decline_reason == "mimo spádovou oblast");
        CHECK(t.local->outbox_size() == outbox + 1);
      } else {
        ++illegal_runs;
        const auto message = message_of([&] { run(t.care->referrals(), o, id); });
        CHECK(error_of([&] { run(t.care->referrals(), o, id); }) == k_constraint);
        CHECK(message.find(std::string("cannot move from ") + std::string(to_code(from))) != std::string::npos);
        const auto after = t.care->referrals().find(id);
        CHECK(after->state == before.state);
        CHECK(after->decline_reason == before.decline_reason);
        CHECK(t.local->outbox_size() == outbox);
      }
    }
  }
  CHECK(legal_runs == 5);
  CHECK(illegal_runs == 15);
}

TEST_CASE("a transition is checked against the state the store holds now", "[care][referral]") {
  // Tablet A makes the referral; tablet B (the receiving unit) gets it by sync and
  // declines it; A, having seen the decline, can no longer accept.
  care_tablet a;
  care_tablet b(role::field_worker, "b.db");
  const auto client = a.add_client();
  const auto id = a.care->referrals().add(referral_for(client));
  REQUIRE(transfer(*a.local, *b.local) == 2);
  REQUIRE(b.care->referrals().find(id)->state == referral_state::new_);
  b.care->referrals().decline(id, "nemáme kapacitu");
  REQUIRE(transfer(*b.local, *a.local) == 1);
  CHECK(a.care->referrals().find(id)->state == referral_state::declined);
  CHECK(error_of([&] { a.care->referrals().accept(id); }) == k_constraint);
  CHECK(a.care->referrals().find(id)->decline_reason == "nemáme kapacitu");
}

TEST_CASE("decline needs a reason, an unknown referral is not found", "[care][referral][validation]") {
  care_tablet t;
  const auto client = t.add_client();
  const auto id = referral_in(t, client, referral_state::new_);
  CHECK(error_of([&] { t.care->referrals().decline(id, ""); }) == k_invalid);
  CHECK(message_of([&] { t.care->referrals().decline(id, ""); }).find("referrals.decline_reason") != std::string::npos);
  CHECK(error_of([&] { t.care->referrals().decline(id, std::string(k_max_long_text + 1, 'r')); }) == k_invalid);
  CHECK(t.care->referrals().find(id)->state == referral_state::new_);
  CHECK(error_of([&] { t.care->referrals().accept(record_id::generate()); }) == k_not_found);
}

TEST_CASE("a new referral: validation", "[care][referral][validation]") {
  care_tablet t(role::registry_admin);  // it also adds the services referred to
  const auto client = t.add_client();
  auto& refs = t.care->referrals();
  const auto message = [&](referral r) { return message_of([&] { refs.add(r); }); };

  SECTION("valid: from_unit from the client, state new whatever was given") {
    auto r = referral_for(client);
    r.state = referral_state::closed;
    r.decline_reason = "x";
    const auto id = refs.add(r);
    const auto got = refs.find(id);
    CHECK(got->from_unit == "kraj/orp-a/team-1");
    CHECK(got->state == referral_state::new_);
    CHECK(got->decline_reason.empty());
    CHECK(got->urgency == referral_urgency::urgent);
    CHECK(refs.of_client(client).size() == 1);
    CHECK(refs.to_unit("kraj/nemocnice-x/socialni-oddeleni").size() == 1);
    CHECK(refs.to_unit("kraj/nemocnice-x/socialni-oddeleni", referral_state::accepted).empty());
  }
  SECTION("the client must be on this tablet") {
    auto r = referral_for(record_id::generate());
    CHECK(message(r).find("referrals.client_id") != std::string::npos);
  }
  SECTION("a reason is required") {
    auto r = referral_for(client);
    r.reason.clear();
    CHECK(message(r).find("referrals.reason") != std::string::npos);
  }
  SECTION("a unit or a service to refer to") {
    auto r = referral_for(client);
    r.to_unit.clear();
    CHECK(message(r).find("referrals.to_unit or referrals.to_service") != std::string::npos);
  }
  SECTION("a service of the registry on this tablet") {
    auto r = referral_for(client);
    r.to_unit.clear();
    r.to_service = record_id::generate();
    CHECK(message(r).find("referrals.to_service") != std::string::npos);
    records admin(*t.local, role::registry_admin);
    service s;
    s.org_unit = "kraj";
    s.provider = "Vzorová pečovatelská služba s.r.o. (synthetic)";
    s.service_name = "Pečovatelská služba Fiktivní Lhota";
    s.service_type = "pecovatelska_sluzba";
    r.to_service = admin.services().add(s);
    CHECK_NOTHROW(refs.add(r));
  }
  SECTION("a handover needs a receiving unit") {
    auto r = referral_for(client, handover::permanent);
    r.to_unit.clear();
    records admin(*t.local, role::registry_admin);
    service s;
    s.org_unit = "kraj";
    s.provider = "Vzorový poskytovatel (synthetic)";
    s.service_name = "Osobní asistence";
    s.service_type = "osobni_asistence";
    r.to_service = admin.services().add(s);
    CHECK(message(r).find("referrals.handover") != std::string::npos);
  }
  CHECK(t.local->count("referrals") <= 1);
}

TEST_CASE("a referral changes only while new", "[care][referral]") {
  care_tablet t;
  const auto client = t.add_client();
  auto& refs = t.care->referrals();
  const auto id = refs.add(referral_for(client));
  refs.update(id, {.reason = "nový důvod", .urgency = referral_urgency::crisis});
  CHECK(refs.find(id)->urgency == referral_urgency::crisis);
  CHECK(error_of([&] { refs.update(id, {.to_unit = std::string()}); }) == k_invalid);
  refs.accept(id);
  CHECK(error_of([&] { refs.update(id, {.reason = "později"}); }) == k_constraint);
  CHECK(refs.find(id)->reason == "nový důvod");
}

TEST_CASE("handover: the client and their caregivers move with the referral", "[care][referral]") {
  care_tablet t;
  const auto client = t.add_client("kraj/orp-a/team-1");
  caregiver g;
  g.client_id = client;
  g.name = "Dcera Vzorová (synthetic)";
  g.relation = "child";
  const auto carer = t.care->caregivers().add(g);
  auto& refs = t.care->referrals();
  const std::string to = "kraj/nemocnice-x/socialni-oddeleni";
  const auto unit_of_client = [&] { return t.care->clients().find(client)->org_unit; };
  const auto unit_of_carer = [&] { return t.care->caregivers().find(carer)->org_unit; };

  SECTION("none: nobody moves") {
    const auto id = refs.add(referral_for(client, handover::none));
    refs.accept(id);
    CHECK(unit_of_client() == "kraj/orp-a/team-1");
  }
  SECTION("permanent: moves at accept and stays after close") {
    const auto id = refs.add(referral_for(client, handover::permanent));
    refs.accept(id);
    CHECK(unit_of_client() == to);
    CHECK(unit_of_carer() == to);
    refs.start(id);
    refs.close(id);
    CHECK(unit_of_client() == to);
  }
  SECTION("temporary: moves at accept and back at close") {
    const auto id = refs.add(referral_for(client, handover::temporary));
    refs.accept(id);
    CHECK(unit_of_client() == to);
    refs.start(id);
    CHECK(unit_of_client() == to);
    refs.close(id);
    CHECK(unit_of_client() == "kraj/orp-a/team-1");
    CHECK(unit_of_carer() == "kraj/orp-a/team-1");
  }
  SECTION("declined after acceptance: the handover is undone") {
    const auto id = refs.add(referral_for(client, handover::permanent));
    refs.accept(id);
    refs.decline(id, "nakonec nelze");
    CHECK(unit_of_client() == "kraj/orp-a/team-1");
    CHECK(unit_of_carer() == "kraj/orp-a/team-1");
  }
  SECTION("the client is not on this tablet: the accept is refused, nothing changes") {
    const auto id = refs.add(referral_for(client, handover::permanent));
    t.local->remove("clients", client);
    const auto outbox = t.local->outbox_size();
    CHECK(error_of([&] { refs.accept(id); }) == k_not_found);
    CHECK(refs.find(id)->state == referral_state::new_);
    CHECK(t.local->outbox_size() == outbox);
  }
}
