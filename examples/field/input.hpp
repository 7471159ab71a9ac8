#pragma once
// What a field worker types into caresync-field's options, turned into what the care API
// takes, with errors that name the option typed ("--start"), never the store's fields
// ("visits.start_at"), in the person's language (messages.hpp).
// Thread contract: the main thread.

#include "local_time.hpp"

#include <caresync/protocol/record_id.hpp>

#include <initializer_list>
#include <string>
#include <utility>

namespace caresync::field {

/// Throws caresync::error (storage_errc::invalid_argument: exit status 2) with `sentence`,
/// already translated.
[[noreturn]] void refuse(const std::string& sentence);

/// The record id typed for `option`; refuse()s anything else.
record_id id_option(const std::string& text, const char* option);

/// A moment typed for `option` (local_time.hpp's forms; a time alone is on `day`), as
/// stored (UTC); refuse()s anything else, with examples of what is understood.
std::string moment_option(const std::string& text, const char* option, const local_date& day);

/// A day typed for `option` ("23.11.2026" or "2026-11-23"); refuse()s anything else.
local_date date_option(const std::string& text, const char* option);

/// A day typed for `option` as the care API stores dates ("YYYY-MM-DD"); "" stays "".
std::string stored_date_option(const std::string& text, const char* option);

/// Which option of a command writes which care field ("visits.start_at" -> "--start").
using option_names = std::initializer_list<std::pair<const char*, const char*>>;

/// The care API's error message with each field named as its option, translated when
/// the catalog has the result ("--end must be after --start").
std::string in_option_terms(std::string message, option_names names);

}  // namespace caresync::field
