#include "pending_command.hpp"

#include "input.hpp"
#include "local_time.hpp"
#include "messages.hpp"
#include "store_query.hpp"

#include <caresync/protocol/errors.hpp>
#include <caresync/store.hpp>

#include <sqlite3.h>

#include <algorithm>
#include <cstring>
#include <iostream>
#include <memory>
#include <vector>

namespace caresync::field {

namespace {

/// One record's entries in the outbox.
struct waiting_record {
  std::string collection;
  record_id id;
  std::int64_t changes = 0;
  std::uint64_t last_ms = 0;
  bool deleted = false;
};

/// The outbox by record, oldest first, read with plain SQL on a read-only connection
/// (cs_outbox is described in docs/store.md; the store's API gives only its size).
std::vector<waiting_record> outbox_by_record(const std::string& path) {
  // stamp >> 16: the hybrid clock's wall time in ms (docs/protocol.md); kind 1 a delete.
  const char* sql =
      "SELECT collection, id, count(*), max(stamp) >> 16, max(kind = 1) FROM cs_outbox"
      " GROUP BY collection, id ORDER BY min(seq)";
  const store_query stmt(path, sql);
  std::vector<waiting_record> out;
  while (sqlite3_step(stmt.get()) == SQLITE_ROW) {
    waiting_record& w = out.emplace_back();
    const auto* name = sqlite3_column_text(stmt.get(), 0);
    w.collection = name ? reinterpret_cast<const char*>(name) : "";
    if (sqlite3_column_bytes(stmt.get(), 1) == static_cast<int>(w.id.bytes.size())) {
      std::memcpy(w.id.bytes.data(), sqlite3_column_blob(stmt.get(), 1), w.id.bytes.size());
    }
    w.changes = sqlite3_column_int64(stmt.get(), 2);
    w.last_ms = static_cast<std::uint64_t>(sqlite3_column_int64(stmt.get(), 3));
    w.deleted = sqlite3_column_int64(stmt.get(), 4) != 0;
  }
  return out;
}

/// Why the server refused a change, and what the person can do, in a sentence.
std::string refusal_in_words(const std::error_code& code) {
  if (code == make_error_code(protocol_errc::limit_exceeded)) {
    return tr("something in it is larger than the server takes (a long note, say): shorten it with edit-visit or "
              "edit-client, sync, then forget this refused change with 'pending --drop NUMBER'");
  }
  if (code == make_error_code(protocol_errc::out_of_scope)) {
    return tr("the record belongs to a unit this tablet does not work for: ask your coordinator, who can hand the "
              "client over with a referral");
  }
  if (code == make_error_code(protocol_errc::server_only)) {
    return tr("only the office may change this field; the tablet takes the office's value back");
  }
  return tr("the server did not accept it: tell your administrator, with the server's words below");
}

}  // namespace

std::string describe_record(care::records& records, const std::string& collection, const record_id& id) {
  const auto client_name = [&](const record_id& c) {
    const auto found = records.clients().find(c);
    return found ? found->name : std::string("?");
  };
  if (collection == "clients") {
    if (const auto c = records.clients().find(id)) return fill(tr("client {}"), {c->name});
  } else if (collection == "visits") {
    if (const auto v = records.visits().find(id)) {
      return fill(tr("visit of {}, {}"), {client_name(v->client_id), format_local(v->start_at)});
    }
  } else if (collection == "referrals") {
    if (const auto r = records.referrals().find(id)) {
      return fill(tr("referral of {} to {}"), {client_name(r->client_id), r->to_unit});
    }
  } else if (collection == "caregivers") {
    if (const auto c = records.caregivers().find(id)) return fill(tr("caregiver {} of {}"), {c->name, client_name(c->client_id)});
  } else {
    return collection + " " + id.to_string();
  }
  return fill(tr("{} {} (deleted)"), {collection, id.to_string()});
}

pending_command::pending_command(CLI::App& app) {
  cmd_ = app.add_subcommand("pending", "What has not reached the server yet, and what it refused and why");
  cmd_->add_option("--retry", retry_, "Send a refused change again (its NUMBER from the list), after the cause is fixed");
  cmd_->add_option("--drop", drop_, "Forget a refused change (its NUMBER), after correcting the record")
      ->excludes(cmd_->get_option("--retry"));
}

std::optional<int> pending_command::run(care::records& records) {
  if (!*cmd_) return std::nullopt;
  auto& local = records.store();
  const auto act = [&](std::int64_t number, bool retry) {
    try {
      retry ? local.retry_quarantined(number) : local.drop_quarantined(number);
    } catch (const error& e) {
      if (e.code() != make_error_code(storage_errc::not_found)) throw;
      refuse(fill(tr("there is no refused change number {}: 'pending' lists them"), {std::to_string(number)}));
    }
  };
  if (!cmd_->get_option("--retry")->empty()) {
    act(retry_, true);
    std::cout << fill(tr("refused change {} goes to the server with the next sync"), {std::to_string(retry_)}) << "\n";
    return 0;
  }
  if (!cmd_->get_option("--drop")->empty()) {
    act(drop_, false);
    std::cout << fill(tr("refused change {} is forgotten; the record keeps what it holds on this tablet"),
                      {std::to_string(drop_)})
              << "\n";
    return 0;
  }
  list_outbox(records);
  list_refused(records);
  return 0;
}

void pending_command::list_outbox(care::records& records) {
  const auto waiting = outbox_by_record(records.store().path());
  if (waiting.empty()) {
    std::cout << tr("Nothing waits to be sent: every change made on this tablet has reached the server or is listed "
                    "as refused below.")
              << "\n";
    return;
  }
  const auto total = records.store().outbox_size();
  std::cout << fill(trn("Waiting to be sent with the next sync ({} change):", "Waiting to be sent with the next sync ({} changes):",
                        total),
                    {std::to_string(total)})
            << "\n";
  for (const auto& w : waiting) {
    std::cout << "  " << (w.deleted ? fill(tr("deleted: {}"), {describe_record(records, w.collection, w.id)})
                                    : describe_record(records, w.collection, w.id))
              << "  (" << fill(tr("changed {}"), {format_local_ms(w.last_ms)}) << ")  " << w.id.to_string() << "\n";
  }
}

void pending_command::list_refused(care::records& records) {
  const auto refused = records.store().quarantined();
  if (refused.empty()) {
    std::cout << tr("The server has refused nothing.") << "\n";
    return;
  }
  std::cout << fill(trn("Refused by the server ({} change; it stays on this tablet):",
                        "Refused by the server ({} changes; they stay on this tablet):", refused.size()),
                    {std::to_string(refused.size())})
            << "\n";
  for (const auto& q : refused) {
    std::cout << "  " << fill(tr("number {}"), {std::to_string(q.id)}) << ": "
              << (q.deleted ? fill(tr("deleted: {}"), {describe_record(records, q.collection, q.record)})
                            : describe_record(records, q.collection, q.record))
              << "  (" << fill(tr("refused {}"), {format_local_ms(q.at_ms)}) << ")  " << q.record.to_string() << "\n"
              << "    " << tr("why:") << " " << refusal_in_words(q.code) << "\n"
              << "    " << tr("the server said:") << " " << q.reason << "\n";
  }
}

}  // namespace caresync::field
