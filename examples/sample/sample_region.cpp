#include "sample_region.hpp"

#include <caresync/protocol/care_rules.hpp>
#include <caresync/store.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <ostream>
#include <random>
#include <stdexcept>

namespace caresync::sample {

namespace {

/// The generator's own picks, so the region does not depend on how a standard library
/// implements its distributions.
class picker {
 public:
  explicit picker(std::uint64_t seed) : rng_(seed) {}
  std::size_t below(std::size_t n) { return static_cast<std::size_t>(rng_() % n); }
  int between(int lo, int hi) { return lo + static_cast<int>(below(static_cast<std::size_t>(hi - lo + 1))); }
  bool chance(unsigned percent) { return below(100) < percent; }
  template <class T, std::size_t N>
  const T& one_of(const std::array<T, N>& a) {
    return a[below(N)];
  }
  template <class T>
  const T& one_of(const std::vector<T>& v) {
    return v[below(v.size())];
  }

 private:
  std::mt19937_64 rng_;
};

constexpr std::array k_place_prefixes{"Horní", "Dolní", "Nová", "Stará", "Malá", "Velká", "Zadní", "Přední"};
constexpr std::array k_place_bases{"Lhota", "Ves", "Vzorov", "Příkladov", "Zkušebnice", "Fiktivice",
                                   "Modelov", "Ukázkov", "Smyšlená", "Cvičná", "Pokusov", "Nahodilov"};
constexpr std::array k_first_f{"Marie", "Jana", "Eva", "Anna", "Věra", "Alena", "Jiřina", "Ludmila", "Zdeňka", "Božena"};
constexpr std::array k_first_m{"Jan", "Josef", "Jiří", "Václav", "Karel", "Miroslav", "František", "Zdeněk", "Ladislav", "Oldřich"};
constexpr std::array k_surname_f{"Vzorová", "Příkladová", "Ukázková", "Fiktivní", "Testovací", "Smyšlená"};
constexpr std::array k_surname_m{"Vzorový", "Příkladový", "Ukázkový", "Fiktivní", "Testovací", "Smyšlený"};
constexpr std::array k_provider_adjectives{"Vzorová", "Fiktivní", "Ukázková", "Smyšlená", "Příkladná"};
constexpr std::array k_provider_nouns{"pečovatelská služba", "charita", "diakonie", "asistence", "péče",
                                      "sociální služba", "pomoc", "centrum služeb"};
constexpr std::array k_legal_forms{"s.r.o.", "z.ú.", "o.p.s.", "z.s.", "p.o."};
constexpr std::array k_target_groups{"senioři", "osoby se zdravotním postižením", "rodiny s dětmi",
                                     "osoby v krizi", "osoby bez přístřeší", "osoby s chronickým onemocněním",
                                     "pečující osoby"};
constexpr std::array k_hours{"Po–Pá 7:00–15:30", "Po–Ne 0:00–24:00", "Po–Čt 8:00–16:00, Pá 8:00–12:00",
                             "Po, St 9:00–17:00", "dle dohody"};
constexpr std::array k_visit_notes{
    "Klientka se cítí lépe, domluvena další návštěva (synthetic).",
    "Probrána žádost o příspěvek na péči (synthetic).",
    "Dcera zaškolena v polohování, potřebuje podporu (synthetic).",
    "Nikdo neotevřel, zanechán vzkaz (synthetic).",
    "Předány kontakty na odlehčovací službu (synthetic).",
};
constexpr std::array k_follow_ups{"zavolat rodině", "ověřit stav žádosti", "domluvit pomůcky",
                                  "předat kontakt na poradnu", "naplánovat další návštěvu"};
constexpr std::array k_referral_reasons{"propuštění z nemocnice, potřeba péče doma (synthetic)",
                                        "zhoršení soběstačnosti (synthetic)",
                                        "pečující osoba potřebuje odlehčení (synthetic)",
                                        "dluhy a hrozící ztráta bydlení (synthetic)"};

/// "pečovatelská služba" -> "Pečovatelská služba" (every label starts with ASCII).
std::string capitalized(std::string_view s) {
  std::string out(s);
  if (!out.empty()) out[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(out[0])));
  return out;
}

/// "Horní Lhota" -> "horni-lhota" for org unit paths (ASCII; the few Czech letters used).
std::string slug(std::string_view name) {
  static const std::array<std::pair<std::string_view, char>, 15> k_letters{{
      {"á", 'a'}, {"č", 'c'}, {"ď", 'd'}, {"é", 'e'}, {"ě", 'e'}, {"í", 'i'}, {"ň", 'n'}, {"ó", 'o'},
      {"ř", 'r'}, {"š", 's'}, {"ť", 't'}, {"ú", 'u'}, {"ů", 'u'}, {"ý", 'y'}, {"ž", 'z'},
  }};
  std::string out;
  for (std::size_t i = 0; i < name.size();) {
    const auto c = static_cast<unsigned char>(name[i]);
    if (c < 0x80) {
      out += std::isalnum(c) ? static_cast<char>(std::tolower(c)) : '-';
      ++i;
      continue;
    }
    char replacement = '-';
    std::size_t length = 2;
    for (const auto& [letter, ascii] : k_letters) {
      if (name.substr(i, letter.size()) == letter) replacement = ascii, length = letter.size();
    }
    // Any other character (a capital such as Ž) becomes a dash like punctuation.
    out += replacement;
    i += length;
  }
  return out;
}

std::string two(int n) { return (n < 10 ? "0" : "") + std::to_string(n); }

std::string date(int y, int m, int d) { return std::to_string(y) + "-" + two(m) + "-" + two(d); }

}  // namespace

std::vector<std::string> region::municipalities() const {
  std::vector<std::string> out;
  for (const auto& o : orps) out.insert(out.end(), o.municipalities.begin(), o.municipalities.end());
  return out;
}

region make_region(const region_options& opt) {
  if (opt.orps < 1 || opt.orps > 8) throw std::invalid_argument("orps must be from 1 to 8");
  if (opt.teams_per_orp < 1 || opt.teams_per_orp > 9) throw std::invalid_argument("teams per ORP must be from 1 to 9");
  picker pick(opt.seed);
  region r;
  r.org_unit = "kraj-vzor";

  // Municipality names: every prefix-base pair once, in an order the seed decides.
  std::vector<std::string> names;
  for (const auto* base : k_place_bases) {
    for (const auto* prefix : k_place_prefixes) names.push_back(std::string(prefix) + " " + base);
  }
  for (std::size_t i = names.size() - 1; i > 0; --i) std::swap(names[i], names[pick.below(i + 1)]);
  const std::size_t per_orp = names.size() / opt.orps;
  for (std::size_t o = 0; o < opt.orps; ++o) {
    orp x;
    x.municipalities.assign(names.begin() + static_cast<std::ptrdiff_t>(o * per_orp),
                            names.begin() + static_cast<std::ptrdiff_t>((o + 1) * per_orp));
    x.name = "Fiktivní ORP " + x.municipalities.front();
    x.org_unit = r.org_unit + "/orp-" + slug(x.municipalities.front());
    for (std::size_t t = 1; t <= opt.teams_per_orp; ++t) x.teams.push_back(x.org_unit + "/team-" + std::to_string(t));
    r.orps.push_back(std::move(x));
  }

  // The registry: providers with several services each, in and around one ORP.
  const auto types = care::service_types();
  std::size_t provider_no = 0;
  std::string provider;
  const orp* home = nullptr;
  for (std::size_t i = 0; i < opt.services; ++i) {
    if (i % 6 == 0) {
      home = &r.orps[pick.below(r.orps.size())];
      provider = std::string(pick.one_of(k_provider_adjectives)) + " " + pick.one_of(k_provider_nouns) + " " +
                 pick.one_of(home->municipalities) + " " + pick.one_of(k_legal_forms);
      ++provider_no;
    }
    const auto& type = types[pick.below(types.size())];
    care::service s;
    s.org_unit = r.org_unit;
    s.provider = provider;
    const auto& place = pick.one_of(home->municipalities);
    s.service_name = capitalized(type.label) + " " + place;
    s.service_type = std::string(type.code);
    s.registration_id = "SYN-" + std::to_string(1000000 + i);  // not a real register id
    s.capacity = pick.chance(20) ? std::optional<std::int64_t>{} : std::optional<std::int64_t>{pick.between(5, 120)};
    s.municipalities = {place};
    const int extra = pick.between(0, 4);
    for (int k = 0; k < extra; ++k) s.municipalities.push_back(pick.one_of(home->municipalities));
    std::sort(s.municipalities.begin(), s.municipalities.end());
    s.municipalities.erase(std::unique(s.municipalities.begin(), s.municipalities.end()), s.municipalities.end());
    s.address = place + " č. p. " + std::to_string(pick.between(1, 400));
    s.contacts = "+420 000 " + std::to_string(100 + pick.below(900)) + " " + std::to_string(100 + pick.below(900)) +
                 ", sluzba" + std::to_string(provider_no) + "@example.invalid";
    s.opening_hours = pick.one_of(k_hours);
    s.description = "Fiktivní služba pro ukázku (synthetic). Cílová skupina: " +
                    std::string(pick.one_of(k_target_groups)) + ", " + pick.one_of(k_target_groups) + ".";
    r.services.push_back(std::move(s));
  }

  // Clients, each with a caregiver or two, visits and now and then a referral.
  for (std::size_t i = 0; i < opt.clients; ++i) {
    const auto& o = r.orps[pick.below(r.orps.size())];
    const std::size_t team = pick.below(o.teams.size());
    client_bundle b;
    const bool woman = pick.chance(60);
    auto& c = b.person;
    c.name = std::string(woman ? pick.one_of(k_first_f) : pick.one_of(k_first_m)) + " " +
             (woman ? pick.one_of(k_surname_f) : pick.one_of(k_surname_m)) + " (synthetic)";
    c.birth_date = date(pick.between(1925, 1965), pick.between(1, 12), pick.between(1, 28));
    c.municipality = pick.one_of(o.municipalities);
    c.address = c.municipality + " č. p. " + std::to_string(pick.between(1, 400));
    c.org_unit = o.teams[team];
    c.contact = "+420 000 " + std::to_string(100 + pick.below(900)) + " " + std::to_string(100 + pick.below(900));
    c.allowance = static_cast<care::care_allowance>(pick.below(5));
    if (pick.chance(80)) {
      c.consent_date = date(pick.between(2020, 2025), pick.between(1, 12), pick.between(1, 28));
      c.consent_scope = "vedení dokumentace a sdílení v rámci týmu";
    }
    const std::string worker_prefix = "w-" + slug(o.municipalities.front()) + "-" + std::to_string(team + 1) + "-";
    c.assigned_workers = {worker_prefix + std::to_string(1 + pick.below(4))};
    c.status = pick.chance(90) ? care::client_status::active
                               : (pick.chance(50) ? care::client_status::paused : care::client_status::closed);

    const int carers = pick.between(0, 2);
    for (int k = 0; k < carers; ++k) {
      care::caregiver g;
      const bool carer_woman = pick.chance(70);
      g.name = std::string(carer_woman ? pick.one_of(k_first_f) : pick.one_of(k_first_m)) + " " +
               (carer_woman ? pick.one_of(k_surname_f) : pick.one_of(k_surname_m)) + " (synthetic)";
      const auto relations = care::caregiver_relations();
      g.relation = std::string(relations[pick.below(relations.size())].code);
      g.contact = "+420 000 " + std::to_string(100 + pick.below(900)) + " " + std::to_string(100 + pick.below(900));
      g.support_needs = pick.chance(50) ? "odlehčení, zaškolení v péči (synthetic)" : "";
      b.caregivers.push_back(std::move(g));
    }

    for (std::size_t k = 0; k < opt.visits_per_client; ++k) {
      care::visit v;
      v.worker_id = c.assigned_workers.front();
      const int month = pick.between(1, 10), day = pick.between(1, 28), hour = pick.between(6, 17);
      const int minutes = 15 + 5 * pick.between(0, 21);
      const auto start = care::parse_utc_time(date(2026, month, day) + "T" + two(hour) + ":00:00Z").value();
      v.start_at = care::format_utc_time(start);
      v.end_at = care::format_utc_time(start + minutes * 60);
      const auto kinds = care::visit_kinds();
      v.kind = std::string(kinds[pick.below(kinds.size() - 1)].code);
      const auto codes = care::activity_codes();
      const int n_codes = pick.between(1, 3);
      for (int a = 0; a < n_codes; ++a) v.activity_codes.push_back(std::string(codes[pick.below(codes.size())].code));
      v.note = pick.one_of(k_visit_notes);
      if (pick.chance(30)) v.follow_ups.push_back(pick.one_of(k_follow_ups));
      v.status = pick.chance(85) ? care::visit_status::done
                                 : (pick.chance(50) ? care::visit_status::no_one_home : care::visit_status::cancelled);
      b.visits.push_back(std::move(v));
    }

    if (pick.chance(10)) {
      care::referral ref;
      const auto& to = r.orps[pick.below(r.orps.size())];
      ref.to_unit = pick.one_of(to.teams);
      if (ref.to_unit == c.org_unit) ref.to_unit = to.org_unit + "/koordinator";
      ref.reason = pick.one_of(k_referral_reasons);
      ref.urgency = static_cast<care::referral_urgency>(pick.below(3));
      ref.ownership = pick.chance(20) ? care::handover::temporary : care::handover::none;
      b.referrals.push_back(std::move(ref));
    }
    r.clients.push_back(std::move(b));
  }
  return r;
}

written write_region(care::records& care, const region& r, std::size_t batch) {
  written w;
  auto& local = care.store();
  batch = std::max<std::size_t>(batch, 1);
  for (std::size_t i = 0; i < r.services.size(); i += batch) {
    local.transaction([&] {
      for (std::size_t k = i; k < std::min(i + batch, r.services.size()); ++k) care.services().add(r.services[k]);
    });
    w.services = std::min(i + batch, r.services.size());
  }
  for (std::size_t i = 0; i < r.clients.size(); i += batch) {
    local.transaction([&] {
      for (std::size_t k = i; k < std::min(i + batch, r.clients.size()); ++k) {
        const auto& b = r.clients[k];
        const auto id = care.clients().add(b.person);
        ++w.clients;
        for (auto g : b.caregivers) {
          g.client_id = id;
          care.caregivers().add(g);
          ++w.caregivers;
        }
        for (auto v : b.visits) {
          v.client_id = id;
          care.visits().add(v);
          ++w.visits;
        }
        for (auto ref : b.referrals) {
          ref.client_id = id;
          care.referrals().add(ref);
          ++w.referrals;
        }
      }
    });
  }
  return w;
}

namespace {

std::string csv_field(std::string_view s) {
  if (s.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(s);
  std::string out = "\"";
  for (const char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

}  // namespace

void write_services_csv(std::ostream& out, const region& r) {
  // The header names the care schema's fields (docs/care.md), capacity typed, so the file
  // is what `caresync-server import-registry` reads, keyed by registration_id.
  out << "registration_id,provider,service_name,service_type,municipalities,capacity:integer,address,contacts,"
         "opening_hours,org_unit,description\r\n";
  for (const auto& s : r.services) {
    // As the field stores it: a JSON array of the names.
    std::string places = "[";
    for (const auto& m : s.municipalities) places += (places.size() > 1 ? ",\"" : "\"") + m + "\"";
    places += "]";
    out << csv_field(s.registration_id) << ',' << csv_field(s.provider) << ',' << csv_field(s.service_name) << ','
        << csv_field(s.service_type) << ',' << csv_field(places) << ','
        << (s.capacity ? std::to_string(*s.capacity) : std::string()) << ',' << csv_field(s.address) << ','
        << csv_field(s.contacts) << ',' << csv_field(s.opening_hours) << ',' << csv_field(s.org_unit) << ','
        << csv_field(s.description) << "\r\n";
  }
}

}  // namespace caresync::sample
