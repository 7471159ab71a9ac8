#include "simulation.hpp"

// Store internals: the simulation plays the sync conversation without TLS, through the
// same store operations sync_client uses (pin, acknowledge, apply a page).
#include "store_impl.hpp"

#include <caresync/protocol/codec.hpp>
#include <caresync/protocol/errors.hpp>
#include <caresync/server/change_store.hpp>
#include <caresync/server/push_rules.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <deque>
#include <filesystem>
#include <map>
#include <random>
#include <set>

namespace caresync::testing {

namespace {

constexpr std::uint64_t k_start_ms = 1'790'000'000'000;  // late 2026
constexpr std::uint64_t k_clock_bound_ms = 300'000;      // the server's max_clock_ahead_ms
constexpr std::int64_t k_day_ms = 86'400'000;

schema simulation_schema() {
  schema s;
  s.collections.push_back({"clients",
                           {{"name", value_kind::text},
                            {"note", value_kind::text, merge_policy::keep_both},
                            {"status", value_kind::text},
                            {"level", value_kind::integer},
                            {"flags", value_kind::text, merge_policy::set_union}}});
  s.collections.push_back({"visits",
                           {{"client", value_kind::text},
                            {"note", value_kind::text, merge_policy::keep_both},
                            {"minutes", value_kind::integer},
                            {"followups", value_kind::text, merge_policy::append}}});
  // Visits revive (update_revives), clients are deleted for good: both delete policies.
  s.collections.back().deletes = delete_policy::update_revives;
  return s;
}

/// A property broken: unwinds the run to its report.
struct violation {
  std::string what;
};

/// One value written to a text field, and what its writer knowingly replaced.
struct written_value {
  std::string collection;
  record_id id;
  std::string field;
  bool kept = false;  ///< a keep_both field
  int replica = 0;
  std::vector<std::string> replaced;  ///< values the writer had in front of her (kept fields)
  std::uint64_t order = 0;            ///< when it was written, in the run
};

struct replica {
  std::string device;
  std::int64_t clock_offset_ms = 0;
  bool online = true;
  std::unique_ptr<store> db;
  std::vector<std::vector<std::uint8_t>> sent_pushes;  ///< for late duplicates
  std::optional<wire::changes_page> last_page;         ///< for stale duplicates
  int joins_at = 0;     ///< the step it first acts at: a tablet that joins late
  bool primes = false;  ///< its initial sync asks for priority tiers first
  std::optional<wire::changes_page> last_prime_page;   ///< for stale duplicates
};

class simulation {
 public:
  explicit simulation(const simulation_options& o) : options_(o), rng_(o.seed) {}

  simulation_result run() {
    const auto dir = std::filesystem::path(options_.dir.empty() ? std::filesystem::temp_directory_path().string()
                                                                : options_.dir) /
                     ("caresync-converge-" + std::to_string(options_.seed) + "-" + std::to_string(std::random_device{}()));
    std::filesystem::create_directories(dir);
    try {
      play(dir);
    } catch (const violation& v) {
      result_.ok = false;
      result_.failure = "seed " + std::to_string(options_.seed) + ": " + v.what;
    } catch (const std::exception& e) {
      result_.ok = false;
      result_.failure = "seed " + std::to_string(options_.seed) + ": unexpected exception: " + e.what();
    }
    replicas_.clear();
    log_.reset();
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
    return result_;
  }

 private:
  // ------------------------------------------------------------------ set-up

  void play(const std::filesystem::path& dir) {
    if (options_.replicas < 1 || options_.steps < 0) throw violation{"a run needs at least one replica"};
    log_ = server::open_sqlite_change_store((dir / "server.db").string());
    rules_.max_clock_ahead_ms = k_clock_bound_ms;
    // A client's level is set by the office only: tablet-0 is a server-side writer, the
    // others' apps do not know the rule (their writes are refused and reverted).
    rules_.server_only = {{"clients", {"level"}}};
    for (int i = 0; i < options_.replicas; ++i) {
      auto& r = replicas_.emplace_back();
      r.device = "tablet-" + std::to_string(i);
      // Clocks: one right, one 262 s ahead, one 262 s behind, one a day ahead, the rest
      // a few seconds off.
      switch (i) {
        case 0: r.clock_offset_ms = 0; break;
        case 1: r.clock_offset_ms = 262'000; break;
        case 2: r.clock_offset_ms = -262'000; break;
        case 3: r.clock_offset_ms = k_day_ms; break;
        default: r.clock_offset_ms = std::uniform_int_distribution<std::int64_t>(-5000, 5000)(rng_);
      }
      store_options so;
      so.path = (dir / (r.device + ".db")).string();
      so.schema = simulation_schema();
      so.durability = durability::normal;
      so.time_source = [this, offset = r.clock_offset_ms] {
        return static_cast<std::uint64_t>(static_cast<std::int64_t>(now_ms_) + offset);
      };
      r.db = store::open(so);
    }
    // The last of three or more replicas joins half-way with a prioritised initial sync.
    if (options_.replicas >= 3) {
      replicas_.back().joins_at = options_.steps / 2;
      replicas_.back().primes = true;
    }
    for (int step = 0; step < options_.steps; ++step) {
      now_ms_ += std::uniform_int_distribution<std::uint64_t>(0, 3000)(rng_);
      const int r = pick(options_.replicas);
      const int what = pick(100);
      if (step < replicas_[r].joins_at) continue;
      if (what < 18) {
        create(r);
      } else if (what < 43) {
        update(r);
      } else if (what < 48) {
        append(r);
      } else if (what < 53) {
        change_set(r);
      } else if (what < 57) {
        remove(r);
      } else if (what < 64) {
        resolve(r, false);
      } else if (what < 67) {
        resolve(r, true);
      } else if (what < 95) {
        if (replicas_[r].online) sync(r, true);
      } else {
        replicas_[r].online = !replicas_[r].online;  // a partition begins or heals
      }
    }
    final_sync();
    check();
  }

  int pick(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng_); }
  bool chance(int percent) { return pick(100) < percent; }

  std::string token(int r) {
    return "r" + std::to_string(r) + "-v" + std::to_string(++tokens_);
  }

  /// A record this replica holds (live), or nothing.
  std::optional<std::pair<std::string, record_id>> some_record(int r) {
    for (int tries = 0; tries < 8 && !records_.empty(); ++tries) {
      const auto& rec = records_[static_cast<std::size_t>(pick(static_cast<int>(records_.size())))];
      if (replicas_[r].db->get(rec.first, rec.second)) return rec;
    }
    return std::nullopt;
  }

  std::string text_of(const record_fields& f, const std::string& name) {
    const auto it = f.find(name);
    if (it == f.end()) return {};
    const auto* s = std::get_if<std::string>(&it->second);
    return s ? *s : std::string();
  }

  // ------------------------------------------------------------------ writes

  void create(int r) {
    const bool client = chance(50);
    const std::string collection = client ? "clients" : "visits";
    std::vector<field_write> fields;
    std::vector<std::string> texts = client ? std::vector<std::string>{"name", "note", "status"}
                                            : std::vector<std::string>{"client", "note"};
    for (const auto& name : texts) fields.push_back({name, token(r)});
    fields.push_back({client ? "level" : "minutes", std::int64_t{pick(5)}});
    if (client) fields.push_back({"flags", std::string("[\"new\"]")});
    const auto id = replicas_[r].db->create(collection, fields);
    records_.emplace_back(collection, id);
    if (client) set_events_[{collection, id}].push_back({"new", true});
    for (const auto& f : fields) {
      if (f.name == "flags") continue;
      if (const auto* s = std::get_if<std::string>(&f.val)) {
        written_[*s] = written_value{collection, id, f.name, f.name == "note", r, {}, ++writes_};
      }
    }
    ++result_.operations;
  }

  void update(int r) {
    const auto rec = some_record(r);
    if (!rec) return create(r);
    const auto& [collection, id] = *rec;
    const auto current = *replicas_[r].db->get(collection, id);
    std::vector<std::string> names = collection == "clients" ? std::vector<std::string>{"name", "note", "status", "level"}
                                                              : std::vector<std::string>{"client", "note", "minutes"};
    std::shuffle(names.begin(), names.end(), rng_);
    names.resize(static_cast<std::size_t>(1 + pick(static_cast<int>(names.size()))));
    std::vector<field_write> fields;
    std::vector<std::pair<std::string, std::string>> texts;
    for (const auto& name : names) {
      if (name == "level" || name == "minutes") {
        fields.push_back({name, std::int64_t{pick(1000)}});
      } else {
        const auto t = token(r);
        fields.push_back({name, t});
        texts.emplace_back(name, t);
      }
    }
    replicas_[r].db->update(collection, id, fields);
    // Only a keep_both edit counts for the delete check: a last-writer-wins edit older
    // than what the deleter had (a clock behind) loses as it would to an edit.
    if (std::any_of(texts.begin(), texts.end(), [](const auto& t) { return t.first == "note"; })) {
      record_events_[*rec].push_back({false, ++writes_});
    }
    for (const auto& [name, t] : texts) {
      written_value w{collection, id, name, name == "note", r, {}, ++writes_};
      // An update replaces the value its writer sees, not the open conflicts.
      if (w.kept) w.replaced.push_back(text_of(current, name));
      written_[t] = std::move(w);
    }
    ++result_.operations;
  }

  /// Adds a follow-up entry to a visit (append).
  void append(int r) {
    for (int tries = 0; tries < 4; ++tries) {
      const auto rec = some_record(r);
      if (!rec || rec->first != "visits") continue;
      const auto t = token(r);
      replicas_[r].db->update(rec->first, rec->second, {{"followups", t}});
      appended_[*rec].push_back(t);
      ++result_.operations;
      return;
    }
  }

  /// Adds an element to a client's flags or removes one (set_union), writing the whole set.
  void change_set(int r) {
    for (int tries = 0; tries < 4; ++tries) {
      const auto rec = some_record(r);
      if (!rec || rec->first != "clients") continue;
      const auto current = *replicas_[r].db->get(rec->first, rec->second);
      std::set<std::string> flags;
      if (const auto* text = std::get_if<std::string>(&current.at("flags"))) {
        for (const auto& e : nlohmann::json::parse(*text)) flags.insert(e.get<std::string>());
      }
      const std::string e = "flag" + std::to_string(pick(5));
      const bool add = !flags.count(e);
      if (add) {
        flags.insert(e);
      } else {
        flags.erase(e);
      }
      replicas_[r].db->update(rec->first, rec->second, {{"flags", nlohmann::json(flags).dump()}});
      set_events_[*rec].push_back({e, add});
      ++result_.operations;
      return;
    }
  }

  void remove(int r) {
    const auto rec = some_record(r);
    if (!rec) return;
    replicas_[r].db->remove(rec->first, rec->second);
    deleted_.insert(*rec);
    record_events_[*rec].push_back({true, ++writes_});
    ++result_.operations;
  }

  void resolve(int r, bool dismiss) {
    const auto open = replicas_[r].db->conflicts();
    if (open.empty()) return;
    const auto& c = open[static_cast<std::size_t>(pick(static_cast<int>(open.size())))];
    if (c.record_revived) {
      // A record an edit brought back after a delete: kept as it is.
      replicas_[r].db->dismiss_conflict(c.collection, c.record, "");
      ++result_.conflicts_closed;
      ++result_.operations;
      return;
    }
    if (c.record_deleted) {
      // An edit the delete overrode, seen: dismissing it is a delete that covers it.
      replicas_[r].db->dismiss_conflict(c.collection, c.record, c.field);
      record_events_[{c.collection, c.record}].push_back({true, ++writes_});
      ++result_.conflicts_closed;
      ++result_.operations;
      return;
    }
    written_value w{c.collection, c.record, c.field, true, r, {}, ++writes_};
    w.replaced.push_back(std::get<std::string>(c.current.val));
    for (const auto& o : c.others) w.replaced.push_back(std::get<std::string>(o.val));
    std::string chosen;
    if (dismiss) {
      replicas_[r].db->dismiss_conflict(c.collection, c.record, c.field);
      chosen = std::get<std::string>(c.current.val);
    } else {
      // A merged text, or one of the values.
      chosen = chance(50) ? token(r) : w.replaced[static_cast<std::size_t>(pick(static_cast<int>(w.replaced.size())))];
      replicas_[r].db->resolve_conflict(c.collection, c.record, c.field, chosen);
    }
    // A value chosen again is written again: it is the new write's value, and the old
    // write it came from was replaced knowingly.
    written_[chosen + "#" + std::to_string(++tokens_)] = w;
    ++result_.conflicts_closed;
    ++result_.operations;
  }

  // ------------------------------------------------------------------ the network

  /// One sync attempt of replica r, through the real codec; with faults, a message may be
  /// dropped (the attempt fails), a push delivered twice, an old push or page delivered
  /// late. True when the attempt went to the end.
  bool sync(int r, bool faults) {
    ++result_.syncs;
    auto& rep = replicas_[r];
    auto& s = rep.db->internal();
    const auto fault = [&](int percent) {
      if (!faults || !chance(percent)) return false;
      ++result_.faults;
      return true;
    };
    const auto cut = [&] {
      ++result_.failed_syncs;
      return false;
    };
    // welcome: the server's time and clock bound.
    s.clock.observe(hlc_stamp::make(now_ms_, 0));
    result_.restamped += s.correct_clock(now_ms_, k_clock_bound_ms);

    // A push sent on an earlier connection arrives late: answered from what was stored.
    if (!rep.sent_pushes.empty() && fault(5)) {
      const auto& old = rep.sent_pushes[static_cast<std::size_t>(pick(static_cast<int>(rep.sent_pushes.size())))];
      server_push(r, old, true);
    }

    std::deque<outbox_batch> unsent;
    for (auto& b : s.pinned_batches()) unsent.push_back(std::move(b));
    bool resent_restamped = false;
    for (;;) {
      if (unsent.empty()) {
        if (auto b = s.pin_batch(static_cast<std::size_t>(1 + pick(6)))) unsent.push_back(std::move(*b));
      }
      if (unsent.empty()) break;
      const outbox_batch batch = std::move(unsent.front());
      unsent.pop_front();
      const auto& request = batch.payload;  // as the sync client sends it
      if (fault(4)) return cut();  // lost on the way to the server
      rep.sent_pushes.push_back(request);
      const auto answer = server_push(r, request, false);
      if (fault(3)) server_push(r, request, true);  // delivered twice
      if (fault(4)) return cut();                   // the answer is lost
      const auto result = std::get<wire::push_result>(wire::decode(wire::message_type::push_result, answer));
      if (result.batch != batch.id) throw violation{"the server answered a push with another batch's id"};
      const auto acked = s.ack_batch(batch, result.refused);
      if (result.refused.size() != acked.requeued + acked.reverted) {
        throw violation{"the server refused a change for another reason than its clock or server_only: " +
                        result.refused.front().reason};
      }
      const auto restamped = acked.requeued;
      result_.restamped += restamped;
      result_.reverted += acked.reverted;
      if (restamped > 0 && resent_restamped) throw violation{"re-stamped changes were refused again"};
      resent_restamped = resent_restamped || restamped > 0;
    }

    // A late joiner's first pulls: the changes of the records its tiers pick, in pages
    // from the position it holds, as the server's session serves them.
    auto prime = s.prime();
    if (rep.primes && prime.spec.until == 0 && s.cursor() == 0 && log_->head() > 0) {
      s.begin_prime(random_prime_spec(log_->head()));
      prime = s.prime();
      ++result_.prime_phases;
    }
    while (prime.spec.until > 0 && !prime.done) {
      if (rep.last_prime_page && !rep.last_prime_page->items.empty() && fault(3)) {
        bool refused = false;
        try {
          s.apply_prime_page(*rep.last_prime_page);
        } catch (const protocol_error&) {
          refused = true;
        }
        if (!refused) throw violation{"a stale priority page was applied a second time"};
        return cut();
      }
      const auto items = log_->prime_changes(prime.spec, rep.db->node());
      const auto from = static_cast<std::size_t>(prime.position);
      if (from > items.size()) throw violation{"the priority position runs past the phase's changes"};
      const auto end = std::min(items.size(), from + static_cast<std::size_t>(1 + pick(8)));
      wire::changes_page_builder builder;
      log_->read_changes(std::span<const server::prime_item>(items).subspan(from, end - from), builder);
      const auto bytes = builder.finish(end, end < items.size());
      if (fault(4)) return cut();  // the page is lost
      auto page = std::get<wire::changes_page>(wire::decode(wire::message_type::changes, bytes));
      s.apply_prime_page(page);
      result_.primed += page.items.size();
      rep.last_prime_page = std::move(page);
      prime = s.prime();
    }
    // The pulls after it leave the phase's changes out; now and then a server does not,
    // and the store must not apply them again.
    std::vector<std::uint64_t> skip;
    if (prime.spec.until > s.cursor() && !chance(20)) {
      for (const auto& item : log_->prime_changes(prime.spec, rep.db->node())) skip.push_back(item.seq);
      std::sort(skip.begin(), skip.end());
    }

    for (;;) {
      // A page from an earlier request arrives again: the store must refuse it.
      if (rep.last_page && !rep.last_page->items.empty() && fault(3)) {
        bool refused = false;
        try {
          s.apply_page(*rep.last_page);
        } catch (const protocol_error&) {
          refused = true;
        }
        if (!refused) throw violation{"a stale page was applied a second time"};
        return cut();
      }
      wire::changes_page_builder builder;
      const auto pos =
          log_->read_page(s.cursor(), rep.db->node(), skip, static_cast<std::uint32_t>(1 + pick(8)), 1u << 20, builder);
      const auto bytes = builder.finish(pos.next_cursor, pos.more);
      if (fault(4)) return cut();  // the page is lost
      auto page = std::get<wire::changes_page>(wire::decode(wire::message_type::changes, bytes));
      s.apply_page(page);
      rep.last_page = std::move(page);
      if (!pos.more) break;
    }
    return true;
  }

  /// One to three tiers over the simulation's collections: whole collections, numbers
  /// at least or equal to a value, names at least a text.
  wire::prime_spec random_prime_spec(std::uint64_t until) {
    wire::prime_spec spec{until, {}};
    const int n = 1 + pick(3);
    for (int i = 0; i < n; ++i) {
      switch (pick(6)) {
        case 0: spec.tiers.push_back({"clients", wire::prime_match::all, {}, {}}); break;
        case 1: spec.tiers.push_back({"visits", wire::prime_match::all, {}, {}}); break;
        case 2: spec.tiers.push_back({"clients", wire::prime_match::at_least, "level", std::int64_t{pick(1000)}}); break;
        case 3: spec.tiers.push_back({"visits", wire::prime_match::at_least, "minutes", std::int64_t{pick(1000)}}); break;
        case 4: spec.tiers.push_back({"visits", wire::prime_match::equals, "minutes", std::int64_t{pick(5)}}); break;
        default:
          spec.tiers.push_back({"clients", wire::prime_match::at_least, "name", "r" + std::to_string(pick(5))});
      }
    }
    return spec;
  }

  /// The server's side of one push: decode, screen, store. Returns the encoded answer.
  std::vector<std::uint8_t> server_push(int r, const std::vector<std::uint8_t>& request, bool must_replay) {
    auto& rep = replicas_[r];
    // As the server's session: every change of a push is the pusher's (version 7).
    auto push = std::get<wire::push>(wire::decode(wire::message_type::push, request));
    for (auto& c : push.changes) c.ver.node = rep.db->node();
    const auto head_before = log_->head();
    auto rules = rules_;
    rules.server_side = r == 0;
    const auto screen = server::screen_push(push.changes, rep.db->node(), rules, now_ms_);
    if (screen.foreign_node) throw violation{"a tablet pushed a change with another node id"};
    auto to_store = push.changes;
    server::strip_server_only(to_store, screen.refused);
    auto outcome = log_->append(rep.device, server::batch_key(push.batch, rep.db->node()), to_store, screen.refused);
    if (must_replay && (!outcome.replayed || log_->head() != head_before)) {
      throw violation{"a push delivered again was stored again"};
    }
    server::fill_restores(*log_, push.changes, outcome.refused, rules);
    return wire::encode(wire::push_result{push.batch, outcome.accepted, outcome.first_seq, outcome.last_seq,
                                          outcome.replayed, std::move(outcome.refused)});
  }

  void final_sync() {
    for (auto& r : replicas_) r.online = true;
    // Until a whole round moves nothing: every replica has pushed and pulled everything.
    for (int round = 0;; ++round) {
      if (round > options_.replicas + 5) throw violation{"the final sync does not settle"};
      const auto head = log_->head();
      bool moved = false;
      for (int r = 0; r < options_.replicas; ++r) {
        const auto cursor = replicas_[r].db->cursor();
        if (!sync(r, false)) throw violation{"a sync without faults failed"};
        moved = moved || replicas_[r].db->cursor() != cursor;
      }
      if (!moved && log_->head() == head) break;
      now_ms_ += 1000;
    }
  }

  // ------------------------------------------------------------------ the properties

  void check() {
    // 1. Every replica and the server hold identical state.
    const auto server_state = log_->materialize();
    state_hasher hasher;
    for (const auto& [key, state] : server_state) hasher.add(key.first, key.second, state);
    const auto server_digest = hasher.finish();
    for (int r = 0; r < options_.replicas; ++r) {
      auto& db = *replicas_[r].db;
      if (db.outbox_size() != 0) throw violation{replicas_[r].device + " still has changes in its outbox"};
      if (!db.quarantined().empty()) throw violation{replicas_[r].device + " holds quarantined changes"};
      if (db.state_digest() != server_digest) {
        throw violation{replicas_[r].device + " does not hold the server's state after the final sync"};
      }
      result_.conflicts_opened += db.conflict_count();
    }
    result_.changes_logged = log_->head();

    // 2. No value anyone wrote vanished unseen: each is the current value, an open
    //    conflict, in the server's history, or replaced by someone who had seen it.
    std::set<std::string> in_history;
    {
      std::uint64_t cursor = 0;
      for (bool more = true; more;) {
        wire::changes_page_builder builder;
        const auto pos = log_->read_page(cursor, 0, 1000, 1u << 20, builder);
        const auto page = std::get<wire::changes_page>(
            wire::decode(wire::message_type::changes, builder.finish(pos.next_cursor, pos.more)));
        for (const auto& item : page.items) {
          for (const auto& f : item.body.fields) {
            if (const auto* s = std::get_if<std::string>(&f.val)) in_history.insert(*s);
          }
        }
        cursor = pos.next_cursor;
        more = pos.more;
      }
    }
    check_items(server_state);
    check_deletes(server_state);
    // server_only: every level anyone holds was written by the server-side writer.
    for (const auto& [key, state] : server_state) {
      const auto level = state.fields.find("level");
      if (key.first == "clients" && level != state.fields.end() && level->second.ver.node != replicas_[0].db->node()) {
        throw violation{"a client's level written by a field tablet (server_only) reached the server"};
      }
    }
    std::set<std::string> replaced;
    for (const auto& [t, w] : written_) replaced.insert(w.replaced.begin(), w.replaced.end());
    for (const auto& [key, w] : written_) {
      const std::string t = key.substr(0, key.find('#'));
      ++result_.values_checked;
      const bool was_deleted = deleted_.count({w.collection, w.id}) > 0;
      // A record deleted on its own device before it synced never sends its values: the
      // delete wins (docs/conflicts.md).
      if (!in_history.count(t) && !replaced.count(t) && !overwritten_locally(w) && !was_deleted) {
        throw violation{"value " + t + " of " + w.collection + "." + w.field + " never reached the server"};
      }
      // A revivable delete keeps the record's values: only a final one excuses a value.
      if (!w.kept || (was_deleted && !revives(w.collection)) || replaced.count(t)) continue;
      // A keep_both value nobody knowingly replaced: current, or an open conflict.
      const auto it = server_state.find({w.collection, w.id});
      if (it == server_state.end()) throw violation{"a written record is missing on the server"};
      const auto field = it->second.fields.find(w.field);
      if (field == it->second.fields.end()) throw violation{"a written field is missing on the server"};
      const auto is = [&](const value& v) {
        const auto* s = std::get_if<std::string>(&v);
        return s && *s == t;
      };
      const bool visible = is(field->second.val) ||
                           std::any_of(field->second.conflicts.begin(), field->second.conflicts.end(),
                                       [&](const conflict_value& c) { return is(c.val); });
      if (!visible) {
        throw violation{"value " + t + " of " + w.collection + "." + w.field +
                        " was lost: neither current nor an open conflict, and nobody replaced it knowingly"};
      }
    }
  }

  /// 3. Logs and sets: every follow-up entry appended to a live visit is in its log, once;
  ///    a client's flags hold every element whose last add no remove followed (an add
  ///    concurrent with a remove wins), and only elements ever added.
  void check_items(const std::map<server::record_key, record_state>& server_state) {
    for (const auto& [rec, entries] : appended_) {
      if (deleted_.count(rec) && !revives(rec.first)) continue;
      const auto it = server_state.find(rec);
      if (it == server_state.end()) throw violation{"a visit with follow-ups is missing on the server"};
      const auto f = it->second.fields.find("followups");
      if (f == it->second.fields.end()) throw violation{"a visit's follow-ups are missing on the server"};
      std::multiset<std::string> shown;
      for (const auto& e : nlohmann::json::parse(std::get<std::string>(f->second.val))) shown.insert(e.get<std::string>());
      if (shown != std::multiset<std::string>(entries.begin(), entries.end())) {
        throw violation{"a visit's follow-up log lost or repeated an entry"};
      }
      result_.values_checked += entries.size();
    }
    for (const auto& [rec, events] : set_events_) {
      if (deleted_.count(rec)) continue;
      const auto it = server_state.find(rec);
      if (it == server_state.end()) throw violation{"a client with flags is missing on the server"};
      const auto f = it->second.fields.find("flags");
      std::set<std::string> shown;
      if (f != it->second.fields.end()) {
        for (const auto& e : nlohmann::json::parse(std::get<std::string>(f->second.val))) shown.insert(e.get<std::string>());
      }
      std::map<std::string, bool> last_is_add;
      for (const auto& [e, add] : events) last_is_add[e] = add;
      for (const auto& [e, add] : last_is_add) {
        if (add && !shown.count(e)) throw violation{"a flag added and never removed afterwards is missing"};
      }
      for (const auto& e : shown) {
        if (!last_is_add.count(e)) throw violation{"a flag nobody added is in a set"};
      }
      result_.values_checked += events.size();
    }
  }

  /// 4. An edit made after a delete by someone who had not received it is not dropped
  ///    silently: a record deleted once and given a keep_both edit later (in the run's
  ///    order, so concurrently) shows at least one open conflict on every replica; in a
  ///    collection whose deletes revive, it is live again, with the delete as its open
  ///    conflict unless someone dismissed it.
  void check_deletes(const std::map<server::record_key, record_state>& server_state) {
    for (const auto& [rec, events] : record_events_) {
      const auto deletes = std::count_if(events.begin(), events.end(), [](const auto& e) { return e.first; });
      if (deletes != 1) continue;
      const auto d = std::find_if(events.begin(), events.end(), [](const auto& e) { return e.first; });
      const bool edited_after = std::any_of(d, events.end(), [](const auto& e) { return !e.first; });
      if (!edited_after) continue;
      const auto it = server_state.find(rec);
      if (revives(rec.first)) {
        if (it == server_state.end() || is_hidden(it->second)) {
          throw violation{"an edit concurrent with a revivable delete did not bring the record back"};
        }
        const auto& st = it->second;
        const bool dismissed = st.removed && st.dismissed && !(*st.dismissed < *st.removed);
        if (!is_revived(st) && !dismissed) throw violation{"a revived record does not show the delete as an open conflict"};
        ++result_.deletes_surfaced;
        ++result_.revived;
        continue;
      }
      if (it == server_state.end() || !it->second.deleted) throw violation{"a deleted record is not deleted on the server"};
      const bool visible = std::any_of(it->second.fields.begin(), it->second.fields.end(),
                                       [](const auto& f) { return !f.second.conflicts.empty(); });
      if (!visible) throw violation{"an edit concurrent with a delete vanished: the deleted record shows no open conflict"};
      ++result_.deletes_surfaced;
    }
  }

  /// Whether the collection's deletes are revivable (update_revives).
  static bool revives(const std::string& collection) { return collection == "visits"; }

  /// A value its own writer may have overwritten before it left the device: a later
  /// write by the same replica to the same field. Such a value is not sent (the outbox
  /// sends a record's latest values) and is nobody else's words.
  bool overwritten_locally(const written_value& w) const {
    return std::any_of(written_.begin(), written_.end(), [&](const auto& entry) {
      const auto& other = entry.second;
      return other.replica == w.replica && other.id == w.id && other.field == w.field && other.order > w.order;
    });
  }

  simulation_options options_;
  std::mt19937_64 rng_;
  std::uint64_t now_ms_ = k_start_ms;
  std::uint64_t tokens_ = 0;
  std::unique_ptr<server::change_store> log_;
  server::push_rules rules_;
  std::vector<replica> replicas_;
  std::vector<std::pair<std::string, record_id>> records_;
  std::set<std::pair<std::string, record_id>> deleted_;
  std::map<std::string, written_value> written_;  ///< by value (with a #n suffix for values written again)
  std::uint64_t writes_ = 0;
  std::map<std::pair<std::string, record_id>, std::vector<std::string>> appended_;
  std::map<std::pair<std::string, record_id>, std::vector<std::pair<std::string, bool>>> set_events_;
  std::map<std::pair<std::string, record_id>, std::vector<std::pair<bool, std::uint64_t>>> record_events_;  ///< (delete?, order)
  simulation_result result_;
};

}  // namespace

simulation_result run_simulation(const simulation_options& options) { return simulation(options).run(); }

}  // namespace caresync::testing
