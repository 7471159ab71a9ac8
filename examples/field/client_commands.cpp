#include "client_commands.hpp"

#include "input.hpp"
#include "messages.hpp"

#include <caresync/protocol/errors.hpp>

#include <cstdio>
#include <iostream>

namespace caresync::field {

namespace {

constexpr option_names k_client_options = {{"clients.name", "--name"},
                                           {"clients.org_unit", "--org-unit"},
                                           {"clients.municipality", "--municipality"},
                                           {"clients.birth_date", "--birth-date"},
                                           {"clients.address", "--address"},
                                           {"clients.contact", "--contact"},
                                           {"clients.status", "--status"}};

template <typename Write>
auto in_terms(Write&& write) {
  try {
    return write();
  } catch (const error& e) {
    if (e.code() != make_error_code(storage_errc::invalid_argument)) throw;
    refuse(in_option_terms(e.what(), k_client_options));
  }
}

care::client_status status_option(const std::string& text) {
  for (const auto s : {care::client_status::active, care::client_status::paused, care::client_status::closed}) {
    if (care::to_code(s) == text) return s;
  }
  refuse(fill(tr("--status must be active, paused or closed, not '{}'"), {text}));
}

/// "2026-11-23" as a person reads it ("23.11.2026"); "" stays "".
std::string shown_date(const std::string& stored) {
  int y = 0, m = 0, d = 0;
  if (std::sscanf(stored.c_str(), "%4d-%2d-%2d", &y, &m, &d) != 3) return stored;
  return format_date({y, m, d});
}

void print(const care::client& c) {
  std::cout << c.id.to_string() << "  " << c.name;
  if (!c.birth_date.empty()) std::cout << "  *" << shown_date(c.birth_date);
  if (!c.municipality.empty()) std::cout << "  " << c.municipality;
  std::cout << "  " << c.org_unit;
  if (c.status != care::client_status::active) std::cout << "  (" << care::to_code(c.status) << ")";
  std::cout << "\n";
}

}  // namespace

client_commands::client_commands(CLI::App& app) {
  add_cmd_ = app.add_subcommand("add-client", "Add a client; prints its id");
  add_cmd_->add_option("--name", name_, "Name")->required();
  add_cmd_->add_option("--org-unit", org_unit_, "The unit that owns the client")->required();
  add_cmd_->add_option("--municipality", municipality_, "Municipality");
  add_cmd_->add_option("--birth-date", birth_date_, "Date of birth: 3.4.1941 or 1941-04-03");
  add_cmd_->add_option("--address", address_, "Address");
  add_cmd_->add_option("--contact", contact_, "Phone or other contact");

  list_cmd_ = app.add_subcommand("clients", "List the clients on this tablet, or find them by name");
  list_cmd_->add_option("name", words_, "Words of the name (case and diacritics do not matter: novakova finds Nováková)");
  list_cmd_->add_option("--org-unit", org_unit_, "Only the clients of this unit");

  edit_cmd_ = app.add_subcommand("edit-client", "Change a client: only the options given change");
  edit_cmd_->add_option("id", id_, "The client's id")->required();
  edit_cmd_->add_option("--name", name_, "Name");
  edit_cmd_->add_option("--municipality", municipality_, "Municipality (\"\" clears it)");
  edit_cmd_->add_option("--birth-date", birth_date_, "Date of birth: 3.4.1941 or 1941-04-03 (\"\" clears it)");
  edit_cmd_->add_option("--address", address_, "Address (\"\" clears it)");
  edit_cmd_->add_option("--contact", contact_, "Phone or other contact (\"\" clears it)");
  edit_cmd_->add_option("--status", status_, "active, paused or closed");
}

std::optional<int> client_commands::run(care::records& records) {
  if (*add_cmd_) return add(records);
  if (*list_cmd_) return list(records);
  if (*edit_cmd_) return edit(records);
  return std::nullopt;
}

int client_commands::add(care::records& records) {
  care::client c;
  c.name = name_;
  c.org_unit = org_unit_;
  c.municipality = municipality_;
  c.birth_date = stored_date_option(birth_date_, "--birth-date");
  c.address = address_;
  c.contact = contact_;
  std::cout << in_terms([&] { return records.clients().add(c); }).to_string() << "\n";
  return 0;
}

int client_commands::list(care::records& records) {
  const auto found = words_.empty() ? records.clients().list(org_unit_) : records.clients().search(words_, org_unit_);
  for (const auto& c : found) print(c);
  if (found.empty() && !words_.empty()) {
    std::cerr << fill(tr("no client on this tablet has a name with '{}'"), {words_}) << "\n";
  } else {
    std::cerr << fill(trn("{} client(s)", "{} client(s)", found.size()), {std::to_string(found.size())}) << "\n";
  }
  return 0;
}

int client_commands::edit(care::records& records) {
  const auto id = id_option(id_, "id");
  if (!records.clients().find(id)) refuse(fill(tr("there is no client {} on this tablet"), {id_}));
  care::client_changes changes;
  const auto given = [&](const char* option) { return !edit_cmd_->get_option(option)->empty(); };
  if (given("--name")) changes.name = name_;
  if (given("--municipality")) changes.municipality = municipality_;
  if (given("--birth-date")) changes.birth_date = stored_date_option(birth_date_, "--birth-date");
  if (given("--address")) changes.address = address_;
  if (given("--contact")) changes.contact = contact_;
  if (given("--status")) changes.status = status_option(status_);
  in_terms([&] {
    records.clients().update(id, changes);
    return 0;
  });
  std::cout << tr("client changed:") << " ";
  print(*records.clients().find(id));
  return 0;
}

}  // namespace caresync::field
