#include "messages.hpp"

#include <libintl.h>

#include <clocale>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <system_error>

namespace caresync::field {

namespace {

constexpr const char* k_domain = "caresync-field";

/// The locale the environment names for messages, by POSIX precedence.
std::string_view wanted_messages_locale() {
  for (const char* name : {"LC_ALL", "LC_MESSAGES", "LANG"}) {
    const char* v = std::getenv(name);
    if (v && *v) return v;
  }
  return {};
}

/// Where caresync-field.mo files are: the override, the build tree, the installed tree.
std::string catalog_directory() {
  if (const char* dir = std::getenv("CARESYNC_LOCALEDIR"); dir && *dir) return dir;
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return {};
  const auto here = exe.parent_path();
  if (std::filesystem::is_directory(here / "locale", ec)) return (here / "locale").string();
  return (here.parent_path() / "share" / "locale").string();
}

}  // namespace

void init_messages() {
  const char* got = std::setlocale(LC_MESSAGES, "");
  const auto wanted = wanted_messages_locale();
  if ((!got || std::strcmp(got, "C") == 0) && wanted.substr(0, 2) == "cs") {
    // GNU gettext ignores LANGUAGE under the "C" locale but not under "C.UTF-8".
    if (std::setlocale(LC_MESSAGES, "C.UTF-8")) ::setenv("LANGUAGE", "cs", 0);
  }
  if (const auto dir = catalog_directory(); !dir.empty()) ::bindtextdomain(k_domain, dir.c_str());
  // The catalog is UTF-8 and so is the terminal of every tablet: no conversion by LC_CTYPE.
  ::bind_textdomain_codeset(k_domain, "UTF-8");
  ::textdomain(k_domain);
}

const char* tr(const char* english) { return ::dgettext(k_domain, english); }

const char* trn(const char* singular, const char* plural, unsigned long n) {
  return ::dngettext(k_domain, singular, plural, n);
}

std::string fill(std::string_view pattern, std::initializer_list<std::string> args) {
  std::string out;
  auto next = args.begin();
  std::size_t i = 0;
  while (i < pattern.size()) {
    if (pattern.compare(i, 2, "{}") == 0 && next != args.end()) {
      out += *next++;
      i += 2;
    } else {
      out += pattern[i++];
    }
  }
  return out;
}

}  // namespace caresync::field
