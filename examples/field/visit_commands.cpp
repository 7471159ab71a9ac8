#include "visit_commands.hpp"

#include "input.hpp"
#include "local_time.hpp"
#include "messages.hpp"
#include "store_query.hpp"

#include <caresync/protocol/errors.hpp>
#include <caresync/store.hpp>

#include <sqlite3.h>

#include <iostream>
#include <memory>

namespace caresync::field {

namespace {

constexpr option_names k_visit_options = {{"visits.start_at", "--start"}, {"visits.end_at", "--end"},
                                          {"visits.kind", "--kind"},      {"visits.note", "--note"},
                                          {"visits.worker_id", "--worker"}, {"visits.activity_codes", "--activity"},
                                          {"visits.status", "--status"},  {"visits.client_id", "--client"}};

constexpr const char* k_time_help = "Local time: 23.11.2026 8:00, 8:00 (today), 2026-11-23 08:00; or UTC 2026-11-23T07:00:00Z";

care::visit_status status_option(const std::string& text) {
  for (const auto s : {care::visit_status::planned, care::visit_status::done, care::visit_status::cancelled,
                       care::visit_status::no_one_home}) {
    if (care::to_code(s) == text) return s;
  }
  refuse(fill(tr("--status must be planned, done, cancelled or no_one_home, not '{}'"), {text}));
}

/// Runs a write of the care API, its refusal in the command's terms.
template <typename Write>
auto in_terms(Write&& write) {
  try {
    return write();
  } catch (const error& e) {
    if (e.code() != make_error_code(storage_errc::invalid_argument)) throw;
    refuse(in_option_terms(e.what(), k_visit_options));
  }
}

}  // namespace

visit_commands::visit_commands(CLI::App& app) {
  record_cmd_ = app.add_subcommand("record-visit", "Record a visit to a client; prints its id");
  record_cmd_->add_option("--client", client_, "The client's id")->required();
  record_cmd_->add_option("--worker", worker_, "The worker's id")->required();
  record_cmd_->add_option("--start", start_, std::string("Start. ") + k_time_help)->required();
  record_cmd_->add_option("--end", end_, "End, as --start; a time alone (9:15) is on the start's day")->required();
  kind_ = "field_social_work";
  record_cmd_->add_option("--kind", kind_, "A visit kind code (docs/care.md)")->capture_default_str();
  record_cmd_->add_option("--activity", activities_, "Activity codes (docs/care.md)");
  record_cmd_->add_option("--note", note_, "What happened");
  status_ = "done";
  record_cmd_->add_option("--status", status_, "planned, done, cancelled or no_one_home")->capture_default_str();

  edit_cmd_ = app.add_subcommand("edit-visit", "Change a visit: only the options given change");
  edit_cmd_->add_option("id", id_, "The visit's id")->required();
  edit_cmd_->add_option("--start", start_, "New start; a time alone (9:00) keeps the visit's day");
  edit_cmd_->add_option("--end", end_, "New end; a time alone is on the (new) start's day");
  edit_cmd_->add_option("--worker", worker_, "The worker's id");
  edit_cmd_->add_option("--kind", kind_, "A visit kind code (docs/care.md)");
  edit_cmd_->add_option("--activity", activities_, "Activity codes: the whole new list");
  edit_cmd_->add_option("--note", note_, "The new note (replaces the old one)");
  edit_cmd_->add_option("--status", status_, "planned, done, cancelled or no_one_home");

  list_cmd_ = app.add_subcommand("visits", "List the visits of a day (today by default), in local time");
  list_cmd_->add_option("--date", day_, "The day: 23.11.2026 or 2026-11-23");
}

std::optional<int> visit_commands::run(care::records& records) {
  if (*record_cmd_) return record(records);
  if (*edit_cmd_) return edit(records);
  if (*list_cmd_) return list(records);
  return std::nullopt;
}

int visit_commands::record(care::records& records) {
  care::visit v;
  v.client_id = id_option(client_, "--client");
  v.worker_id = worker_;
  v.start_at = moment_option(start_, "--start", today());
  v.end_at = moment_option(end_, "--end", *day_of(v.start_at));
  v.kind = kind_;
  v.activity_codes = activities_;
  v.note = note_;
  v.status = status_option(status_);
  std::cout << in_terms([&] { return records.visits().add(v); }).to_string() << "\n";
  return 0;
}

int visit_commands::edit(care::records& records) {
  const auto id = id_option(id_, "id");
  const auto before = records.visits().find(id);
  if (!before) refuse(fill(tr("there is no visit {} on this tablet"), {id_}));
  care::visit_changes changes;
  std::string start = before->start_at;
  if (!edit_cmd_->get_option("--start")->empty()) {
    start = moment_option(start_, "--start", day_of(before->start_at).value_or(today()));
    changes.start_at = start;
  }
  if (!edit_cmd_->get_option("--end")->empty()) changes.end_at = moment_option(end_, "--end", day_of(start).value_or(today()));
  if (!edit_cmd_->get_option("--worker")->empty()) changes.worker_id = worker_;
  if (!edit_cmd_->get_option("--kind")->empty()) changes.kind = kind_;
  if (!edit_cmd_->get_option("--activity")->empty()) changes.activity_codes = activities_;
  if (!edit_cmd_->get_option("--note")->empty()) changes.note = note_;
  if (!edit_cmd_->get_option("--status")->empty()) changes.status = status_option(status_);
  in_terms([&] {
    records.visits().update(id, changes);
    return 0;
  });
  const auto after = records.visits().find(id);
  std::cout << fill(tr("visit {} changed: {}-{}, {}"), {id_, format_local(after->start_at), format_local(after->end_at, true),
                                                         std::string(care::to_code(after->status))})
            << "\n";
  return 0;
}

int visit_commands::list(care::records& records) {
  const local_date day = day_.empty() ? today() : date_option(day_, "--date");
  const auto [from, to] = utc_bounds(day);
  // The day's visits, read with plain SQL on a connection of its own, as any app reads
  // its store (docs/store.md): the repositories list visits by client, not by day.
  const char* sql =
      "SELECT v.id, v.start_at, v.end_at, v.kind, v.status, coalesce(c.name, '?') FROM visits v"
      " LEFT JOIN clients c ON c.id = v.client_id WHERE v.start_at >= ? AND v.start_at < ? ORDER BY v.start_at, v.id";
  const store_query stmt(records.store().path(), sql);
  sqlite3_bind_text(stmt.get(), 1, from.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(stmt.get(), 2, to.c_str(), -1, SQLITE_TRANSIENT);
  const auto text = [&](int col) {
    const auto* t = sqlite3_column_text(stmt.get(), col);
    return t ? std::string(reinterpret_cast<const char*>(t)) : std::string();
  };
  unsigned long n = 0;
  while (sqlite3_step(stmt.get()) == SQLITE_ROW) {
    std::cout << text(0) << "  " << format_local(text(1), true) << "-" << format_local(text(2), true) << "  " << text(3)
              << "  " << text(4) << "  " << text(5) << "\n";
    ++n;
  }
  std::cerr << fill(trn("{} visit(s) on {}", "{} visit(s) on {}", n), {std::to_string(n), format_date(day)}) << "\n";
  return 0;
}

}  // namespace caresync::field
