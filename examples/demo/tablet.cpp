// A simulated field tablet (see tablet.hpp).

#include "tablet.hpp"

#include "plain_sql.hpp"

#include <algorithm>
#include <array>
#include <string_view>

namespace caresync::demo {
namespace {

struct named_profile {
  std::string_view name;
  std::string_view role;
  std::string_view org_unit;
};

constexpr std::array<named_profile, 12> k_profiles{{
    {"anna-benesov", "field social worker", "orp-benesov"},
    {"petr-vlasim", "field social worker", "orp-vlasim"},
    {"coordinator-kolin", "help coordinator", "orp-kolin"},
    {"jana-votice", "caregiver-support worker", "orp-benesov"},
    {"tomas-sedlcany", "field social worker", "orp-sedlcany"},
    {"eva-kutna-hora", "field social worker", "orp-kutna-hora"},
    {"coordinator-benesov", "help coordinator", "orp-benesov"},
    {"martin-caslav", "field social worker", "orp-caslav"},
    {"lucie-cesky-brod", "caregiver-support worker", "orp-cesky-brod"},
    {"nurse-vlasim-hospital", "discharge nurse", "orp-vlasim"},
    {"ondrej-tynec", "field social worker", "orp-benesov"},
    {"klara-neveklov", "field social worker", "orp-benesov"},
}};

constexpr std::size_t k_min_clients = 3;
constexpr double k_new_client_per_visit = 0.15;
constexpr double k_review_share = 0.2;  // of this session's visit count, earlier visits reviewed
constexpr double k_delete_chance = 0.4;  // per session: one visit recorded by mistake

}  // namespace

std::string text_field(const std::optional<record_fields>& fields, const std::string& name) {
  if (!fields) return {};
  const auto it = fields->find(name);
  if (it == fields->end()) return {};
  const auto* text = std::get_if<std::string>(&it->second);
  return text ? *text : std::string();
}

caresync::schema care_schema() {
  using k = value_kind;
  return caresync::schema{{
      collection_def{"clients", {{"name", k::text}, {"municipality", k::text}, {"org_unit", k::text}}},
      collection_def{"visits",
                     {{"client_id", k::text},
                      {"worker", k::text},
                      {"org_unit", k::text},
                      {"date", k::text},
                      {"duration_min", k::integer},
                      {"kind", k::text},
                      // Two workers writing the visit's note offline: both texts are kept.
                      {"note", k::text, caresync::merge_policy::keep_both},
                      {"status", k::text}}},
  }};
}

std::vector<tablet_profile> tablet_profiles(std::size_t n) {
  std::vector<tablet_profile> profiles;
  for (std::size_t i = 0; i < n; ++i) {
    if (i < k_profiles.size()) {
      const auto& p = k_profiles[i];
      profiles.push_back({std::string(p.name), std::string(p.role), std::string(p.org_unit)});
    } else {
      profiles.push_back({"tablet-" + std::to_string(i + 1), "field social worker", "orp-benesov"});
    }
  }
  return profiles;
}

tablet::tablet(tablet_profile profile, const std::string& store_path, sync_options options)
    : profile_(std::move(profile)),
      store_(store::open({store_path, care_schema(), durability::full})),
      options_(std::move(options)) {}

offline_work tablet::work_offline(demo_rng& rng, std::size_t visits, int day_offset) {
  offline_work done;
  auto clients = client_ids();
  // This worker's earlier visits not yet reviewed: the ones a review or a delete may touch.
  const auto earlier = query_ids(store_->path(),
                                 "SELECT id FROM visits WHERE worker = ? AND status = 'recorded' ORDER BY id",
                                 profile_.name);

  for (std::size_t i = 0; i < visits; ++i) {
    if (clients.size() < k_min_clients || chance(rng, k_new_client_per_visit)) {
      clients.push_back(store_->create("clients", {{"name", synthetic_client_name(rng)},
                                                   {"municipality", synthetic_municipality(rng)},
                                                   {"org_unit", profile_.org_unit}}));
      ++done.clients_created;
    }
    const auto visit = store_->create("visits", {{"client_id", clients[pick_index(rng, clients.size())].to_string()},
                                                 {"worker", profile_.name},
                                                 {"org_unit", profile_.org_unit},
                                                 {"date", visit_date(day_offset)},
                                                 {"duration_min", synthetic_duration_min(rng)},
                                                 {"kind", synthetic_visit_kind(rng)},
                                                 {"note", synthetic_visit_note(rng)},
                                                 {"status", std::string("recorded")}});
    if (!done.first_visit) done.first_visit = visit;
    ++done.visits_created;
  }

  if (!earlier.empty()) {
    const auto reviews = std::min(earlier.size(), static_cast<std::size_t>(static_cast<double>(visits) * k_review_share));
    for (std::size_t i = 0; i < reviews; ++i) {
      const auto& visit = earlier[pick_index(rng, earlier.size())];
      const auto current = store_->get("visits", visit);
      if (!current || text_field(current, "status") != "recorded") continue;  // picked twice in this session
      // Both fields in one write: one version, so they stay together on every replica.
      store_->update("visits", visit, {{"status", synthetic_review_status(rng)},
                                       {"note", text_field(current, "note") + " " + synthetic_note_addendum(rng)}});
      ++done.visits_edited;
    }
    if (chance(rng, k_delete_chance)) {
      const auto& visit = earlier[pick_index(rng, earlier.size())];
      if (text_field(store_->get("visits", visit), "status") == "recorded") {
        store_->remove("visits", visit);
        ++done.visits_deleted;
      }
    }
  }
  return done;
}

void tablet::set_status(const record_id& visit, const std::string& status) {
  // The status is last-writer-wins; the note, rewritten by each editor, keeps every text.
  store_->update("visits", visit, {{"status", status}, {"note", "note amended: " + status}});
}

std::vector<record_id> tablet::visit_ids() const { return query_ids(store_->path(), "SELECT id FROM visits ORDER BY id"); }

std::vector<record_id> tablet::client_ids() const {
  return query_ids(store_->path(), "SELECT id FROM clients ORDER BY id");
}

sync_report tablet::sync() { return sync_client(*store_, options_).sync(); }

}  // namespace caresync::demo
