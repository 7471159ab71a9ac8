// Revivable deletes in the store (collection_def::deletes is update_revives;
// docs/conflicts.md, "Deletes"): a record removed by such deletes keeps its values, is
// out of its table while every version it holds is covered, and comes back when an edit
// they do not cover arrives. The merge itself is the shared one (protocol/merge.hpp);
// this file keeps its record-level part in cs_removed and the hidden record's values
// in cs_extra.

#include "store_impl.hpp"

#include <caresync/protocol/errors.hpp>

#include <algorithm>

namespace caresync {

namespace {

std::span<const std::uint8_t> id_bytes(const record_id& id) { return id.bytes; }

/// Versions as a blob: per version u64 stamp then u64 node, little-endian.
std::vector<std::uint8_t> encode_versions(const std::vector<version>& versions) {
  std::vector<std::uint8_t> out;
  out.reserve(versions.size() * 16);
  for (const auto& v : versions) {
    for (const std::uint64_t x : {v.stamp.value, static_cast<std::uint64_t>(v.node)}) {
      for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::uint8_t>(x >> (8 * i)));
    }
  }
  return out;
}

std::vector<version> decode_versions(std::span<const std::uint8_t> in) {
  if (in.size() % 16 != 0) {
    throw error(make_error_code(storage_errc::corrupt), "a record's revivable deletes in the store are damaged");
  }
  std::vector<version> out;
  for (std::size_t at = 0; at < in.size(); at += 16) {
    std::uint64_t x[2] = {0, 0};
    for (int j = 0; j < 2; ++j) {
      for (int i = 0; i < 8; ++i) x[j] |= static_cast<std::uint64_t>(in[at + 8 * j + i]) << (8 * i);
    }
    out.push_back(version{hlc_stamp{x[0]}, static_cast<node_id>(x[1])});
  }
  return out;
}

std::optional<version> optional_version_at(const sqlite::statement& s, int col) {
  if (s.column_type(col) == SQLITE_NULL) return std::nullopt;
  return version{hlc_stamp{static_cast<std::uint64_t>(s.column_int64(col))}, static_cast<node_id>(s.column_int64(col + 1))};
}

void bind_optional_version(sqlite::statement& s, int col, const std::optional<version>& v) {
  if (v) {
    s.bind(col, static_cast<std::int64_t>(v->stamp.value)).bind(col + 1, static_cast<std::int64_t>(v->node));
  } else {
    s.bind_null(col).bind_null(col + 1);
  }
}

}  // namespace

void store::impl::prepare_removal_statements() {
  removal_select.emplace(db.get(),
                         "SELECT removed_stamp, removed_node, dismissed_stamp, dismissed_node, covered, shown FROM cs_removed"
                         " WHERE collection=? AND id=?");
  removal_upsert.emplace(db.get(),
                         "INSERT OR REPLACE INTO cs_removed(collection, id, removed_stamp, removed_node, dismissed_stamp,"
                         " dismissed_node, covered, shown) VALUES(?,?,?,?,?,?,?,?)");
  pred_delete_values.emplace(db.get(), "DELETE FROM cs_pred WHERE collection=? AND id=? AND field<>''");
  sqlite::statement any(db.get(), "SELECT 1 FROM cs_removed LIMIT 1");
  any_removed = any.step();
}

std::optional<store::impl::removal_shown> store::impl::load_removal(std::string_view collection, const record_id& id,
                                                                    record_state& state) {
  if (!any_removed) return std::nullopt;
  sqlite::reset_guard g(*removal_select);
  removal_select->bind_static(1, collection).bind_static(2, id_bytes(id));
  if (!removal_select->step()) return std::nullopt;
  state.removed = optional_version_at(*removal_select, 0);
  state.dismissed = optional_version_at(*removal_select, 2);
  state.covered = decode_versions(removal_select->column_blob(4));
  const auto shown = removal_select->column_int64(5);
  if (shown < 0 || shown > 2) {
    throw error(make_error_code(storage_errc::corrupt), "a record's revivable deletes in the store are damaged");
  }
  return static_cast<removal_shown>(shown);
}

void store::impl::put_removal(std::string_view collection, const record_id& id, const record_state& state,
                              removal_shown shown) {
  any_removed = true;
  const auto covered = encode_versions(state.covered);
  sqlite::reset_guard g(*removal_upsert);
  removal_upsert->bind_static(1, collection).bind_static(2, id_bytes(id));
  bind_optional_version(*removal_upsert, 3, state.removed);
  bind_optional_version(*removal_upsert, 5, state.dismissed);
  removal_upsert->bind_static(7, std::span<const std::uint8_t>(covered)).bind(8, static_cast<std::int64_t>(shown)).run();
}

void store::impl::store_removal(std::string_view collection, const record_id& id, const record_state& state) {
  if (!state.removed && !state.dismissed) return;
  const auto shown = state.deleted     ? removal_shown::settled
                     : is_hidden(state) ? removal_shown::hidden
                     : is_revived(state) ? removal_shown::revived
                                         : removal_shown::settled;
  put_removal(collection, id, state, shown);
}

void store::impl::store_hidden(std::string_view collection, const record_id& id, const record_state& state,
                               const std::vector<std::string>& conflicts_changed,
                               const std::vector<std::string>& items_changed, bool was_live) {
  if (was_live) delete_row(collection, id);
  // Every value waits in cs_extra for a revival; the tombstone in cs_meta is the
  // removal, so the record is gone for every read of the app.
  {
    sqlite::reset_guard g(*extra_delete_record);
    extra_delete_record->bind_static(1, collection).bind_static(2, id_bytes(id)).run();
  }
  meta_row m;
  m.in_meta = true;
  m.deleted = state.removed;
  for (const auto& [name, f] : state.fields) {
    m.clock.emplace(name, field_clock_entry{f.ver, true, f.kept});
    sqlite::reset_guard g(*extra_upsert);
    extra_upsert->bind_static(1, collection).bind_static(2, id_bytes(id)).bind_static(3, std::string_view(name)).bind_static(4, f.val).run();
  }
  put_meta(collection, id, m);
  for (const auto& name : conflicts_changed) store_conflicts(collection, id, name, state.fields.at(name).conflicts);
  for (const auto& name : items_changed) store_items(collection, id, name, state.fields.at(name).items);
  put_removal(collection, id, state, removal_shown::hidden);
}

void store::impl::refresh_removal(std::string_view collection, const record_id& id, const meta_row& meta) {
  record_state probe;
  if (!load_removal(collection, id, probe)) return;
  auto state = read_state(collection, id, meta);
  const auto held = held_versions(state);
  const auto before = state.covered.size();
  std::erase_if(state.covered, [&](const version& v) { return !std::binary_search(held.begin(), held.end(), v); });
  if (state.covered.size() != before) store_removal(collection, id, state);
}

void store::impl::restamp_removal(std::string_view collection, const record_id& id, const version& from, const version& to) {
  record_state state;
  const auto shown = load_removal(collection, id, state);
  if (!shown) return;
  bool any = false;
  for (auto* v : {&state.removed, &state.dismissed}) {
    if (*v == from) {
      *v = to;
      any = true;
    }
  }
  for (auto& v : state.covered) {
    if (v == from) {
      v = to;
      any = true;
    }
  }
  if (!any) return;
  std::sort(state.covered.begin(), state.covered.end());
  put_removal(collection, id, state, *shown);
}

}  // namespace caresync
