#include "input.hpp"

#include "messages.hpp"

#include <caresync/protocol/errors.hpp>

#include <cstdio>

namespace caresync::field {

namespace {

// Messages that reach tr() whole: the care API's after in_option_terms(), and the
// device file's (field.cpp prints every error through tr()).
[[maybe_unused]] constexpr const char* k_whole_messages[] = {
    translatable("--end must be after --start"),
    translatable("--end is more than 24 hours after --start; check the dates"),
    translatable("--name is required"),
    translatable("this tablet has no server yet: run 'enroll' (with a code from the administrator) or 'configure' first"),
};

}  // namespace

void refuse(const std::string& sentence) { throw error(make_error_code(storage_errc::invalid_argument), sentence); }

record_id id_option(const std::string& text, const char* option) {
  const auto id = record_id::parse(text);
  if (!id) refuse(fill(tr("{} '{}' is not a record id (the ids are printed by add-client, record-visit and clients)"), {option, text}));
  return *id;
}

std::string moment_option(const std::string& text, const char* option, const local_date& day) {
  const auto utc = parse_moment(text, day);
  if (!utc) {
    refuse(fill(tr("{} '{}' is not a date and time this tablet understands: write e.g. 23.11.2026 8:00, "
                   "or 8:00 alone, in local time (or 2026-11-23T07:00:00Z in UTC); a time the clocks skip "
                   "when summer time starts does not exist"),
                {option, text}));
  }
  return *utc;
}

local_date date_option(const std::string& text, const char* option) {
  const auto d = parse_date(text);
  if (!d) refuse(fill(tr("{} '{}' is not a date: write e.g. 23.11.2026 or 2026-11-23"), {option, text}));
  return *d;
}

std::string stored_date_option(const std::string& text, const char* option) {
  if (text.empty()) return text;
  const auto d = date_option(text, option);
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02d", d.year, d.month, d.day);
  return buf;
}

std::string in_option_terms(std::string message, option_names names) {
  for (const auto& [field, option] : names) {
    const std::string_view f(field);
    for (auto at = message.find(f); at != std::string::npos; at = message.find(f, at)) {
      message.replace(at, f.size(), option);
      at += std::string_view(option).size();
    }
  }
  return tr(message.c_str());
}

}  // namespace caresync::field
