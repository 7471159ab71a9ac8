#include "visit_workload.hpp"

#include <caresync/protocol/record_id.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <iterator>
#include <random>
#include <string_view>

namespace caresync::bench {
namespace {

constexpr std::size_t k_clients = 2000;
constexpr std::size_t k_workers = 50;
constexpr std::uint64_t k_first_id_ms = 1704067200000;  ///< 2024-01-01T00:00:00Z

// Words a caregiver types into a visit note, in Czech and English, short connectives
// included: the note must compress like real free text, not like a repeated constant.
constexpr std::string_view k_vocabulary[] = {
    // Czech connectives and short words (also used to fill a note to its exact length).
    "a", "i", "v", "k", "s", "z", "o", "u", "na", "do", "po", "se", "je", "byl", "byla", "bylo", "ale",
    "pak", "už", "ještě", "velmi", "trochu", "dnes", "ráno", "večer", "odpoledne", "včera", "zítra",
    "bez", "při", "pro", "kvůli", "také", "stále", "znovu", "opět", "nic", "vše", "dobře", "špatně",
    // Czech care vocabulary.
    "klient", "klientka", "návštěva", "pečovatelka", "pečovatel", "asistentka", "sestra", "lékař",
    "lékařka", "praktik", "dcera", "syn", "manželka", "manžel", "soused", "sousedka", "rodina",
    "vnučka", "hygiena", "koupání", "sprcha", "mytí", "holení", "česání", "oblékání", "svlékání",
    "převlečení", "léky", "dávkovač", "tablety", "kapky", "mast", "inzulín", "injekce", "převaz",
    "rána", "proleženina", "otok", "bolest", "bolesti", "teplota", "tlak", "puls", "cukr",
    "glykémie", "dech", "kašel", "únava", "závrať", "pád", "upadla", "upadl", "modřina", "zranění",
    "oběd", "snídaně", "večeře", "svačina", "dovoz", "jídlo", "pití", "tekutiny", "čaj", "voda",
    "polévka", "chléb", "nákup", "lékárna", "pošta", "důchod", "platba", "úklid", "vysávání",
    "nádobí", "prádlo", "praní", "žehlení", "lůžko", "postel", "povlečení", "koupelna", "kuchyň",
    "pokoj", "byt", "dveře", "klíče", "zvonek", "telefon", "procházka", "doprovod", "vozík",
    "chodítko", "hůl", "schody", "výtah", "zahrada", "spánek", "nespala", "nespal", "nálada",
    "smutná", "smutný", "veselá", "klidná", "neklidný", "zmatená", "zmatený", "orientovaná",
    "dezorientovaný", "paměť", "demence", "úzkost", "samota", "rozhovor", "povídání", "čtení",
    "televize", "rádio", "noviny", "kontrola", "zápis", "plán", "změna", "termín", "objednání",
    "ambulance", "nemocnice", "propuštění", "hospitalizace", "rehabilitace", "cvičení",
    "mobilita", "přesun", "polohování", "inkontinence", "pleny", "vložky", "toaleta", "WC",
    "stolice", "moč", "zácpa", "průjem", "nechutenství", "hubnutí", "váha", "brýle", "naslouchadlo",
    "protéza", "zuby", "nehty", "pokožka", "krém", "vlasy", "odmítla", "odmítl", "souhlasila",
    "souhlasil", "doma", "nebyl", "nebyla", "neotevřela", "neotevřel", "zavolat", "zavolala",
    "informovala", "domluveno", "předáno", "vyřízeno", "zajištěno", "chybí", "potřebuje", "přeje",
    "stěžuje", "hodnocení", "riziko", "sociální", "služba", "příspěvek", "péče", "úřad", "obec",
    // English care vocabulary (mixed teams write notes in English too).
    "the", "and", "with", "was", "is", "to", "of", "for", "no", "not", "client", "visit", "carer",
    "nurse", "doctor", "daughter", "son", "neighbour", "family", "bath", "shower", "wash", "shave",
    "dressing", "medication", "tablets", "insulin", "wound", "pain", "blood", "pressure", "sugar",
    "fall", "fell", "bruise", "lunch", "breakfast", "dinner", "meal", "drink", "fluids", "shopping",
    "pharmacy", "cleaning", "laundry", "bed", "linen", "kitchen", "door", "keys", "phone", "walk",
    "wheelchair", "walker", "stairs", "sleep", "mood", "calm", "anxious", "confused", "memory",
    "talk", "check", "plan", "appointment", "hospital", "discharge", "exercise", "transfer",
    "toilet", "continence", "weight", "glasses", "hearing", "aid", "refused", "agreed", "home",
    "answer", "called", "informed", "arranged", "needs", "wants", "complains", "risk", "support",
    "review", "tired", "well", "unwell", "better", "worse", "again", "today", "morning", "evening"};
static_assert(std::size(k_vocabulary) >= 250, "a realistic vocabulary has a few hundred words");

constexpr std::array<std::string_view, 4> k_statuses = {"planned", "done", "cancelled", "no_one_home"};

constexpr std::array<std::string_view, 5> k_districts = {"orp-benesov", "orp-vlasim", "orp-votice",
                                                         "orp-kolin", "orp-kutna-hora"};

std::string uuid_from(std::mt19937_64& rng) {
  record_id id;
  for (std::size_t i = 0; i < id.bytes.size(); i += 8) {
    const std::uint64_t word = rng();
    for (std::size_t j = 0; j < 8; ++j) id.bytes[i + j] = static_cast<std::uint8_t>(word >> (8 * j));
  }
  id.bytes[6] = static_cast<std::uint8_t>((id.bytes[6] & 0x0f) | 0x40);  // version 4
  id.bytes[8] = static_cast<std::uint8_t>((id.bytes[8] & 0x3f) | 0x80);  // RFC 9562 variant
  return id.to_string();
}

/// A visit's id as record_id::generate() makes them (RFC 9562 version 7): made one after
/// another, they sort one after another. The raw SQLite baseline inserts these ids, so
/// it gets the same index locality as caresync's own.
std::string time_ordered_id(std::mt19937_64& rng, std::uint64_t ms) {
  record_id id;
  for (std::size_t i = 0; i < id.bytes.size(); i += 8) {
    const std::uint64_t word = rng();
    for (std::size_t j = 0; j < 8; ++j) id.bytes[i + j] = static_cast<std::uint8_t>(word >> (8 * j));
  }
  for (int i = 0; i < 6; ++i) id.bytes[i] = static_cast<std::uint8_t>(ms >> (8 * (5 - i)));
  id.bytes[6] = static_cast<std::uint8_t>((id.bytes[6] & 0x0f) | 0x70);  // version 7
  id.bytes[8] = static_cast<std::uint8_t>((id.bytes[8] & 0x3f) | 0x80);  // RFC 9562 variant
  return id.to_string();
}

template <typename T>
const T& pick(std::mt19937_64& rng, const std::vector<T>& from) {
  return from[std::uniform_int_distribution<std::size_t>(0, from.size() - 1)(rng)];
}

std::string_view pick_word(std::mt19937_64& rng) {
  return k_vocabulary[std::uniform_int_distribution<std::size_t>(0, std::size(k_vocabulary) - 1)(rng)];
}

// Random words up to exactly k_note_bytes bytes ending in a full stop. Whole words only,
// so the text stays valid UTF-8 whatever the Czech letters' byte lengths.
std::string make_note(std::mt19937_64& rng) {
  constexpr std::size_t body_bytes = k_note_bytes - 1;
  std::string note;
  note.reserve(k_note_bytes);
  std::vector<std::size_t> word_ends;
  auto append = [&](std::string_view w) {
    if (!note.empty()) note += ' ';
    note += w;
    word_ends.push_back(note.size());
  };
  auto fits = [&](std::string_view w) { return note.size() + (note.empty() ? 0 : 1) + w.size() <= body_bytes; };
  // Free choice while there is room, then ever shorter words until the body is full
  // (one-letter words exist, so at most one byte is left over).
  for (int misses = 0; misses < 8;) {
    const auto w = pick_word(rng);
    if (fits(w)) {
      append(w);
      misses = 0;
    } else {
      ++misses;
    }
  }
  for (;;) {
    std::vector<std::string_view> fitting;
    for (const auto w : k_vocabulary) {
      if (fits(w)) fitting.push_back(w);
    }
    if (fitting.empty()) break;
    append(fitting[std::uniform_int_distribution<std::size_t>(0, fitting.size() - 1)(rng)]);
  }
  if (note.size() < body_bytes && word_ends.size() > 1) {
    // One byte short: a comma after some word, as people write.
    const auto at = word_ends[std::uniform_int_distribution<std::size_t>(0, word_ends.size() - 2)(rng)];
    note.insert(at, 1, ',');
  }
  note.resize(body_bytes, '.');  // a no-op unless the vocabulary changes
  note += '.';
  return note;
}

std::string iso_date(std::chrono::sys_days day) {
  const std::chrono::year_month_day ymd(day);
  char text[16];
  std::snprintf(text, sizeof text, "%04d-%02u-%02u", static_cast<int>(ymd.year()),
                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()));
  return text;
}

}  // namespace

caresync::schema visit_schema() {
  return caresync::schema{{collection_def{"visits",
                                          {{"client_id", value_kind::text},
                                           {"worker_id", value_kind::text},
                                           {"org_unit", value_kind::text},
                                           {"date", value_kind::text},
                                           {"duration_min", value_kind::integer},
                                           {"activity_codes", value_kind::text},
                                           {"note", value_kind::text},
                                           {"status", value_kind::text}}}}};
}

std::vector<visit> make_visits(std::size_t count, std::uint64_t seed) {
  std::mt19937_64 rng(seed);

  std::vector<std::string> clients(k_clients);
  for (auto& c : clients) c = uuid_from(rng);
  std::vector<std::string> workers(k_workers);
  for (auto& w : workers) w = uuid_from(rng);
  std::vector<std::string> org_units;
  for (const auto district : k_districts) {
    for (int team = 1; team <= 4; ++team) org_units.push_back(std::string(district) + "/team-" + std::to_string(team));
  }
  std::vector<std::string> activity_codes;  // A01-A10, B01-B10, C01-C10
  for (const char group : {'A', 'B', 'C'}) {
    for (int n = 1; n <= 10; ++n) {
      char code[8];
      std::snprintf(code, sizeof code, "%c%02d", group, n);
      activity_codes.emplace_back(code);
    }
  }
  const std::vector<std::string> statuses(k_statuses.begin(), k_statuses.end());
  const std::chrono::sys_days first_day = std::chrono::year{2024} / std::chrono::January / 1;

  std::vector<visit> visits;
  visits.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    visit v;
    v.id = time_ordered_id(rng, k_first_id_ms + i);  // one per millisecond, in order
    v.client_id = pick(rng, clients);
    v.worker_id = pick(rng, workers);
    v.org_unit = pick(rng, org_units);
    v.date = iso_date(first_day + std::chrono::days(std::uniform_int_distribution<int>(0, 365)(rng)));
    v.duration_min = 5 * std::uniform_int_distribution<std::int64_t>(3, 36)(rng);
    const int codes = std::uniform_int_distribution<int>(1, 3)(rng);
    std::vector<std::string> chosen;
    while (static_cast<int>(chosen.size()) < codes) {
      const auto& c = pick(rng, activity_codes);
      if (std::find(chosen.begin(), chosen.end(), c) == chosen.end()) chosen.push_back(c);
    }
    for (const auto& c : chosen) v.activity_codes += (v.activity_codes.empty() ? "" : ",") + c;
    v.note = make_note(rng);
    v.status = pick(rng, statuses);
    visits.push_back(std::move(v));
  }
  return visits;
}

std::vector<field_write> to_fields(const visit& v) {
  return {{"client_id", v.client_id},      {"worker_id", v.worker_id},
          {"org_unit", v.org_unit},        {"date", v.date},
          {"duration_min", v.duration_min}, {"activity_codes", v.activity_codes},
          {"note", v.note},                {"status", v.status}};
}

}  // namespace caresync::bench
