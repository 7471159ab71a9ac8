#pragma once
// A tablet's store with the care schema in a temporary directory, and the records over it.

#include "../support/temp_dir.hpp"
#include "store_impl.hpp"

#include <caresync/care.hpp>
#include <caresync/protocol/errors.hpp>
#include <caresync/protocol/messages.hpp>
#include <caresync/store.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace caresync::testing {

/// 2026-11-23T10:00:00Z: the tablets' clock in these tests, so "the future" is fixed.
inline constexpr std::uint64_t k_now_ms = 1'795'428'000'000;

struct care_tablet {
  /// A tablet with `care` opened as `r`; its store is server-side (it may write the
  /// registry's server_only fields) for registry_admin, or when `server_side` says so.
  explicit care_tablet(care::role r = care::role::field_worker, const std::string& name = "tablet.db",
                       bool server_side = false)
      : path(dir.file(name)) {
    store_options o{path, care::schema()};
    o.time_source = [] { return k_now_ms; };
    o.server_side = server_side || r == care::role::registry_admin;  // the registry's fields are server_only
    local = store::open(o);
    care = std::make_unique<care::records>(*local, r);
  }

  temp_dir dir;
  std::string path;
  std::unique_ptr<store> local;
  std::unique_ptr<care::records> care;

  /// A valid client of unit `org_unit`.
  record_id add_client(const std::string& org_unit = "kraj/orp-a/team-1") {
    care::client c;
    c.name = "Marie Vzorová (synthetic)";
    c.birth_date = "1941-03-07";
    c.municipality = "Fiktivní Lhota";
    c.org_unit = org_unit;
    return care->clients().add(c);
  }

  /// A valid visit of `client`.
  care::visit visit_of(const record_id& client) const {
    care::visit v;
    v.client_id = client;
    v.worker_id = "w-17";
    v.start_at = "2026-11-23T08:00:00Z";
    v.end_at = "2026-11-23T08:45:00Z";
    v.kind = "home_care";
    v.activity_codes = {"hygiene", "meals"};
    return v;
  }
};

/// Moves every change waiting in `from`'s outbox into `to` the way a sync does: a push
/// batch made by `from` (acknowledged, as the server would), applied to `to` as a pulled
/// page (store::impl::apply_page, what the sync client calls). Returns the changes moved.
inline std::size_t transfer(store& from, store& to) {
  std::size_t moved = 0;
  while (auto batch = from.internal().next_batch(500)) {
    wire::changes_page page;
    std::uint64_t seq = to.cursor();
    for (const auto& c : batch->decode_changes()) page.items.push_back({++seq, c});
    page.next_cursor = seq;
    to.internal().apply_page(page);
    from.internal().ack_batch(*batch);
    moved += batch->change_count;
  }
  return moved;
}

/// The storage error code `body` throws; a default code if it throws none.
inline std::error_code error_of(const std::function<void()>& body) {
  try {
    body();
  } catch (const caresync::error& e) {
    return e.code();
  }
  return {};
}

/// The message of the caresync::error `body` throws; "" if none.
inline std::string message_of(const std::function<void()>& body) {
  try {
    body();
  } catch (const caresync::error& e) {
    return e.what();
  }
  return {};
}

}  // namespace caresync::testing
