#include "store_impl.hpp"

#include <caresync/protocol/codec.hpp>

#include <algorithm>
#include <charconv>

namespace caresync {

namespace {

// Marks the file as a caresync store: PRAGMA application_id ('CSYC') and format version.
const sqlite::file_identity k_identity{0x43535943, 1, "a caresync store",
                                       "open a store file made by caresync, or a new path",
                                       "update the app"};

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

std::uint64_t parse_u64(const std::string& s) {
  std::uint64_t v = 0;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size()) {
    throw error(make_error_code(storage_errc::corrupt), "the store's state table holds a damaged number");
  }
  return v;
}

}  // namespace

// ---------------------------------------------------------------- opening

std::unique_ptr<store> store::open(const store_options& options) {
  validate(options.schema);
  auto p = std::make_unique<impl>();
  p->options = options;
  p->open_database();
  p->create_tables();
  p->load_state();
  return std::unique_ptr<store>(new store(std::move(p)));
}

store::store(std::unique_ptr<impl> p) : impl_(std::move(p)) {}
store::~store() = default;

void store::impl::open_database() {
  db = sqlite::open(options.path, k_identity, options.durability == durability::full ? "FULL" : "NORMAL");
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
               " id BLOB NOT NULL, change BLOB NOT NULL);");
  for (const auto& c : options.schema.collections) {
    const std::string q = sqlite::quote(c.name);
    std::string sql = "CREATE TABLE IF NOT EXISTS " + q + "(\"id\" TEXT PRIMARY KEY NOT NULL";
    for (const auto& f : c.fields) sql += ", " + sqlite::quote(f.name) + " " + sql_type(f.type);
    sql += ")";
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
  tx.commit();
}

void store::impl::load_state() {
  meta_select.emplace(db.get(), "SELECT clock, deleted_stamp, deleted_node FROM cs_meta WHERE collection=? AND id=?");
  meta_upsert.emplace(db.get(),
                      "INSERT INTO cs_meta(collection, id, clock, deleted_stamp, deleted_node) VALUES(?,?,?,?,?)"
                      " ON CONFLICT(collection, id) DO UPDATE SET clock=excluded.clock,"
                      " deleted_stamp=excluded.deleted_stamp, deleted_node=excluded.deleted_node");
  outbox_insert.emplace(db.get(), "INSERT INTO cs_outbox(collection, id, change) VALUES(?,?,?)");
  outbox_count.emplace(db.get(), "SELECT count(*) FROM cs_outbox");
  outbox_for_record.emplace(db.get(), "SELECT 1 FROM cs_outbox WHERE collection=? AND id=? LIMIT 1");
  extra_upsert.emplace(db.get(), "INSERT OR REPLACE INTO cs_extra(collection, id, field, value) VALUES(?,?,?,?)");
  extra_delete_field.emplace(db.get(), "DELETE FROM cs_extra WHERE collection=? AND id=? AND field=?");
  extra_delete_record.emplace(db.get(), "DELETE FROM cs_extra WHERE collection=? AND id=?");
  extra_select_record.emplace(db.get(), "SELECT field, value FROM cs_extra WHERE collection=? AND id=?");
  state_get.emplace(db.get(), "SELECT value FROM cs_state WHERE key=?");
  state_set.emplace(db.get(), "INSERT OR REPLACE INTO cs_state(key, value) VALUES(?,?)");

  for (const auto& c : options.schema.collections) {
    auto& t = tables[c.name];
    t.def = &c;
    t.quoted_name = sqlite::quote(c.name);
    std::string cols;
    for (const auto& f : c.fields) cols += ", " + sqlite::quote(f.name);
    t.select_row.emplace(db.get(), "SELECT \"id\"" + cols + " FROM " + t.quoted_name + " WHERE \"id\"=?");
    t.delete_row.emplace(db.get(), "DELETE FROM " + t.quoted_name + " WHERE \"id\"=?");
    t.ensure_row.emplace(db.get(), "INSERT OR IGNORE INTO " + t.quoted_name + "(\"id\") VALUES(?)");
  }

  sqlite::transaction tx(db.get());
  if (const auto n = get_state("node"); !n.empty()) {
    node = parse_u64(n);
  } else {
    node = generate_node_id();
    set_state("node", std::to_string(node));
  }
  if (const auto h = get_state("hlc"); !h.empty()) clock.observe(hlc_stamp{parse_u64(h)});
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
    clock_dirty = false;
  }
  sqlite::exec(db.get(), "COMMIT");
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
  sqlite::reset_guard g(*meta_select);
  meta_select->bind(1, collection).bind(2, id_bytes(id));
  if (!meta_select->step()) return std::nullopt;
  meta_row m;
  m.clock = decode_field_clock(meta_select->column_blob(0));
  if (meta_select->column_type(1) != SQLITE_NULL) {
    m.deleted = version{hlc_stamp{static_cast<std::uint64_t>(meta_select->column_int64(1))},
                        static_cast<node_id>(meta_select->column_int64(2))};
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

void store::impl::save_meta(std::string_view collection, const record_id& id, const meta_row& m) {
  sqlite::reset_guard g(*meta_upsert);
  const auto clock_bytes = encode_field_clock(m.clock);
  meta_upsert->bind(1, collection).bind(2, id_bytes(id)).bind(3, std::span<const std::uint8_t>(clock_bytes));
  if (m.deleted) {
    meta_upsert->bind(4, static_cast<std::int64_t>(m.deleted->stamp.value))
        .bind(5, static_cast<std::int64_t>(m.deleted->node));
  } else {
    meta_upsert->bind_null(4).bind_null(5);
  }
  meta_upsert->run();
}

void store::impl::append_outbox(const change& c) {
  const auto encoded = wire::encode_change(c);
  sqlite::reset_guard g(*outbox_insert);
  outbox_insert->bind(1, std::string_view(c.collection))
      .bind(2, id_bytes(c.id))
      .bind(3, std::span<const std::uint8_t>(encoded))
      .run();
}

void store::impl::check_fields(const collection_def& def, const std::vector<field_write>& fields) const {
  // The wire check below does not repeat a bad name (it may come from a peer); the app
  // calling here needs to know which of its names is wrong.
  for (const auto& f : fields) {
    if (!is_valid_name(f.name)) {
      invalid("field name '" + f.name + "' for collection '" + def.name +
              "' is invalid: use 1-63 characters of a-z, 0-9 and _, starting with a letter, not 'cs_'");
    }
  }
  // The wire checks (duplicates, sizes, NaN), on the caller's fields without a copy.
  if (auto reason = caresync::check_fields(def.name, fields); !reason.empty()) invalid(reason);
  for (const auto& f : fields) {
    const field_def* d = def.find(f.name);
    if (!d) invalid("collection '" + def.name + "' has no field '" + f.name + "'; declare it in the schema");
    const auto k = kind_of(f.val);
    if (k != value_kind::null && k != d->type) {
      invalid("field '" + f.name + "' of collection '" + def.name + "' holds " + std::string(to_string(d->type)) +
              " values, not " + std::string(to_string(k)));
    }
  }
}

void store::impl::write_values(std::string_view collection, const record_id& id,
                               const std::vector<const field_write*>& values, const field_clock& clock) {
  static const value k_null;
  table_statements* t = table(collection);
  std::vector<std::pair<const std::string*, const value*>> columns;
  columns.reserve(values.size());
  for (const field_write* w : values) {
    const auto& entry = clock.at(w->name);
    if (entry.extra) {
      sqlite::reset_guard g(*extra_upsert);
      extra_upsert->bind(1, collection).bind(2, id_bytes(id)).bind(3, std::string_view(w->name)).bind(4, w->val).run();
      // A declared field whose value moved out of its column: clear the column.
      if (t && t->def->find(w->name)) columns.emplace_back(&w->name, &k_null);
    } else {
      columns.emplace_back(&w->name, &w->val);
    }
  }
  if (!t) return;
  const std::string id_text = id.to_string();
  if (columns.empty()) {
    sqlite::reset_guard g(*t->ensure_row);
    t->ensure_row->bind(1, std::string_view(id_text)).run();
    return;
  }
  std::sort(columns.begin(), columns.end(), [](const auto& a, const auto& b) { return *a.first < *b.first; });
  std::string key;
  for (const auto& [name, v] : columns) (key += *name) += ',';
  auto it = t->upserts.find(key);
  if (it == t->upserts.end()) {
    std::string names = "\"id\"", params = "?", updates;
    for (const auto& [name, v] : columns) {
      const auto q = sqlite::quote(*name);
      names += "," + q;
      params += ",?";
      updates += (updates.empty() ? "" : ",") + q + "=excluded." + q;
    }
    it = t->upserts
             .emplace(key, sqlite::statement(db.get(), "INSERT INTO " + t->quoted_name + "(" + names + ") VALUES(" +
                                                           params + ") ON CONFLICT(\"id\") DO UPDATE SET " + updates))
             .first;
  }
  auto& stmt = it->second;
  sqlite::reset_guard g(stmt);
  stmt.bind(1, std::string_view(id_text));
  int i = 2;
  for (const auto& [name, v] : columns) stmt.bind(i++, *v);
  stmt.run();
}

void store::impl::delete_values(std::string_view collection, const record_id& id) {
  if (table_statements* t = table(collection)) {
    sqlite::reset_guard g(*t->delete_row);
    t->delete_row->bind(1, std::string_view(id.to_string())).run();
  }
  sqlite::reset_guard g(*extra_delete_record);
  extra_delete_record->bind(1, collection).bind(2, id_bytes(id)).run();
}

record_state store::impl::read_state(std::string_view collection, const record_id& id, const meta_row& meta) {
  record_state state;
  state.deleted = meta.deleted;
  if (meta.deleted) return state;
  std::map<std::string, value, std::less<>> extras;
  {
    sqlite::reset_guard g(*extra_select_record);
    extra_select_record->bind(1, collection).bind(2, id_bytes(id));
    while (extra_select_record->step()) extras[extra_select_record->column_text(0)] = extra_select_record->column_value(1);
  }
  std::map<std::string_view, value> columns;
  if (table_statements* t = table(collection)) {
    sqlite::reset_guard g(*t->select_row);
    t->select_row->bind(1, std::string_view(id.to_string()));
    if (t->select_row->step()) {
      for (std::size_t i = 0; i < t->def->fields.size(); ++i) {
        columns[t->def->fields[i].name] = t->select_row->column_value(static_cast<int>(i + 1));
      }
    }
  }
  for (const auto& [name, entry] : meta.clock) {
    value v;
    if (entry.extra) {
      if (auto it = extras.find(name); it != extras.end()) v = it->second;
    } else if (auto it = columns.find(name); it != columns.end()) {
      v = it->second;
    }
    state.fields.emplace(name, field_state{std::move(v), entry.ver});
  }
  return state;
}

change store::impl::local_change(std::string_view collection, const record_id& id, change_kind kind) {
  change c;
  c.collection = std::string(collection);
  c.id = id;
  c.ver = version{clock.now(), node};
  c.kind = kind;
  clock_dirty = true;
  return c;
}

void store::impl::local_upsert(std::string_view collection, const record_id& id, const std::vector<field_write>& fields,
                               meta_row meta) {
  in_transaction([&] {
    change c = local_change(collection, id, change_kind::upsert);
    c.fields = fields;
    std::vector<const field_write*> values;
    for (const auto& f : c.fields) {
      // A value that sat in cs_extra (received with another type) moves back to its column.
      if (auto it = meta.clock.find(f.name); it != meta.clock.end() && it->second.extra) {
        sqlite::reset_guard g(*extra_delete_field);
        extra_delete_field->bind(1, collection).bind(2, id_bytes(id)).bind(3, std::string_view(f.name)).run();
      }
      meta.clock[f.name] = field_clock_entry{c.ver, false};
      values.push_back(&f);
    }
    write_values(collection, id, values, meta.clock);
    save_meta(collection, id, meta);
    append_outbox(c);
  });
}

record_id store::create(std::string_view collection, const std::vector<field_write>& fields) {
  table_statements* t = impl_->table(collection);
  if (!t) invalid("collection '" + std::string(collection) + "' is not declared in the schema");
  impl_->check_fields(*t->def, fields);
  const auto id = record_id::generate();
  impl_->local_upsert(collection, id, fields, {});
  return id;
}

void store::update(std::string_view collection, const record_id& id, const std::vector<field_write>& fields) {
  table_statements* t = impl_->table(collection);
  if (!t) invalid("collection '" + std::string(collection) + "' is not declared in the schema");
  impl_->check_fields(*t->def, fields);
  // Checked before the transaction starts, so a miss dooms no outer transaction. The
  // store has one writer (its thread), so the record cannot vanish in between.
  impl_->local_upsert(collection, id, fields, impl_->load_live_meta(collection, id));
}

void store::remove(std::string_view collection, const record_id& id) {
  if (!impl_->table(collection)) invalid("collection '" + std::string(collection) + "' is not declared in the schema");
  // Checked before the transaction starts, so a miss dooms no outer transaction. The
  // store has one writer (its thread), so the record cannot vanish in between.
  auto meta = impl_->load_live_meta(collection, id);
  impl_->in_transaction([&] {
    const change c = impl_->local_change(collection, id, change_kind::remove);
    impl_->delete_values(collection, id);
    impl_->save_meta(collection, id, impl::meta_row{{}, c.ver});
    impl_->append_outbox(c);
  });
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
  q.bind(1, collection).bind(2, id_bytes(id));
  return !q.step();
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
  sqlite::statement q(impl_->db.get(), "SELECT count(*) FROM cs_meta WHERE collection=? AND deleted_stamp IS NULL");
  q.bind(1, collection);
  q.step();
  return static_cast<std::size_t>(q.column_int64(0));
}

std::string store::state_digest() const {
  state_hasher hasher;
  // BINARY collation and blob comparison order rows exactly as std::map<pair<string,
  // record_id>> does on the server.
  sqlite::statement all(impl_->db.get(),
                        "SELECT collection, id, clock, deleted_stamp, deleted_node FROM cs_meta ORDER BY collection, id");
  while (all.step()) {
    const std::string collection = all.column_text(0);
    record_id id;
    const auto raw = all.column_blob(1);
    if (raw.size() != id.bytes.size()) {
      throw error(make_error_code(storage_errc::corrupt), "a record id in the store is damaged");
    }
    std::copy(raw.begin(), raw.end(), id.bytes.begin());
    impl::meta_row meta;
    meta.clock = decode_field_clock(all.column_blob(2));
    if (all.column_type(3) != SQLITE_NULL) {
      meta.deleted = version{hlc_stamp{static_cast<std::uint64_t>(all.column_int64(3))},
                             static_cast<node_id>(all.column_int64(4))};
    }
    hasher.add(collection, id, impl_->read_state(collection, id, meta));
  }
  return hasher.finish();
}

// ---------------------------------------------------------------- sync support

std::optional<outbox_batch> store::impl::next_batch(std::size_t max_changes) {
  return in_transaction([&]() -> std::optional<outbox_batch> {
    outbox_batch batch;
    const auto pinned = get_state("batch");
    if (!pinned.empty()) {
      // "<uuid> <last seq>": resend exactly the batch that may have reached the server.
      const auto space = pinned.find(' ');
      const auto id = record_id::parse(pinned.substr(0, space));
      if (!id || space == std::string::npos) {
        throw error(make_error_code(storage_errc::corrupt), "the store's pending push batch is damaged");
      }
      batch.id = *id;
      batch.last_seq = static_cast<std::int64_t>(parse_u64(pinned.substr(space + 1)));
      sqlite::statement q(db.get(), "SELECT seq, change FROM cs_outbox WHERE seq <= ? ORDER BY seq");
      q.bind(1, batch.last_seq);
      while (q.step()) batch.changes.push_back(wire::decode_change(q.column_blob(1)));
      return batch;
    }
    sqlite::statement q(db.get(), "SELECT seq, change FROM cs_outbox ORDER BY seq LIMIT ?");
    q.bind(1, static_cast<std::int64_t>(max_changes));
    while (q.step()) {
      batch.last_seq = q.column_int64(0);
      batch.changes.push_back(wire::decode_change(q.column_blob(1)));
    }
    if (batch.changes.empty()) return std::nullopt;
    batch.id = record_id::generate();
    set_state("batch", batch.id.to_string() + " " + std::to_string(batch.last_seq));
    return batch;
  });
}

void store::impl::ack_batch(const batch_id& id) {
  in_transaction([&] {
    const auto pinned = get_state("batch");
    if (pinned.substr(0, 36) != id.to_string()) {
      throw error(make_error_code(protocol_errc::unexpected_message),
                  "the server acknowledged a push batch this store did not send");
    }
    const auto last = static_cast<std::int64_t>(parse_u64(pinned.substr(37)));
    sqlite::statement del(db.get(), "DELETE FROM cs_outbox WHERE seq <= ?");
    del.bind(1, last).run();
    sqlite::statement clear(db.get(), "DELETE FROM cs_state WHERE key='batch'");
    clear.run();
  });
}

std::size_t store::impl::apply(const change& c) {
  clock.observe(c.ver.stamp);
  clock_dirty = true;
  auto meta = load_meta(c.collection, c.id);
  const bool known_record = meta.has_value();
  if (!meta) meta.emplace();
  // Merge on versions only: values are not needed to decide who wins.
  record_state state;
  state.deleted = meta->deleted;
  for (const auto& [name, entry] : meta->clock) state.fields.emplace(name, field_state{value{}, entry.ver});
  const auto outcome = merge(state, c);
  if (c.kind == change_kind::remove) {
    if (outcome.deleted_now && known_record) delete_values(c.collection, c.id);
    if (!known_record || outcome.deleted_now || meta->deleted != state.deleted) {
      save_meta(c.collection, c.id, meta_row{{}, state.deleted});
    }
    return 0;
  }
  if (outcome.updated.empty()) return outcome.superseded;
  const table_statements* t = table(c.collection);
  std::vector<const field_write*> values;
  values.reserve(outcome.updated.size());
  for (const auto& f : c.fields) {
    if (std::find(outcome.updated.begin(), outcome.updated.end(), f.name) == outcome.updated.end()) continue;
    // Undeclared fields, and values of another type than declared, live in cs_extra so
    // that nothing received is dropped or converted by column affinity.
    const field_def* d = t ? t->def->find(f.name) : nullptr;
    const bool extra = !d || (kind_of(f.val) != value_kind::null && kind_of(f.val) != d->type);
    auto& entry = meta->clock[f.name];
    if (entry.extra && !extra) {
      sqlite::reset_guard g(*extra_delete_field);
      extra_delete_field->bind(1, std::string_view(c.collection)).bind(2, id_bytes(c.id)).bind(3, std::string_view(f.name)).run();
    }
    entry = field_clock_entry{c.ver, extra};
    values.push_back(&f);
  }
  write_values(c.collection, c.id, values, meta->clock);
  save_meta(c.collection, c.id, *meta);
  return outcome.superseded;
}

std::size_t store::impl::apply_page(const wire::changes_page& page) {
  return in_transaction([&] {
    std::size_t conflicts = 0;
    for (const auto& item : page.items) conflicts += apply(item.body);
    set_state("cursor", std::to_string(page.next_cursor));
    return conflicts;
  });
}

}  // namespace caresync
