#include <caresync/protocol/care_rules.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cstdio>

namespace caresync::care {

namespace {

// The Act's registered service types, by paragraph (zákon č. 108/2006 Sb., část třetí,
// hlava I, díl 2-4). Codes are the Czech names without diacritics: stable, readable in
// plain SQL, and what registries exported from the national register are keyed by.
constexpr std::array k_service_types{
    service_type_info{"odborne_socialni_poradenstvi", "37", "odborné sociální poradenství", "sociální poradenství"},
    service_type_info{"osobni_asistence", "39", "osobní asistence", "služby sociální péče"},
    service_type_info{"pecovatelska_sluzba", "40", "pečovatelská služba", "služby sociální péče"},
    service_type_info{"tisnova_pece", "41", "tísňová péče", "služby sociální péče"},
    service_type_info{"pruvodcovske_a_predcitatelske_sluzby", "42", "průvodcovské a předčitatelské služby",
                      "služby sociální péče"},
    service_type_info{"podpora_samostatneho_bydleni", "43", "podpora samostatného bydlení", "služby sociální péče"},
    service_type_info{"odlehcovaci_sluzby", "44", "odlehčovací služby", "služby sociální péče"},
    service_type_info{"centra_dennich_sluzeb", "45", "centra denních služeb", "služby sociální péče"},
    service_type_info{"denni_stacionare", "46", "denní stacionáře", "služby sociální péče"},
    service_type_info{"tydenni_stacionare", "47", "týdenní stacionáře", "služby sociální péče"},
    service_type_info{"domovy_pro_osoby_se_zdravotnim_postizenim", "48", "domovy pro osoby se zdravotním postižením",
                      "služby sociální péče"},
    service_type_info{"domovy_pro_seniory", "49", "domovy pro seniory", "služby sociální péče"},
    service_type_info{"domovy_se_zvlastnim_rezimem", "50", "domovy se zvláštním režimem", "služby sociální péče"},
    service_type_info{"chranene_bydleni", "51", "chráněné bydlení", "služby sociální péče"},
    service_type_info{"socialni_sluzby_ve_zdravotnickych_zarizenich", "52",
                      "sociální služby poskytované ve zdravotnických zařízeních lůžkové péče", "služby sociální péče"},
    service_type_info{"rana_pece", "54", "raná péče", "služby sociální prevence"},
    service_type_info{"telefonicka_krizova_pomoc", "55", "telefonická krizová pomoc", "služby sociální prevence"},
    service_type_info{"tlumocnicke_sluzby", "56", "tlumočnické služby", "služby sociální prevence"},
    service_type_info{"azylove_domy", "57", "azylové domy", "služby sociální prevence"},
    service_type_info{"domy_na_pul_cesty", "58", "domy na půl cesty", "služby sociální prevence"},
    service_type_info{"kontaktni_centra", "59", "kontaktní centra", "služby sociální prevence"},
    service_type_info{"krizova_pomoc", "60", "krizová pomoc", "služby sociální prevence"},
    service_type_info{"intervencni_centra", "60a", "intervenční centra", "služby sociální prevence"},
    service_type_info{"nizkoprahova_denni_centra", "61", "nízkoprahová denní centra", "služby sociální prevence"},
    service_type_info{"nizkoprahova_zarizeni_pro_deti_a_mladez", "62", "nízkoprahová zařízení pro děti a mládež",
                      "služby sociální prevence"},
    service_type_info{"nocleharny", "63", "noclehárny", "služby sociální prevence"},
    service_type_info{"sluzby_nasledne_pece", "64", "služby následné péče", "služby sociální prevence"},
    service_type_info{"socialne_aktivizacni_sluzby_pro_rodiny_s_detmi", "65",
                      "sociálně aktivizační služby pro rodiny s dětmi", "služby sociální prevence"},
    service_type_info{"socialne_aktivizacni_sluzby_pro_seniory_a_osoby_se_zdravotnim_postizenim", "66",
                      "sociálně aktivizační služby pro seniory a osoby se zdravotním postižením",
                      "služby sociální prevence"},
    service_type_info{"socialne_terapeuticke_dilny", "67", "sociálně terapeutické dílny", "služby sociální prevence"},
    service_type_info{"terapeuticke_komunity", "68", "terapeutické komunity", "služby sociální prevence"},
    service_type_info{"terenni_programy", "69", "terénní programy", "služby sociální prevence"},
    service_type_info{"socialni_rehabilitace", "70", "sociální rehabilitace", "služby sociální prevence"},
};

constexpr std::array k_activity_codes{
    code_label{"needs_assessment", "sociální šetření, zjištění potřeb"},
    code_label{"personal_care", "pomoc při zvládání běžných úkonů péče o vlastní osobu"},
    code_label{"hygiene", "pomoc při osobní hygieně"},
    code_label{"meals", "poskytnutí stravy nebo pomoc při zajištění stravy"},
    code_label{"household", "pomoc při zajištění chodu domácnosti"},
    code_label{"shopping_errands", "nákupy a pochůzky"},
    code_label{"escort", "doprovod k lékaři, na úřad"},
    code_label{"social_contact", "zprostředkování kontaktu se společenským prostředím"},
    code_label{"therapeutic_activities", "sociálně terapeutické činnosti"},
    code_label{"rights_and_interests", "pomoc při uplatňování práv a oprávněných zájmů"},
    code_label{"basic_counselling", "základní sociální poradenství"},
    code_label{"specialist_counselling", "odborné sociální poradenství"},
    code_label{"crisis_intervention", "krizová intervence"},
    code_label{"benefits_assistance", "pomoc s dávkami (příspěvek na péči, ...)"},
    code_label{"housing_assistance", "pomoc se zajištěním bydlení"},
    code_label{"debt_assistance", "pomoc při řešení dluhů"},
    code_label{"caregiver_support", "podpora pečující osoby"},
    code_label{"caregiver_training", "zaškolení pečující osoby"},
    code_label{"respite_arranged", "zajištění odlehčovací služby"},
    code_label{"compensatory_aids", "kompenzační pomůcky"},
    code_label{"nursing_care", "ošetřovatelská péče"},
    code_label{"medication", "dohled nad užíváním léků"},
    code_label{"health_monitoring", "sledování zdravotního stavu, měření"},
    code_label{"referral_to_service", "zprostředkování navazující služby"},
};

constexpr std::array k_visit_kinds{
    code_label{"field_social_work", "terénní sociální práce"},
    code_label{"home_care", "pečovatelská služba v domácnosti"},
    code_label{"personal_assistance", "osobní asistence"},
    code_label{"health_home_visit", "domácí zdravotní péče"},
    code_label{"caregiver_support", "podpora pečující osoby"},
    code_label{"social_counselling", "sociální poradenství"},
    code_label{"crisis_intervention", "krizová intervence"},
    code_label{"phone_contact", "telefonický kontakt"},
    code_label{"other", "jiné"},
};

constexpr std::array k_caregiver_relations{
    code_label{"spouse_or_partner", "manžel(ka), partner(ka)"},
    code_label{"child", "syn, dcera"},
    code_label{"parent", "rodič"},
    code_label{"sibling", "sourozenec"},
    code_label{"grandchild", "vnuk, vnučka"},
    code_label{"other_relative", "jiný příbuzný"},
    code_label{"friend", "přítel, přítelkyně"},
    code_label{"neighbour", "soused(ka)"},
    code_label{"other", "jiný vztah"},
};

constexpr std::array k_client_statuses{
    code_label{"active", "aktivní"},
    code_label{"paused", "pozastavený"},
    code_label{"closed", "ukončený"},
};

constexpr std::array k_care_allowance_levels{
    code_label{"none", "bez příspěvku na péči"},
    code_label{"I", "I. stupeň (lehká závislost)"},
    code_label{"II", "II. stupeň (středně těžká závislost)"},
    code_label{"III", "III. stupeň (těžká závislost)"},
    code_label{"IV", "IV. stupeň (úplná závislost)"},
};

constexpr std::array k_visit_statuses{
    code_label{"planned", "plánovaná"},
    code_label{"done", "uskutečněná"},
    code_label{"cancelled", "zrušená"},
    code_label{"no_one_home", "nikdo nebyl doma"},
};

constexpr std::array k_referral_urgencies{
    code_label{"routine", "běžná"},
    code_label{"urgent", "naléhavá (do několika dnů)"},
    code_label{"crisis", "krizová (ihned)"},
};

constexpr std::array k_referral_handovers{
    code_label{"none", "bez předání klienta"},
    code_label{"temporary", "dočasné předání (po dobu řešení)"},
    code_label{"permanent", "trvalé předání"},
};

// Indexed by referral_state.
constexpr std::array k_referral_states{
    code_label{"new", "nová"},
    code_label{"accepted", "přijatá"},
    code_label{"in_progress", "v řešení"},
    code_label{"closed", "uzavřená"},
    code_label{"declined", "odmítnutá"},
};

// --- the field rules

enum class rule_kind {
  short_text,   // text up to k_max_short_text
  long_text,    // text up to k_max_long_text
  code,         // text, one of `codes`
  service_type, // text, a code of k_service_types
  date,         // text, is_valid_date
  utc_time,     // text, parse_utc_time
  record_ref,   // text, a record id in canonical form
  count,        // integer >= 0
  text_list,    // text, a JSON array of distinct short texts
  code_set,     // set_union of `codes` (the column renders a JSON array)
  short_set,    // set_union of short texts
  log,          // append of long texts
};

struct field_rule {
  std::string_view collection;
  std::string_view field;
  rule_kind kind;
  bool required;  // may not be written as null (or empty text)
  std::span<const code_label> codes = {};
};

constexpr std::array k_rules{
    field_rule{k_clients, "name", rule_kind::short_text, true},
    field_rule{k_clients, "birth_date", rule_kind::date, false},
    field_rule{k_clients, "address", rule_kind::short_text, false},
    field_rule{k_clients, "municipality", rule_kind::short_text, false},
    field_rule{k_clients, "org_unit", rule_kind::short_text, true},
    field_rule{k_clients, "contact", rule_kind::short_text, false},
    field_rule{k_clients, "care_allowance", rule_kind::code, true, k_care_allowance_levels},
    field_rule{k_clients, "consent_date", rule_kind::date, false},
    field_rule{k_clients, "consent_scope", rule_kind::long_text, false},
    field_rule{k_clients, "assigned_workers", rule_kind::short_set, false},
    field_rule{k_clients, "status", rule_kind::code, true, k_client_statuses},

    field_rule{k_caregivers, "client_id", rule_kind::record_ref, true},
    field_rule{k_caregivers, "org_unit", rule_kind::short_text, true},
    field_rule{k_caregivers, "name", rule_kind::short_text, true},
    field_rule{k_caregivers, "relation", rule_kind::code, true, k_caregiver_relations},
    field_rule{k_caregivers, "contact", rule_kind::short_text, false},
    field_rule{k_caregivers, "support_needs", rule_kind::long_text, false},
    field_rule{k_caregivers, "consent_date", rule_kind::date, false},
    field_rule{k_caregivers, "consent_scope", rule_kind::long_text, false},

    field_rule{k_visits, "client_id", rule_kind::record_ref, true},
    field_rule{k_visits, "worker_id", rule_kind::short_text, true},
    field_rule{k_visits, "org_unit", rule_kind::short_text, true},
    field_rule{k_visits, "start_at", rule_kind::utc_time, true},
    field_rule{k_visits, "end_at", rule_kind::utc_time, true},
    field_rule{k_visits, "kind", rule_kind::code, true, k_visit_kinds},
    field_rule{k_visits, "activity_codes", rule_kind::code_set, false, k_activity_codes},
    field_rule{k_visits, "note", rule_kind::long_text, false},
    field_rule{k_visits, "follow_ups", rule_kind::log, false},
    field_rule{k_visits, "status", rule_kind::code, true, k_visit_statuses},

    field_rule{k_referrals, "client_id", rule_kind::record_ref, true},
    field_rule{k_referrals, "from_unit", rule_kind::short_text, true},
    field_rule{k_referrals, "to_unit", rule_kind::short_text, false},
    field_rule{k_referrals, "to_service", rule_kind::record_ref, false},
    field_rule{k_referrals, "reason", rule_kind::long_text, true},
    field_rule{k_referrals, "urgency", rule_kind::code, true, k_referral_urgencies},
    field_rule{k_referrals, "state", rule_kind::code, true, k_referral_states},
    field_rule{k_referrals, "decline_reason", rule_kind::long_text, false},
    field_rule{k_referrals, "handover", rule_kind::code, true, k_referral_handovers},
    field_rule{k_referrals, "state_at", rule_kind::utc_time, false},

    field_rule{k_services, "org_unit", rule_kind::short_text, true},
    field_rule{k_services, "provider", rule_kind::short_text, true},
    field_rule{k_services, "service_name", rule_kind::short_text, true},
    field_rule{k_services, "service_type", rule_kind::service_type, true},
    field_rule{k_services, "registration_id", rule_kind::short_text, false},
    field_rule{k_services, "capacity", rule_kind::count, false},
    field_rule{k_services, "municipalities", rule_kind::text_list, false},
    field_rule{k_services, "address", rule_kind::short_text, false},
    field_rule{k_services, "contacts", rule_kind::long_text, false},
    field_rule{k_services, "opening_hours", rule_kind::short_text, false},
    field_rule{k_services, "description", rule_kind::long_text, false},
};

constexpr std::array<std::string_view, 11> k_server_only_fields{
    "services.org_unit",     "services.provider",      "services.service_name", "services.service_type",
    "services.registration_id", "services.capacity",   "services.municipalities", "services.address",
    "services.contacts",     "services.opening_hours", "services.description",
};

const field_rule* find_rule(std::string_view collection, std::string_view field) noexcept {
  for (const auto& r : k_rules) {
    if (r.collection == collection && r.field == field) return &r;
  }
  return nullptr;
}

bool is_care_collection(std::string_view c) noexcept {
  return c == k_clients || c == k_caregivers || c == k_visits || c == k_referrals || c == k_services;
}

/// Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF.
bool is_utf8(std::string_view s) noexcept {
  std::size_t i = 0;
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  while (i < s.size()) {
    const unsigned c = byte(i);
    std::size_t n = 0;
    unsigned cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      n = 1, cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 2, cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 3, cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;  // truncated sequence
    for (std::size_t k = 1; k <= n; ++k) {
      const unsigned cc = byte(i + k);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += n + 1;
  }
  return true;
}

/// Control characters other than tab, line feed and carriage return: never in text a
/// person typed, and they break exports.
bool has_control(std::string_view s) noexcept {
  return std::any_of(s.begin(), s.end(), [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return (c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7F;
  });
}

std::string where(std::string_view collection, std::string_view field) {
  return std::string(collection) + "." + std::string(field);
}

/// Checks a text against the text rules shared by values and items.
std::string check_text(const field_rule& r, std::string_view text, std::size_t max) {
  if (text.size() > max) {
    return where(r.collection, r.field) + " is longer than " + std::to_string(max) + " bytes; shorten it";
  }
  if (!is_utf8(text)) return where(r.collection, r.field) + " is not valid UTF-8 text";
  if (has_control(text)) return where(r.collection, r.field) + " contains control characters";
  return {};
}

std::string check_code(const field_rule& r, std::string_view text, std::span<const code_label> codes) {
  if (is_known(codes, text)) return {};
  std::string known;
  for (const auto& c : codes) known += (known.empty() ? "" : ", ") + std::string(c.code);
  // A code is not personal content; quoting it (bounded) helps whoever typed it.
  const std::string shown(text.substr(0, 64));
  return where(r.collection, r.field) + " '" + shown + "' is not a known code (known: " + known + ")";
}

std::string check_item_text(const field_rule& r, std::string_view item) {
  if (item.empty()) return where(r.collection, r.field) + " has an empty element";
  switch (r.kind) {
    case rule_kind::code_set:
      return check_code(r, item, r.codes);
    case rule_kind::short_set:
    case rule_kind::text_list:
      return check_text(r, item, k_max_short_text);
    case rule_kind::log:
      return check_text(r, item, k_max_long_text);
    default:
      return where(r.collection, r.field) + " does not hold a list";
  }
}

/// A list field's column value: a JSON array of distinct non-empty strings.
std::string check_list(const field_rule& r, std::string_view text) {
  const auto parsed = nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
  if (parsed.is_discarded() || !parsed.is_array()) {
    return where(r.collection, r.field) + " must be a JSON array of strings";
  }
  if (parsed.size() > k_max_list_items) {
    return where(r.collection, r.field) + " has more than " + std::to_string(k_max_list_items) + " elements";
  }
  std::vector<std::string_view> seen;
  for (const auto& e : parsed) {
    if (!e.is_string()) return where(r.collection, r.field) + " must be a JSON array of strings";
    const auto& s = e.get_ref<const std::string&>();
    if (auto problem = check_item_text(r, s); !problem.empty()) return problem;
    if (std::find(seen.begin(), seen.end(), s) != seen.end()) {
      return where(r.collection, r.field) + " lists an element twice";
    }
    seen.push_back(s);
  }
  return {};
}

constexpr std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) noexcept {
  // Howard Hinnant's algorithm: exact for the proleptic Gregorian calendar.
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

bool digits(std::string_view s, std::size_t at, std::size_t n, unsigned& out) noexcept {
  out = 0;
  for (std::size_t i = at; i < at + n; ++i) {
    if (i >= s.size() || s[i] < '0' || s[i] > '9') return false;
    out = out * 10 + static_cast<unsigned>(s[i] - '0');
  }
  return true;
}

}  // namespace

std::span<const service_type_info> service_types() noexcept { return k_service_types; }

const service_type_info* find_service_type(std::string_view code) noexcept {
  for (const auto& t : k_service_types) {
    if (t.code == code) return &t;
  }
  return nullptr;
}

std::span<const code_label> activity_codes() noexcept { return k_activity_codes; }
std::span<const code_label> visit_kinds() noexcept { return k_visit_kinds; }
std::span<const code_label> caregiver_relations() noexcept { return k_caregiver_relations; }
std::span<const code_label> client_statuses() noexcept { return k_client_statuses; }
std::span<const code_label> care_allowance_levels() noexcept { return k_care_allowance_levels; }
std::span<const code_label> visit_statuses() noexcept { return k_visit_statuses; }
std::span<const code_label> referral_urgencies() noexcept { return k_referral_urgencies; }
std::span<const code_label> referral_handovers() noexcept { return k_referral_handovers; }
std::span<const code_label> referral_states() noexcept { return k_referral_states; }

std::span<const std::string_view> server_only_fields() noexcept { return k_server_only_fields; }

bool is_known(std::span<const code_label> codes, std::string_view code) noexcept {
  return std::any_of(codes.begin(), codes.end(), [&](const code_label& c) { return c.code == code; });
}

std::string_view to_code(referral_state s) noexcept { return k_referral_states[static_cast<std::size_t>(s)].code; }

std::optional<referral_state> parse_referral_state(std::string_view code) noexcept {
  for (std::size_t i = 0; i < k_referral_states.size(); ++i) {
    if (k_referral_states[i].code == code) return static_cast<referral_state>(i);
  }
  return std::nullopt;
}

bool legal_referral_transition(referral_state from, referral_state to) noexcept {
  using s = referral_state;
  switch (from) {
    case s::new_:
      return to == s::accepted || to == s::declined;
    case s::accepted:
      return to == s::in_progress || to == s::declined;
    case s::in_progress:
      return to == s::closed;
    case s::closed:
    case s::declined:
      return false;
  }
  return false;
}

std::optional<std::int64_t> parse_date(std::string_view text) noexcept {
  unsigned y = 0, m = 0, d = 0;
  if (text.size() != 10 || text[4] != '-' || text[7] != '-' || !digits(text, 0, 4, y) || !digits(text, 5, 2, m) ||
      !digits(text, 8, 2, d)) {
    return std::nullopt;
  }
  if (y < 1900 || y > 2199 || m < 1 || m > 12 || d < 1) return std::nullopt;
  constexpr std::array<unsigned, 12> k_days{31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  if (d > k_days[m - 1] + ((m == 2 && leap) ? 1u : 0u)) return std::nullopt;
  return days_from_civil(y, m, d);
}

bool is_valid_date(std::string_view text) noexcept { return parse_date(text).has_value(); }

std::optional<std::int64_t> parse_utc_time(std::string_view text) noexcept {
  unsigned h = 0, mi = 0, s = 0;
  if (text.size() != 20 || text[10] != 'T' || text[13] != ':' || text[16] != ':' || text[19] != 'Z' ||
      !digits(text, 11, 2, h) || !digits(text, 14, 2, mi) || !digits(text, 17, 2, s) || h > 23 || mi > 59 || s > 59) {
    return std::nullopt;
  }
  const auto days = parse_date(text.substr(0, 10));
  if (!days) return std::nullopt;
  return *days * 86400 + h * 3600 + mi * 60 + s;
}

std::string format_date(std::int64_t days) {
  // Inverse of days_from_civil (Howard Hinnant's civil_from_days).
  days += 719468;
  const std::int64_t era = (days >= 0 ? days : days - 146096) / 146097;
  const auto doe = static_cast<unsigned>(days - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const unsigned d = doy - (153 * mp + 2) / 5 + 1;
  const unsigned m = mp < 10 ? mp + 3 : mp - 9;
  const std::int64_t y = static_cast<std::int64_t>(yoe) + era * 400 + (m <= 2);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%04lld-%02u-%02u", static_cast<long long>(y), m, d);
  return buf;
}

std::string format_utc_time(std::int64_t seconds) {
  std::int64_t days = seconds / 86400, rest = seconds % 86400;
  if (rest < 0) rest += 86400, --days;
  char buf[16];
  std::snprintf(buf, sizeof buf, "T%02d:%02d:%02dZ", static_cast<int>(rest / 3600), static_cast<int>(rest / 60 % 60),
                static_cast<int>(rest % 60));
  return format_date(days) + buf;
}

std::string check_care_value(std::string_view collection, std::string_view field, const value& v) {
  const field_rule* r = find_rule(collection, field);
  if (!r) return {};
  const auto at = where(collection, field);
  if (std::holds_alternative<std::monostate>(v) ||
      (std::holds_alternative<std::string>(v) && std::get<std::string>(v).empty())) {
    if (r->required) return at + " is required";
    return {};
  }
  if (r->kind == rule_kind::count) {
    if (!std::holds_alternative<std::int64_t>(v)) return at + " must be an integer";
    if (std::get<std::int64_t>(v) < 0) return at + " must not be negative";
    return {};
  }
  if (!std::holds_alternative<std::string>(v)) return at + " must be text";
  const auto& text = std::get<std::string>(v);
  switch (r->kind) {
    case rule_kind::short_text:
      return check_text(*r, text, k_max_short_text);
    case rule_kind::long_text:
      return check_text(*r, text, k_max_long_text);
    case rule_kind::code:
      return check_code(*r, text, r->codes);
    case rule_kind::service_type:
      if (find_service_type(text)) return {};
      return at + " '" + std::string(text.substr(0, 64)) +
             "' is not a service type of the Social Services Act (docs/care.md lists the codes)";
    case rule_kind::date:
      if (is_valid_date(text)) return {};
      return at + " must be a calendar date written YYYY-MM-DD (year 1900-2199)";
    case rule_kind::utc_time:
      if (parse_utc_time(text)) return {};
      return at + " must be a UTC time written YYYY-MM-DDTHH:MM:SSZ";
    case rule_kind::record_ref:
      if (record_id::parse(text)) return {};
      return at + " must be a record id (a UUID)";
    case rule_kind::text_list:
    case rule_kind::code_set:
    case rule_kind::short_set:
      return check_list(*r, text);
    case rule_kind::log:
      // An append field's write is one entry (the store renders the log itself).
      return check_item_text(*r, text);
    case rule_kind::count:
      break;
  }
  return {};
}

std::string check_care_item(std::string_view collection, std::string_view field, std::string_view item) {
  const field_rule* r = find_rule(collection, field);
  if (!r) return {};
  return check_item_text(*r, item);
}

std::string check_care_change(const change& c) {
  if (c.kind == change_kind::remove || !is_care_collection(c.collection)) return {};
  for (const auto& f : c.fields) {
    if (auto problem = check_care_value(c.collection, f.name, f.val); !problem.empty()) return problem;
  }
  for (const auto& op : c.items) {
    for (const auto& item : op.add) {
      if (auto problem = check_care_item(c.collection, op.field, item); !problem.empty()) return problem;
    }
  }
  return {};
}

}  // namespace caresync::care
