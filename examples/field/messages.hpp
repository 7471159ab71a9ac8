#pragma once
// What caresync-field says, in the language of the person using it: Czech when the
// locale asks for it (LC_ALL, LC_MESSAGES or LANG = cs_...; LANGUAGE as GNU gettext
// reads it), English otherwise. The translations are a gettext catalog
// (examples/field/po/cs.po, compiled to caresync-field.mo at build time) looked up in
// $CARESYNC_LOCALEDIR, else beside the program (the build tree: <dir>/locale), else in
// <dir>/../share/locale (installed).
// Thread contract: init_messages() once at start, on the main thread, before any tr().

#include <initializer_list>
#include <string>
#include <string_view>

namespace caresync::field {

/// Sets LC_MESSAGES from the environment and opens the catalog. Where the Czech locale
/// is asked for but not installed (containers often have only C.UTF-8), the messages are
/// still Czech: LC_MESSAGES becomes C.UTF-8 and LANGUAGE (if unset) "cs". Only
/// LC_MESSAGES changes: numbers and dates keep the C locale, so nothing parsed or
/// written for the store depends on the locale.
void init_messages();

/// The translation of `english` (a gettext msgid; xgettext --keyword=tr).
const char* tr(const char* english);

/// The translation of a message with a count: `singular` or `plural` by gettext's
/// plural rules for `n` (Czech has three forms; xgettext --keyword=trn:1,2).
const char* trn(const char* singular, const char* plural, unsigned long n);

/// Marks a message that reaches tr() whole from elsewhere (the care API's, the device
/// file's) so that xgettext (--keyword=translatable) puts it in the catalog.
constexpr const char* translatable(const char* english) noexcept { return english; }

/// `pattern` with each "{}" replaced by the next of `args`, in order (translations may
/// not reorder them).
std::string fill(std::string_view pattern, std::initializer_list<std::string> args);

}  // namespace caresync::field
