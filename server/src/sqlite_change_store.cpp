// The SQLite change log: the default change_store (see change_store.hpp).

#include <caresync/server/change_store.hpp>

#include "sqlite.hpp"

#include <caresync/protocol/errors.hpp>
#include <caresync/protocol/hlc.hpp>

#include <algorithm>
#include <filesystem>
#include <mutex>
#include <optional>

namespace caresync::server {

namespace {

// PRAGMA application_id 'CSYS' marks a server store; user_version is its format.
const sqlite::file_identity k_identity{0x43535953, 1, "a caresync server database",
                                       "point database_file at the server's own file",
                                       "upgrade this server"};

class sqlite_change_store final : public change_store {
 public:
  explicit sqlite_change_store(const std::string& path) {
    // WAL with synchronous=FULL: a commit is on disk before the push is acknowledged,
    // so an acknowledged change survives a crash and a power cut (docs/protocol.md).
    db_ = sqlite::open(path, k_identity, "FULL");
    {
      sqlite::transaction tx(db_.get());
      sqlite::claim(db_.get(), k_identity);
      sqlite::exec(db_.get(),
                   "CREATE TABLE IF NOT EXISTS changes(seq INTEGER PRIMARY KEY AUTOINCREMENT, device TEXT NOT NULL,"
                   " node INTEGER NOT NULL, collection TEXT NOT NULL, record_id BLOB NOT NULL, stamp INTEGER NOT NULL,"
                   " change BLOB NOT NULL, received_ms INTEGER NOT NULL);"
                   "CREATE TABLE IF NOT EXISTS batches(device TEXT NOT NULL, batch_id BLOB NOT NULL,"
                   " accepted INTEGER NOT NULL, first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL,"
                   " PRIMARY KEY(device, batch_id)) WITHOUT ROWID;"
                   // Changes of a batch the server did not store, and why (no values).
                   // Fleet health: the latest each device reported (no record contents).
                   "CREATE TABLE IF NOT EXISTS device_health(device TEXT PRIMARY KEY NOT NULL, app_version TEXT NOT NULL,"
                   " outbox INTEGER NOT NULL, quarantined INTEGER NOT NULL, last_seen_ms INTEGER NOT NULL,"
                   " last_ok_ms INTEGER NOT NULL, last_outcome TEXT NOT NULL) WITHOUT ROWID;"
                   // Enrollment (docs/security.md): codes and tokens by their SHA-256 only.
                   "CREATE TABLE IF NOT EXISTS users(user_id TEXT PRIMARY KEY NOT NULL, name TEXT NOT NULL,"
                   " role TEXT NOT NULL, org_unit TEXT NOT NULL, created_ms INTEGER NOT NULL) WITHOUT ROWID;"
                   "CREATE TABLE IF NOT EXISTS enrollments(code_sha256 TEXT PRIMARY KEY NOT NULL, user_id TEXT NOT NULL,"
                   " expires_ms INTEGER NOT NULL, used_ms INTEGER, device_id TEXT) WITHOUT ROWID;"
                   "CREATE TABLE IF NOT EXISTS enrolled_devices(device_id TEXT PRIMARY KEY NOT NULL, user_id TEXT NOT NULL,"
                   " token_sha256 TEXT NOT NULL, enrolled_ms INTEGER NOT NULL, revoked_ms INTEGER NOT NULL DEFAULT 0,"
                   " told_to_wipe_ms INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;"
                   "CREATE TABLE IF NOT EXISTS refusals(device TEXT NOT NULL, batch_id BLOB NOT NULL,"
                   " idx INTEGER NOT NULL, code INTEGER NOT NULL, reason TEXT NOT NULL,"
                   " PRIMARY KEY(device, batch_id, idx)) WITHOUT ROWID;");
      // Added with protocol version 3: stores made before lack the column.
      sqlite::statement has_conflicts(db_.get(), "SELECT 1 FROM pragma_table_info('device_health') WHERE name='open_conflicts'");
      if (!has_conflicts.step()) {
        sqlite::exec(db_.get(), "ALTER TABLE device_health ADD COLUMN open_conflicts INTEGER NOT NULL DEFAULT 0");
      }
      tx.commit();
    }
    // A second connection for long reads (a priority phase reads the log up to its
    // position): in WAL mode it reads a snapshot while pushes and pulls go on.
    reader_ = sqlite::open(path, k_identity, "FULL");
    find_batch_.emplace(db_.get(), "SELECT accepted, first_seq, last_seq FROM batches WHERE device=? AND batch_id=?");
    insert_change_.emplace(db_.get(),
                           "INSERT INTO changes(device, node, collection, record_id, stamp, change, received_ms)"
                           " VALUES(?,?,?,?,?,?,?)");
    insert_batch_.emplace(db_.get(), "INSERT INTO batches(device, batch_id, accepted, first_seq, last_seq) VALUES(?,?,?,?,?)");
    find_refusals_.emplace(db_.get(), "SELECT idx, code, reason FROM refusals WHERE device=? AND batch_id=? ORDER BY idx");
    insert_refusal_.emplace(db_.get(), "INSERT INTO refusals(device, batch_id, idx, code, reason) VALUES(?,?,?,?,?)");
    page_.emplace(db_.get(), "SELECT seq, node, change FROM changes WHERE seq > ? ORDER BY seq LIMIT ?");
    head_.emplace(db_.get(), "SELECT coalesce(max(seq), 0) FROM changes");
    by_seq_.emplace(db_.get(), "SELECT change FROM changes WHERE seq=?");
    // Page item bytes (wire::page_item_bytes): the seq as a uvarint, then the change
    // less its marker byte; exact for seqs below 2^35.
    extent_.emplace(reader_.get(),
                    "SELECT count(*), coalesce(sum(length(change) - 1 + CASE WHEN seq < 128 THEN 1 WHEN seq < 16384 THEN 2"
                    " WHEN seq < 2097152 THEN 3 WHEN seq < 268435456 THEN 4 ELSE 5 END), 0)"
                    " FROM changes WHERE seq > ? AND node != ?");
  }

  push_outcome append(std::string_view device, const batch_id& batch, std::span<const change> changes,
                      std::span<const wire::refusal> refused) override {
    const std::lock_guard lock(mutex_);
    const std::span<const std::uint8_t> batch_bytes(batch.bytes);
    sqlite::transaction tx(db_.get());
    {
      sqlite::reset_guard g(*find_batch_);
      find_batch_->bind(1, device).bind(2, batch_bytes);
      if (find_batch_->step()) {
        push_outcome stored{static_cast<std::uint32_t>(find_batch_->column_int64(0)),
                            static_cast<std::uint64_t>(find_batch_->column_int64(1)),
                            static_cast<std::uint64_t>(find_batch_->column_int64(2)), true, {}};
        sqlite::reset_guard gr(*find_refusals_);
        find_refusals_->bind(1, device).bind(2, batch_bytes);
        while (find_refusals_->step()) {
          stored.refused.push_back(wire::refusal{static_cast<std::uint32_t>(find_refusals_->column_int64(0)),
                                                 static_cast<std::uint16_t>(find_refusals_->column_int64(1)),
                                                 find_refusals_->column_text(2)});
        }
        return stored;
      }
    }
    push_outcome out;
    out.refused.assign(refused.begin(), refused.end());
    const auto now = static_cast<std::int64_t>(system_time_ms());
    auto next_refused = refused.begin();
    for (std::size_t i = 0; i < changes.size(); ++i) {
      if (next_refused != refused.end() && next_refused->index == i) {
        // A server_only refusal names fields taken out of the change; the rest is stored.
        const bool stored_without = next_refused->code == static_cast<std::uint16_t>(protocol_errc::server_only);
        ++next_refused;
        if (!stored_without) continue;
      }
      const auto& c = changes[i];
      const auto encoded = wire::encode_change(c);
      sqlite::reset_guard g(*insert_change_);
      insert_change_->bind(1, device)
          .bind(2, static_cast<std::int64_t>(c.ver.node))
          .bind(3, std::string_view(c.collection))
          .bind(4, std::span<const std::uint8_t>(c.id.bytes))
          .bind(5, static_cast<std::int64_t>(c.ver.stamp.value))
          .bind(6, std::span<const std::uint8_t>(encoded))
          .bind(7, now)
          .run();
      const auto seq = static_cast<std::uint64_t>(sqlite3_last_insert_rowid(db_.get()));
      if (out.first_seq == 0) out.first_seq = seq;
      out.last_seq = seq;
      ++out.accepted;
    }
    {
      sqlite::reset_guard g(*insert_batch_);
      insert_batch_->bind(1, device)
          .bind(2, batch_bytes)
          .bind(3, static_cast<std::int64_t>(out.accepted))
          .bind(4, static_cast<std::int64_t>(out.first_seq))
          .bind(5, static_cast<std::int64_t>(out.last_seq))
          .run();
    }
    for (const auto& f : refused) {
      sqlite::reset_guard g(*insert_refusal_);
      insert_refusal_->bind(1, device)
          .bind(2, batch_bytes)
          .bind(3, static_cast<std::int64_t>(f.index))
          .bind(4, static_cast<std::int64_t>(f.code))
          .bind(5, std::string_view(f.reason))
          .run();
    }
    tx.commit();
    return out;
  }

  using change_store::read_page;
  page_position read_page(std::uint64_t cursor, node_id exclude_node, std::span<const std::uint64_t> skip,
                          std::uint32_t max_changes, std::uint32_t max_bytes, wire::changes_page_builder& page) override {
    const std::lock_guard lock(mutex_);
    max_changes = std::max<std::uint32_t>(max_changes, 1);  // a page holds a change when one is there
    // Rows skipped as the puller's own still cost a scan: bound the rows looked at.
    const std::int64_t scan_limit = static_cast<std::int64_t>(max_changes) * 4 + 1000;
    page_position pos{cursor, false};
    sqlite::reset_guard g(*page_);
    page_->bind(1, static_cast<std::int64_t>(cursor)).bind(2, scan_limit + 1);
    std::int64_t scanned = 0;
    auto next_skip = std::upper_bound(skip.begin(), skip.end(), cursor);
    while (page_->step()) {
      // Reaching here means a row above next_cursor exists: `more` if we stop at it.
      if (scanned == scan_limit) {
        pos.more = true;
        break;
      }
      const auto seq = static_cast<std::uint64_t>(page_->column_int64(0));
      while (next_skip != skip.end() && *next_skip < seq) ++next_skip;
      const bool skipped = next_skip != skip.end() && *next_skip == seq;
      if (!skipped && static_cast<node_id>(page_->column_int64(1)) != exclude_node) {
        const auto stored = page_->column_blob(2);
        // The byte bound is checked before adding, so a page exceeds it only when its
        // first change alone does (docs/protocol.md, "Pull").
        if (page.count() >= max_changes ||
            (page.count() > 0 && page.size_bytes() + wire::page_item_bytes(seq, stored) > max_bytes)) {
          pos.more = true;
          break;
        }
        page.add(seq, stored);
      }
      ++scanned;
      pos.next_cursor = seq;
    }
    return pos;
  }

  std::vector<prime_item> prime_changes(const wire::prime_spec& spec, node_id exclude_node) override {
    const std::lock_guard lock(reader_mutex_);
    // The tiers' collections, each once, as bound parameters.
    std::vector<std::string_view> collections;
    for (const auto& t : spec.tiers) {
      if (std::find(collections.begin(), collections.end(), t.collection) == collections.end()) {
        collections.push_back(t.collection);
      }
    }
    std::string sql = "SELECT seq, node, change FROM changes WHERE seq <= ? AND collection IN (";
    for (std::size_t i = 0; i < collections.size(); ++i) sql += i ? ",?" : "?";
    sql += ") ORDER BY seq";
    sqlite::statement q(reader_.get(), sql);
    q.bind(1, static_cast<std::int64_t>(std::min<std::uint64_t>(spec.until, INT64_MAX)));
    for (std::size_t i = 0; i < collections.size(); ++i) q.bind(static_cast<int>(i + 2), collections[i]);
    struct record {
      record_state state;
      std::vector<prime_item> items;  // its changes to send, by seq
      bool taken = false;
    };
    std::map<record_key, record> records;
    while (q.step()) {
      const auto seq = static_cast<std::uint64_t>(q.column_int64(0));
      const auto stored = q.column_blob(2);
      const auto c = wire::decode_change(stored);
      auto& r = records[{c.collection, c.id}];
      merge(r.state, c);
      if (static_cast<node_id>(q.column_int64(1)) != exclude_node) {
        r.items.push_back(prime_item{seq, wire::page_item_bytes(seq, stored)});
      }
    }
    std::vector<prime_item> out;
    for (const auto& tier : spec.tiers) {
      const auto first = out.size();
      for (auto it = records.lower_bound({tier.collection, record_id{}});
           it != records.end() && it->first.first == tier.collection; ++it) {
        if (it->second.taken || !matches(tier, it->second.state)) continue;
        it->second.taken = true;
        out.insert(out.end(), it->second.items.begin(), it->second.items.end());
      }
      std::sort(out.begin() + static_cast<std::ptrdiff_t>(first), out.end(),
                [](const prime_item& a, const prime_item& b) { return a.seq < b.seq; });
    }
    return out;
  }

  void read_changes(std::span<const prime_item> items, wire::changes_page_builder& page) override {
    const std::lock_guard lock(mutex_);
    sqlite::reset_guard g(*by_seq_);
    for (const auto& item : items) {
      by_seq_->reset();
      by_seq_->bind(1, static_cast<std::int64_t>(item.seq));
      if (!by_seq_->step()) {
        throw error(make_error_code(storage_errc::corrupt), "change " + std::to_string(item.seq) + " is missing from the log");
      }
      page.add(item.seq, by_seq_->column_blob(0));
    }
  }

  log_extent extent(std::uint64_t cursor, node_id exclude_node) override {
    const std::lock_guard lock(reader_mutex_);  // a long read for a new device: not in the way of pushes
    sqlite::reset_guard g(*extent_);
    extent_->bind(1, static_cast<std::int64_t>(std::min<std::uint64_t>(cursor, INT64_MAX)))
        .bind(2, static_cast<std::int64_t>(exclude_node));
    extent_->step();
    return log_extent{static_cast<std::uint64_t>(extent_->column_int64(0)),
                      static_cast<std::uint64_t>(extent_->column_int64(1))};
  }

  std::uint64_t head() override {
    const std::lock_guard lock(mutex_);
    sqlite::reset_guard g(*head_);
    head_->step();
    return static_cast<std::uint64_t>(head_->column_int64(0));
  }

  void record_device(const device_health& h) override {
    const std::lock_guard lock(mutex_);
    sqlite::statement up(db_.get(),
                         "INSERT INTO device_health(device, app_version, outbox, quarantined, last_seen_ms, last_ok_ms,"
                         " last_outcome, open_conflicts) VALUES(?,?,?,?,?,?,?,?) ON CONFLICT(device) DO UPDATE SET"
                         " app_version=excluded.app_version, outbox=excluded.outbox, quarantined=excluded.quarantined,"
                         " open_conflicts=excluded.open_conflicts,"
                         " last_seen_ms=excluded.last_seen_ms, last_outcome=excluded.last_outcome,"
                         " last_ok_ms=CASE WHEN excluded.last_ok_ms > 0 THEN excluded.last_ok_ms ELSE last_ok_ms END");
    up.bind(1, std::string_view(h.device))
        .bind(2, std::string_view(h.app_version))
        .bind(3, static_cast<std::int64_t>(std::min<std::uint64_t>(h.outbox, INT64_MAX)))
        .bind(4, static_cast<std::int64_t>(std::min<std::uint64_t>(h.quarantined, INT64_MAX)))
        .bind(5, static_cast<std::int64_t>(h.last_seen_ms))
        .bind(6, static_cast<std::int64_t>(h.last_ok_ms))
        .bind(7, std::string_view(h.last_outcome))
        .bind(8, static_cast<std::int64_t>(std::min<std::uint64_t>(h.open_conflicts, INT64_MAX)))
        .run();
  }

  std::vector<device_health> fleet() override {
    const std::lock_guard lock(mutex_);
    std::vector<device_health> out;
    sqlite::statement q(db_.get(),
                        "SELECT device, app_version, outbox, quarantined, last_seen_ms, last_ok_ms, last_outcome,"
                        " open_conflicts FROM device_health ORDER BY device");
    while (q.step()) {
      out.push_back(device_health{q.column_text(0), q.column_text(1), static_cast<std::uint64_t>(q.column_int64(2)),
                                  static_cast<std::uint64_t>(q.column_int64(3)), static_cast<std::uint64_t>(q.column_int64(4)),
                                  static_cast<std::uint64_t>(q.column_int64(5)), q.column_text(6),
                                  static_cast<std::uint64_t>(q.column_int64(7))});
    }
    return out;
  }

  std::vector<history_entry> history(std::string_view collection, const record_id& id) override {
    const std::lock_guard lock(mutex_);
    std::vector<history_entry> out;
    sqlite::statement q(db_.get(),
                        "SELECT seq, device, received_ms, change FROM changes WHERE collection=? AND record_id=? ORDER BY seq");
    q.bind(1, collection).bind(2, std::span<const std::uint8_t>(id.bytes));
    while (q.step()) {
      history_entry& e = out.emplace_back();
      e.seq = static_cast<std::uint64_t>(q.column_int64(0));
      e.device = q.column_text(1);
      e.received_ms = static_cast<std::uint64_t>(q.column_int64(2));
      e.body = wire::decode_change(q.column_blob(3));
    }
    return out;
  }

  void add_user(const user_record& u) override {
    const std::lock_guard lock(mutex_);
    sqlite::statement q(db_.get(), "INSERT INTO users(user_id, name, role, org_unit, created_ms) VALUES(?,?,?,?,?)");
    q.bind(1, std::string_view(u.user_id))
        .bind(2, std::string_view(u.name))
        .bind(3, std::string_view(u.role))
        .bind(4, std::string_view(u.org_unit))
        .bind(5, static_cast<std::int64_t>(u.created_ms));
    q.run();
  }

  std::optional<user_record> find_user(std::string_view user_id) override {
    const std::lock_guard lock(mutex_);
    return find_user_locked(user_id);
  }

  void add_enrollment(std::string_view code_sha256, std::string_view user_id, std::uint64_t expires_ms) override {
    const std::lock_guard lock(mutex_);
    sqlite::statement q(db_.get(), "INSERT INTO enrollments(code_sha256, user_id, expires_ms) VALUES(?,?,?)");
    q.bind(1, code_sha256).bind(2, user_id).bind(3, static_cast<std::int64_t>(expires_ms));
    q.run();
  }

  redemption redeem_enrollment(std::string_view code_sha256, std::uint64_t now_ms, device_record device) override {
    const std::lock_guard lock(mutex_);
    sqlite::transaction tx(db_.get());
    sqlite::statement find(db_.get(), "SELECT user_id, expires_ms, used_ms FROM enrollments WHERE code_sha256=?");
    find.bind(1, code_sha256);
    redemption r;
    if (!find.step()) return r;
    if (find.column_type(2) != SQLITE_NULL) {
      r.result = redemption::outcome::used;
      return r;
    }
    if (static_cast<std::uint64_t>(find.column_int64(1)) <= now_ms) {
      r.result = redemption::outcome::expired;
      return r;
    }
    device.user_id = find.column_text(0);
    auto user = find_user_locked(device.user_id);
    if (!user) throw error(make_error_code(storage_errc::corrupt), "an enrollment code names a user who does not exist");
    sqlite::statement use(db_.get(), "UPDATE enrollments SET used_ms=?, device_id=? WHERE code_sha256=?");
    use.bind(1, static_cast<std::int64_t>(now_ms)).bind(2, std::string_view(device.device_id)).bind(3, code_sha256);
    use.run();
    sqlite::statement add(db_.get(),
                          "INSERT INTO enrolled_devices(device_id, user_id, token_sha256, enrolled_ms) VALUES(?,?,?,?)");
    add.bind(1, std::string_view(device.device_id))
        .bind(2, std::string_view(device.user_id))
        .bind(3, std::string_view(device.token_sha256))
        .bind(4, static_cast<std::int64_t>(now_ms));
    add.run();
    tx.commit();
    r.result = redemption::outcome::enrolled;
    r.user = std::move(*user);
    return r;
  }

  std::optional<device_record> find_device(std::string_view device_id) override {
    const std::lock_guard lock(mutex_);
    sqlite::statement q(db_.get(),
                        "SELECT device_id, user_id, token_sha256, enrolled_ms, revoked_ms, told_to_wipe_ms"
                        " FROM enrolled_devices WHERE device_id=?");
    q.bind(1, device_id);
    if (!q.step()) return std::nullopt;
    return device_at(q);
  }

  std::vector<device_record> devices() override {
    const std::lock_guard lock(mutex_);
    sqlite::statement q(db_.get(),
                        "SELECT device_id, user_id, token_sha256, enrolled_ms, revoked_ms, told_to_wipe_ms"
                        " FROM enrolled_devices ORDER BY device_id");
    std::vector<device_record> out;
    while (q.step()) out.push_back(device_at(q));
    return out;
  }

  bool revoke_device(std::string_view device_id, std::uint64_t now_ms) override {
    const std::lock_guard lock(mutex_);
    sqlite::statement q(db_.get(),
                        "UPDATE enrolled_devices SET revoked_ms = CASE WHEN revoked_ms = 0 THEN ? ELSE revoked_ms END"
                        " WHERE device_id=?");
    q.bind(1, static_cast<std::int64_t>(now_ms)).bind(2, device_id);
    q.run();
    return sqlite3_changes(db_.get()) > 0;
  }

  void told_to_wipe(std::string_view device_id, std::uint64_t now_ms) override {
    const std::lock_guard lock(mutex_);
    sqlite::statement q(db_.get(), "UPDATE enrolled_devices SET told_to_wipe_ms=? WHERE device_id=?");
    q.bind(1, static_cast<std::int64_t>(now_ms)).bind(2, device_id);
    q.run();
  }

  std::map<record_key, record_state> materialize() override {
    const std::lock_guard lock(mutex_);
    std::map<record_key, record_state> state;
    sqlite::statement all(db_.get(), "SELECT change FROM changes ORDER BY seq");
    while (all.step()) {
      const auto c = wire::decode_change(all.column_blob(0));
      merge(state[{c.collection, c.id}], c);
    }
    return state;
  }

 private:
  std::optional<user_record> find_user_locked(std::string_view user_id) {
    sqlite::statement q(db_.get(), "SELECT user_id, name, role, org_unit, created_ms FROM users WHERE user_id=?");
    q.bind(1, user_id);
    if (!q.step()) return std::nullopt;
    return user_record{q.column_text(0), q.column_text(1), q.column_text(2), q.column_text(3),
                       static_cast<std::uint64_t>(q.column_int64(4))};
  }

  static device_record device_at(sqlite::statement& q) {
    return device_record{q.column_text(0), q.column_text(1), q.column_text(2), static_cast<std::uint64_t>(q.column_int64(3)),
                         static_cast<std::uint64_t>(q.column_int64(4)), static_cast<std::uint64_t>(q.column_int64(5))};
  }

  std::mutex mutex_;  // guards db_ and every statement: one SQLite connection, one user at a time
  sqlite::db_handle db_;
  std::mutex reader_mutex_;  // guards reader_ and extent_: long reads (a priority phase, a log's extent)
  sqlite::db_handle reader_;
  std::optional<sqlite::statement> find_batch_, insert_change_, insert_batch_, find_refusals_, insert_refusal_, page_, head_, by_seq_,
      extent_;
};

}  // namespace

std::unique_ptr<change_store> open_sqlite_change_store(const std::string& path) {
  return std::make_unique<sqlite_change_store>(path);
}

backup_result backup_sqlite_store(const std::string& source, const std::string& destination) {
  if (!std::filesystem::exists(source)) {
    throw error(make_error_code(storage_errc::open_failed), "no server database at '" + source + "'");
  }
  if (std::filesystem::exists(destination)) {
    throw error(make_error_code(storage_errc::invalid_argument),
                "backup destination '" + destination + "' exists; name a new file");
  }
  // Opened through the identity check, so only a caresync server store is copied.
  auto src = sqlite::open(source, k_identity, "FULL");
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(destination.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  sqlite::db_handle dst(raw);
  if (rc != SQLITE_OK) {
    throw error(make_error_code(storage_errc::open_failed),
                "cannot create '" + destination + "': " + (raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc)));
  }
  sqlite3_backup* b = sqlite3_backup_init(dst.get(), "main", src.get(), "main");
  if (!b) {
    throw error(make_error_code(storage_errc::io_failed), "cannot start the backup: " + std::string(sqlite3_errmsg(dst.get())));
  }
  // All pages in one step: one read transaction, so one consistent snapshot. A writer
  // holding a lock at that moment only delays it.
  int step = SQLITE_OK;
  for (int attempt = 0; attempt < 100; ++attempt) {
    step = sqlite3_backup_step(b, -1);
    if (step != SQLITE_BUSY && step != SQLITE_LOCKED) break;
    sqlite3_sleep(50);
  }
  const int finished = sqlite3_backup_finish(b);
  if (step != SQLITE_DONE || finished != SQLITE_OK) {
    dst.reset();
    std::error_code ignored;
    std::filesystem::remove(destination, ignored);
    throw error(sqlite::to_error_code(step != SQLITE_DONE ? step : finished),
                "the backup of '" + source + "' failed: " + sqlite3_errstr(step != SQLITE_DONE ? step : finished));
  }
  sqlite::statement check(dst.get(), "PRAGMA integrity_check");
  check.step();
  if (const auto verdict = check.column_text(0); verdict != "ok") {
    throw error(make_error_code(storage_errc::corrupt), "the backup '" + destination + "' failed integrity_check: " + verdict);
  }
  sqlite::statement head(dst.get(), "SELECT coalesce(max(seq), 0) FROM changes");
  head.step();
  backup_result out;
  out.log_head = static_cast<std::uint64_t>(head.column_int64(0));
  out.bytes = static_cast<std::uint64_t>(std::filesystem::file_size(destination));
  return out;
}

}  // namespace caresync::server
