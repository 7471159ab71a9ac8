#include "conflict_commands.hpp"

#include "input.hpp"
#include "local_time.hpp"
#include "messages.hpp"
#include "pending_command.hpp"

#include <caresync/protocol/errors.hpp>
#include <caresync/store.hpp>

#include <cstdio>
#include <iostream>

namespace caresync::field {

namespace {

std::string value_text(const value& v) {
  if (const auto* s = std::get_if<std::string>(&v)) return "\"" + *s + "\"";
  if (const auto* i = std::get_if<std::int64_t>(&v)) return std::to_string(*i);
  if (const auto* d = std::get_if<double>(&v)) return std::to_string(*d);
  if (std::holds_alternative<std::monostate>(v)) return tr("(none)");
  return tr("(bytes)");
}

/// Who wrote a value and when: this tablet, or another replica by its node id (the only
/// name a tablet has for the others; one per device store), at its clock stamp.
std::string written_by(const version& ver, node_id self) {
  char node[20];
  std::snprintf(node, sizeof node, "%016llx", static_cast<unsigned long long>(ver.node));
  const auto when = format_local_ms(ver.stamp.wall_ms());
  if (ver.node == self) return fill(tr("written on this tablet, {}"), {when});
  return fill(tr("written on another tablet or the office (node {}), {}"), {node, when});
}

/// Runs resolve or dismiss; "no open conflict" in the person's words.
template <typename Act>
void on_open_conflict(const std::string& collection, const std::string& id, const std::string& field, Act&& act) {
  try {
    act();
  } catch (const error& e) {
    if (e.code() != make_error_code(storage_errc::not_found)) throw;
    refuse(fill(tr("{} {} has no open conflict in field '{}': 'conflicts' lists them"), {collection, id, field}));
  }
}

}  // namespace

conflict_commands::conflict_commands(CLI::App& app) {
  list_cmd_ = app.add_subcommand("conflicts", "List open conflicts (concurrent edits kept for a person), who wrote each value and when");
  resolve_cmd_ = app.add_subcommand("resolve", "Resolve a conflict with the value to keep");
  resolve_cmd_->add_option("--collection", collection_, "Collection")->required();
  resolve_cmd_->add_option("--id", id_, "Record id")->required();
  resolve_cmd_->add_option("--field", field_, "Field")->required();
  resolve_cmd_->add_option("--value", value_, "The text to keep (one of the values, or both merged)")->required();
  dismiss_cmd_ = app.add_subcommand("dismiss", "Close a conflict keeping the value shown (the other values are dropped)");
  dismiss_cmd_->add_option("--collection", collection_, "Collection")->required();
  dismiss_cmd_->add_option("--id", id_, "Record id")->required();
  dismiss_cmd_->add_option("--field", field_, "Field (\"\" for a record brought back after a delete)")->required();
}

std::optional<int> conflict_commands::run(care::records& records) {
  if (*list_cmd_) return list(records);
  auto& local = records.store();
  if (*resolve_cmd_) {
    const auto id = id_option(id_, "--id");
    on_open_conflict(collection_, id_, field_, [&] { local.resolve_conflict(collection_, id, field_, value{value_}); });
    std::cout << tr("resolved") << "\n";
    return 0;
  }
  if (*dismiss_cmd_) {
    const auto id = id_option(id_, "--id");
    on_open_conflict(collection_, id_, field_, [&] { local.dismiss_conflict(collection_, id, field_); });
    std::cout << tr("dismissed: the value shown stays") << "\n";
    return 0;
  }
  return std::nullopt;
}

int conflict_commands::list(care::records& records) {
  auto& local = records.store();
  const auto self = local.node();
  for (const auto& c : local.conflicts()) {
    std::cout << describe_record(records, c.collection, c.record) << ": ";
    if (c.record_revived) {
      std::cout << tr("brought back by an edit after it was deleted; keep it with dismiss --field \"\"");
    } else {
      std::cout << fill(tr("field {}"), {c.field});
      if (c.record_deleted) std::cout << " " << tr("(the record was deleted meanwhile)");
    }
    std::cout << "\n  " << tr("shown:") << " " << value_text(c.current.val) << "  " << written_by(c.current.ver, self) << "\n";
    for (const auto& o : c.others) {
      std::cout << "  " << tr("also:") << "  " << value_text(o.val) << "  " << written_by(o.ver, self) << "\n";
    }
    std::cout << "  " << c.collection << " " << c.record.to_string() << " " << c.field << "\n";
  }
  const auto n = local.conflict_count();
  std::cerr << fill(trn("{} open conflict(s)", "{} open conflict(s)", n), {std::to_string(n)}) << "\n";
  return 0;
}

}  // namespace caresync::field
