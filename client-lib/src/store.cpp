#include "store_impl.hpp"

#include <caresync/protocol/codec.hpp>
#include <caresync/protocol/frame.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <filesystem>

namespace caresync {

namespace {

// Marks the file as a caresync store: PRAGMA application_id ('CSYC') and format version.
// Format 2 keeps the field clock in the record's row and rebuilds outgoing changes from
// the records; format 1 (development builds before it) is refused at open.
constexpr std::int64_t k_format = 2;
const sqlite::file_identity k_identity{
    0x43535943, k_format, "a caresync store", "open a store file made by caresync, or a new path", "update the app",
    k_format,   "it was made by a development build: sync it with that build, then start from a new file"};

/// Open conflicts by version; items by (version, text): several items share the version
/// of the write that added them.
bool item_order(const conflict_value& a, const conflict_value& b) {
  if (a.ver != b.ver) return a.ver < b.ver;
  const auto* x = std::get_if<std::string>(&a.val);
  const auto* y = std::get_if<std::string>(&b.val);
  return x && y && *x < *y;
}


/// The cs_pred field name of what a delete covers: the whole record. Not a null pointer,
/// which SQLite would bind as NULL.
constexpr std::string_view k_record_level{""};

bool is_item_policy(merge_policy p) { return p == merge_policy::append || p == merge_policy::set_union; }

/// The elements of a set_union value as written by the app: a JSON array of distinct
/// non-empty strings (null: the empty set). std::nullopt when it is not one.
std::optional<std::vector<std::string>> parse_set(const value& v) {
  const auto* text = std::get_if<std::string>(&v);
  if (!text) return std::vector<std::string>{};
  const auto j = nlohmann::json::parse(*text, nullptr, false);
  if (j.is_discarded() || !j.is_array()) return std::nullopt;
  std::vector<std::string> out;
  for (const auto& e : j) {
    if (!e.is_string() || e.get_ref<const std::string&>().empty()) return std::nullopt;
    out.push_back(e.get<std::string>());
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

[[noreturn]] void invalid(const std::string& what) {
  throw error(make_error_code(storage_errc::invalid_argument), what);
}

const char* sql_type(value_kind k) {
  switch (k) {
    case value_kind::integer: return "INTEGER";
    case value_kind::real: return "REAL";
    case value_kind::text: return "TEXT";
    case value_kind::bytes: return "BLOB";
    case value_kind::null: break;
  }
  return "";
}

std::span<const std::uint8_t> id_bytes(const record_id& id) { return id.bytes; }

std::string_view text_of(const std::array<char, 36>& chars) { return {chars.data(), chars.size()}; }

record_id id_from_blob(std::span<const std::uint8_t> raw) {
  record_id id;
  if (raw.size() != id.bytes.size()) {
    throw error(make_error_code(storage_errc::corrupt), "a record id in the store is damaged");
  }
  std::copy(raw.begin(), raw.end(), id.bytes.begin());
  return id;
}

std::uint64_t parse_u64(const std::string& s) {
  std::uint64_t v = 0;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size()) {
    throw error(make_error_code(storage_errc::corrupt), "the store's state table holds a damaged number");
  }
  return v;
}

/// Versions a local write replaces, removes or covers that are not older than the write:
/// only this replica's own writes that were re-stamped (their clock ran ahead) after
/// being overwritten, and so never sent. Nobody else has them; they are dropped.
void drop_unsent_newer(std::vector<version>& versions, const version& ver) {
  std::erase_if(versions, [&](const version& v) { return !(v < ver); });
}

/// A change given a new version (re-stamped): what it replaces, removes or covers that
/// is not older than the new version goes (see drop_unsent_newer).
void give_version(change& c, const version& to) {
  c.ver = to;
  for (auto& k : c.kept) drop_unsent_newer(k.supersedes, to);
  for (auto& op : c.items) drop_unsent_newer(op.remove, to);
  std::erase_if(c.items, [](const item_op& op) { return op.add.empty() && op.remove.empty(); });
  if (c.covers) drop_unsent_newer(*c.covers, to);
}

/// A version kept as two INTEGER columns, stamp at `col` and node at `col + 1`.
version version_at(const sqlite::statement& s, int col) {
  return version{hlc_stamp{static_cast<std::uint64_t>(s.column_int64(col))}, static_cast<node_id>(s.column_int64(col + 1))};
}

/// cs_conflict and cs_item rows have one shape, (collection, id, field, stamp, node,
/// value): a record's rows by field, each list in item_order (SQLite orders the integer
/// columns as signed numbers, versions compare unsigned). `select` reads field, stamp,
/// node, value of one (collection, id).
std::map<std::string, std::vector<conflict_value>, std::less<>> read_tagged(sqlite::statement& select,
                                                                            std::string_view collection,
                                                                            const record_id& id) {
  std::map<std::string, std::vector<conflict_value>, std::less<>> out;
  sqlite::reset_guard g(select);
  select.bind_static(1, collection).bind_static(2, id_bytes(id));
  while (select.step()) out[select.column_text(0)].push_back(conflict_value{select.column_value(3), version_at(select, 1)});
  for (auto& [field, values] : out) std::sort(values.begin(), values.end(), item_order);
  return out;
}

/// Replaces one field's rows of cs_conflict or cs_item (`remove` deletes a field's rows,
/// `insert` adds one) with `values`.
void write_tagged(sqlite::statement& remove, sqlite::statement& insert, std::string_view collection,
                  const record_id& id, std::string_view field, const std::vector<conflict_value>& values) {
  {
    sqlite::reset_guard g(remove);
    remove.bind_static(1, collection).bind_static(2, id_bytes(id)).bind_static(3, field).run();
  }
  for (const auto& v : values) {
    sqlite::reset_guard g(insert);
    insert.bind_static(1, collection)
        .bind_static(2, id_bytes(id))
        .bind_static(3, field)
        .bind(4, static_cast<std::int64_t>(v.ver.stamp.value))
        .bind(5, static_cast<std::int64_t>(v.ver.node))
        .bind_static(6, v.val)
        .run();
  }
}

}  // namespace

// ---------------------------------------------------------------- opening

namespace {

std::unique_ptr<store::impl> open_impl(const store_options& options) {
  auto p = std::make_unique<store::impl>();
  p->options = options;
  p->base_time = options.time_source ? options.time_source : hybrid_clock::time_source(system_time_ms);
  p->clock = hybrid_clock([raw = p.get()] {
    return static_cast<std::uint64_t>(static_cast<std::int64_t>(raw->base_time()) + raw->clock_offset_ms);
  });
  p->open_database();
  p->create_tables();
  p->load_state();
  return p;
}

}  // namespace

std::unique_ptr<store> store::open(const store_options& options) {
  validate(options.schema);
  return std::unique_ptr<store>(new store(open_impl(options)));
}

void store::wipe() {
  const store_options options = impl_->options;
  impl_.reset();  // closes the connection
  std::string failed;
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
    std::error_code ec;
    std::filesystem::remove(options.path + suffix, ec);
    if (ec && failed.empty()) failed = "cannot delete '" + options.path + suffix + "' to wipe the store: " + ec.message();
  }
  // Open what is there now: an empty store, or (if a file could not be deleted) what is
  // left, so that the object stays usable either way.
  impl_ = open_impl(options);
  if (!failed.empty()) throw error(make_error_code(storage_errc::io_failed), failed);
}

store::store(std::unique_ptr<impl> p) : impl_(std::move(p)) {}
store::~store() = default;

void store::impl::open_database() {
  db = sqlite::open(options.path, k_identity, options.durability == durability::full ? "FULL" : "NORMAL");
  // What is deleted is overwritten with zeros, not left in free pages: a record purged
  // because it left the device's scope must not stay readable in the file
  // (docs/security.md, "Scopes and roles").
  sqlite::exec(db.get(), "PRAGMA secure_delete=ON");
  // Checkpoints run on a thread of their own, not inside the commit that fills the WAL:
  // a sync's pages and an app's writes never wait for one (a failing checkpoint only lets
  // the WAL grow, as SQLite's own would; the next one tries again). It runs at a
  // background priority, yielding the cores to the app and its syncs.
  checkpointer = std::make_unique<sqlite::wal_checkpointer>(options.path, sqlite::wal_checkpointer::listener{},
                                                            sqlite::wal_checkpointer::thread_priority::background);
  checkpointer->attach(db.get());
}

void store::impl::checkpoint_after_purge() {
  if (!purged_unflushed || depth > 0) return;
  purged_unflushed = false;
  // The WAL still holds the purged records' old pages: copy it into the database and
  // empty it (on this thread, never at the same time as a background checkpoint). A
  // reader holding a snapshot may keep it from finishing; the next purge, or the
  // background checkpoints, finish it.
  checkpointer->checkpoint_now(SQLITE_CHECKPOINT_TRUNCATE);
}

void store::impl::create_tables() {
  sqlite::transaction tx(db.get());
  sqlite::claim(db.get(), k_identity);
  sqlite::exec(db.get(),
               "CREATE TABLE IF NOT EXISTS cs_state(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;"
               "CREATE TABLE IF NOT EXISTS cs_meta(collection TEXT NOT NULL, id BLOB NOT NULL, clock BLOB NOT NULL,"
               " deleted_stamp INTEGER, deleted_node INTEGER, PRIMARY KEY(collection, id)) WITHOUT ROWID;"
               "CREATE TABLE IF NOT EXISTS cs_extra(collection TEXT NOT NULL, id BLOB NOT NULL, field TEXT NOT NULL,"
               " value, PRIMARY KEY(collection, id, field)) WITHOUT ROWID;"
               "CREATE TABLE IF NOT EXISTS cs_outbox(seq INTEGER PRIMARY KEY, collection TEXT NOT NULL,"
               " id BLOB NOT NULL, stamp INTEGER NOT NULL, kind INTEGER NOT NULL);"
               "CREATE TABLE IF NOT EXISTS cs_batch(id BLOB PRIMARY KEY NOT NULL, last_seq INTEGER NOT NULL,"
               " payload BLOB NOT NULL);"
               "CREATE TABLE IF NOT EXISTS cs_quarantine(qid INTEGER PRIMARY KEY, collection TEXT NOT NULL,"
               " id BLOB NOT NULL, stamp INTEGER NOT NULL, kind INTEGER NOT NULL, change BLOB NOT NULL,"
               " code INTEGER NOT NULL, reason TEXT NOT NULL, at_ms INTEGER NOT NULL);"
               "CREATE TABLE IF NOT EXISTS cs_conflict(collection TEXT NOT NULL, id BLOB NOT NULL, field TEXT NOT NULL,"
               " stamp INTEGER NOT NULL, node INTEGER NOT NULL, value, PRIMARY KEY(collection, id, field, stamp, node))"
               " WITHOUT ROWID;"
               "CREATE TABLE IF NOT EXISTS cs_pred(collection TEXT NOT NULL, id BLOB NOT NULL, field TEXT NOT NULL,"
               " stamp INTEGER NOT NULL, pred_stamp INTEGER NOT NULL, pred_node INTEGER NOT NULL,"
               " PRIMARY KEY(collection, id, field, stamp, pred_stamp, pred_node)) WITHOUT ROWID;"
               "CREATE TABLE IF NOT EXISTS cs_item(collection TEXT NOT NULL, id BLOB NOT NULL, field TEXT NOT NULL,"
               " stamp INTEGER NOT NULL, node INTEGER NOT NULL, value TEXT NOT NULL,"
               " PRIMARY KEY(collection, id, field, stamp, node, value)) WITHOUT ROWID;"
               // A prioritised initial sync: the spec (a prime message), how far it came,
               // and the log positions it delivered, which the pull after it leaves out.
               "CREATE TABLE IF NOT EXISTS cs_prime(one INTEGER PRIMARY KEY CHECK(one = 1), spec BLOB NOT NULL,"
               " position INTEGER NOT NULL, done INTEGER NOT NULL);"
               "CREATE TABLE IF NOT EXISTS cs_primed(seq INTEGER PRIMARY KEY);"
               // Versions a server_only refusal put back that the store may not have
               // pulled yet (the server's newest); its deletes do not cover them until a
               // pull reaches the log's head (docs/conflicts.md, "server_only").
               "CREATE TABLE IF NOT EXISTS cs_unpulled(collection TEXT NOT NULL, id BLOB NOT NULL,"
               " stamp INTEGER NOT NULL, node INTEGER NOT NULL, PRIMARY KEY(collection, id, stamp, node)) WITHOUT ROWID;"
               // Revivable deletes (update_revives; removal.cpp).
               "CREATE TABLE IF NOT EXISTS cs_removed(collection TEXT NOT NULL, id BLOB NOT NULL, removed_stamp INTEGER,"
               " removed_node INTEGER, dismissed_stamp INTEGER, dismissed_node INTEGER, covered BLOB NOT NULL,"
               " shown INTEGER NOT NULL, PRIMARY KEY(collection, id)) WITHOUT ROWID;");
  {
    // Stores made before frozen outbox entries existed lack the column.
    sqlite::statement has_frozen(db.get(), "SELECT 1 FROM pragma_table_info('cs_outbox') WHERE name='frozen'");
    if (!has_frozen.step()) sqlite::exec(db.get(), "ALTER TABLE cs_outbox ADD COLUMN frozen BLOB");
    // Stores made before pinned batches were kept as their (compressed) frames: their
    // rows hold the push payload (framed = 0).
    sqlite::statement has_framed(db.get(), "SELECT 1 FROM pragma_table_info('cs_batch') WHERE name='framed'");
    if (!has_framed.step()) sqlite::exec(db.get(), "ALTER TABLE cs_batch ADD COLUMN framed INTEGER NOT NULL DEFAULT 0");
  }
  for (const auto& c : options.schema.collections) {
    const std::string q = sqlite::quote(c.name);
    std::string sql = "CREATE TABLE IF NOT EXISTS " + q + "(\"id\" TEXT PRIMARY KEY NOT NULL";
    for (const auto& f : c.fields) sql += ", " + sqlite::quote(f.name) + " " + sql_type(f.type);
    sql += ", \"cs_clock\" BLOB NOT NULL)";
    sqlite::exec(db.get(), sql.c_str());
    // An existing table: add new columns, refuse a column whose type changed.
    std::map<std::string, std::string> existing;
    sqlite::statement info(db.get(), "SELECT name, type FROM pragma_table_info(?)");
    info.bind(1, std::string_view(c.name));
    while (info.step()) existing[info.column_text(0)] = info.column_text(1);
    for (const auto& f : c.fields) {
      const auto it = existing.find(f.name);
      if (it == existing.end()) {
        sqlite::exec(db.get(), ("ALTER TABLE " + q + " ADD COLUMN " + sqlite::quote(f.name) + " " + sql_type(f.type)).c_str());
      } else if (it->second != sql_type(f.type)) {
        throw error(make_error_code(storage_errc::schema_mismatch),
                    "field '" + f.name + "' of collection '" + c.name + "' is declared " + sql_type(f.type) +
                        " but the store holds it as " + it->second + "; declare a new field instead of changing a type");
      }
    }
  }
  for (const auto& sql : options.schema.setup_sql) sqlite::exec(db.get(), sql.c_str());
  tx.commit();
}

void store::impl::load_state() {
  meta_select.emplace(db.get(), "SELECT clock, deleted_stamp, deleted_node FROM cs_meta WHERE collection=? AND id=?");
  meta_upsert.emplace(db.get(),
                      "INSERT INTO cs_meta(collection, id, clock, deleted_stamp, deleted_node) VALUES(?,?,?,?,?)"
                      " ON CONFLICT(collection, id) DO UPDATE SET clock=excluded.clock,"
                      " deleted_stamp=excluded.deleted_stamp, deleted_node=excluded.deleted_node");
  meta_delete.emplace(db.get(), "DELETE FROM cs_meta WHERE collection=? AND id=?");
  outbox_insert.emplace(db.get(), "INSERT INTO cs_outbox(collection, id, stamp, kind) VALUES(?,?,?,?)");
  outbox_count.emplace(db.get(), "SELECT count(*) FROM cs_outbox");
  outbox_for_record.emplace(db.get(), "SELECT 1 FROM cs_outbox WHERE collection=? AND id=? LIMIT 1");
  quarantine_for_record.emplace(db.get(), "SELECT 1 FROM cs_quarantine WHERE collection=? AND id=? LIMIT 1");
  extra_upsert.emplace(db.get(), "INSERT OR REPLACE INTO cs_extra(collection, id, field, value) VALUES(?,?,?,?)");
  extra_delete_field.emplace(db.get(), "DELETE FROM cs_extra WHERE collection=? AND id=? AND field=?");
  extra_delete_record.emplace(db.get(), "DELETE FROM cs_extra WHERE collection=? AND id=?");
  extra_select_record.emplace(db.get(), "SELECT field, value FROM cs_extra WHERE collection=? AND id=?");
  state_get.emplace(db.get(), "SELECT value FROM cs_state WHERE key=?");
  state_set.emplace(db.get(), "INSERT OR REPLACE INTO cs_state(key, value) VALUES(?,?)");
  conflict_select_record.emplace(db.get(),
                                 "SELECT field, stamp, node, value FROM cs_conflict WHERE collection=? AND id=?"
                                 " ORDER BY field, stamp, node");
  conflict_insert.emplace(db.get(), "INSERT OR REPLACE INTO cs_conflict(collection, id, field, stamp, node, value) VALUES(?,?,?,?,?,?)");
  conflict_delete_field.emplace(db.get(), "DELETE FROM cs_conflict WHERE collection=? AND id=? AND field=?");
  conflict_delete_record.emplace(db.get(), "DELETE FROM cs_conflict WHERE collection=? AND id=?");
  pred_select.emplace(db.get(),
                      "SELECT pred_stamp, pred_node FROM cs_pred WHERE collection=? AND id=? AND field=? AND stamp=?"
                      " ORDER BY pred_stamp, pred_node");
  pred_insert.emplace(db.get(), "INSERT OR IGNORE INTO cs_pred(collection, id, field, stamp, pred_stamp, pred_node) VALUES(?,?,?,?,?,?)");
  pred_delete_write.emplace(db.get(), "DELETE FROM cs_pred WHERE collection=? AND id=? AND field=? AND stamp=?");
  pred_delete_record.emplace(db.get(), "DELETE FROM cs_pred WHERE collection=? AND id=?");
  outbox_seq_of.emplace(db.get(), "SELECT seq FROM cs_outbox WHERE collection=? AND id=? AND stamp=?");
  pinned_last_seq.emplace(db.get(), "SELECT coalesce(max(last_seq), 0) FROM cs_batch");
  item_select_record.emplace(db.get(), "SELECT field, stamp, node, value FROM cs_item WHERE collection=? AND id=?");
  item_insert.emplace(db.get(), "INSERT OR IGNORE INTO cs_item(collection, id, field, stamp, node, value) VALUES(?,?,?,?,?,?)");
  item_delete_field.emplace(db.get(), "DELETE FROM cs_item WHERE collection=? AND id=? AND field=?");
  item_delete_record.emplace(db.get(), "DELETE FROM cs_item WHERE collection=? AND id=?");
  item_select_write.emplace(db.get(), "SELECT field, value FROM cs_item WHERE collection=? AND id=? AND stamp=? AND node=?");
  pred_select_write.emplace(db.get(), "SELECT field, pred_stamp, pred_node FROM cs_pred WHERE collection=? AND id=? AND stamp=?");
  prepare_removal_statements();
  {
    sqlite::statement any(db.get(), "SELECT 1 FROM cs_conflict LIMIT 1");
    any_conflicts = any.step();
    sqlite::statement items(db.get(), "SELECT 1 FROM cs_item LIMIT 1");
    any_items = items.step();
  }

  for (const auto& c : options.schema.collections) {
    auto& t = tables[c.name];
    t.def = &c;
    t.quoted_name = sqlite::quote(c.name);
    std::string cols;
    for (const auto& f : c.fields) cols += (cols.empty() ? "" : ", ") + sqlite::quote(f.name);
    t.select_row.emplace(db.get(), "SELECT " + (cols.empty() ? std::string("NULL") : cols) + " FROM " + t.quoted_name +
                                       " WHERE \"id\"=?");
    t.select_clock.emplace(db.get(), "SELECT \"cs_clock\" FROM " + t.quoted_name + " WHERE \"id\"=?");
    t.select_full.emplace(db.get(), "SELECT \"cs_clock\"" + (cols.empty() ? std::string() : ", " + cols) + " FROM " +
                                        t.quoted_name + " WHERE \"id\"=?");
    t.delete_row.emplace(db.get(), "DELETE FROM " + t.quoted_name + " WHERE \"id\"=?");
    sqlite::statement any_meta(db.get(), "SELECT 1 FROM cs_meta WHERE collection=? LIMIT 1");
    any_meta.bind_static(1, std::string_view(c.name));
    t.meta_rows = any_meta.step();
  }

  sqlite::transaction tx(db.get());
  if (const auto n = get_state("node"); !n.empty()) {
    node = parse_u64(n);
  } else {
    node = generate_node_id();
    set_state("node", std::to_string(node));
  }
  if (const auto h = get_state("hlc"); !h.empty()) clock.observe(hlc_stamp{parse_u64(h)});
  if (const auto h = get_state("hlc_remote"); !h.empty()) remote_max = hlc_stamp{parse_u64(h)};
  if (const auto h = get_state("hlc_acked"); !h.empty()) acked_max = hlc_stamp{parse_u64(h)};
  if (const auto o = get_state("clock_offset"); !o.empty()) {
    const auto [p, ec] = std::from_chars(o.data(), o.data() + o.size(), clock_offset_ms);
    if (ec != std::errc{} || p != o.data() + o.size()) {
      throw error(make_error_code(storage_errc::corrupt), "the store's state table holds a damaged number");
    }
  }
  tx.commit();
}

// ---------------------------------------------------------------- transactions

void store::impl::begin() {
  if (depth == 0) {
    sqlite::exec(db.get(), "BEGIN IMMEDIATE");
    doomed = false;
  }
  ++depth;
}

void store::impl::end(bool ok) {
  --depth;
  if (!ok) doomed = true;
  if (depth > 0) return;
  if (doomed) {
    sqlite3_exec(db.get(), "ROLLBACK", nullptr, nullptr, nullptr);
    doomed = false;
    if (ok) {
      throw error(make_error_code(storage_errc::constraint),
                  "an earlier write in this transaction failed, so none of its writes were saved");
    }
    return;
  }
  try {
    commit_top();
  } catch (...) {
    sqlite3_exec(db.get(), "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
}

void store::impl::commit_top() {
  if (clock_dirty) {
    set_state("hlc", std::to_string(clock.last().value));
    set_state("hlc_remote", std::to_string(remote_max.value));
    set_state("hlc_acked", std::to_string(acked_max.value));
  }
  sqlite::exec(db.get(), "COMMIT");
  clock_dirty = false;  // only once stored: a failed commit leaves it to the next one
}

void store::transaction(const std::function<void()>& body) {
  // Nested calls use a savepoint so that an inner failure the caller catches undoes
  // only the inner writes.
  if (impl_->depth == 0) {
    impl_->in_transaction(body);
    return;
  }
  const std::string name = "cs_nested_" + std::to_string(impl_->depth);
  sqlite::exec(impl_->db.get(), ("SAVEPOINT " + name).c_str());
  try {
    body();
  } catch (...) {
    sqlite3_exec(impl_->db.get(), ("ROLLBACK TO " + name + "; RELEASE " + name).c_str(), nullptr, nullptr, nullptr);
    throw;
  }
  sqlite::exec(impl_->db.get(), ("RELEASE " + name).c_str());
}

// ---------------------------------------------------------------- state

std::string store::impl::get_state(std::string_view key) {
  sqlite::reset_guard g(*state_get);
  state_get->bind(1, key);
  return state_get->step() ? state_get->column_text(0) : std::string();
}

void store::impl::set_state(std::string_view key, std::string_view v) {
  sqlite::reset_guard g(*state_set);
  state_set->bind(1, key).bind(2, v).run();
}

std::uint64_t store::impl::cursor() {
  const auto c = get_state("cursor");
  return c.empty() ? 0 : parse_u64(c);
}

// ---------------------------------------------------------------- records

table_statements* store::impl::table(std::string_view collection) {
  const auto it = tables.find(collection);
  return it == tables.end() ? nullptr : &it->second;
}

std::optional<store::impl::meta_row> store::impl::load_meta(std::string_view collection, const record_id& id) {
  if (table_statements* t = table(collection)) {
    const auto text = id.to_chars();
    sqlite::reset_guard g(*t->select_clock);
    t->select_clock->bind_static(1, text_of(text));
    if (t->select_clock->step()) return meta_row{decode_field_clock(t->select_clock->column_blob(0)), std::nullopt, false};
  }
  sqlite::reset_guard g(*meta_select);
  meta_select->bind_static(1, collection).bind_static(2, id_bytes(id));
  if (!meta_select->step()) return std::nullopt;
  meta_row m;
  m.in_meta = true;
  m.clock = decode_field_clock(meta_select->column_blob(0));
  if (meta_select->column_type(1) != SQLITE_NULL) {
    m.deleted = version_at(*meta_select, 1);
  }
  return m;
}

store::impl::meta_row store::impl::load_live_meta(std::string_view collection, const record_id& id) {
  auto meta = load_meta(collection, id);
  if (!meta || meta->deleted) {
    throw error(make_error_code(storage_errc::not_found),
                "record " + id.to_string() + " in '" + std::string(collection) + "' does not exist or was deleted");
  }
  return std::move(*meta);
}

void store::impl::put_meta(std::string_view collection, const record_id& id, const meta_row& m) {
  if (table_statements* t = table(collection)) t->meta_rows = true;
  sqlite::reset_guard g(*meta_upsert);
  const auto clock_bytes = encode_field_clock(m.clock);
  meta_upsert->bind_static(1, collection).bind_static(2, id_bytes(id)).bind_static(3, std::span<const std::uint8_t>(clock_bytes));
  if (m.deleted) {
    meta_upsert->bind(4, static_cast<std::int64_t>(m.deleted->stamp.value))
        .bind(5, static_cast<std::int64_t>(m.deleted->node));
  } else {
    meta_upsert->bind_null(4).bind_null(5);
  }
  meta_upsert->run();
}

bool store::impl::put_row(table_statements& t, const record_id& id, std::span<const std::uint8_t> clock,
                          existing_row existing) {
  // scratch_columns (ascending declared-field indexes) and scratch_values (their values)
  // say what to write; the statement for that set of columns is made once and kept.
  const bool keep = existing == existing_row::keep;
  auto& statements = keep ? t.inserts : t.upserts;
  auto it = statements.find(scratch_columns);
  if (it == statements.end()) {
    std::string names = "\"id\"", params = "?", updates;
    for (const auto i : scratch_columns) {
      const auto q = sqlite::quote(t.def->fields[i].name);
      names += "," + q;
      params += ",?";
      updates += q + "=excluded." + q + ",";
    }
    const std::string on_conflict =
        keep ? "DO NOTHING" : "DO UPDATE SET " + updates + "\"cs_clock\"=excluded.\"cs_clock\"";
    it = statements
             .emplace(scratch_columns,
                      sqlite::statement(db.get(), "INSERT INTO " + t.quoted_name + "(" + names + ",\"cs_clock\") VALUES(" +
                                                      params + ",?) ON CONFLICT(\"id\") " + on_conflict))
             .first;
  }
  auto& stmt = it->second;
  const auto text = id.to_chars();
  sqlite::reset_guard g(stmt);
  stmt.bind_static(1, text_of(text));
  int param = 2;
  for (const value* v : scratch_values) stmt.bind_static(param++, *v);
  stmt.bind_static(param, clock);
  stmt.run();
  return !keep || sqlite3_changes(db.get()) > 0;
}

void store::impl::append_outbox(std::string_view collection, const record_id& id, const version& ver, change_kind kind) {
  sqlite::reset_guard g(*outbox_insert);
  outbox_insert->bind_static(1, collection)
      .bind_static(2, id_bytes(id))
      .bind(3, static_cast<std::int64_t>(ver.stamp.value))
      .bind(4, static_cast<std::int64_t>(kind))
      .run();
}

void store::impl::check_fields(const collection_def& def, const std::vector<field_write>& fields) const {
  for (const auto& f : fields) {
    const field_def* d = def.find(f.name);
    if (!d) {
      // The wire check below does not repeat a bad name (it may come from a peer); the
      // app calling here needs to know which of its names is wrong.
      if (!is_valid_name(f.name)) {
        invalid("field name '" + f.name + "' for collection '" + def.name +
                "' is invalid: use 1-63 characters of a-z, 0-9 and _, starting with a letter, not 'cs_'");
      }
      invalid("collection '" + def.name + "' has no field '" + f.name + "'; declare it in the schema");
    }
    if (d->server_only && !options.server_side) {
      invalid("field '" + f.name + "' of collection '" + def.name +
              "' is written by the server side only (server_only); this store is a field device's");
    }
    const auto k = kind_of(f.val);
    if (k != value_kind::null && k != d->type) {
      invalid("field '" + f.name + "' of collection '" + def.name + "' holds " + std::string(to_string(d->type)) +
              " values, not " + std::string(to_string(k)));
    }
    if (d->policy == merge_policy::append && (k != value_kind::text || std::get<std::string>(f.val).empty())) {
      invalid("field '" + f.name + "' of collection '" + def.name + "' is a log (append): write one non-empty entry");
    }
    if (d->policy == merge_policy::set_union && !parse_set(f.val)) {
      invalid("field '" + f.name + "' of collection '" + def.name +
              "' is a set (set_union): write the whole set as a JSON array of non-empty strings, e.g. [\"A12\",\"B07\"]");
    }
  }
  // The wire checks (duplicates, sizes, NaN), on the caller's fields without a copy.
  if (auto reason = caresync::check_fields(def.name, fields); !reason.empty()) invalid(reason);
}

void store::impl::store_live(std::string_view collection, const record_id& id,
                             const std::vector<const field_write*>& values, const meta_row& meta) {
  table_statements* t = table(collection);
  scratch_columns.clear();
  for (const field_write* w : values) {
    const auto& entry = meta.clock.at(w->name);
    const field_def* d = t ? t->def->find(w->name) : nullptr;
    if (entry.extra) {
      sqlite::reset_guard g(*extra_upsert);
      extra_upsert->bind_static(1, collection)
          .bind_static(2, id_bytes(id))
          .bind_static(3, std::string_view(w->name))
          .bind_static(4, w->val)
          .run();
    }
    // A declared field's column holds its value, or null when the value lives in cs_extra.
    if (d) scratch_columns.push_back(static_cast<std::uint16_t>(d - t->def->fields.data()));
  }
  if (!t) {
    put_meta(collection, id, meta);
    return;
  }
  // Bind in ascending column order: one statement per set of columns, whatever the order
  // the fields came in.
  std::sort(scratch_columns.begin(), scratch_columns.end());
  static const value k_null;
  scratch_values.clear();
  for (const auto i : scratch_columns) {
    const std::string& name = t->def->fields[i].name;
    const value* v = &k_null;
    for (const field_write* w : values) {
      if (w->name == name) {
        if (!meta.clock.at(name).extra) v = &w->val;
        break;
      }
    }
    scratch_values.push_back(v);
  }
  const auto clock_bytes = encode_field_clock(meta.clock);
  put_row(*t, id, clock_bytes);
  if (meta.in_meta) {
    // A record that lived in cs_meta (received before this app declared its collection)
    // now lives in its table.
    sqlite::reset_guard g(*meta_delete);
    meta_delete->bind_static(1, collection).bind_static(2, id_bytes(id)).run();
  }
}

void store::impl::store_deleted(std::string_view collection, const record_id& id, const record_state& state,
                                const std::vector<std::string>& conflicts_changed,
                                const std::vector<std::string>& items_changed, bool was_live) {
  if (was_live) {
    delete_row(collection, id);
    // Values go; a local write waiting to replace one will never be sent. What a local
    // delete still on its way covers (field "") stays: it is sent (update_revives: the
    // record was deleted here, then brought back).
    for (auto* stmt : {&*extra_delete_record, &*pred_delete_values}) {
      sqlite::reset_guard g(*stmt);
      stmt->bind_static(1, collection).bind_static(2, id_bytes(id)).run();
    }
  }
  // The tombstone keeps each field's greatest version (so a late edit older than what
  // the delete covered is known to have lost), the edits the delete overrode as open
  // conflicts, and the items of logs and sets.
  meta_row m;
  m.in_meta = true;
  m.deleted = state.deleted;
  for (const auto& [name, f] : state.fields) m.clock.emplace(name, field_clock_entry{f.ver, false, f.kept});
  put_meta(collection, id, m);
  for (const auto& name : conflicts_changed) store_conflicts(collection, id, name, state.fields.at(name).conflicts);
  for (const auto& name : items_changed) store_items(collection, id, name, state.fields.at(name).items);
  store_removal(collection, id, state);
}

record_state store::impl::read_state(std::string_view collection, const record_id& id, const meta_row& meta) {
  record_state state;
  state.deleted = meta.deleted;
  // A hidden record's tombstone in cs_meta is its revivable delete, not a final one.
  if (load_removal(collection, id, state) == removal_shown::hidden) state.deleted.reset();
  bool any_extra = false;
  for (const auto& [name, entry] : meta.clock) any_extra = any_extra || entry.extra;
  std::map<std::string, value, std::less<>> extras;
  if (any_extra) {
    sqlite::reset_guard g(*extra_select_record);
    extra_select_record->bind_static(1, collection).bind_static(2, id_bytes(id));
    while (extra_select_record->step()) extras[extra_select_record->column_text(0)] = extra_select_record->column_value(1);
  }
  table_statements* t = meta.in_meta ? nullptr : table(collection);
  const auto text = id.to_chars();
  std::optional<sqlite::reset_guard> row_guard;
  bool have_row = false;
  if (t) {
    row_guard.emplace(*t->select_row);
    t->select_row->bind_static(1, text_of(text));
    have_row = t->select_row->step();
  }
  for (const auto& [name, entry] : meta.clock) {
    value v;
    if (entry.extra) {
      if (auto it = extras.find(name); it != extras.end()) v = it->second;
    } else if (have_row) {
      if (const field_def* d = t->def->find(name)) {
        v = t->select_row->column_value(static_cast<int>(d - t->def->fields.data()));
      }
    }
    state.fields.emplace(name, field_state{std::move(v), entry.ver, entry.kept, {}});
  }
  const auto attach = [&](sqlite::statement& select, std::vector<conflict_value> field_state::*list) {
    for (auto& [name, values] : read_tagged(select, collection, id)) {
      const auto it = state.fields.find(name);
      if (it == state.fields.end()) {
        throw error(make_error_code(storage_errc::corrupt), "an open conflict or item in the store names a field its record lacks");
      }
      it->second.*list = std::move(values);
    }
  };
  if (any_conflicts) attach(*conflict_select_record, &field_state::conflicts);
  if (any_items) attach(*item_select_record, &field_state::items);
  return state;
}

std::vector<conflict_value> store::impl::field_items(std::string_view collection, const record_id& id,
                                                     std::string_view field) {
  if (!any_items) return {};
  auto all = read_tagged(*item_select_record, collection, id);
  const auto it = all.find(field);
  return it == all.end() ? std::vector<conflict_value>{} : std::move(it->second);
}

void store::impl::store_items(std::string_view collection, const record_id& id, std::string_view field,
                              const std::vector<conflict_value>& items) {
  if (!items.empty()) any_items = true;
  write_tagged(*item_delete_field, *item_insert, collection, id, field, items);
}

void store::impl::add_item_ops(change& c, const collection_def& def) {
  std::map<std::string, item_op, std::less<>> ops;
  const auto op_for = [&](const std::string& field) -> item_op* {
    const field_def* d = def.find(field);
    if (!d || (d->policy != merge_policy::append && d->policy != merge_policy::set_union)) return nullptr;
    auto& op = ops[field];
    op.field = field;
    op.policy = d->policy == merge_policy::append ? item_policy::append : item_policy::set_union;
    return &op;
  };
  {
    sqlite::reset_guard g(*item_select_write);
    item_select_write->bind_static(1, std::string_view(c.collection))
        .bind_static(2, id_bytes(c.id))
        .bind(3, static_cast<std::int64_t>(c.ver.stamp.value))
        .bind(4, static_cast<std::int64_t>(c.ver.node));
    while (item_select_write->step()) {
      if (auto* op = op_for(item_select_write->column_text(0))) op->add.push_back(item_select_write->column_text(1));
    }
  }
  {
    sqlite::reset_guard g(*pred_select_write);
    pred_select_write->bind_static(1, std::string_view(c.collection))
        .bind_static(2, id_bytes(c.id))
        .bind(3, static_cast<std::int64_t>(c.ver.stamp.value));
    while (pred_select_write->step()) {
      const std::string field = pred_select_write->column_text(0);
      const field_def* d = def.find(field);
      if (!d || d->policy != merge_policy::set_union) continue;  // keep_both preds go with the field write
      op_for(field)->remove.push_back(version_at(*pred_select_write, 1));
    }
  }
  for (auto& [name, op] : ops) {
    std::sort(op.add.begin(), op.add.end());
    std::sort(op.remove.begin(), op.remove.end());
    op.remove.erase(std::unique(op.remove.begin(), op.remove.end()), op.remove.end());
    drop_unsent_newer(op.remove, c.ver);
    if (op.policy == item_policy::append && op.add.empty()) continue;  // an entry is never removed
    if (op.add.empty() && op.remove.empty()) continue;
    c.items.push_back(std::move(op));
  }
}

void store::impl::store_conflicts(std::string_view collection, const record_id& id, std::string_view field,
                                  const std::vector<conflict_value>& conflicts) {
  if (!conflicts.empty()) any_conflicts = true;
  write_tagged(*conflict_delete_field, *conflict_insert, collection, id, field, conflicts);
}

std::vector<conflict_value> store::impl::field_conflicts(std::string_view collection, const record_id& id,
                                                         std::string_view field) {
  if (!any_conflicts) return {};
  auto all = read_tagged(*conflict_select_record, collection, id);
  const auto it = all.find(field);
  return it == all.end() ? std::vector<conflict_value>{} : std::move(it->second);
}

std::vector<version> store::impl::predecessors(std::string_view collection, const record_id& id, std::string_view field,
                                               const field_clock_entry& current) {
  if (current.ver.node == node) {
    // This replica's own write: still only in the outbox, not yet pinned in a batch?
    std::int64_t seq = 0;
    {
      sqlite::reset_guard g(*outbox_seq_of);
      outbox_seq_of->bind_static(1, collection).bind_static(2, id_bytes(id)).bind(3, static_cast<std::int64_t>(current.ver.stamp.value));
      if (outbox_seq_of->step()) seq = outbox_seq_of->column_int64(0);
    }
    std::int64_t pinned = 0;
    if (seq > 0) {
      sqlite::reset_guard g(*pinned_last_seq);
      pinned_last_seq->step();
      pinned = pinned_last_seq->column_int64(0);
    }
    if (seq > pinned) {
      // It will never be sent (the new write overwrites it): other replicas must learn
      // from the new write what that one replaced.
      std::vector<version> inherited;
      {
        sqlite::reset_guard g(*pred_select);
        pred_select->bind_static(1, collection).bind_static(2, id_bytes(id)).bind_static(3, field).bind(4, static_cast<std::int64_t>(current.ver.stamp.value));
        while (pred_select->step()) {
          inherited.push_back(version_at(*pred_select, 0));
        }
      }
      sqlite::reset_guard g(*pred_delete_write);
      pred_delete_write->bind_static(1, collection).bind_static(2, id_bytes(id)).bind_static(3, field).bind(4, static_cast<std::int64_t>(current.ver.stamp.value)).run();
      return inherited;
    }
  }
  return {current.ver};
}

void store::impl::store_preds(std::string_view collection, const record_id& id, std::string_view field,
                              const version& ver, const std::vector<version>& preds) {
  for (const auto& p : preds) {
    sqlite::reset_guard g(*pred_insert);
    pred_insert->bind_static(1, collection)
        .bind_static(2, id_bytes(id))
        .bind_static(3, field)
        .bind(4, static_cast<std::int64_t>(ver.stamp.value))
        .bind(5, static_cast<std::int64_t>(p.stamp.value))
        .bind(6, static_cast<std::int64_t>(p.node))
        .run();
  }
}

void store::impl::write_fields(table_statements& t, const record_id& id, const version& ver,
                               const std::vector<field_write>& fields, meta_row& meta, std::string_view resolving) {
  const std::string_view collection = t.def->name;
  std::vector<const field_write*> values;
  values.reserve(fields.size());
  std::vector<field_write> rendered;  // shown values of item fields
  rendered.reserve(fields.size());
  for (const auto& f : fields) {
    const field_def* d = t.def->find(f.name);
    if (is_item_policy(d->policy)) {
      // The items this write adds carry its version; a set's removed items go to cs_pred
      // as what the write replaces.
      auto items = field_items(collection, id, f.name);
      std::vector<std::string> add;
      std::vector<version> removed;
      if (d->policy == merge_policy::append) {
        add.push_back(std::get<std::string>(f.val));
      } else {
        const auto wanted = *parse_set(f.val);
        for (const auto& e : wanted) {
          if (std::none_of(items.begin(), items.end(), [&](const conflict_value& i) { return std::get<std::string>(i.val) == e; })) {
            add.push_back(e);
          }
        }
        for (const auto& i : items) {
          if (!std::binary_search(wanted.begin(), wanted.end(), std::get<std::string>(i.val))) removed.push_back(i.ver);
        }
      }
      if (add.empty() && removed.empty()) continue;  // the set is as written: nothing to send
      std::erase_if(items, [&](const conflict_value& i) { return std::find(removed.begin(), removed.end(), i.ver) != removed.end(); });
      for (auto& a : add) items.push_back(conflict_value{std::move(a), ver});
      std::sort(items.begin(), items.end(), item_order);
      store_items(collection, id, f.name, items);
      store_preds(collection, id, f.name, ver, removed);
      rendered.push_back(field_write{
          f.name, render_items(d->policy == merge_policy::append ? item_policy::append : item_policy::set_union, items)});
      meta.clock[f.name] = field_clock_entry{ver, false, false};
      values.push_back(&rendered.back());
      continue;
    }
    const auto it = meta.clock.find(f.name);
    // A value that sat in cs_extra (received with another type) moves back to its column.
    if (it != meta.clock.end() && it->second.extra) {
      sqlite::reset_guard g(*extra_delete_field);
      extra_delete_field->bind_static(1, collection).bind_static(2, id_bytes(id)).bind_static(3, std::string_view(f.name)).run();
    }
    const bool resolves = !resolving.empty() && f.name == resolving;
    const bool kept = resolves || d->policy == merge_policy::keep_both;
    if (kept) {
      std::vector<version> replaced;
      if (it != meta.clock.end()) replaced = predecessors(collection, id, f.name, it->second);
      if (resolves) {
        for (const auto& c : field_conflicts(collection, id, f.name)) replaced.push_back(c.ver);
        store_conflicts(collection, id, f.name, {});
      }
      store_preds(collection, id, f.name, ver, replaced);
    }
    meta.clock[f.name] = field_clock_entry{ver, false, kept};
    values.push_back(&f);
  }
  store_live(collection, id, values, meta);
  // A local write replaces versions, as a merged one does (revived records).
  if (any_removed) refresh_removal(collection, id, meta);
}

void store::impl::add_kept(change& c, const std::vector<std::string>& names) {
  for (const auto& name : names) {
    kept_field k{name, {}};
    sqlite::reset_guard g(*pred_select);
    pred_select->bind_static(1, std::string_view(c.collection))
        .bind_static(2, id_bytes(c.id))
        .bind_static(3, std::string_view(name))
        .bind(4, static_cast<std::int64_t>(c.ver.stamp.value));
    while (pred_select->step()) {
      k.supersedes.push_back(version_at(*pred_select, 0));
    }
    std::sort(k.supersedes.begin(), k.supersedes.end());
    k.supersedes.erase(std::unique(k.supersedes.begin(), k.supersedes.end()), k.supersedes.end());
    drop_unsent_newer(k.supersedes, c.ver);
    c.kept.push_back(std::move(k));
  }
  std::sort(c.kept.begin(), c.kept.end(), [](const kept_field& a, const kept_field& b) { return a.name < b.name; });
}

version store::impl::local_version() {
  clock_dirty = true;
  return version{clock.now(), node};
}

record_id store::create(std::string_view collection, const std::vector<field_write>& fields) {
  table_statements* t = impl_->table(collection);
  if (!t) invalid("collection '" + std::string(collection) + "' is not declared in the schema");
  impl_->check_fields(*t->def, fields);
  const auto id = record_id::generate();
  impl_->in_transaction([&] {
    const version ver = impl_->local_version();
    if (t->def->keeps_conflicts() || t->def->has_items()) {
      // keep_both fields are marked kept (replacing nothing yet); item fields get items.
      store::impl::meta_row meta;
      impl_->write_fields(*t, id, ver, fields, meta);
    } else {
      impl_->put_new_record(*t, id, ver, fields);
    }
    impl_->append_outbox(collection, id, ver, change_kind::upsert);
  });
  return id;
}

void store::update(std::string_view collection, const record_id& id, const std::vector<field_write>& fields) {
  table_statements* t = impl_->table(collection);
  if (!t) invalid("collection '" + std::string(collection) + "' is not declared in the schema");
  impl_->check_fields(*t->def, fields);
  // Checked before the transaction starts, so a miss dooms no outer transaction. The
  // store has one writer (its thread), so the record cannot vanish in between.
  auto meta = impl_->load_live_meta(collection, id);
  impl_->in_transaction([&] {
    const version ver = impl_->local_version();
    impl_->write_fields(*t, id, ver, fields, meta);
    impl_->append_outbox(collection, id, ver, change_kind::upsert);
  });
}

void store::remove(std::string_view collection, const record_id& id) {
  if (!impl_->table(collection)) invalid("collection '" + std::string(collection) + "' is not declared in the schema");
  // Checked before the transaction starts, so a miss dooms no outer transaction. The
  // store has one writer (its thread), so the record cannot vanish in between.
  auto meta = impl_->load_live_meta(collection, id);
  impl_->in_transaction([&] {
    const version ver = impl_->local_version();
    impl_->delete_locally(collection, id, ver, meta);
  });
}

void store::impl::delete_locally(std::string_view collection, const record_id& id, const version& ver, meta_row& meta) {
  // Edits of the record still waiting in the outbox are rebuilt now, while its values are
  // here, and frozen: they are sent before the delete, so every replica's tombstone
  // holds the same versions.
  {
    sqlite::statement waiting(db.get(),
                              "SELECT seq, stamp FROM cs_outbox WHERE collection=? AND id=? AND kind=0 AND frozen IS NULL"
                              " AND seq > (SELECT coalesce(max(last_seq), 0) FROM cs_batch) ORDER BY seq");
    waiting.bind(1, collection).bind(2, id_bytes(id));
    sqlite::statement freeze(db.get(), "UPDATE cs_outbox SET frozen=? WHERE seq=?");
    while (waiting.step()) {
      const version v{hlc_stamp{static_cast<std::uint64_t>(waiting.column_int64(1))}, node};
      if (auto c = rebuild(collection, id, v, change_kind::upsert)) {
        const auto encoded = wire::encode_change(*c);
        freeze.bind(1, std::span<const std::uint8_t>(encoded)).bind(2, waiting.column_int64(0)).run();
        freeze.reset();
      }
    }
  }
  // The delete covers every version this replica holds of the record: its values, open
  // conflicts and items. Other replicas keep an edit it does not cover visible.
  auto state = read_state(collection, id, meta);
  change c{std::string(collection), id, ver, change_kind::remove, {}, {}, {}, held_versions(state)};
  const table_statements* t = table(collection);
  c.revivable = t && t->def->deletes == delete_policy::update_revives;
  // Not what a server_only refusal put back before a pull brought the write it came
  // from: the write's other fields, still on their way here, would be covered on the
  // server but arrive here as edits the delete had not seen. (A revivable delete covers
  // everything here, so that it hides the record: server_only fields in a collection
  // whose deletes revive are a limit, docs/conflicts.md.)
  if (!c.revivable) {
    sqlite::statement unpulled(db.get(), "SELECT stamp, node FROM cs_unpulled WHERE collection=? AND id=?");
    unpulled.bind(1, collection).bind(2, id_bytes(id));
    while (unpulled.step()) {
      const auto v = version_at(unpulled, 0);
      const auto at = std::lower_bound(c.covers->begin(), c.covers->end(), v);
      if (at != c.covers->end() && *at == v) c.covers->erase(at);
    }
  }
  const bool was_live = !meta.deleted;
  const auto outcome = merge(state, c);
  std::vector<std::string> all;
  for (const auto& [name, f] : state.fields) all.push_back(name);
  if (state.deleted) {
    store_deleted(collection, id, state, all, outcome.items_changed, was_live);
  } else {
    // Revivable: it covers every version here, so the record is hidden, values kept.
    store_hidden(collection, id, state, outcome.conflicts_changed, outcome.items_changed, was_live);
  }
  // What it covers is sent with it (cs_pred, field ""); a revivable delete also names
  // version zero there, which no write has (rebuild() reads it as the flag).
  auto preds = *c.covers;
  if (c.revivable) preds.insert(preds.begin(), version{});
  store_preds(collection, id, k_record_level, ver, preds);
  append_outbox(collection, id, ver, change_kind::remove);
}

std::optional<record_fields> store::get(std::string_view collection, const record_id& id) const {
  const auto meta = impl_->load_meta(collection, id);
  if (!meta || meta->deleted) return std::nullopt;
  record_fields out;
  for (auto& [name, field] : impl_->read_state(collection, id, *meta).fields) out.emplace(name, std::move(field.val));
  return out;
}

bool store::is_synced(std::string_view collection, const record_id& id) const {
  auto& q = *impl_->outbox_for_record;
  sqlite::reset_guard g(q);
  q.bind_static(1, collection).bind_static(2, id_bytes(id));
  if (q.step()) return false;
  // A change the server refused is not on the server either.
  auto& held = *impl_->quarantine_for_record;
  sqlite::reset_guard gh(held);
  held.bind_static(1, collection).bind_static(2, id_bytes(id));
  return !held.step();
}

std::vector<quarantined_change> store::quarantined() const {
  std::vector<quarantined_change> out;
  sqlite::statement q(impl_->db.get(),
                      "SELECT qid, collection, id, kind, change, code, reason, at_ms FROM cs_quarantine ORDER BY qid");
  while (q.step()) {
    quarantined_change& h = out.emplace_back();
    h.id = q.column_int64(0);
    h.collection = q.column_text(1);
    h.record = id_from_blob(q.column_blob(2));
    h.deleted = q.column_int64(3) == static_cast<std::int64_t>(change_kind::remove);
    try {
      for (auto& f : wire::decode_change(q.column_blob(4)).fields) h.fields.emplace(std::move(f.name), std::move(f.val));
    } catch (const protocol_error&) {
      throw error(make_error_code(storage_errc::corrupt), "a quarantined change in the store is damaged");
    }
    h.code = std::error_code(static_cast<int>(q.column_int64(5)), protocol_category());
    h.reason = q.column_text(6);
    h.at_ms = static_cast<std::uint64_t>(q.column_int64(7));
  }
  return out;
}

void store::retry_quarantined(std::int64_t id) {
  impl_->in_transaction([&] {
    sqlite::statement q(impl_->db.get(), "SELECT collection, id, stamp, kind FROM cs_quarantine WHERE qid=?");
    q.bind(1, id);
    if (!q.step()) {
      throw error(make_error_code(storage_errc::not_found), "no quarantined change " + std::to_string(id));
    }
    // Back in the outbox as it was: the next push rebuilds it from the record, so a field
    // written again since goes with its newer value, or not at all.
    const auto kind = q.column_int64(3);
    if (kind != static_cast<std::int64_t>(change_kind::upsert) && kind != static_cast<std::int64_t>(change_kind::remove)) {
      throw error(make_error_code(storage_errc::corrupt), "a quarantined change in the store is damaged");
    }
    impl_->append_outbox(q.column_text(0), id_from_blob(q.column_blob(1)),
                         version{hlc_stamp{static_cast<std::uint64_t>(q.column_int64(2))}, impl_->node},
                         static_cast<change_kind>(kind));
    sqlite::statement del(impl_->db.get(), "DELETE FROM cs_quarantine WHERE qid=?");
    del.bind(1, id).run();
  });
}

void store::drop_quarantined(std::int64_t id) {
  impl_->in_transaction([&] {
    sqlite::statement del(impl_->db.get(), "DELETE FROM cs_quarantine WHERE qid=?");
    del.bind(1, id).run();
    if (sqlite3_changes(impl_->db.get()) == 0) {
      throw error(make_error_code(storage_errc::not_found), "no quarantined change " + std::to_string(id));
    }
  });
}

namespace {

std::vector<open_conflict> list_conflicts(store::impl& s, sqlite::statement& q) {
  std::vector<open_conflict> out;
  std::optional<std::tuple<std::string, record_id, std::string>> last;
  while (q.step()) {
    std::tuple<std::string, record_id, std::string> key{q.column_text(0), id_from_blob(q.column_blob(1)), q.column_text(2)};
    if (last == key) continue;
    last = key;
    const auto& [collection, id, field] = key;
    auto meta = s.load_meta(collection, id);
    if (!meta) continue;
    auto state = s.read_state(collection, id, *meta);
    if (field.empty()) {
      // A record revived after a revivable delete: the delete is the conflict.
      if (is_revived(state)) out.push_back(open_conflict{collection, id, field, conflict_value{value{}, *state.removed}, {}, false, true});
      continue;
    }
    if (!state.deleted && is_hidden(state)) continue;  // every version covered: nothing concurrent
    auto it = state.fields.find(field);
    if (it == state.fields.end() || it->second.conflicts.empty()) continue;
    const bool deleted = state.deleted.has_value();
    out.push_back(open_conflict{collection, id, field,
                                conflict_value{deleted ? value{} : std::move(it->second.val), deleted ? *state.deleted : it->second.ver},
                                std::move(it->second.conflicts), deleted});
  }
  return out;
}

}  // namespace

/// The fields with open conflicts, as (collection, id, field) rows: cs_conflict's, less
/// those of hidden records (their kept conflicts wait for a revival), and field "" of
/// revived records (cs_removed, docs/conflicts.md "Deletes").
constexpr const char* k_conflict_rows =
    "SELECT collection, id, field FROM cs_conflict c WHERE NOT EXISTS (SELECT 1 FROM cs_removed r"
    " WHERE r.collection=c.collection AND r.id=c.id AND r.shown=0)"
    " UNION SELECT collection, id, '' FROM cs_removed WHERE shown=1";

std::vector<open_conflict> store::conflicts() const {
  sqlite::statement q(impl_->db.get(), std::string("SELECT collection, id, field FROM (") + k_conflict_rows +
                                           ") ORDER BY collection, id, field");
  return list_conflicts(*impl_, q);
}

std::vector<open_conflict> store::conflicts(std::string_view collection, const record_id& id) const {
  sqlite::statement q(impl_->db.get(), std::string("SELECT collection, id, field FROM (") + k_conflict_rows +
                                           ") WHERE collection=? AND id=? ORDER BY field");
  q.bind(1, collection).bind(2, id_bytes(id));
  return list_conflicts(*impl_, q);
}

std::size_t store::run_resolvers() {
  const auto& resolvers = impl_->options.resolvers;
  if (resolvers.empty() || !impl_->any_conflicts) return 0;
  std::size_t resolved = 0;
  for (const auto& c : conflicts()) {
    if (c.record_deleted || c.record_revived || c.current.ver.node != impl_->node) continue;
    const auto it = resolvers.find(c.collection);
    if (it == resolvers.end() || !it->second) continue;
    if (auto v = it->second(c)) {
      resolve_conflict(c.collection, c.record, c.field, *v);
      ++resolved;
    }
  }
  return resolved;
}

std::size_t store::conflict_count() const {
  sqlite::statement q(impl_->db.get(), std::string("SELECT count(*) FROM (") + k_conflict_rows + ")");
  q.step();
  return static_cast<std::size_t>(q.column_int64(0));
}

void store::resolve_conflict(std::string_view collection, const record_id& id, std::string_view field, const value& v) {
  table_statements* t = impl_->table(collection);
  if (!t) invalid("collection '" + std::string(collection) + "' is not declared in the schema");
  if (field.empty()) {
    throw error(make_error_code(storage_errc::not_found),
                "a revived record's delete has no value to resolve with; dismiss it, or delete the record");
  }
  const std::vector<field_write> fields{field_write{std::string(field), v}};
  impl_->check_fields(*t->def, fields);
  auto meta = impl_->load_meta(collection, id);
  if (meta && meta->deleted) {
    throw error(make_error_code(storage_errc::not_found),
                "record " + id.to_string() + " in '" + std::string(collection) +
                    "' was deleted; its conflicts can only be dismissed (create a new record to keep the words)");
  }
  if (!meta || impl_->field_conflicts(collection, id, field).empty()) {
    throw error(make_error_code(storage_errc::not_found), "field '" + std::string(field) + "' of record " +
                                                               id.to_string() + " in '" + std::string(collection) +
                                                               "' has no open conflict");
  }
  impl_->in_transaction([&] {
    const version ver = impl_->local_version();
    impl_->write_fields(*t, id, ver, fields, *meta, field);
    impl_->append_outbox(collection, id, ver, change_kind::upsert);
  });
}

void store::dismiss_conflict(std::string_view collection, const record_id& id, std::string_view field) {
  if (field.empty()) {
    if (!impl_->table(collection)) invalid("collection '" + std::string(collection) + "' is not declared in the schema");
    auto meta = impl_->load_meta(collection, id);
    auto state = meta ? impl_->read_state(collection, id, *meta) : record_state{};
    if (!is_revived(state)) {
      throw error(make_error_code(storage_errc::not_found),
                  "record " + id.to_string() + " in '" + std::string(collection) + "' was not revived after a delete");
    }
    // An edit writing nothing that says the delete is dismissed. It is kept as sent
    // (frozen): there is no field to rebuild it from.
    impl_->in_transaction([&] {
      change c;
      c.collection = std::string(collection);
      c.id = id;
      c.ver = impl_->local_version();
      c.dismisses = state.removed;
      merge(state, c);
      impl_->store_removal(collection, id, state);
      impl_->append_outbox(collection, id, c.ver, change_kind::upsert);
      const auto encoded = wire::encode_change(c);
      sqlite::statement freeze(impl_->db.get(), "UPDATE cs_outbox SET frozen=? WHERE seq=last_insert_rowid()");
      freeze.bind(1, std::span<const std::uint8_t>(encoded)).run();
    });
    return;
  }
  if (auto meta = impl_->load_meta(collection, id); meta && meta->deleted) {
    if (!impl_->table(collection)) invalid("collection '" + std::string(collection) + "' is not declared in the schema");
    // A record hidden by revivable deletes shows no conflict: its deletes cover everything.
    if (impl_->field_conflicts(collection, id, field).empty() || !impl_->read_state(collection, id, *meta).deleted) {
      throw error(make_error_code(storage_errc::not_found), "field '" + std::string(field) + "' of deleted record " +
                                                                 id.to_string() + " has no open conflict");
    }
    // The delete again, now covering the edits it had overridden.
    impl_->in_transaction([&] { impl_->delete_locally(collection, id, impl_->local_version(), *meta); });
    return;
  }
  const auto current = get(collection, id);
  const auto it = current ? current->find(std::string(field)) : record_fields::const_iterator{};
  if (!current || it == current->end()) {
    throw error(make_error_code(storage_errc::not_found), "field '" + std::string(field) + "' of record " +
                                                               id.to_string() + " in '" + std::string(collection) +
                                                               "' has no open conflict");
  }
  resolve_conflict(collection, id, field, it->second);
}

std::size_t store::outbox_size() const {
  auto& q = *impl_->outbox_count;
  sqlite::reset_guard g(q);
  q.step();
  return static_cast<std::size_t>(q.column_int64(0));
}

std::uint64_t store::cursor() const { return impl_->cursor(); }

node_id store::node() const noexcept { return impl_->node; }

const std::string& store::path() const noexcept { return impl_->options.path; }

const caresync::schema& store::schema() const noexcept { return impl_->options.schema; }

std::size_t store::count(std::string_view collection) const {
  // Live records of a declared collection are its table's rows; cs_meta holds the rest
  // (tombstones, and records of collections the app declared only later).
  std::size_t n = 0;
  if (const table_statements* t = impl_->table(collection)) {
    sqlite::statement q(impl_->db.get(), "SELECT count(*) FROM " + t->quoted_name);
    q.step();
    n += static_cast<std::size_t>(q.column_int64(0));
  }
  sqlite::statement q(impl_->db.get(), "SELECT count(*) FROM cs_meta WHERE collection=? AND deleted_stamp IS NULL");
  q.bind(1, collection);
  q.step();
  return n + static_cast<std::size_t>(q.column_int64(0));
}

std::vector<std::pair<std::pair<std::string, record_id>, store::impl::meta_row>> store::impl::all_records() {
  std::vector<std::pair<std::pair<std::string, record_id>, meta_row>> out;
  for (auto& [name, t] : tables) {
    sqlite::statement rows(db.get(), "SELECT \"id\", \"cs_clock\" FROM " + t.quoted_name);
    while (rows.step()) {
      const auto id = record_id::parse(rows.column_text(0));
      if (!id) throw error(make_error_code(storage_errc::corrupt), "a record id in table '" + name + "' is damaged");
      out.push_back({{name, *id}, meta_row{decode_field_clock(rows.column_blob(1)), std::nullopt, false}});
    }
  }
  sqlite::statement rows(db.get(), "SELECT collection, id, clock, deleted_stamp, deleted_node FROM cs_meta");
  while (rows.step()) {
    meta_row meta;
    meta.in_meta = true;
    meta.clock = decode_field_clock(rows.column_blob(2));
    if (rows.column_type(3) != SQLITE_NULL) {
      meta.deleted = version_at(rows, 3);
    }
    out.push_back({{rows.column_text(0), id_from_blob(rows.column_blob(1))}, std::move(meta)});
  }
  // The order of std::map<pair<string, record_id>> on the server: names by bytes, ids by bytes.
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return out;
}

std::string store::state_digest() const {
  state_hasher hasher;
  for (const auto& [key, meta] : impl_->all_records()) {
    hasher.add(key.first, key.second, impl_->read_state(key.first, key.second, meta));
  }
  return hasher.finish();
}

// ---------------------------------------------------------------- sync support

std::optional<change> store::impl::rebuild(std::string_view collection, const record_id& id, const version& ver,
                                           change_kind kind) {
  change c;
  c.collection = std::string(collection);
  c.id = id;
  c.ver = ver;
  c.kind = kind;
  if (kind == change_kind::remove) {
    c.covers.emplace();
    sqlite::reset_guard g(*pred_select);
    pred_select->bind_static(1, collection).bind_static(2, id_bytes(id)).bind_static(3, k_record_level).bind(4, static_cast<std::int64_t>(ver.stamp.value));
    while (pred_select->step()) {
      c.covers->push_back(version_at(*pred_select, 0));
    }
    std::sort(c.covers->begin(), c.covers->end());
    drop_unsent_newer(*c.covers, c.ver);
    // Version zero marks a revivable delete (delete_locally).
    if (!c.covers->empty() && c.covers->front() == version{}) {
      c.revivable = true;
      c.covers->erase(c.covers->begin());
    }
    return c;
  }
  if (table_statements* t = table(collection)) {
    bool found = false;
    auto rebuilt = rebuild_from_row(*t, std::move(c), found);
    if (found) return rebuilt;
    c = change{std::string(collection), id, ver, kind, {}, {}};
  }
  const auto meta = load_meta(collection, id);
  // Deleted since: the tombstone, pushed by its own entry, wins over this write anyway.
  if (!meta || meta->deleted) return std::nullopt;
  bool any = false;
  for (const auto& [name, entry] : meta->clock) any = any || entry.ver == ver;
  // Every field it wrote was overwritten since: later entries carry the record. A record
  // without any field (created empty) is still sent, or the server would never know it.
  if (!any && !meta->clock.empty()) return std::nullopt;
  std::vector<std::string> kept;
  for (auto& [name, field] : read_state(collection, id, *meta).fields) {
    if (field.ver != ver) continue;
    c.fields.push_back(field_write{name, std::move(field.val)});
    if (field.kept) kept.push_back(name);
  }
  if (!kept.empty()) add_kept(c, kept);
  return c;
}

std::optional<change> store::impl::rebuild_from_row(table_statements& t, change c, bool& found) {
  const auto text = c.id.to_chars();
  sqlite::reset_guard g(*t.select_full);
  t.select_full->bind_static(1, text_of(text));
  found = t.select_full->step();
  if (!found) return std::nullopt;
  bool any_entry = false;
  bool needs_extras = false;
  std::vector<std::string> extra_names;
  std::vector<std::string> kept_names;
  const bool has_items = t.def->has_items();
  // The fields this version wrote, found first and put in name order (as the record's
  // clock and merge() see fields) while they are only names: then each is made once, in
  // place, rather than sorted as strings and values.
  // (scratch_written: names into the clock blob, valid until the statement moves on; the
  // declared column, or null for a value kept in cs_extra.)
  scratch_written.clear();
  for_each_clock_entry(t.select_full->column_blob(0), [&](std::string_view name, const field_clock_entry& e) {
    any_entry = true;
    if (e.ver != c.ver) return;
    const field_def* d = t.def->find(name);
    // Item fields are sent as their operations (add_item_ops), not as the value shown.
    if (has_items && d && is_item_policy(d->policy)) return;
    if (e.kept) kept_names.push_back(std::string(name));
    if (e.extra) {
      needs_extras = true;
      extra_names.push_back(std::string(name));  // its value is read from cs_extra below
      scratch_written.push_back({name, nullptr});
    } else if (d) {
      scratch_written.push_back({name, d});
    }
  });
  std::sort(scratch_written.begin(), scratch_written.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  c.fields.reserve(scratch_written.size());
  for (const auto& w : scratch_written) {
    c.fields.push_back(field_write{std::string(w.name), w.def ? t.select_full->column_value(static_cast<int>(w.def - t.def->fields.data()) + 1)
                                                             : value{}});
  }
  // A kept write of this replica that an incoming value beat before it was sent (it was
  // quarantined, or the store was synced by hand) is an open conflict here: it is still
  // sent, or other replicas would never see those words.
  if (any_conflicts && t.def->keeps_conflicts()) {
    sqlite::statement lost(db.get(), "SELECT field, value FROM cs_conflict WHERE collection=? AND id=? AND stamp=? AND node=?");
    lost.bind(1, std::string_view(c.collection))
        .bind(2, id_bytes(c.id))
        .bind(3, static_cast<std::int64_t>(c.ver.stamp.value))
        .bind(4, static_cast<std::int64_t>(c.ver.node));
    while (lost.step()) {
      std::string name = lost.column_text(0);
      if (std::any_of(c.fields.begin(), c.fields.end(), [&](const field_write& f) { return f.name == name; })) continue;
      c.fields.push_back(field_write{name, lost.column_value(1)});
      kept_names.push_back(std::move(name));
    }
  }
  // Items a write added stay its own even when later writes touched the field.
  if (has_items) add_item_ops(c, *t.def);
  // Every field it wrote was overwritten since: later entries carry the record. A record
  // without any field (created empty) is still sent, or the server would never know it.
  if (c.fields.empty() && c.items.empty() && any_entry) return std::nullopt;
  if (needs_extras) {
    std::map<std::string, value, std::less<>> extras;
    sqlite::reset_guard ge(*extra_select_record);
    extra_select_record->bind_static(1, std::string_view(c.collection)).bind_static(2, id_bytes(c.id));
    while (extra_select_record->step()) extras[extra_select_record->column_text(0)] = extra_select_record->column_value(1);
    for (const auto& name : extra_names) {
      auto f = std::find_if(c.fields.begin(), c.fields.end(), [&](const field_write& w) { return w.name == name; });
      if (auto it = extras.find(name); it != extras.end() && f != c.fields.end()) f->val = it->second;
    }
  }
  // Name order, as the record's clock and merge() see fields: the lost kept writes above
  // may have been added after the rest.
  const auto by_name = [](const field_write& a, const field_write& b) { return a.name < b.name; };
  if (!std::is_sorted(c.fields.begin(), c.fields.end(), by_name)) std::sort(c.fields.begin(), c.fields.end(), by_name);
  if (!kept_names.empty()) add_kept(c, kept_names);
  return c;
}

namespace {

/// A column of the current row as a view of its bytes, by SQLite's storage class (as
/// statement::column_value() makes a value of it).
wire::value_view column_view(const sqlite::statement& row, int i) {
  switch (row.column_type(i)) {
    case SQLITE_INTEGER: return row.column_int64(i);
    case SQLITE_FLOAT: return row.column_double(i);
    case SQLITE_TEXT: return row.column_text_view(i);
    case SQLITE_BLOB: return row.column_blob(i);
    default: return std::monostate{};
  }
}

}  // namespace

store::impl::row_push store::impl::push_from_row(table_statements& t, std::string_view collection, const record_id& id,
                                                 const version& ver, wire::push_builder& out) {
  // Item fields are sent as operations read from cs_item, a lost kept write from
  // cs_conflict (rebuild_from_row): not from the row alone.
  if (t.def->has_items() || (any_conflicts && t.def->keeps_conflicts())) return row_push::not_plain;
  const auto text = id.to_chars();
  sqlite::reset_guard g(*t.select_full);
  t.select_full->bind_static(1, text_of(text));
  if (!t.select_full->step()) return row_push::not_plain;
  // rebuild_from_row()'s walk over the clock, stopping at anything that is not a declared
  // column written plainly: a kept write (sent with what it replaces), a value in
  // cs_extra, a name the table does not declare. Those go the general way.
  bool any_entry = false;
  bool plain = true;
  scratch_written.clear();
  for_each_clock_entry(t.select_full->column_blob(0), [&](std::string_view name, const field_clock_entry& e) {
    any_entry = true;
    if (!plain || e.ver != ver) return;
    const field_def* d = t.def->find(name);
    if (e.kept || e.extra || !d) {
      plain = false;
      return;
    }
    scratch_written.push_back({name, d});
  });
  if (!plain) return row_push::not_plain;
  // Every field it wrote was overwritten since: later entries carry the record. A record
  // without any field (created empty) is still sent, or the server would never know it.
  if (scratch_written.empty() && any_entry) return row_push::overwritten;
  // Name order, as rebuild_from_row() makes the fields (and merge() sees them).
  std::sort(scratch_written.begin(), scratch_written.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  scratch_views.clear();
  for (const auto& w : scratch_written) {
    scratch_views.push_back({w.name, column_view(*t.select_full, static_cast<int>(w.def - t.def->fields.data()) + 1)});
  }
  // Written while the statement is on the row: the views point into it.
  out.add_upsert(collection, id, ver, scratch_views);
  return row_push::written;
}

namespace {

/// The header of a whole frame; throws protocol_error when it is not one.
wire::frame_header header_of(std::span<const std::uint8_t> frame) {
  if (frame.size() < wire::k_frame_header_size) throw protocol_error(protocol_errc::malformed, "short frame");
  return wire::parse_header(std::span<const std::uint8_t, wire::k_frame_header_size>(frame.data(), wire::k_frame_header_size),
                            wire::k_default_max_frame);
}

}  // namespace

std::vector<outbox_batch> store::impl::pinned_batches() {
  std::vector<outbox_batch> out;
  sqlite::statement pinned(db.get(), "SELECT id, last_seq, payload, framed FROM cs_batch ORDER BY last_seq");
  while (pinned.step()) {
    // Resent exactly as first sent: it may have reached the server.
    outbox_batch& batch = out.emplace_back();
    batch.id = id_from_blob(pinned.column_blob(0));
    batch.node = node;
    batch.last_seq = pinned.column_int64(1);
    const auto stored = pinned.column_blob(2);
    // framed: 0, the payload of a version 6 push; 1, its frame; 2, the frame of a version 7 push.
    const auto framed = pinned.column_int64(3);
    try {
      if (framed != 0) {
        // The whole frame as sent, compressed or not: its payload is read back from it.
        batch.frame.assign(stored.begin(), stored.end());
        const auto h = header_of(batch.frame);
        const std::span<const std::uint8_t> body(batch.frame.data() + wire::k_frame_header_size,
                                                 batch.frame.size() - wire::k_frame_header_size);
        if (h.type != wire::message_type::push || h.length != body.size()) {
          throw protocol_error(protocol_errc::malformed, "not a push frame");
        }
        batch.frame_codec = h.compression;
        wire::bytes scratch;
        const auto plain = wire::plain_payload(h, body, wire::k_default_max_frame, h.compression, scratch);
        batch.payload.assign(plain.begin(), plain.end());
      } else {
        batch.payload.assign(stored.begin(), stored.end());
      }
      if (framed != 2) {
        // Pinned before an upgrade: resent with its id and changes, in this version's form.
        auto legacy = wire::decode_version6_push(batch.payload);
        if (legacy.batch != batch.id) throw protocol_error(protocol_errc::malformed, "another batch");
        batch.payload = wire::encode(legacy);
        batch.frame.clear();
        batch.frame_codec = wire::codec::none;
      }
    } catch (const protocol_error&) {
      throw error(make_error_code(storage_errc::corrupt), "the store's pending push batch is damaged");
    }
    // Read through once: a damaged batch fails here, before it is sent.
    const auto changes = batch.decode_changes();
    batch.change_count = changes.size();
    for (const auto& c : changes) batch.max_stamp = std::max(batch.max_stamp, c.ver.stamp);
  }
  return out;
}

std::vector<change> outbox_batch::decode_changes() const {
  try {
    auto decoded = wire::decode(wire::message_type::push, payload);
    auto* p = std::get_if<wire::push>(&decoded);
    if (!p || p->batch != id) throw protocol_error(protocol_errc::malformed, "another batch");
    for (auto& c : p->changes) c.ver.node = node;  // a push carries no node: they are this store's
    return std::move(p->changes);
  } catch (const protocol_error&) {
    throw error(make_error_code(storage_errc::corrupt), "the store's pending push batch is damaged");
  }
}

std::optional<outbox_batch> store::impl::pin_batch(std::size_t max_changes, wire::codec compression,
                                                  std::size_t max_bytes) {
  return in_transaction([&]() -> std::optional<outbox_batch> {
    outbox_batch batch;
    batch.node = node;
    {
      sqlite::statement last(db.get(), "SELECT coalesce(max(last_seq), 0) FROM cs_batch");
      last.step();
      batch.last_seq = last.column_int64(0);
    }
    sqlite::statement entries(db.get(),
                              "SELECT seq, collection, id, stamp, kind, frozen FROM cs_outbox WHERE seq > ? ORDER BY seq LIMIT ?");
    sqlite::statement drop(db.get(), "DELETE FROM cs_outbox WHERE seq > ? AND seq <= ?");
    // Each change goes into the payload as it is made; the batch keeps only its bytes.
    wire::push_builder push;
    const auto add = [&](const change& c) {
      push.add(c);
      batch.max_stamp = std::max(batch.max_stamp, c.ver.stamp);
    };
    for (;;) {
      const std::int64_t start = batch.last_seq;
      entries.bind(1, start).bind(2, static_cast<std::int64_t>(max_changes));
      std::size_t read = 0;
      while (entries.step()) {
        ++read;
        batch.last_seq = entries.column_int64(0);
        const auto kind = entries.column_int64(4);
        if (kind != static_cast<std::int64_t>(change_kind::upsert) && kind != static_cast<std::int64_t>(change_kind::remove)) {
          throw error(make_error_code(storage_errc::corrupt), "an outbox entry in the store is damaged");
        }
        const version ver{hlc_stamp{static_cast<std::uint64_t>(entries.column_int64(3))}, node};
        if (entries.column_type(5) != SQLITE_NULL) {
          // Frozen when its record was deleted here before it was sent (delete_locally).
          change frozen;
          try {
            frozen = wire::decode_change(entries.column_blob(5));
          } catch (const protocol_error&) {
            throw error(make_error_code(storage_errc::corrupt), "an outbox entry in the store is damaged");
          }
          add(frozen);
          continue;
        }
        const auto collection = entries.column_text_view(1);
        const auto id = id_from_blob(entries.column_blob(2));
        // Most entries are upserts of a record in its table: written straight from the row.
        auto direct = row_push::not_plain;
        if (kind == static_cast<std::int64_t>(change_kind::upsert)) {
          if (table_statements* t = table(collection)) direct = push_from_row(*t, collection, id, ver, push);
        }
        if (direct == row_push::written) {
          batch.max_stamp = std::max(batch.max_stamp, ver.stamp);
        } else if (direct == row_push::not_plain) {
          if (auto c = rebuild(collection, id, ver, static_cast<change_kind>(kind))) add(*c);
        }
        if (push.size_bytes() >= max_bytes) break;  // the rest waits for the next batch
      }
      entries.reset();
      if (read == 0) return std::nullopt;
      if (push.count() > 0) break;
      // Entries whose writes were all overwritten since: nothing left to send for them.
      drop.bind(1, start).bind(2, batch.last_seq).run();
      drop.reset();
    }
    // Numbered in the transaction that pins it: a store never reuses a number.
    const auto number_text = get_state("batch_number");
    std::uint64_t last_number = 0;
    if (!number_text.empty()) {
      const auto [end, ec] = std::from_chars(number_text.data(), number_text.data() + number_text.size(), last_number);
      if (ec != std::errc{} || end != number_text.data() + number_text.size()) {
        throw error(make_error_code(storage_errc::corrupt), "the store's batch number is damaged");
      }
    }
    const std::uint64_t number = last_number + 1;
    set_state("batch_number", std::to_string(number));
    batch.id = numbered_batch(number);
    batch.change_count = push.count();
    batch.payload = push.finish(batch.id);
    // Pinned as the frame that is sent: compressed, it is a third of the payload's bytes
    // to write now and to overwrite when the batch is acknowledged (secure_delete).
    batch.frame = wire::make_frame(wire::message_type::push, batch.payload, compression);
    batch.frame_codec = header_of(batch.frame).compression;  // none when compressing would not shrink it
    sqlite::statement pin(db.get(), "INSERT INTO cs_batch(id, last_seq, payload, framed) VALUES(?,?,?,2)");
    pin.bind(1, id_bytes(batch.id)).bind(2, batch.last_seq).bind_static(3, std::span<const std::uint8_t>(batch.frame)).run();
    return batch;
  });
}

std::optional<outbox_batch> store::impl::next_batch(std::size_t max_changes, wire::codec compression) {
  auto pinned = pinned_batches();
  if (!pinned.empty()) return std::move(pinned.front());
  return pin_batch(max_changes, compression);
}

store::impl::ack_result store::impl::ack_batch(const outbox_batch& batch, const std::vector<wire::refusal>& refusals) {
  return in_transaction([&]() -> ack_result {
    const batch_id& id = batch.id;
    // Answers come in the order batches were sent, so the acknowledged batch is the
    // oldest pinned one; its outbox entries are exactly those up to its last seq.
    sqlite::statement oldest(db.get(), "SELECT id, last_seq FROM cs_batch ORDER BY last_seq LIMIT 1");
    if (!oldest.step() || id_from_blob(oldest.column_blob(0)) != id) {
      throw error(make_error_code(protocol_errc::unexpected_message),
                  "the server acknowledged a push batch this store did not send, or not in the order sent");
    }
    // Every change stored: the greatest stamp is all the acknowledgement needs of them.
    if (refusals.empty() && batch.change_count > 0) {
      acked_max = std::max(acked_max, batch.max_stamp);
      clock_dirty = true;
    }
    // Otherwise each change is looked at, decoded from the bytes sent.
    const std::vector<change> sent = refusals.empty() ? std::vector<change>{} : batch.decode_changes();
    // A change stamped too far ahead of the server's clock gets a new stamp from the
    // corrected clock and goes back into the outbox; every other refusal is quarantined.
    std::vector<const change*> held;
    std::vector<const wire::refusal*> held_why;
    ack_result result;
    std::size_t next_refusal = 0;
    for (std::size_t i = 0; i < sent.size(); ++i) {
      const wire::refusal* r = next_refusal < refusals.size() && refusals[next_refusal].index == i ? &refusals[next_refusal++] : nullptr;
      const change& c = sent[i];
      if (!r) {
        acked_max = std::max(acked_max, c.ver.stamp);
        clock_dirty = true;
      } else if (r->code == static_cast<std::uint16_t>(protocol_errc::clock_ahead)) {
        const version to = local_version();
        restamp(c.collection, c.id, c.ver, to, c.kind);
        append_outbox(c.collection, c.id, to, c.kind);
        if (c.kind == change_kind::upsert) {
          // An edit of a record deleted since cannot be rebuilt: it goes as it was sent.
          const auto meta = load_meta(c.collection, c.id);
          if ((meta && meta->deleted) || c.dismisses) {
            change again = c;
            give_version(again, to);
            const auto encoded = wire::encode_change(again);
            sqlite::statement freeze(db.get(), "UPDATE cs_outbox SET frozen=? WHERE seq=last_insert_rowid()");
            freeze.bind(1, std::span<const std::uint8_t>(encoded)).run();
          }
        }
        ++result.requeued;
      } else if (r->code == static_cast<std::uint16_t>(protocol_errc::server_only)) {
        // Stored without the fields only the server side writes: they show the server's
        // values again.
        acked_max = std::max(acked_max, c.ver.stamp);
        clock_dirty = true;
        revert_server_only(c, r->restore);
        ++result.reverted;
      } else {
        held.push_back(&c);
        held_why.push_back(r);
      }
    }
    // What the batch's keep_both writes replaced is on the server now, with them.
    sqlite::statement preds(db.get(),
                            "DELETE FROM cs_pred WHERE EXISTS(SELECT 1 FROM cs_outbox o WHERE o.seq <= ?"
                            " AND o.collection=cs_pred.collection AND o.id=cs_pred.id AND o.stamp=cs_pred.stamp)");
    preds.bind(1, oldest.column_int64(1)).run();
    sqlite::statement del(db.get(), "DELETE FROM cs_outbox WHERE seq <= ?");
    del.bind(1, oldest.column_int64(1)).run();
    sqlite::statement unpin(db.get(), "DELETE FROM cs_batch WHERE id=?");
    unpin.bind(1, id_bytes(id)).run();
    // What the server refused is set aside with its reason, leaving the outbox with the
    // rest; the app lists, retries or drops it (store::quarantined()).
    if (held.empty()) return result;
    sqlite::statement hold(db.get(),
                           "INSERT INTO cs_quarantine(collection, id, stamp, kind, change, code, reason, at_ms)"
                           " VALUES(?,?,?,?,?,?,?,?)");
    const auto now = static_cast<std::int64_t>(system_time_ms());
    for (std::size_t i = 0; i < held.size(); ++i) {
      const change& c = *held[i];
      const auto& refusal = *held_why[i];
      const auto encoded = wire::encode_change(c);
      hold.bind_static(1, std::string_view(c.collection))
          .bind_static(2, id_bytes(c.id))
          .bind(3, static_cast<std::int64_t>(c.ver.stamp.value))
          .bind(4, static_cast<std::int64_t>(c.kind))
          .bind_static(5, std::span<const std::uint8_t>(encoded))
          .bind(6, static_cast<std::int64_t>(refusal.code))
          .bind_static(7, std::string_view(refusal.reason))
          .bind(8, now)
          .run();
      hold.reset();
    }
    // A change refused as out of scope (docs/protocol.md, "Scopes"): the record is not
    // this device's to hold. Its later local changes are set aside with it, unsent, so
    // that no words are lost silently; then the record goes. If the device may still see
    // it, the server sends it back at the next pull, as the server has it.
    std::vector<std::pair<std::string, record_id>> out_of_scope;
    for (std::size_t i = 0; i < held.size(); ++i) {
      if (held_why[i]->code != static_cast<std::uint16_t>(protocol_errc::out_of_scope)) continue;
      std::pair<std::string, record_id> key{held[i]->collection, held[i]->id};
      if (std::find(out_of_scope.begin(), out_of_scope.end(), key) == out_of_scope.end()) out_of_scope.push_back(std::move(key));
    }
    for (const auto& [collection, record] : out_of_scope) {
      sqlite::statement later(db.get(), "SELECT stamp, kind, frozen FROM cs_outbox WHERE collection=? AND id=? ORDER BY seq");
      later.bind_static(1, std::string_view(collection)).bind_static(2, id_bytes(record));
      std::vector<change> unsent;
      while (later.step()) {
        const version ver{hlc_stamp{static_cast<std::uint64_t>(later.column_int64(0))}, node};
        if (later.column_type(2) != SQLITE_NULL) {
          unsent.push_back(wire::decode_change(later.column_blob(2)));
        } else if (auto c = rebuild(collection, record, ver, static_cast<change_kind>(later.column_int64(1)))) {
          unsent.push_back(std::move(*c));
        }
      }
      for (const auto& c : unsent) {
        const auto encoded = wire::encode_change(c);
        hold.bind_static(1, std::string_view(c.collection))
            .bind_static(2, id_bytes(c.id))
            .bind(3, static_cast<std::int64_t>(c.ver.stamp.value))
            .bind(4, static_cast<std::int64_t>(c.kind))
            .bind_static(5, std::span<const std::uint8_t>(encoded))
            .bind(6, static_cast<std::int64_t>(protocol_errc::out_of_scope))
            .bind_static(7, std::string_view("not sent: an earlier change of this record was refused as outside this device's scope"))
            .bind(8, now)
            .run();
        hold.reset();
      }
      purge_record(collection, record);
      purged_unflushed = true;
      ++refused_out_of_scope_total;
    }
    return result;
  });
}

void store::impl::revert_server_only(const change& c, const std::vector<wire::restored_field>& restore) {
  // Only where the refused write is still the field's version: a later local write is in
  // the outbox and gets its own answer. A field the server never accepted a write of is
  // not in the record at all, as on every other replica.
  auto meta = load_meta(c.collection, c.id);
  if (!meta) return;
  // The versions this store's deletes of the record cover that the server has not
  // acknowledged yet (their covers stay in cs_pred until then), ascending.
  std::vector<version> pending;
  if (meta->deleted) {
    sqlite::statement q(db.get(), "SELECT pred_stamp, pred_node FROM cs_pred WHERE collection=? AND id=? AND field=?");
    q.bind(1, std::string_view(c.collection)).bind(2, id_bytes(c.id)).bind(3, k_record_level);
    while (q.step()) pending.push_back(version_at(q, 0));
    std::sort(pending.begin(), pending.end());
  }
  std::vector<field_write> back;
  bool removed = false;
  sqlite::statement unpulled(db.get(), "INSERT OR IGNORE INTO cs_unpulled(collection, id, stamp, node) VALUES(?,?,?,?)");
  const auto note_unpulled = [&](const version& v) {
    if (v == version{}) return;
    sqlite::reset_guard g(unpulled);
    unpulled.bind(1, std::string_view(c.collection))
        .bind(2, id_bytes(c.id))
        .bind(3, static_cast<std::int64_t>(v.stamp.value))
        .bind(4, static_cast<std::int64_t>(v.node))
        .run();
  };
  for (const auto& f : restore) {
    const auto it = meta->clock.find(f.name);
    if (it == meta->clock.end() || it->second.ver != c.ver) continue;
    // The server's newest, which this store may not have pulled yet.
    note_unpulled(f.ver);
    for (const auto& v : f.conflicts) note_unpulled(v.ver);
    if (meta->deleted) {
      // The tombstone shows what the server's state of the field becomes once this
      // store's deletes still on their way reach it: the server's open conflicts (or its
      // live value, an edit those deletes did not see), less what they cover.
      std::vector<conflict_value> open = f.record_deleted ? f.conflicts : std::vector<conflict_value>{};
      if (!f.record_deleted && f.ver != version{}) open.push_back(conflict_value{f.val, f.ver});
      std::erase_if(open, [&](const conflict_value& v) { return std::binary_search(pending.begin(), pending.end(), v.ver); });
      if (f.ver == version{} && open.empty()) {
        meta->clock.erase(it);
      } else {
        it->second.ver = f.ver;
        it->second.kept = false;
      }
      store_conflicts(c.collection, c.id, f.name, open);
      removed = true;
      continue;
    }
    place_received(table(c.collection), c, f.name, f.val, field_clock_entry{f.ver, false, false}, *meta);
    back.push_back(field_write{f.name, f.val});
  }
  if (meta->deleted) {
    if (removed) put_meta(c.collection, c.id, *meta);
    return;
  }
  if (back.empty()) return;
  std::vector<const field_write*> values;
  for (const auto& w : back) values.push_back(&w);
  store_live(c.collection, c.id, values, *meta);
  if (std::erase_if(meta->clock, [](const auto& entry) { return entry.second.ver == version{}; }) > 0) {
    store_live(c.collection, c.id, {}, *meta);
  }
}

void store::impl::restamp(std::string_view collection, const record_id& id, const version& from, const version& to,
                          change_kind kind) {
  auto meta = load_meta(collection, id);
  if (meta) {
    bool any = false;
    for (auto& [name, entry] : meta->clock) {
      if (entry.ver == from) {
        entry.ver = to;
        any = true;
      }
    }
    if (meta->deleted) {
      // A tombstone keeps the versions of the record's fields, and its own.
      if (kind == change_kind::remove && meta->deleted == from) {
        meta->deleted = to;
        any = true;
      }
      if (any) put_meta(collection, id, *meta);
    } else if (any) {
      store_live(collection, id, {}, *meta);
    }
  }
  restamp_removal(collection, id, from, to);
  // The items it added carry its new version, and so does its value where it lost
  // locally before it was sent (an open conflict here).
  for (const char* sql : {"UPDATE cs_item SET stamp=? WHERE collection=? AND id=? AND stamp=? AND node=?",
                          "UPDATE cs_conflict SET stamp=? WHERE collection=? AND id=? AND stamp=? AND node=?"}) {
    sqlite::statement move(db.get(), sql);
    move.bind(1, static_cast<std::int64_t>(to.stamp.value))
        .bind(2, collection)
        .bind(3, id_bytes(id))
        .bind(4, static_cast<std::int64_t>(from.stamp.value))
        .bind(5, static_cast<std::int64_t>(from.node))
        .run();
  }
  // What the write replaces moves with it, and a later write that replaces it names its
  // new version.
  sqlite::statement own(db.get(), "UPDATE cs_pred SET stamp=? WHERE collection=? AND id=? AND stamp=?");
  own.bind(1, static_cast<std::int64_t>(to.stamp.value))
      .bind(2, collection)
      .bind(3, id_bytes(id))
      .bind(4, static_cast<std::int64_t>(from.stamp.value))
      .run();
  // Frozen writes of the record (deleted since) that replace, remove or cover it name it
  // anew too.
  {
    sqlite::statement frozen(db.get(), "SELECT seq, frozen FROM cs_outbox WHERE collection=? AND id=? AND frozen IS NOT NULL");
    frozen.bind(1, collection).bind(2, id_bytes(id));
    sqlite::statement refreeze(db.get(), "UPDATE cs_outbox SET frozen=? WHERE seq=?");
    while (frozen.step()) {
      auto c = wire::decode_change(frozen.column_blob(1));
      bool named = false;
      const auto rename = [&](std::vector<version>& versions) {
        for (auto& v : versions) {
          if (v == from) {
            v = to;
            named = true;
          }
        }
        std::sort(versions.begin(), versions.end());
      };
      for (auto& k : c.kept) rename(k.supersedes);
      for (auto& op : c.items) rename(op.remove);
      if (c.covers) rename(*c.covers);
      if (c.dismisses && *c.dismisses == from) {
        c.dismisses = to;
        named = true;
      }
      if (!named) continue;
      const auto encoded = wire::encode_change(c);
      refreeze.bind(1, std::span<const std::uint8_t>(encoded)).bind(2, frozen.column_int64(0)).run();
      refreeze.reset();
    }
  }
  sqlite::statement later(db.get(),
                          "UPDATE cs_pred SET pred_stamp=? WHERE collection=? AND id=? AND pred_stamp=? AND pred_node=?");
  later.bind(1, static_cast<std::int64_t>(to.stamp.value))
      .bind(2, collection)
      .bind(3, id_bytes(id))
      .bind(4, static_cast<std::int64_t>(from.stamp.value))
      .bind(5, static_cast<std::int64_t>(from.node))
      .run();
}

std::size_t store::impl::correct_clock(std::uint64_t server_time_ms, std::uint64_t bound_ms) {
  if (bound_ms == 0) return 0;
  const std::uint64_t slack = bound_ms / 2;
  return in_transaction([&]() -> std::size_t {
    // The device's wall clock: corrected by the server's when it runs ahead; the
    // correction is dropped once the device's own clock is right again.
    const auto base = static_cast<std::int64_t>(base_time());
    const auto server = static_cast<std::int64_t>(server_time_ms);
    const auto wall = base + clock_offset_ms;
    if (wall > server + static_cast<std::int64_t>(slack) || (clock_offset_ms != 0 && wall + static_cast<std::int64_t>(slack) < server)) {
      clock_offset_ms = std::min<std::int64_t>(0, server - base);
      set_state("clock_offset", std::to_string(clock_offset_ms));
    }
    if (clock.last().wall_ms() <= server_time_ms + slack) return 0;
    // The hybrid clock ran ahead. It comes back to the server's time, but never below a
    // stamp other replicas have or will have: those received, those the server
    // acknowledged, and those of writes in the outbox that the server will accept.
    hlc_stamp floor = std::max({hlc_stamp::make(server_time_ms, 0), remote_max, acked_max});
    {
      sqlite::statement acceptable(db.get(), "SELECT coalesce(max(stamp), 0) FROM cs_outbox WHERE stamp <= ?");
      acceptable.bind(1, static_cast<std::int64_t>(hlc_stamp::make(server_time_ms + bound_ms, 0xffff).value));
      acceptable.step();
      floor = std::max(floor, hlc_stamp{static_cast<std::uint64_t>(acceptable.column_int64(0))});
    }
    clock.reset(floor);
    clock_dirty = true;
    // Batches pinned before (by a sync cut short) go first, as they are: what the server
    // refuses of them, and of the writes after them, is re-stamped in outbox order when
    // refused (ack_batch), so a write never gets a smaller version than one it depends on.
    {
      sqlite::statement pinned(db.get(), "SELECT 1 FROM cs_batch LIMIT 1");
      if (pinned.step()) return 0;
    }
    // Otherwise unsent writes stamped above the floor get new stamps now, oldest first, so
    // that a later local write still carries a greater version than an earlier one.
    struct entry {
      std::int64_t seq;
      std::string collection;
      record_id id;
      version ver;
      change_kind kind;
    };
    std::vector<entry> ahead;
    {
      sqlite::statement q(db.get(),
                          "SELECT seq, collection, id, stamp, kind FROM cs_outbox WHERE seq > (SELECT coalesce(max(last_seq), 0)"
                          " FROM cs_batch) AND stamp > ? ORDER BY seq");
      q.bind(1, static_cast<std::int64_t>(floor.value));
      while (q.step()) {
        ahead.push_back(entry{q.column_int64(0), q.column_text(1), id_from_blob(q.column_blob(2)),
                              version{hlc_stamp{static_cast<std::uint64_t>(q.column_int64(3))}, node},
                              q.column_int64(4) == static_cast<std::int64_t>(change_kind::remove) ? change_kind::remove
                                                                                                  : change_kind::upsert});
      }
    }
    sqlite::statement move(db.get(), "UPDATE cs_outbox SET stamp=? WHERE seq=?");
    sqlite::statement frozen(db.get(), "SELECT frozen FROM cs_outbox WHERE seq=? AND frozen IS NOT NULL");
    sqlite::statement refreeze(db.get(), "UPDATE cs_outbox SET frozen=? WHERE seq=?");
    for (const auto& e : ahead) {
      const version to = local_version();
      restamp(e.collection, e.id, e.ver, to, e.kind);
      move.bind(1, static_cast<std::int64_t>(to.stamp.value)).bind(2, e.seq).run();
      move.reset();
      frozen.bind(1, e.seq);
      if (frozen.step()) {
        auto c = wire::decode_change(frozen.column_blob(0));
        give_version(c, to);
        const auto encoded = wire::encode_change(c);
        refreeze.bind(1, std::span<const std::uint8_t>(encoded)).bind(2, e.seq).run();
        refreeze.reset();
      }
      frozen.reset();
    }
    return ahead.size();
  });
}

std::size_t store::impl::apply(const change& c) {
  clock.observe(c.ver.stamp);
  remote_max = std::max(remote_max, c.ver.stamp);
  clock_dirty = true;
  // Most pulled records are new to the store (an initial sync): try to insert them first,
  // before reading anything.
  const bool fast = c.kind == change_kind::upsert && c.items.empty() && !c.dismisses;
  if (fast && apply_new(c, false)) return 0;
  auto meta = load_meta(c.collection, c.id);
  const bool known_record = meta.has_value();
  if (!known_record && fast && apply_new(c, true)) return 0;
  if (!meta) meta.emplace();
  bool tracked = !c.kept.empty() || !c.items.empty() || any_conflicts || any_items ||
                 c.kind == change_kind::remove || meta->deleted.has_value() || c.dismisses.has_value();
  for (const auto& [name, entry] : meta->clock) tracked = tracked || entry.kept;
  if (!tracked && any_removed && known_record) {
    // A record revived after revivable deletes: what they cover is pruned by the merge.
    record_state probe;
    tracked = load_removal(c.collection, c.id, probe).has_value();
  }
  if (tracked) return apply_tracked(c, *meta, known_record);
  // Merge on versions only: values are not needed to decide who wins.
  record_state state;
  state.deleted = meta->deleted;
  for (const auto& [name, entry] : meta->clock) state.fields.emplace(name, field_state{value{}, entry.ver, false, {}});
  // An edit of a live record (deletes and deleted records took the path above).
  const auto outcome = merge(state, c);
  if (outcome.updated.empty()) return outcome.superseded;
  const table_statements* t = table(c.collection);
  std::vector<const field_write*> values;
  values.reserve(outcome.updated.size());
  for (const auto& f : c.fields) {
    if (std::find(outcome.updated.begin(), outcome.updated.end(), f.name) == outcome.updated.end()) continue;
    place_received(t, c, f.name, f.val, field_clock_entry{c.ver, false, false}, *meta);
    values.push_back(&f);
  }
  store_live(c.collection, c.id, values, *meta);
  return outcome.superseded;
}

void store::impl::place_received(const table_statements* t, const change& c, const std::string& name, const value& v,
                                 field_clock_entry entry, meta_row& meta) {
  // Undeclared fields, and values of another type than declared, live in cs_extra so
  // that nothing received is dropped or converted by column affinity.
  const field_def* d = t ? t->def->find(name) : nullptr;
  entry.extra = !d || (kind_of(v) != value_kind::null && kind_of(v) != d->type);
  auto& stored = meta.clock[name];
  if (stored.extra && !entry.extra) {
    sqlite::reset_guard g(*extra_delete_field);
    extra_delete_field->bind_static(1, std::string_view(c.collection))
        .bind_static(2, id_bytes(c.id))
        .bind_static(3, std::string_view(name))
        .run();
  }
  stored = entry;
}

std::size_t store::impl::apply_tracked(const change& c, meta_row& meta, bool known_record) {
  // Values matter here: a current value that loses is kept as an open conflict.
  record_state state = read_state(c.collection, c.id, meta);
  const bool was_live = known_record && !meta.deleted;
  // Removed by revivable deletes and hidden: its values wait in cs_extra.
  const bool was_hidden = known_record && meta.deleted && !state.deleted;
  const auto outcome = merge(state, c);
  if (state.deleted) {
    // A delete, or an edit of a deleted record: kept visible if the delete overrode it.
    std::vector<std::string> conflicts = outcome.conflicts_changed;
    if (outcome.deleted_now) {
      conflicts.clear();
      for (const auto& [name, f] : state.fields) conflicts.push_back(name);
    }
    store_deleted(c.collection, c.id, state, conflicts, outcome.items_changed, was_live || was_hidden);
    return outcome.superseded + outcome.conflicts_opened;
  }
  if (is_hidden(state)) {
    store_hidden(c.collection, c.id, state, outcome.conflicts_changed, outcome.items_changed, was_live);
    return outcome.superseded + outcome.conflicts_opened;
  }
  const table_statements* t = table(c.collection);
  std::vector<field_write> written;
  written.reserve(outcome.updated.size());
  if (was_hidden) {
    // Revived by an edit its deletes did not cover: every value goes back to its table.
    meta.deleted.reset();
    for (const auto& [name, f] : state.fields) {
      place_received(t, c, name, f.val, field_clock_entry{f.ver, false, f.kept}, meta);
      written.push_back(field_write{name, f.val});
    }
  } else {
    for (const auto& name : outcome.updated) {
      const field_state& f = state.fields.at(name);
      place_received(t, c, name, f.val, field_clock_entry{f.ver, false, f.kept}, meta);
      written.push_back(field_write{name, f.val});
    }
  }
  if (!written.empty() || was_hidden) {
    std::vector<const field_write*> values;
    for (const auto& w : written) values.push_back(&w);
    store_live(c.collection, c.id, values, meta);
  }
  for (const auto& name : outcome.conflicts_changed) {
    store_conflicts(c.collection, c.id, name, state.fields.at(name).conflicts);
  }
  for (const auto& name : outcome.items_changed) store_items(c.collection, c.id, name, state.fields.at(name).items);
  store_removal(c.collection, c.id, state);
  return outcome.superseded + outcome.conflicts_opened;
}

bool store::impl::put_new_record(table_statements& t, const record_id& id, const version& ver,
                                 const std::vector<field_write>& fields, std::span<const kept_field> kept,
                                 existing_row existing) {
  // Every field is in its column and the clock is one group: no clock map is built.
  scratch_columns.clear();
  for (const auto& f : fields) scratch_columns.push_back(static_cast<std::uint16_t>(t.def->find(f.name) - t.def->fields.data()));
  std::sort(scratch_columns.begin(), scratch_columns.end());
  scratch_values.clear();
  for (const auto i : scratch_columns) {
    for (const auto& f : fields) {
      if (f.name == t.def->fields[i].name) {
        scratch_values.push_back(&f.val);
        break;
      }
    }
  }
  scratch_clock.clear();
  encode_clock_of_change(scratch_clock, ver, fields, kept);
  return put_row(t, id, scratch_clock, existing);
}

bool store::impl::apply_new(const change& c, bool known_absent) {
  // A record this store has never seen, every value in its declared column (the common
  // case of an initial sync): every field wins.
  table_statements* t = table(c.collection);
  // A record missing from the table may still be in cs_meta (a tombstone): then only
  // load_meta() can tell.
  if (!t || (!known_absent && t->meta_rows)) return false;
  for (const auto& f : c.fields) {
    const field_def* d = t->def->find(f.name);
    const auto k = kind_of(f.val);
    if (!d || (k != value_kind::null && k != d->type)) return false;  // goes to cs_extra: the general path
  }
  return put_new_record(*t, c.id, c.ver, c.fields, c.kept, known_absent ? existing_row::overwrite : existing_row::keep);
}

void check_page(const wire::changes_page& page, std::uint64_t cursor) {
  if (page.next_cursor < cursor) {
    throw protocol_error(protocol_errc::malformed, "the server sent a page that moves the cursor backwards");
  }
  std::uint64_t last = cursor;
  for (const auto& item : page.items) {
    // Also refuses a page seen before (a stale duplicate): its changes are not above the cursor.
    if (item.seq <= last || item.seq > page.next_cursor) {
      throw protocol_error(protocol_errc::malformed, "the server sent changes out of sequence order");
    }
    last = item.seq;
    if (const auto reason = check_change(item.body); !reason.empty()) {
      throw protocol_error(protocol_errc::malformed, "the server sent an invalid change: " + reason);
    }
  }
  // Backfilled records (docs/protocol.md, "Scopes"): each record's changes together, in
  // increasing sequence order; their sequence numbers are the log's, not bound to the cursor.
  for (std::size_t i = 0; i < page.backfill.size(); ++i) {
    const auto& item = page.backfill[i];
    if (i > 0) {
      const auto& before = page.backfill[i - 1];
      const bool same = before.body.collection == item.body.collection && before.body.id == item.body.id;
      if (same && before.seq >= item.seq) {
        throw protocol_error(protocol_errc::malformed, "the server sent a backfilled record out of sequence order");
      }
    }
    if (const auto reason = check_change(item.body); !reason.empty()) {
      throw protocol_error(protocol_errc::malformed, "the server sent an invalid change: " + reason);
    }
  }
}

std::size_t store::impl::apply_page(const wire::changes_page& page) {
  check_page(page, cursor());
  const auto p = prime();
  // A page of the log is committed without an fsync of its own (docs/durability.md,
  // "Pulled pages"): a power cut may undo it, with its cursor, and the next sync pulls it
  // again; the next commit that is synced (any local write) makes it durable too. A page
  // with a scope epoch stays synced: the next pull tells the server it arrived.
  const bool unsynced_commit = page.scope_epoch == 0 && depth == 0 && options.durability == durability::full;
  if (unsynced_commit) sqlite::exec(db.get(), "PRAGMA synchronous=NORMAL");
  struct restore_sync {
    sqlite3* db;
    bool active;
    ~restore_sync() {
      if (active) sqlite3_exec(db, "PRAGMA synchronous=FULL", nullptr, nullptr, nullptr);
    }
  } restore{db.get(), unsynced_commit};
  const auto conflicts = in_transaction([&] {
    std::size_t conflicts = 0;
    // Records that entered the device's scope: each one's whole history replaces
    // whatever the store held of it (it holds nothing, unless a page was delivered twice).
    for (std::size_t i = 0; i < page.backfill.size(); ++i) {
      const auto& c = page.backfill[i].body;
      if (i == 0 || page.backfill[i - 1].body.collection != c.collection || page.backfill[i - 1].body.id != c.id) {
        purge_record(c.collection, c.id);
      }
      conflicts += apply(c);
    }
    std::optional<sqlite::statement> primed;
    for (const auto& item : page.items) {
      // A change the priority phase delivered is held already: a second delivery could
      // reopen a conflict a later change closed (the server leaves these out too).
      if (item.seq <= p.spec.until) {
        if (!primed) primed.emplace(db.get(), "SELECT 1 FROM cs_primed WHERE seq=?");
        sqlite::reset_guard g(*primed);
        primed->bind(1, static_cast<std::int64_t>(item.seq));
        if (primed->step()) continue;
      }
      conflicts += apply(item.body);
    }
    // Records that left the device's scope: nothing of them stays.
    for (const auto& purge : page.purges) purge_record(purge.collection, purge.id);
    purged_total += page.purges.size();
    if (page.scope_epoch != 0) set_state("scope_epoch", std::to_string(page.scope_epoch));
    set_state("cursor", std::to_string(page.next_cursor));
    // At the log's head: everything a server_only refusal put back has been pulled.
    if (!page.more) sqlite::exec(db.get(), "DELETE FROM cs_unpulled");
    if (p.spec.until > 0 && page.next_cursor >= p.spec.until) {
      // The log is pulled past the priority phase: nothing is left to leave out.
      sqlite::exec(db.get(), "DELETE FROM cs_primed; DELETE FROM cs_prime;");
    }
    return conflicts;
  });
  if (!page.purges.empty()) purged_unflushed = true;
  checkpoint_after_purge();
  return conflicts;
}

void store::impl::delete_row(std::string_view collection, const record_id& id) {
  if (table_statements* t = table(collection)) {
    const auto text = id.to_chars();
    sqlite::reset_guard g(*t->delete_row);
    t->delete_row->bind_static(1, text_of(text)).run();
  }
}

void store::impl::purge_record(std::string_view collection, const record_id& id) {
  delete_row(collection, id);
  if (any_removed) {
    sqlite::statement gone(db.get(), "DELETE FROM cs_removed WHERE collection=? AND id=?");
    gone.bind(1, collection).bind(2, id_bytes(id)).run();
  }
  for (auto* stmt : {&*meta_delete, &*extra_delete_record, &*pred_delete_record, &*conflict_delete_record, &*item_delete_record}) {
    sqlite::reset_guard g(*stmt);
    stmt->bind_static(1, collection).bind_static(2, id_bytes(id)).run();
  }
  for (const char* sql : {"DELETE FROM cs_outbox WHERE collection=? AND id=?", "DELETE FROM cs_unpulled WHERE collection=? AND id=?"}) {
    sqlite::statement q(db.get(), sql);
    q.bind_static(1, collection).bind_static(2, id_bytes(id)).run();
  }
}

std::uint64_t store::impl::scope_epoch() {
  const auto e = get_state("scope_epoch");
  return e.empty() ? 0 : parse_u64(e);
}

store::impl::prime_state store::impl::prime() {
  prime_state out;
  sqlite::statement q(db.get(), "SELECT spec, position, done FROM cs_prime");
  if (!q.step()) return out;
  try {
    const auto m = wire::decode(wire::message_type::prime, q.column_blob(0));
    out.spec = std::get<wire::prime>(m).spec;
  } catch (const protocol_error&) {
    throw error(make_error_code(storage_errc::corrupt), "the store's prioritised sync state is damaged");
  }
  out.position = static_cast<std::uint64_t>(q.column_int64(1));
  out.done = q.column_int64(2) != 0;
  return out;
}

void store::impl::begin_prime(const wire::prime_spec& spec) {
  in_transaction([&] {
    sqlite::exec(db.get(), "DELETE FROM cs_primed; DELETE FROM cs_prime;");
    sqlite::statement put(db.get(), "INSERT INTO cs_prime(one, spec, position, done) VALUES(1, ?, 0, 0)");
    put.bind(1, std::span<const std::uint8_t>(wire::encode(wire::prime{spec, 0, 0, 0})));
    put.run();
  });
}

std::size_t store::impl::apply_prime_page(const wire::changes_page& page) {
  const auto p = prime();
  if (p.spec.until == 0 || p.done) {
    throw protocol_error(protocol_errc::unexpected_message, "the server sent priority changes nobody asked for");
  }
  if (page.next_cursor < p.position || (page.items.empty() && page.more) || page.next_cursor - p.position != page.items.size()) {
    throw protocol_error(protocol_errc::malformed, "the server sent a priority page that does not follow the last");
  }
  for (const auto& item : page.items) {
    if (item.seq == 0 || item.seq > p.spec.until) {
      throw protocol_error(protocol_errc::malformed, "the server sent a priority change from beyond the phase's log position");
    }
    if (const auto reason = check_change(item.body); !reason.empty()) {
      throw protocol_error(protocol_errc::malformed, "the server sent an invalid change: " + reason);
    }
  }
  return in_transaction([&] {
    std::size_t conflicts = 0;
    sqlite::statement mark(db.get(), "INSERT OR IGNORE INTO cs_primed(seq) VALUES(?)");
    for (const auto& item : page.items) {
      sqlite::reset_guard g(mark);
      mark.bind(1, static_cast<std::int64_t>(item.seq));
      mark.run();
      // Held already (delivered by an earlier page, or pulled): not applied twice.
      if (sqlite3_changes(db.get()) == 0) continue;
      conflicts += apply(item.body);
    }
    sqlite::statement move(db.get(), "UPDATE cs_prime SET position=?, done=?");
    move.bind(1, static_cast<std::int64_t>(page.next_cursor)).bind(2, static_cast<std::int64_t>(page.more ? 0 : 1));
    move.run();
    return conflicts;
  });
}

}  // namespace caresync
