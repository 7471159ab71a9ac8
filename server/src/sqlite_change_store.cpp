// The SQLite change log: the default change_store (see change_store.hpp).

#include <caresync/server/change_store.hpp>

#include "auth_journal.hpp"
#include "log.hpp"
#include "page_receipts.hpp"
#include "refusal_code.hpp"
#include "sqlite.hpp"
#include "wal_checkpointer.hpp"

#include <caresync/protocol/errors.hpp>
#include <caresync/protocol/hlc.hpp>

#include <algorithm>
#include <filesystem>
#include <mutex>
#include <optional>
#include <set>
#include <tuple>
#include <vector>

namespace caresync::server {

namespace {

// PRAGMA application_id 'CSYS' marks a server store; user_version is its format.
// Format 2: log_totals and audit.records (docs/operations.md, "Upgrade"); a format-1
// file is brought up to it at open.
const sqlite::file_identity k_identity{0x43535953, 2, "a caresync server database",
                                       "point database_file at the server's own file",
                                       "upgrade this server"};

// A stored change's bytes as a page item (wire::page_item_bytes), in SQL: the seq as a
// uvarint, then the change less its marker byte; exact for seqs below 2^35.
constexpr const char* k_item_bytes_sql =
    "length(change) - 1 + CASE WHEN seq < 128 THEN 1 WHEN seq < 16384 THEN 2"
    " WHEN seq < 2097152 THEN 3 WHEN seq < 268435456 THEN 4 ELSE 5 END";

// Marks server_state's unit_fields as written by a build that indexes record units when
// they are read (catch_up_units), not at every push.
constexpr const char* k_deferred_units_mark = "indexed-on-read:";

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
                   " PRIMARY KEY(device, batch_id, idx)) WITHOUT ROWID;"
                   // Scopes (docs/security.md, "Scopes and roles"). The org unit tree.
                   "CREATE TABLE IF NOT EXISTS org_units(id TEXT PRIMARY KEY NOT NULL, parent TEXT NOT NULL,"
                   " name TEXT NOT NULL) WITHOUT ROWID;"
                   // The current value of each unit field of each record: its newest write
                   // by version (unit NULL: null or not a text, placing nowhere).
                   "CREATE TABLE IF NOT EXISTS record_units(collection TEXT NOT NULL, record_id BLOB NOT NULL,"
                   " field TEXT NOT NULL, unit TEXT, stamp INTEGER NOT NULL, node INTEGER NOT NULL,"
                   " PRIMARY KEY(collection, record_id, field)) WITHOUT ROWID;"
                   // (No index by unit: only a scope change reads by unit, and it reads the
                   // collection's rows once; every push would pay for the index.)
                   // Per scoped device: the node and scope it was last served with, and the
                   // last scope epoch given out.
                   "CREATE TABLE IF NOT EXISTS device_scope(device TEXT PRIMARY KEY NOT NULL, node INTEGER NOT NULL,"
                   " fingerprint TEXT NOT NULL, epoch INTEGER NOT NULL, reconcile INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;"
                   // The records a scoped device holds; changes up to `through` were sent
                   // with a backfill (later pages leave them out).
                   "CREATE TABLE IF NOT EXISTS device_records(device TEXT NOT NULL, collection TEXT NOT NULL,"
                   " record_id BLOB NOT NULL, through INTEGER NOT NULL, PRIMARY KEY(device, collection, record_id))"
                   " WITHOUT ROWID;"
                   // Purges (action 1) and backfills (2) to send (epoch 0) or sent in the
                   // page of that epoch and not yet confirmed.
                   "CREATE TABLE IF NOT EXISTS scope_queue(device TEXT NOT NULL, collection TEXT NOT NULL,"
                   " record_id BLOB NOT NULL, action INTEGER NOT NULL, epoch INTEGER NOT NULL,"
                   " through INTEGER NOT NULL DEFAULT 0,"  // a purge's: what the device held, if it was not applied
                   " PRIMARY KEY(device, collection, record_id)) WITHOUT ROWID;"
                   // Who pushed and received which record, by id (docs/operations.md, "Audit").
                   // A row names one record, or (`records` not null) the records of one
                   // collection a page sent: k_receipt_bytes each, read back one by one.
                   "CREATE TABLE IF NOT EXISTS audit(at_ms INTEGER NOT NULL, device TEXT NOT NULL, user TEXT NOT NULL,"
                   " action TEXT NOT NULL, collection TEXT NOT NULL, record_id BLOB NOT NULL, seq INTEGER NOT NULL,"
                   " records BLOB);"
                   "CREATE INDEX IF NOT EXISTS audit_by_time ON audit(at_ms);"
                   "CREATE INDEX IF NOT EXISTS changes_by_record ON changes(collection, record_id, seq);"
                   // Per writing node: its changes in the log, their bytes as page items, and
                   // the last seq counted; kept by append, so a new device's extent(0, node)
                   // needs no scan of the log.
                   "CREATE TABLE IF NOT EXISTS log_totals(node INTEGER PRIMARY KEY NOT NULL, changes INTEGER NOT NULL,"
                   " bytes INTEGER NOT NULL, through INTEGER NOT NULL);"
                   "CREATE TABLE IF NOT EXISTS server_state(key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL) WITHOUT ROWID;");
      // Added with protocol version 3: stores made before lack the column.
      sqlite::statement has_conflicts(db_.get(), "SELECT 1 FROM pragma_table_info('device_health') WHERE name='open_conflicts'");
      if (!has_conflicts.step()) {
        sqlite::exec(db_.get(), "ALTER TABLE device_health ADD COLUMN open_conflicts INTEGER NOT NULL DEFAULT 0");
      }
      // Receipts by page: stores made before have one row per record, read as they are.
      sqlite::statement has_records(db_.get(), "SELECT 1 FROM pragma_table_info('audit') WHERE name='records'");
      if (!has_records.step()) sqlite::exec(db_.get(), "ALTER TABLE audit ADD COLUMN records BLOB");
      // Added with disable-user and the refusals' reasons: stores made before lack them
      // (an older build reading the file names its columns and ignores these).
      sqlite::statement has_disabled(db_.get(), "SELECT 1 FROM pragma_table_info('users') WHERE name='disabled_ms'");
      if (!has_disabled.step()) sqlite::exec(db_.get(), "ALTER TABLE users ADD COLUMN disabled_ms INTEGER NOT NULL DEFAULT 0");
      sqlite::statement has_reason(db_.get(), "SELECT 1 FROM pragma_table_info('audit') WHERE name='reason'");
      if (!has_reason.step()) sqlite::exec(db_.get(), "ALTER TABLE audit ADD COLUMN reason TEXT NOT NULL DEFAULT ''");
      add_token_columns();
      count_log_totals();
      tx.commit();
    }
    if (path != ":memory:" && !path.empty()) {
      journal_ = std::make_unique<auth_journal>(db_.get(), path);
      if (journal_->replayed() > 0) {
        log::notice("auth_journal_replayed", {{"entries", journal_->replayed()}},
                  "the database was behind its administrative journal (restored from a backup): the users, devices, "
                  "codes and revocations changed since were applied again");
      }
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
    scan_.emplace(db_.get(),
                  "SELECT seq, node, change, collection, record_id FROM changes WHERE seq > ? ORDER BY seq LIMIT ?");
    // A record's first change, by the index on (collection, record_id, seq).
    first_seq_.emplace(db_.get(), "SELECT min(seq) FROM changes WHERE collection=? AND record_id=?");
    units_of_.emplace(db_.get(), "SELECT field, unit, stamp, node FROM record_units WHERE collection=? AND record_id=?");
    // Written only over an older version (stamp, then node, both compared as the unsigned
    // numbers they are: SQLite holds them as signed), so a push needs no read first.
    put_unit_.emplace(db_.get(),
                      "INSERT INTO record_units(collection, record_id, field, unit, stamp, node) VALUES(?,?,?,?,?,?)"
                      " ON CONFLICT(collection, record_id, field) DO UPDATE SET unit=excluded.unit, stamp=excluded.stamp,"
                      " node=excluded.node WHERE"
                      " CASE WHEN (stamp < 0) = (excluded.stamp < 0) THEN stamp < excluded.stamp ELSE excluded.stamp < 0 END"
                      " OR (stamp = excluded.stamp AND"
                      " CASE WHEN (node < 0) = (excluded.node < 0) THEN node < excluded.node ELSE excluded.node < 0 END)");
    held_.emplace(db_.get(), "SELECT through FROM device_records WHERE device=? AND collection=? AND record_id=?");
    hold_.emplace(db_.get(), "INSERT OR REPLACE INTO device_records(device, collection, record_id, through) VALUES(?,?,?,?)");
    hold_if_new_.emplace(db_.get(),
                         "INSERT OR IGNORE INTO device_records(device, collection, record_id, through) VALUES(?,?,?,0)");
    unhold_.emplace(db_.get(), "DELETE FROM device_records WHERE device=? AND collection=? AND record_id=?");
    enqueue_.emplace(db_.get(),
                     "INSERT OR REPLACE INTO scope_queue(device, collection, record_id, action, epoch, through)"
                     " VALUES(?,?,?,?,?,?)");
    history_upto_.emplace(db_.get(),
                          "SELECT seq, change FROM changes WHERE collection=? AND record_id=? AND seq <= ? ORDER BY seq");
    insert_audit_.emplace(db_.get(),
                          "INSERT INTO audit(at_ms, device, user, action, collection, record_id, seq, reason)"
                          " VALUES(?,?,?,?,?,?,?,?)");
    insert_receipts_.emplace(db_.get(),
                             "INSERT INTO audit(at_ms, device, user, action, collection, record_id, seq, records)"
                             " VALUES(?,?,?,'receive',?,x'',0,?)");
    head_.emplace(db_.get(), "SELECT coalesce(max(seq), 0) FROM changes");
    by_seq_.emplace(db_.get(), "SELECT change FROM changes WHERE seq=?");
    extent_.emplace(reader_.get(), std::string("SELECT count(*), coalesce(sum(") + k_item_bytes_sql +
                                       "), 0) FROM changes WHERE seq > ? AND node != ?");
    whole_extent_.emplace(reader_.get(),
                          "SELECT coalesce(sum(changes), 0), coalesce(sum(bytes), 0) FROM log_totals WHERE node != ?");
    add_totals_.emplace(db_.get(),
                        "INSERT INTO log_totals(node, changes, bytes, through) VALUES(?,?,?,?) ON CONFLICT(node) DO UPDATE"
                        " SET changes = changes + excluded.changes, bytes = bytes + excluded.bytes,"
                        " through = max(through, excluded.through)");
    // Last: its thread checkpoints from now on, and the writer's commits no longer do. At
    // the server's own priority: under load a background one fell behind the sessions.
    checkpointer_ = std::make_unique<sqlite::wal_checkpointer>(path, [](const std::string& failure) {
      if (!failure.empty()) {
        log::error("checkpoint_failed", {{"reason", failure}},
                   "copying the change store's WAL into its database file failed; it is tried again after the next "
                   "commits; check the disk (the WAL grows meanwhile)");
      } else {
        log::info("checkpoint_recovered", {}, "the change store's WAL is checkpointed again");
      }
    });
    checkpointer_->attach(db_.get());
  }

  push_outcome append(std::string_view device, const batch_id& batch, std::span<const change> changes,
                      std::span<const wire::refusal> refused) override {
    return append_as(requester{std::string(device), {}, nullptr}, batch, changes, refused);
  }

  // ------------------------------------------------------------ scopes and audit

  void set_scope_rules(const scope_rules& rules) override {
    const std::lock_guard lock(mutex_);
    unit_fields_ = rules.unit_fields;
    rules_known_ = true;
    const auto fingerprint = unit_fields_fingerprint(rules);
    // Stored marked as this build's: an older build, which trusts the index to follow
    // the whole log, finds another value and rebuilds it.
    const auto marked = k_deferred_units_mark + fingerprint;
    sqlite::transaction tx(db_.get());
    sqlite::statement q(db_.get(), "SELECT value FROM server_state WHERE key='unit_fields'");
    const auto stored = q.step() ? std::optional<std::string>(q.column_text(0)) : std::nullopt;
    q.reset();
    if (stored == marked) return;  // up to date through units_through(); the rest is caught up when read
    if (stored != fingerprint) {
      // New placement rules (or a store made before them): the units of every record,
      // from the whole log, once.
      sqlite::exec(db_.get(), "DELETE FROM record_units");
      sqlite::statement all(db_.get(), "SELECT change FROM changes ORDER BY seq");
      while (all.step()) {
        index_change(wire::decode_change(all.column_blob(0)));
      }
    }
    // (An older build's index with these rules followed the whole log.)
    set_units_through(head_locked());
    sqlite::statement put(db_.get(), "INSERT OR REPLACE INTO server_state(key, value) VALUES('unit_fields', ?)");
    put.bind(1, std::string_view(marked)).run();
    tx.commit();
  }

  using change_store::append_as;
  push_outcome append_as(const requester& who, const batch_id& batch, std::span<const change> changes,
                         std::span<const wire::refusal> refused,
                         std::span<const std::span<const std::uint8_t>> sent) override {
    const std::lock_guard lock(mutex_);
    sqlite::transaction tx(db_.get());
    if (auto stored = stored_outcome(who.device, batch)) return std::move(*stored);
    // A scoped push is checked against the units index, so it must follow the log and
    // this push's changes go in at once; an unscoped one leaves them to the next reader.
    const bool index_now = who.scope != nullptr && rules_known_;
    if (index_now) catch_up_units();
    const auto now = system_time_ms();
    node_totals totals;
    // The refusals of the screen, and those of the scope, in index order.
    std::vector<wire::refusal> all;
    auto next_refused = refused.begin();
    push_outcome out;
    for (std::size_t i = 0; i < changes.size(); ++i) {
      const auto& c = changes[i];
      if (next_refused != refused.end() && next_refused->index == i) {
        // A server_only refusal names fields taken out of the change; the rest is stored.
        const bool stored_without = next_refused->code == static_cast<std::uint16_t>(protocol_errc::server_only);
        all.push_back(*next_refused++);
        if (!stored_without) {
          // A change refused for its collection's name keeps no such name in the audit.
          audit_row(now, who, "refused", is_valid_name(c.collection) ? std::string_view(c.collection) : "(invalid)", c.id, 0,
                    refusal_code(all.back()));
          continue;
        }
      }
      if (who.scope) {
        if (auto why = write_refusal(*who.scope, c); !why.empty()) {
          // Out of scope wins over server_only: one refusal per change.
          if (!all.empty() && all.back().index == i) all.pop_back();
          all.push_back(wire::refusal{static_cast<std::uint32_t>(i), static_cast<std::uint16_t>(protocol_errc::out_of_scope),
                                      std::move(why)});
          audit_row(now, who, "refused", c.collection, c.id, 0, refusal_code(all.back()));
          // The device deletes the record when told its change is refused: if it may
          // see the record, it gets it back, as the server has it, at its next pull.
          unhold(who.device, c.collection, c.id);
          if (sees(*who.scope, c.collection, c.id)) enqueue(who.device, c.collection, c.id, k_backfill, 0);
          continue;
        }
      }
      const auto seq = store_change(who.device, c, i < sent.size() ? sent[i] : std::span<const std::uint8_t>{}, now, totals);
      if (index_now) index_change(c);
      if (who.scope) hold_if_new(who.device, c.collection, c.id);
      // Its audit line is the log's own row: device, collection, record, seq, time.
      if (out.first_seq == 0) out.first_seq = seq;
      out.last_seq = seq;
      ++out.accepted;
    }
    out.refused = std::move(all);
    add_totals(totals);
    if (index_now && out.last_seq != 0) set_units_through(out.last_seq);
    remember_batch(who.device, batch, out);
    tx.commit();
    return out;
  }

  void open_scope(const requester& who, node_id node) override {
    if (!who.scope) return;
    const std::lock_guard lock(mutex_);
    sqlite::transaction tx(db_.get());
    sqlite::statement q(db_.get(), "SELECT node, fingerprint FROM device_scope WHERE device=?");
    q.bind(1, std::string_view(who.device));
    const auto& fingerprint = who.scope->fingerprint;
    if (!q.step()) {
      // Served for the first time: it holds nothing, and the log brings it everything.
      sqlite::statement add(db_.get(), "INSERT INTO device_scope(device, node, fingerprint, epoch) VALUES(?,?,?,0)");
      add.bind(1, std::string_view(who.device)).bind(2, static_cast<std::int64_t>(node)).bind(3, std::string_view(fingerprint)).run();
    } else if (static_cast<node_id>(q.column_int64(0)) != node) {
      // A new store for this device (the app reinstalled): it holds nothing of before.
      forget_device(who.device);
      set_device_scope(who.device, node, fingerprint);
    } else if (q.column_text(1) != fingerprint) {
      // Reconciled at its next pull, once the pull's scope epoch has settled what the
      // device holds.
      set_device_scope(who.device, node, fingerprint);
      sqlite::statement flag(db_.get(), "UPDATE device_scope SET reconcile=1 WHERE device=?");
      flag.bind(1, std::string_view(who.device)).run();
    }
    tx.commit();
  }

  page_position serve_page(const requester& who, const page_request& r, wire::changes_page_builder& page) override {
    const std::lock_guard lock(mutex_);
    sqlite::transaction tx(db_.get());
    const auto now = system_time_ms();
    // What a page that failed left here was never sent: it is not this page's receipt.
    sent_.clear();
    page_position pos{r.cursor, false};
    if (!who.scope) {
      pos = read_page_locked(r.cursor, r.node, r.skip, r.max_changes, r.max_bytes, page, &sent_);
    } else {
      catch_up_units();
      pos = serve_scoped(who, r, page, now);
    }
    flush_receipts(who, now);
    tx.commit();
    return pos;
  }

  std::vector<prime_item> prime_changes_for(const requester& who, const wire::prime_spec& spec, node_id exclude_node) override {
    auto items = prime_changes(spec, exclude_node);
    if (!who.scope) return items;
    const std::lock_guard lock(mutex_);
    {
      sqlite::transaction tx(db_.get());
      catch_up_units();
      tx.commit();
    }
    std::map<record_key, bool> seen;
    std::erase_if(items, [&](const prime_item& item) {
      const record_key key{item.collection, item.id};
      auto it = seen.find(key);
      if (it == seen.end()) it = seen.emplace(key, sees(*who.scope, item.collection, item.id)).first;
      return !it->second;
    });
    return items;
  }

  void mark_sent(const requester& who, std::span<const prime_item> items) override {
    if (items.empty()) return;
    const std::lock_guard lock(mutex_);
    sqlite::transaction tx(db_.get());
    sent_.clear();  // as in serve_page
    for (const auto& item : items) {
      sent_.add(item.collection, item.id, item.seq);
      if (who.scope) hold_if_new(who.device, item.collection, item.id);
    }
    flush_receipts(who, system_time_ms());
    tx.commit();
  }

  void audit(const audit_query& query, const std::function<void(const audit_entry&)>& line) override {
    const std::lock_guard lock(mutex_);
    // Pushes are the log's own rows (append-only, never pruned): not written twice.
    // A row of receipts stands for its records' lines, in the order they were written.
    sqlite::statement q(db_.get(),
                        "SELECT at_ms, device, user, action, collection, record_id, seq, records, reason FROM ("
                        " SELECT at_ms, device, user, action, collection, record_id, seq, records, reason, 1 AS src,"
                        "  rowid AS k FROM audit WHERE at_ms >= ?1 AND at_ms < ?2"
                        " UNION ALL"
                        " SELECT c.received_ms, c.device, coalesce(d.user_id, ''), 'push', c.collection, c.record_id, c.seq,"
                        "  NULL, '', 0, c.seq FROM changes c LEFT JOIN enrolled_devices d ON d.device_id = c.device"
                        "  WHERE c.received_ms >= ?1 AND c.received_ms < ?2)"
                        " WHERE (?3 = '' OR device = ?3) AND (?4 = '' OR user = ?4) ORDER BY at_ms, src, k");
    q.bind(1, static_cast<std::int64_t>(std::min<std::uint64_t>(query.from_ms, INT64_MAX)))
        .bind(2, static_cast<std::int64_t>(std::min<std::uint64_t>(query.to_ms, INT64_MAX)))
        .bind(3, std::string_view(query.device))
        .bind(4, std::string_view(query.user));
    while (q.step()) {
      audit_entry e;
      e.at_ms = static_cast<std::uint64_t>(q.column_int64(0));
      e.device = q.column_text(1);
      e.user = q.column_text(2);
      e.action = q.column_text(3);
      e.collection = q.column_text(4);
      e.reason = q.column_text(8);
      if (q.column_type(7) == SQLITE_NULL) {
        e.record = id_of(q.column_blob(5));
        e.seq = static_cast<std::uint64_t>(q.column_int64(6));
        line(e);
        continue;
      }
      const auto records = q.column_blob(7);
      if (records.size() % k_receipt_bytes != 0) {
        throw error(make_error_code(storage_errc::corrupt),
                    "an audit row of receipts has a length that is not a whole number of records; check the database"
                    " with PRAGMA integrity_check and restore it from a backup if it fails");
      }
      for (std::size_t at = 0; at < records.size(); at += k_receipt_bytes) {
        const auto receipt = records.subspan(at, k_receipt_bytes);
        e.record = id_of(receipt.first(k_id_bytes));
        e.seq = 0;
        for (const auto b : receipt.subspan(k_id_bytes)) e.seq = e.seq << 8 | b;
        line(e);
      }
    }
  }

  void add_org_unit(const org_unit& unit) override {
    const std::lock_guard lock(mutex_);
    sqlite::statement q(db_.get(), "INSERT INTO org_units(id, parent, name) VALUES(?,?,?)");
    q.bind(1, std::string_view(unit.id)).bind(2, std::string_view(unit.parent)).bind(3, std::string_view(unit.name)).run();
  }

  std::vector<org_unit> org_units() override {
    const std::lock_guard lock(mutex_);
    std::vector<org_unit> out;
    sqlite::statement q(db_.get(), "SELECT id, parent, name FROM org_units ORDER BY id");
    while (q.step()) out.push_back(org_unit{q.column_text(0), q.column_text(1), q.column_text(2)});
    return out;
  }

  bool update_user(const user_record& u) override {
    const std::lock_guard lock(mutex_);
    sqlite::statement q(db_.get(), "UPDATE users SET name=?, role=?, org_unit=? WHERE user_id=?");
    q.bind(1, std::string_view(u.name))
        .bind(2, std::string_view(u.role))
        .bind(3, std::string_view(u.org_unit))
        .bind(4, std::string_view(u.user_id))
        .run();
    return sqlite3_changes(db_.get()) > 0;
  }

  using change_store::read_page;
  page_position read_page(std::uint64_t cursor, node_id exclude_node, std::span<const std::uint64_t> skip,
                          std::uint32_t max_changes, std::uint32_t max_bytes, wire::changes_page_builder& page) override {
    const std::lock_guard lock(mutex_);
    return read_page_locked(cursor, exclude_node, skip, max_changes, max_bytes, page, nullptr);
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
        r.items.push_back(prime_item{seq, wire::page_item_bytes(seq, stored), c.collection, c.id});
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
    if (cursor == 0) {
      // The whole log (seqs start at 1): the running totals of the other nodes.
      sqlite::reset_guard g(*whole_extent_);
      whole_extent_->bind(1, static_cast<std::int64_t>(exclude_node));
      whole_extent_->step();
      return log_extent{static_cast<std::uint64_t>(whole_extent_->column_int64(0)),
                        static_cast<std::uint64_t>(whole_extent_->column_int64(1))};
    }
    // A scan of what follows the cursor: it costs what the pull that follows reads.
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

  std::vector<user_record> users() override {
    const std::lock_guard lock(mutex_);
    sqlite::statement q(db_.get(),
                        "SELECT user_id, name, role, org_unit, created_ms, disabled_ms FROM users ORDER BY user_id");
    std::vector<user_record> out;
    while (q.step()) out.push_back(user_at(q));
    return out;
  }

  std::optional<user_disabled> disable_user(std::string_view user_id, std::uint64_t now_ms) override {
    const std::lock_guard lock(mutex_);
    sqlite::transaction tx(db_.get());
    if (!find_user_locked(user_id)) return std::nullopt;
    sqlite::statement mark(db_.get(), "UPDATE users SET disabled_ms=? WHERE user_id=? AND disabled_ms=0");
    mark.bind(1, static_cast<std::int64_t>(now_ms)).bind(2, user_id).run();
    user_disabled out;
    sqlite::statement drop(db_.get(), "DELETE FROM enrollments WHERE user_id=? AND used_ms IS NULL");
    drop.bind(1, user_id).run();
    out.codes_dropped = static_cast<std::size_t>(sqlite3_changes(db_.get()));
    sqlite::statement revoke(db_.get(), "UPDATE enrolled_devices SET revoked_ms=? WHERE user_id=? AND revoked_ms=0");
    revoke.bind(1, static_cast<std::int64_t>(now_ms)).bind(2, user_id).run();
    out.devices_revoked = static_cast<std::size_t>(sqlite3_changes(db_.get()));
    tx.commit();
    return out;
  }

  void add_device(const device_record& d) override {
    const std::lock_guard lock(mutex_);
    sqlite::statement add(db_.get(),
                          "INSERT INTO enrolled_devices(device_id, user_id, token_sha256, enrolled_ms) VALUES(?,?,?,?)");
    add.bind(1, std::string_view(d.device_id))
        .bind(2, std::string_view(d.user_id))
        .bind(3, std::string_view(d.token_sha256))
        .bind(4, static_cast<std::int64_t>(d.enrolled_ms))
        .run();
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
    if (user->disabled_ms != 0) return r;  // her codes died with her account (disable_user)
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

  // ------------------------------------------------------------ token rotation

  std::optional<device_tokens> find_tokens(std::string_view device_id) override {
    const std::lock_guard lock(mutex_);
    // A token issued before rotation existed (0) was issued at enrollment.
    sqlite::statement q(db_.get(),
                        "SELECT token_sha256, pending_sha256,"
                        " CASE WHEN token_issued_ms = 0 THEN enrolled_ms ELSE token_issued_ms END"
                        " FROM enrolled_devices WHERE device_id=?");
    q.bind(1, device_id);
    if (!q.step()) return std::nullopt;
    return device_tokens{q.column_text(0), q.column_text(1), static_cast<std::uint64_t>(q.column_int64(2))};
  }

  bool promote_token(std::string_view device_id, std::string_view pending_sha256, std::uint64_t now_ms) override {
    const std::lock_guard lock(mutex_);
    sqlite::statement q(db_.get(),
                        "UPDATE enrolled_devices SET token_sha256=pending_sha256, pending_sha256='', token_issued_ms=?"
                        " WHERE device_id=? AND pending_sha256=? AND pending_sha256 != ''");
    q.bind(1, static_cast<std::int64_t>(now_ms)).bind(2, device_id).bind(3, pending_sha256);
    q.run();
    return sqlite3_changes(db_.get()) > 0;
  }

  bool set_pending_token(std::string_view device_id, std::string_view current_sha256,
                         std::string_view pending_sha256) override {
    const std::lock_guard lock(mutex_);
    sqlite::statement q(db_.get(), "UPDATE enrolled_devices SET pending_sha256=? WHERE device_id=? AND token_sha256=?");
    q.bind(1, pending_sha256).bind(2, device_id).bind(3, current_sha256);
    q.run();
    return sqlite3_changes(db_.get()) > 0;
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
    sqlite::statement q(db_.get(),
                        "SELECT user_id, name, role, org_unit, created_ms, disabled_ms FROM users WHERE user_id=?");
    q.bind(1, user_id);
    if (!q.step()) return std::nullopt;
    return user_at(q);
  }

  static user_record user_at(sqlite::statement& q) {
    return user_record{q.column_text(0), q.column_text(1), q.column_text(2), q.column_text(3),
                       static_cast<std::uint64_t>(q.column_int64(4)), static_cast<std::uint64_t>(q.column_int64(5))};
  }

  /// Token rotation's columns, added to the device table of a store made before them (and
  /// of a new one, whose CREATE TABLE does not list them). An older build reading the
  /// file ignores them and goes on checking token_sha256, which is always the current
  /// token: no format change is needed.
  void add_token_columns() {
    sqlite::statement has_pending(db_.get(), "SELECT 1 FROM pragma_table_info('enrolled_devices') WHERE name='pending_sha256'");
    if (!has_pending.step()) {
      sqlite::exec(db_.get(), "ALTER TABLE enrolled_devices ADD COLUMN pending_sha256 TEXT NOT NULL DEFAULT ''");
    }
    sqlite::statement has_issued(db_.get(), "SELECT 1 FROM pragma_table_info('enrolled_devices') WHERE name='token_issued_ms'");
    if (!has_issued.step()) {
      sqlite::exec(db_.get(), "ALTER TABLE enrolled_devices ADD COLUMN token_issued_ms INTEGER NOT NULL DEFAULT 0");
    }
  }

  static device_record device_at(sqlite::statement& q) {
    return device_record{q.column_text(0), q.column_text(1), q.column_text(2), static_cast<std::uint64_t>(q.column_int64(3)),
                         static_cast<std::uint64_t>(q.column_int64(4)), static_cast<std::uint64_t>(q.column_int64(5))};
  }

  // ------------------------------------------------------------ helpers (mutex_ held)

  static constexpr std::int64_t k_purge = 1;
  static constexpr std::int64_t k_backfill = 2;

  static constexpr std::size_t k_id_bytes = std::tuple_size_v<decltype(record_id::bytes)>;
  /// A receipt in an audit row: the record's id, then the seq.
  static constexpr std::size_t k_receipt_bytes = k_id_bytes + 8;

  static std::span<const std::uint8_t> id_span(const record_id& id) { return std::span<const std::uint8_t>(id.bytes); }
  static record_id id_of(std::span<const std::uint8_t> blob) {
    record_id id;
    if (blob.size() == id.bytes.size()) std::copy(blob.begin(), blob.end(), id.bytes.begin());
    return id;
  }

  /// The outcome stored for (device, batch), if the batch was stored before.
  std::optional<push_outcome> stored_outcome(std::string_view device, const batch_id& batch) {
    const std::span<const std::uint8_t> batch_bytes(batch.bytes);
    sqlite::reset_guard g(*find_batch_);
    find_batch_->bind(1, device).bind(2, batch_bytes);
    if (!find_batch_->step()) return std::nullopt;
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

  /// What a batch adds to log_totals, per writing node.
  struct node_total {
    log_extent added;
    std::uint64_t through = 0;
  };
  using node_totals = std::map<node_id, node_total>;

  /// Appends `c` to the log and counts it in `totals`; its sequence number. `sent`: its
  /// bytes as the device sent them (no marker byte), or empty to encode it.
  std::uint64_t store_change(std::string_view device, const change& c, std::span<const std::uint8_t> sent,
                             std::uint64_t now, node_totals& totals) {
    if (sent.empty()) {
      encoded_ = wire::encode_change(c);
    } else {
      encoded_.assign(1, std::uint8_t{1});  // the archive's marker byte (little-endian)
      encoded_.insert(encoded_.end(), sent.begin(), sent.end());
    }
    const auto& encoded = encoded_;
    // Bound without copies: everything bound outlives run() (a push's hot path).
    sqlite::reset_guard g(*insert_change_);
    insert_change_->bind_static(1, device)
        .bind(2, static_cast<std::int64_t>(c.ver.node))
        .bind_static(3, std::string_view(c.collection))
        .bind_static(4, id_span(c.id))
        .bind(5, static_cast<std::int64_t>(c.ver.stamp.value))
        .bind_static(6, std::span<const std::uint8_t>(encoded))
        .bind(7, static_cast<std::int64_t>(now))
        .run();
    const auto seq = static_cast<std::uint64_t>(sqlite3_last_insert_rowid(db_.get()));
    auto& total = totals[c.ver.node];
    ++total.added.changes;
    total.added.bytes += wire::page_item_bytes(seq, encoded);
    total.through = seq;
    return seq;
  }

  /// Adds a batch's counts to log_totals (in the batch's transaction): one row per node.
  void add_totals(const node_totals& totals) {
    for (const auto& [node, total] : totals) {
      sqlite::reset_guard g(*add_totals_);
      add_totals_->bind(1, static_cast<std::int64_t>(node))
          .bind(2, static_cast<std::int64_t>(total.added.changes))
          .bind(3, static_cast<std::int64_t>(total.added.bytes))
          .bind(4, static_cast<std::int64_t>(total.through))
          .run();
    }
  }

  /// At open: counts log_totals from the log when they do not cover it (a store made
  /// before them, or appended to by an older build since), in one read of the log.
  void count_log_totals() {
    sqlite::statement current(db_.get(),
                              "SELECT (SELECT coalesce(max(through), 0) FROM log_totals) = (SELECT coalesce(max(seq), 0) FROM changes)");
    if (current.step() && current.column_int64(0) == 1) return;
    sqlite::exec(db_.get(), "DELETE FROM log_totals");
    sqlite::exec(db_.get(), (std::string("INSERT INTO log_totals(node, changes, bytes, through) SELECT node, count(*), sum(") +
                             k_item_bytes_sql + "), max(seq) FROM changes GROUP BY node").c_str());
  }

  /// Remembers a batch's outcome and refusals, so that a resend is answered with them.
  void remember_batch(std::string_view device, const batch_id& batch, const push_outcome& out) {
    const std::span<const std::uint8_t> batch_bytes(batch.bytes);
    {
      sqlite::reset_guard g(*insert_batch_);
      insert_batch_->bind(1, device)
          .bind(2, batch_bytes)
          .bind(3, static_cast<std::int64_t>(out.accepted))
          .bind(4, static_cast<std::int64_t>(out.first_seq))
          .bind(5, static_cast<std::int64_t>(out.last_seq))
          .run();
    }
    for (const auto& f : out.refused) {
      sqlite::reset_guard g(*insert_refusal_);
      insert_refusal_->bind(1, device)
          .bind(2, batch_bytes)
          .bind(3, static_cast<std::int64_t>(f.index))
          .bind(4, static_cast<std::int64_t>(f.code))
          .bind(5, std::string_view(f.reason))
          .run();
    }
  }

  /// A record's unit fields as stored: field -> (unit, version).
  struct unit_value {
    std::optional<std::string> unit;
    version ver;
  };
  std::map<std::string, unit_value, std::less<>> unit_rows(std::string_view collection, const record_id& id) {
    std::map<std::string, unit_value, std::less<>> out;
    sqlite::reset_guard g(*units_of_);
    units_of_->bind(1, collection).bind(2, id_span(id));
    while (units_of_->step()) {
      unit_value v;
      if (units_of_->column_type(1) != SQLITE_NULL) v.unit = units_of_->column_text(1);
      v.ver = version{hlc_stamp{static_cast<std::uint64_t>(units_of_->column_int64(2))},
                      static_cast<node_id>(units_of_->column_int64(3))};
      out.emplace(units_of_->column_text(0), std::move(v));
    }
    return out;
  }

  static std::vector<std::optional<std::string>> units_in(const std::map<std::string, unit_value, std::less<>>& rows) {
    std::vector<std::optional<std::string>> out;
    for (const auto& [field, v] : rows) out.push_back(v.unit);
    return out;
  }

  /// The unit a write of a unit field names: a text, or nowhere.
  static std::optional<std::string> unit_written(const value& v) {
    if (const auto* text = std::get_if<std::string>(&v)) return *text;
    return std::nullopt;
  }

  /// Keeps the record's unit fields current: each the newest write by version, as merge
  /// would (a delete does not move a record).
  void index_change(const change& c) {
    const auto fields = unit_fields_.find(c.collection);
    if (fields == unit_fields_.end() || fields->second.empty() || c.fields.empty()) return;
    for (const auto& f : c.fields) {
      if (std::find(fields->second.begin(), fields->second.end(), f.name) == fields->second.end()) continue;
      // put_unit_ leaves a row a newer write placed as it is.
      const auto unit = unit_written(f.val);
      sqlite::reset_guard g(*put_unit_);
      // Bound without copies: the change and `unit` outlive run().
      put_unit_->bind_static(1, std::string_view(c.collection))
          .bind_static(2, id_span(c.id))
          .bind_static(3, std::string_view(f.name));
      if (unit) {
        put_unit_->bind_static(4, std::string_view(*unit));
      } else {
        put_unit_->bind_null(4);
      }
      put_unit_->bind(5, static_cast<std::int64_t>(c.ver.stamp.value)).bind(6, static_cast<std::int64_t>(c.ver.node)).run();
    }
  }

  /// Through which seq record_units follows the log (it may hold later changes too:
  /// indexing a change twice changes nothing).
  std::uint64_t units_through() {
    sqlite::statement q(db_.get(), "SELECT CAST(value AS INTEGER) FROM server_state WHERE key='units_through'");
    return q.step() ? static_cast<std::uint64_t>(q.column_int64(0)) : 0;
  }
  void set_units_through(std::uint64_t seq) {
    sqlite::statement q(db_.get(), "INSERT OR REPLACE INTO server_state(key, value) VALUES('units_through', ?)");
    q.bind(1, std::string_view(std::to_string(seq))).run();
  }

  /// Brings record_units up to the log's head (in the caller's transaction): the changes
  /// appended since it was last brought up, by unscoped pushes, the registry import or
  /// another process, are indexed now. Every reader of record_units calls it first.
  void catch_up_units() {
    if (!rules_known_) return;  // no rules, no index (as before set_scope_rules)
    const auto through = units_through();
    const auto head = head_locked();
    if (through >= head) return;
    sqlite::statement q(db_.get(), "SELECT collection, change FROM changes WHERE seq > ? ORDER BY seq");
    q.bind(1, static_cast<std::int64_t>(through));
    while (q.step()) {
      // Decoded only when its collection has unit fields.
      const auto fields = unit_fields_.find(q.column_text(0));
      if (fields == unit_fields_.end() || fields->second.empty()) continue;
      index_change(wire::decode_change(q.column_blob(1)));
    }
    set_units_through(head);
  }

  /// The seq of the record's first change in the log; 0 when the log does not know it.
  std::uint64_t first_seq(std::string_view collection, const record_id& id) {
    sqlite::reset_guard g(*first_seq_);
    first_seq_->bind(1, collection).bind(2, id_span(id));
    return first_seq_->step() ? static_cast<std::uint64_t>(first_seq_->column_int64(0)) : 0;
  }
  bool known(std::string_view collection, const record_id& id) { return first_seq(collection, id) != 0; }

  /// The device may receive the record as the store has it now.
  bool sees(const device_scope& scope, std::string_view collection, const record_id& id) {
    if (!scope.may_read(collection)) return false;
    if (scope.region_wide.count(collection)) return true;
    return scope.covers(collection, units_in(unit_rows(collection, id)));
  }

  /// Why `scope` may not write `c` ("" when it may): its role must write the collection,
  /// the record as stored (if the log knows it) must be in the device's units, and so
  /// must the record as the change leaves it. Reasons name no value.
  std::string write_refusal(const device_scope& scope, const change& c) {
    const std::string what = "a change to '" + c.collection + "' ";
    if (!scope.may_write(c.collection)) {
      return what + "was refused: role " + scope.role + " may not write this collection";
    }
    if (scope.region_wide.count(c.collection)) return {};
    const auto fields = unit_fields_.find(c.collection);
    if (fields == unit_fields_.end()) return what + "was refused: the collection has no org unit rule";
    auto rows = unit_rows(c.collection, c.id);
    const bool exists = known(c.collection, c.id);
    if (exists && !scope.covers(c.collection, units_in(rows))) {
      return what + "was refused: the record belongs to an org unit outside this device's scope";
    }
    for (const auto& f : c.fields) {
      if (std::find(fields->second.begin(), fields->second.end(), f.name) == fields->second.end()) continue;
      auto& row = rows[f.name];
      if (!exists || row.ver < c.ver) row = unit_value{unit_written(f.val), c.ver};
    }
    if (!scope.covers(c.collection, units_in(rows))) {
      std::string names;
      for (const auto& f : fields->second) names += (names.empty() ? "" : " or ") + f;
      return what + (exists ? "was refused: it would move the record to an org unit outside this device's scope"
                            : "was refused: a new record must name an org unit of this device's scope in " + names);
    }
    return {};
  }

  void hold_if_new(std::string_view device, std::string_view collection, const record_id& id) {
    sqlite::reset_guard g(*hold_if_new_);
    hold_if_new_->bind(1, device).bind(2, collection).bind(3, id_span(id)).run();
  }
  void hold(std::string_view device, std::string_view collection, const record_id& id, std::uint64_t through) {
    sqlite::reset_guard g(*hold_);
    hold_->bind(1, device).bind(2, collection).bind(3, id_span(id)).bind(4, static_cast<std::int64_t>(through)).run();
  }
  void unhold(std::string_view device, std::string_view collection, const record_id& id) {
    sqlite::reset_guard g(*unhold_);
    unhold_->bind(1, device).bind(2, collection).bind(3, id_span(id)).run();
  }
  /// Whether the device holds the record, and through which seq a backfill sent it.
  std::optional<std::uint64_t> held(std::string_view device, std::string_view collection, const record_id& id) {
    sqlite::reset_guard g(*held_);
    held_->bind(1, device).bind(2, collection).bind(3, id_span(id));
    if (!held_->step()) return std::nullopt;
    return static_cast<std::uint64_t>(held_->column_int64(0));
  }
  /// Queues a purge or backfill (epoch 0), or records one sent in the page of `epoch`;
  /// `through`: for a purge, what the device held of the record, restored should the
  /// page never arrive.
  void enqueue(std::string_view device, std::string_view collection, const record_id& id, std::int64_t action,
               std::uint64_t epoch, std::uint64_t through = 0) {
    sqlite::reset_guard g(*enqueue_);
    enqueue_->bind(1, device)
        .bind(2, collection)
        .bind(3, id_span(id))
        .bind(4, action)
        .bind(5, static_cast<std::int64_t>(epoch))
        .bind(6, static_cast<std::int64_t>(through))
        .run();
  }

  void audit_row(std::uint64_t now, const requester& who, std::string_view action, std::string_view collection,
                 const record_id& id, std::uint64_t seq, std::string_view reason = "") {
    sqlite::reset_guard g(*insert_audit_);
    // Bound without copies: everything bound outlives run() (one line per record sent).
    insert_audit_->bind(1, static_cast<std::int64_t>(now))
        .bind_static(2, std::string_view(who.device))
        .bind_static(3, std::string_view(who.user))
        .bind_static(4, action)
        .bind_static(5, collection)
        .bind_static(6, id_span(id))
        .bind(7, static_cast<std::int64_t>(seq))
        .bind_static(8, reason)
        .run();
  }

  /// Writes the `receive` lines of sent_ and empties it: one row per collection, its
  /// records in order of id, each as its id and then the last seq of it sent (8 bytes,
  /// most significant first).
  void flush_receipts(const requester& who, std::uint64_t now) {
    sent_.drain([&](std::string_view collection, std::span<const page_receipts::receipt> receipts) {
      receipts_.clear();
      for (const auto& r : receipts) {
        receipts_.insert(receipts_.end(), r.id.bytes.begin(), r.id.bytes.end());
        for (int shift = 56; shift >= 0; shift -= 8) receipts_.push_back(static_cast<std::uint8_t>(r.seq >> shift));
      }
      sqlite::reset_guard g(*insert_receipts_);
      // Bound without copies: `collection` and receipts_ outlive run().
      insert_receipts_->bind(1, static_cast<std::int64_t>(now))
          .bind_static(2, std::string_view(who.device))
          .bind_static(3, std::string_view(who.user))
          .bind_static(4, collection)
          .bind_static(5, std::span<const std::uint8_t>(receipts_))
          .run();
    });
  }

  void forget_device(std::string_view device) {
    sqlite::statement a(db_.get(), "DELETE FROM device_records WHERE device=?");
    a.bind(1, device).run();
    sqlite::statement b(db_.get(), "DELETE FROM scope_queue WHERE device=?");
    b.bind(1, device).run();
  }

  void set_device_scope(std::string_view device, node_id node, std::string_view fingerprint) {
    sqlite::statement q(db_.get(), "UPDATE device_scope SET node=?, fingerprint=? WHERE device=?");
    q.bind(1, static_cast<std::int64_t>(node)).bind(2, fingerprint).bind(3, device).run();
  }

  /// After a scope change: queues a purge of each record the device holds and may no
  /// longer see, and a backfill of each it may see and does not hold. Runs after the
  /// pull's scope epoch settled what was sent, so the queue holds nothing in flight.
  void reconcile(const requester& who) {
    const auto& scope = *who.scope;
    std::set<record_key> held_now, queued;
    {
      sqlite::statement q(db_.get(), "SELECT collection, record_id FROM device_records WHERE device=?");
      q.bind(1, std::string_view(who.device));
      while (q.step()) held_now.emplace(q.column_text(0), id_of(q.column_blob(1)));
      sqlite::statement w(db_.get(), "SELECT collection, record_id FROM scope_queue WHERE device=?");
      w.bind(1, std::string_view(who.device));
      while (w.step()) queued.emplace(w.column_text(0), id_of(w.column_blob(1)));
    }
    for (const auto& key : held_now) {
      if (!queued.count(key) && !sees(scope, key.first, key.second)) enqueue(who.device, key.first, key.second, k_purge, 0);
    }
    const auto backfill = [&](const std::string& collection, const record_id& id) {
      const record_key key{collection, id};
      if (held_now.count(key) || queued.count(key)) return;
      // A referral in two of the device's units is listed twice.
      if (!sees(scope, collection, id)) return;
      queued.insert(key);
      enqueue(who.device, collection, id, k_backfill, 0);
    };
    for (const auto& collection : scope.read) {
      if (scope.region_wide.count(collection)) {
        sqlite::statement q(db_.get(), "SELECT DISTINCT record_id FROM changes WHERE collection=?");
        q.bind(1, std::string_view(collection));
        while (q.step()) backfill(collection, id_of(q.column_blob(0)));
        continue;
      }
      sqlite::statement q(db_.get(), "SELECT record_id, unit FROM record_units WHERE collection=? AND unit IS NOT NULL");
      q.bind(1, std::string_view(collection));
      while (q.step()) {
        if (scope.units.count(q.column_text(1))) backfill(collection, id_of(q.column_blob(0)));
      }
    }
  }

  /// The next scope epoch of a device (given out once per page carrying scope items).
  std::uint64_t next_epoch(std::string_view device) {
    sqlite::statement up(db_.get(), "UPDATE device_scope SET epoch = epoch + 1 WHERE device=? RETURNING epoch");
    up.bind(1, device);
    if (up.step()) return static_cast<std::uint64_t>(up.column_int64(0));
    sqlite::statement add(db_.get(), "INSERT INTO device_scope(device, node, fingerprint, epoch) VALUES(?, 0, '', 1)");
    add.bind(1, device).run();
    return 1;
  }

  /// Adds every change of a record up to `through` to the page as a backfill; its bytes.
  std::size_t add_backfill_record(wire::changes_page_builder& page, std::string_view collection, const record_id& id,
                                  std::uint64_t through) {
    const auto before = page.scope_bytes();
    sqlite::reset_guard g(*history_upto_);
    history_upto_->bind(1, collection).bind(2, id_span(id)).bind(3, static_cast<std::int64_t>(through));
    while (history_upto_->step()) {
      page.add_backfill(static_cast<std::uint64_t>(history_upto_->column_int64(0)), history_upto_->column_blob(1));
    }
    return page.scope_bytes() - before;
  }

  std::uint64_t head_locked() {
    sqlite::reset_guard g(*head_);
    head_->step();
    return static_cast<std::uint64_t>(head_->column_int64(0));
  }

  /// serve_page() for a scoped device (docs/protocol.md, "Scopes").
  page_position serve_scoped(const requester& who, const page_request& r, wire::changes_page_builder& page,
                             std::uint64_t now) {
    const auto& scope = *who.scope;
    const std::string_view device = who.device;
    // 1. What the device says it stored settles what was sent: pages up to its epoch
    //    were applied; anything sent later was not, and is sent again.
    {
      sqlite::statement q(db_.get(),
                          "SELECT collection, record_id, action, epoch, through FROM scope_queue WHERE device=? AND epoch > 0");
      q.bind(1, device);
      struct sent { std::string collection; record_id id; std::int64_t action; std::uint64_t epoch, through; };
      std::vector<sent> list;
      while (q.step()) {
        list.push_back(sent{q.column_text(0), id_of(q.column_blob(1)), q.column_int64(2), static_cast<std::uint64_t>(q.column_int64(3)),
                            static_cast<std::uint64_t>(q.column_int64(4))});
      }
      sqlite::statement done(db_.get(), "DELETE FROM scope_queue WHERE device=? AND collection=? AND record_id=?");
      for (const auto& e : list) {
        if (e.epoch <= r.scope_epoch) {
          done.reset();
          done.bind(1, device).bind(2, std::string_view(e.collection)).bind(3, id_span(e.id)).run();
          if (e.action == k_purge) audit_row(now, who, "purge_confirmed", e.collection, e.id, 0);
        } else if (e.action == k_purge) {
          hold(device, e.collection, e.id, e.through);  // still on the device, as it was
          enqueue(device, e.collection, e.id, k_purge, 0, e.through);
        } else {
          unhold(device, e.collection, e.id);  // never arrived
          enqueue(device, e.collection, e.id, k_backfill, 0);
        }
      }
    }
    {
      sqlite::statement flagged(db_.get(), "UPDATE device_scope SET reconcile=0 WHERE device=? AND reconcile=1 RETURNING 1");
      flagged.bind(1, device);
      if (flagged.step()) {
        flagged.reset();
        reconcile(who);
      }
    }
    const auto max_changes = std::max<std::uint32_t>(r.max_changes, 1);
    const auto head = head_locked();
    std::uint64_t epoch = 0;
    const auto page_epoch = [&] {
      if (epoch == 0) {
        epoch = next_epoch(device);
        page.set_scope_epoch(epoch);
      }
      return epoch;
    };
    const auto page_bytes = [&] { return page.size_bytes() + page.scope_bytes(); };
    // 2. Queued purges and backfills (after a scope change, a lost page, a refused
    //    change) go first, in pages of their own that do not move the cursor.
    {
      sqlite::statement q(db_.get(),
                          "SELECT collection, record_id, action FROM scope_queue WHERE device=? AND epoch = 0 LIMIT ?");
      q.bind(1, device).bind(2, static_cast<std::int64_t>(max_changes) + 1);
      struct queued { std::string collection; record_id id; std::int64_t action; };
      std::vector<queued> list;
      while (q.step()) list.push_back(queued{q.column_text(0), id_of(q.column_blob(1)), q.column_int64(2)});
      sqlite::statement drop(db_.get(), "DELETE FROM scope_queue WHERE device=? AND collection=? AND record_id=?");
      std::size_t taken = 0;
      bool left = false;
      for (const auto& e : list) {
        if (taken >= max_changes || (taken > 0 && page_bytes() >= r.max_bytes)) {
          left = true;
          break;
        }
        const bool visible = sees(scope, e.collection, e.id);
        if (e.action == k_purge && !visible) {
          page.add_purge(e.collection, e.id);
          const auto had = held(device, e.collection, e.id).value_or(0);
          unhold(device, e.collection, e.id);
          enqueue(device, e.collection, e.id, k_purge, page_epoch(), had);
          audit_row(now, who, "purge", e.collection, e.id, 0);
          ++taken;
        } else if (e.action == k_backfill && visible) {
          add_backfill_record(page, e.collection, e.id, head);
          hold(device, e.collection, e.id, head);
          enqueue(device, e.collection, e.id, k_backfill, page_epoch());
          sent_.add(e.collection, e.id, head);
          ++taken;
        } else {
          // Nothing to do any more: a purge of a record it may see again, a backfill of
          // one it may not.
          drop.reset();
          drop.bind(1, device).bind(2, std::string_view(e.collection)).bind(3, id_span(e.id)).run();
        }
      }
      if (taken > 0) return page_position{r.cursor, left || head > r.cursor};
    }
    // 3. The log after the cursor, record by record as the device may see them now.
    struct record_view {
      bool visible = false;
      std::optional<std::uint64_t> through;  ///< held, and through which seq a backfill sent it
    };
    std::map<record_key, record_view> views;
    const std::int64_t scan_limit = static_cast<std::int64_t>(max_changes) * 4 + 1000;
    page_position pos{r.cursor, false};
    // No change is numbered above INT64_MAX (SQLite's integers): a cursor past it reads
    // nothing, and must not wrap to a negative number that reads everything.
    if (r.cursor >= static_cast<std::uint64_t>(INT64_MAX)) return pos;
    sqlite::reset_guard g(*scan_);
    scan_->bind(1, static_cast<std::int64_t>(r.cursor)).bind(2, scan_limit + 1);
    std::int64_t scanned = 0;
    auto next_skip = std::upper_bound(r.skip.begin(), r.skip.end(), r.cursor);
    const auto full = [&](std::size_t adding) {
      return page.count() + page.backfill_count() > 0 &&
             (page.count() >= max_changes || page_bytes() + adding > r.max_bytes);
    };
    while (scan_->step()) {
      if (scanned == scan_limit) {
        pos.more = true;
        break;
      }
      const auto seq = static_cast<std::uint64_t>(scan_->column_int64(0));
      record_key key{scan_->column_text(3), id_of(scan_->column_blob(4))};
      auto it = views.find(key);
      if (it == views.end()) {
        record_view v{sees(scope, key.first, key.second), held(device, key.first, key.second)};
        it = views.emplace(key, v).first;
      }
      auto& view = it->second;
      if (!view.visible) {
        if (view.through) {
          // It left the device's scope: the device deletes it.
          page.add_purge(key.first, key.second);
          unhold(device, key.first, key.second);
          enqueue(device, key.first, key.second, k_purge, page_epoch(), *view.through);
          audit_row(now, who, "purge", key.first, key.second, 0);
          view.through.reset();
        }
      } else if (!view.through) {
        if (first_seq(key.first, key.second) < seq) {
          // It entered the device's scope with changes the device never received: its
          // whole history, up to the head, replaces whatever the device held of it.
          if (full(0)) {
            pos.more = true;
            break;
          }
          add_backfill_record(page, key.first, key.second, head);
          hold(device, key.first, key.second, head);
          enqueue(device, key.first, key.second, k_backfill, page_epoch());
          sent_.add(key.first, key.second, head);
          view.through = head;
        } else {
          // New to the device with this change: the log brings the rest.
          hold(device, key.first, key.second, 0);
          view.through = 0;
        }
      }
      if (view.visible && view.through && seq > *view.through) {
        while (next_skip != r.skip.end() && *next_skip < seq) ++next_skip;
        const bool skipped = next_skip != r.skip.end() && *next_skip == seq;
        if (!skipped && static_cast<node_id>(scan_->column_int64(1)) != r.node) {
          const auto stored = scan_->column_blob(2);
          if (full(wire::page_item_bytes(seq, stored))) {
            pos.more = true;
            break;
          }
          page.add(seq, stored);
          sent_.add(key.first, key.second, seq);
        }
      }
      ++scanned;
      pos.next_cursor = seq;
    }
    return pos;
  }

  /// read_page() with mutex_ held; with `sent`, notes each change sent.
  page_position read_page_locked(std::uint64_t cursor, node_id exclude_node, std::span<const std::uint64_t> skip,
                                 std::uint32_t max_changes, std::uint32_t max_bytes, wire::changes_page_builder& page,
                                 page_receipts* sent) {
    max_changes = std::max<std::uint32_t>(max_changes, 1);  // a page holds a change when one is there
    // Rows skipped as the puller's own still cost a scan: bound the rows looked at.
    const std::int64_t scan_limit = static_cast<std::int64_t>(max_changes) * 4 + 1000;
    page_position pos{cursor, false};
    // No change is numbered above INT64_MAX (SQLite's integers): a cursor past it reads
    // nothing, and must not wrap to a negative number that reads everything.
    if (cursor >= static_cast<std::uint64_t>(INT64_MAX)) return pos;
    sqlite::reset_guard g(*scan_);
    scan_->bind(1, static_cast<std::int64_t>(cursor)).bind(2, scan_limit + 1);
    std::int64_t scanned = 0;
    auto next_skip = std::upper_bound(skip.begin(), skip.end(), cursor);
    while (scan_->step()) {
      // Reaching here means a row above next_cursor exists: `more` if we stop at it.
      if (scanned == scan_limit) {
        pos.more = true;
        break;
      }
      const auto seq = static_cast<std::uint64_t>(scan_->column_int64(0));
      while (next_skip != skip.end() && *next_skip < seq) ++next_skip;
      const bool skipped = next_skip != skip.end() && *next_skip == seq;
      if (!skipped && static_cast<node_id>(scan_->column_int64(1)) != exclude_node) {
        const auto stored = scan_->column_blob(2);
        // The byte bound is checked before adding, so a page exceeds it only when its
        // first change alone does (docs/protocol.md, "Pull").
        if (page.count() >= max_changes ||
            (page.count() > 0 && page.size_bytes() + wire::page_item_bytes(seq, stored) > max_bytes)) {
          pos.more = true;
          break;
        }
        page.add(seq, stored);
        if (sent) sent->add(scan_->column_text(3), id_of(scan_->column_blob(4)), seq);
      }
      ++scanned;
      pos.next_cursor = seq;
    }
    return pos;
  }

  std::mutex mutex_;  // guards db_ and every statement: one SQLite connection, one user at a time
  sqlite::db_handle db_;
  std::unique_ptr<auth_journal> journal_;  ///< journals db_'s administrative changes; before db_ closes
  std::mutex reader_mutex_;  // guards reader_ and extent_: long reads (a priority phase, a log's extent)
  sqlite::db_handle reader_;
  std::optional<sqlite::statement> find_batch_, insert_change_, insert_batch_, find_refusals_, insert_refusal_, head_, by_seq_,
      extent_, whole_extent_, add_totals_;
  // Scopes and audit (also guarded by mutex_).
  std::optional<sqlite::statement> scan_, first_seq_, units_of_, put_unit_, held_, hold_, hold_if_new_, unhold_,
      enqueue_, history_upto_, insert_audit_, insert_receipts_;
  std::map<std::string, std::vector<std::string>, std::less<>> unit_fields_;  ///< collection -> its unit fields
  wire::bytes encoded_;  ///< store_change()'s buffer, kept between changes
  bool rules_known_ = false;  ///< set_scope_rules() was called: record_units is kept
  page_receipts sent_;  ///< what the page being made sends (flush_receipts)
  std::vector<std::uint8_t> receipts_;  ///< flush_receipts()'s buffer, kept for its capacity
  // Declared last: stopped before the connections close.
  std::unique_ptr<sqlite::wal_checkpointer> checkpointer_;
};

}  // namespace

std::unique_ptr<change_store> open_sqlite_change_store(const std::string& path) {
  return std::make_unique<sqlite_change_store>(path);
}

std::string auth_journal_file(const std::string& path) { return auth_journal_path(path); }

std::string reset_sqlite_auth_journal(const std::string& path) {
  if (!std::filesystem::exists(path)) {
    throw error(make_error_code(storage_errc::open_failed), "no server database at '" + path + "'");
  }
  auto db = sqlite::open(path, k_identity, "FULL");
  return reset_auth_journal(db.get(), path);
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
  sqlite::make_private(destination);  // a copy of health data: its owner's alone
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
