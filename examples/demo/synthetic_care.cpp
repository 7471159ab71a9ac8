// Synthetic names, places and notes for the demo (see synthetic_care.hpp).

#include "synthetic_care.hpp"

#include <array>
#include <chrono>
#include <cstdio>
#include <string_view>

namespace caresync::demo {
namespace {

// Surnames that read as "Sample", "Example", "Test", "Fictional", "Invented", "Model":
// obviously nobody's real name, in the feminine and masculine forms Czech uses.
constexpr std::array<std::string_view, 6> k_female_surnames{"Vzorová", "Ukázková", "Testová",
                                                           "Fiktivní", "Smyšlená", "Modelová"};
constexpr std::array<std::string_view, 6> k_male_surnames{"Vzorový", "Ukázkový", "Testový",
                                                         "Fiktivní", "Smyšlený", "Modelový"};
constexpr std::array<std::string_view, 8> k_female_first{"Marie", "Jana", "Eva", "Hana",
                                                        "Anna", "Věra", "Alena", "Jiřina"};
constexpr std::array<std::string_view, 8> k_male_first{"Josef", "Jan", "Jiří", "Karel",
                                                      "Václav", "František", "Miroslav", "Zdeněk"};
constexpr std::array<std::string_view, 10> k_municipalities{
    "Benešov", "Vlašim", "Kolín", "Votice", "Sedlčany", "Kutná Hora", "Čáslav", "Český Brod", "Týnec nad Sázavou",
    "Neveklov"};
constexpr std::array<std::string_view, 5> k_visit_kinds{"home visit", "phone call", "caregiver support",
                                                        "hospital discharge", "needs assessment"};
constexpr std::array<std::string_view, 10> k_notes{
    "discussed care allowance level II, caregiver needs respite",
    "client lives alone, asked about meals on wheels",
    "daughter cares full time, interested in a caregiver support group",
    "after hospital discharge, home care agency to start next week",
    "mobility worse since last visit, referred for a walker",
    "reviewed medication schedule with the caregiver",
    "client wants to stay at home, discussed personal assistance",
    "caregiver exhausted, explained respite stay options",
    "applied for care allowance, assessment visit expected",
    "neighbour helps with shopping, no new needs today"};
constexpr std::array<std::string_view, 5> k_addenda{
    "Follow-up (synthetic): called the caregiver, respite stay booked.",
    "Follow-up (synthetic): care allowance decision received.",
    "Follow-up (synthetic): home care agency confirmed the start date.",
    "Follow-up (synthetic): walker delivered, client manages stairs.",
    "Follow-up (synthetic): support group meets on Thursdays, caregiver will attend."};
constexpr std::array<std::string_view, 4> k_review_statuses{"follow-up needed", "referred", "closed",
                                                            "waiting for caregiver"};

template <std::size_t N>
std::string pick(demo_rng& rng, const std::array<std::string_view, N>& options) {
  return std::string(options[pick_index(rng, N)]);
}

}  // namespace

std::size_t pick_index(demo_rng& rng, std::size_t n) {
  return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng);
}

bool chance(demo_rng& rng, double p) { return std::bernoulli_distribution(p)(rng); }

std::string synthetic_client_name(demo_rng& rng) {
  const bool female = chance(rng, 0.6);  // most clients of home care are women
  const std::size_t surname = pick_index(rng, k_female_surnames.size());
  std::string name = female ? pick(rng, k_female_first) : pick(rng, k_male_first);
  name += ' ';
  name += female ? k_female_surnames[surname] : k_male_surnames[surname];
  return name + " (synthetic)";
}

std::string synthetic_municipality(demo_rng& rng) { return pick(rng, k_municipalities); }

std::string synthetic_visit_kind(demo_rng& rng) { return pick(rng, k_visit_kinds); }

std::string synthetic_visit_note(demo_rng& rng) { return "Visit note (synthetic): " + pick(rng, k_notes); }

std::string synthetic_note_addendum(demo_rng& rng) { return pick(rng, k_addenda); }

std::string synthetic_review_status(demo_rng& rng) { return pick(rng, k_review_statuses); }

std::int64_t synthetic_duration_min(demo_rng& rng) {
  return 5 * std::uniform_int_distribution<std::int64_t>(3, 24)(rng);
}

std::string visit_date(int day_offset) {
  using namespace std::chrono;
  const year_month_day ymd{floor<days>(system_clock::now()) + days{day_offset}};
  char text[16];
  std::snprintf(text, sizeof text, "%04d-%02u-%02u", static_cast<int>(ymd.year()),
                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()));
  return text;
}

}  // namespace caresync::demo
