#include <caresync/server/config.hpp>

#include <caresync/protocol/errors.hpp>
#include <caresync/protocol/sha256.hpp>

#include <toml++/toml.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <type_traits>
#include <filesystem>
#include <limits>
#include <map>
#include <set>
#include <string_view>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/stat.h>

namespace caresync::server {

namespace {

/// The example config the .deb installs, every key with its default and meaning.
constexpr const char* k_example_config = "/usr/share/doc/caresync-server/caresync-server.toml.example";

[[noreturn]] void bad(const std::string& what) {
  throw error(make_error_code(storage_errc::invalid_argument), what);
}

/// Whether `address` names this host only: 127.0.0.0/8, ::1 or "localhost".
bool is_loopback(const std::string& address) {
  if (address == "localhost") return true;
  in_addr v4{};
  if (inet_pton(AF_INET, address.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  return inet_pton(AF_INET6, address.c_str(), &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
}

/// The admin bearer token in `path`: its first line, surrounding blanks removed. The
/// file must be readable by its owner alone, and the token long enough not to guess.
std::string read_token_file(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    bad("config key 'admin.bearer_token_file' names '" + path + "', which cannot be read: " + std::strerror(errno));
  }
  if ((st.st_mode & 077) != 0) {
    bad("config key 'admin.bearer_token_file' names '" + path +
        "', which others may read; make it readable by the server's user alone (chmod 600)");
  }
  std::ifstream in(path);
  std::string token;
  std::getline(in, token);
  if (!in && !in.eof()) bad("config key 'admin.bearer_token_file' names '" + path + "', which cannot be read");
  const auto first = token.find_first_not_of(" \t\r");
  const auto last = token.find_last_not_of(" \t\r");
  token = first == std::string::npos ? std::string() : token.substr(first, last - first + 1);
  if (token.size() < 32) {
    bad("config key 'admin.bearer_token_file' names '" + path +
        "', whose first line is shorter than 32 characters; write a long random token there "
        "(e.g. openssl rand -hex 32)");
  }
  return token;
}

/// Reads one key of a table, checking its type; unknown keys are found by the caller.
class table_reader {
 public:
  /// `file`: the config file being read, named in the messages.
  table_reader(const toml::table& t, std::string prefix, const std::string& file)
      : table_(t), prefix_(std::move(prefix)), file_(file) {}

  template <class T>
  void get(const char* key, T& out) {
    seen_.insert(key);
    const toml::node* node = table_.get(key);
    if (!node) return;
    if constexpr (std::is_same_v<T, std::string>) {
      if (!node->is_string()) wrong(key, "a string");
      out = **node->as_string();
    } else if constexpr (std::is_same_v<T, bool>) {
      if (!node->is_boolean()) wrong(key, "true or false");
      out = **node->as_boolean();
    } else if constexpr (std::is_same_v<T, std::chrono::milliseconds>) {
      out = std::chrono::milliseconds(integer(key, *node, 1, 86'400'000));
    } else {
      constexpr auto k_max = std::numeric_limits<T>::max() > static_cast<std::make_unsigned_t<T>>(INT64_MAX)
                                 ? INT64_MAX
                                 : static_cast<std::int64_t>(std::numeric_limits<T>::max());
      out = static_cast<T>(integer(key, *node, 0, k_max));
    }
  }

  /// Refuses keys nobody read: a typo must not silently fall back to a default.
  void refuse_unknown() const {
    for (const auto& [key, node] : table_) {
      if (!seen_.count(std::string(key.str()))) {
        // Names the file in use, and where the keys are described on an installed system
        // (the .deb's example config; packaging/caresync-server.toml in the source tree).
        bad("config key '" + prefix_ + std::string(key.str()) + "' in '" + file_ + "'" +
            " is unknown; every key is described in " + k_example_config);
      }
    }
  }

  std::string name(const char* key) const { return prefix_ + key; }

  /// Marks a key read elsewhere (a sub-table) as known.
  void known(const char* key) { seen_.insert(key); }

 private:
  std::int64_t integer(const char* key, const toml::node& node, std::int64_t min, std::int64_t max) {
    if (!node.is_integer()) wrong(key, "an integer");
    const auto v = **node.as_integer();
    if (v < min || v > max) {
      bad("config key '" + name(key) + "' is " + std::to_string(v) + "; it must be between " + std::to_string(min) +
          " and " + std::to_string(max));
    }
    return v;
  }
  [[noreturn]] void wrong(const char* key, const char* type) const {
    bad("config key '" + name(key) + "' must be " + type);
  }

  const toml::table& table_;
  std::string prefix_;
  const std::string& file_;  ///< load_config's path, which outlives every reader
  std::set<std::string> seen_;
};

std::string resolve(const std::filesystem::path& base, const std::string& p) {
  if (p.empty() || std::filesystem::path(p).is_absolute()) return p;
  return (base / p).lexically_normal().string();
}

bool is_lower_hex(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

/// A table of string arrays (`key = ["a", "b"]`), named `prefix` in errors.
std::map<std::string, std::vector<std::string>, std::less<>> string_lists(const toml::node& node, const std::string& prefix) {
  const auto* t = node.as_table();
  if (!t) bad("config key '" + prefix + "' must be a table of lists of names");
  std::map<std::string, std::vector<std::string>, std::less<>> out;
  for (const auto& [key, value] : *t) {
    const std::string name = prefix + "." + std::string(key.str());
    const auto* a = value.as_array();
    if (!a) bad("config key '" + name + "' must be a list of names, e.g. [\"clients\", \"visits\"]");
    auto& list = out[std::string(key.str())];
    for (const auto& item : *a) {
      const auto* text = item.as_string();
      if (!text) bad("config key '" + name + "' must hold names (strings) only");
      list.push_back(**text);
    }
  }
  return out;
}

/// [scopes]: each of its tables, when present, replaces that part of the defaults whole.
void read_scopes(const toml::table& t, scope_rules& rules) {
  for (const auto& [key, value] : t) {
    const std::string k(key.str());
    if (k == "unit_fields") {
      rules.unit_fields.clear();
      for (auto& [collection, fields] : string_lists(value, "scopes.unit_fields")) rules.unit_fields[collection] = fields;
    } else if (k == "read" || k == "write") {
      auto& target = k == "read" ? rules.read : rules.write;
      target.clear();
      for (auto& [role, collections] : string_lists(value, "scopes." + k)) {
        target[role] = std::set<std::string, std::less<>>(collections.begin(), collections.end());
      }
    } else {
      bad("config key 'scopes." + k + "' is unknown; [scopes] holds unit_fields, read and write");
    }
  }
}

}  // namespace

server_config load_config(const std::string& path) {
  toml::table root;
  try {
    root = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    const auto& where = e.source().begin;
    bad("config file '" + path + "' cannot be read: " + std::string(e.description()) + " (line " +
        std::to_string(where.line) + ", column " + std::to_string(where.column) + ")");
  }
  server_config c;
  table_reader top(root, "", path);
  top.get("listen_address", c.listen_address);
  top.get("port", c.port);
  top.get("certificate_file", c.certificate_file);
  top.get("private_key_file", c.private_key_file);
  top.get("database_file", c.database_file);
  top.get("server_name", c.server_name);
  top.get("log_level", c.log_level);
  top.get("threads", c.threads);
  if (const auto* limits = root.get("limits")) {
    if (!limits->is_table()) bad("config key 'limits' must be a table ([limits])");
    table_reader l(*limits->as_table(), "limits.", path);
    l.get("max_frame_bytes", c.max_frame_bytes);
    l.get("max_push_changes", c.max_push_changes);
    l.get("page_max_changes", c.page_max_changes);
    l.get("page_max_bytes", c.page_max_bytes);
    l.get("max_value_bytes", c.max_value_bytes);
    l.get("max_clock_ahead_ms", c.max_clock_ahead);
    l.get("handshake_timeout_ms", c.handshake_timeout);
    l.get("idle_timeout_ms", c.idle_timeout);
    l.get("max_connections_per_address", c.max_connections_per_address);
    l.get("max_sessions_per_device", c.max_sessions_per_device);
    l.get("max_frame_bytes_in_flight", c.max_frame_bytes_in_flight);
    l.get("failed_auth_burst", c.failed_auth_burst);
    l.refuse_unknown();
  }
  top.known("limits");
  if (const auto* auth = root.get("auth")) {
    if (!auth->is_table()) bad("config key 'auth' must be a table ([auth])");
    table_reader a(*auth->as_table(), "auth.", path);
    a.get("token_rotation_days", c.token_rotation_days);
    a.refuse_unknown();
  }
  top.known("auth");
  if (const auto* admin = root.get("admin")) {
    if (!admin->is_table()) bad("config key 'admin' must be a table ([admin])");
    table_reader a(*admin->as_table(), "admin.", path);
    a.get("enabled", c.admin_enabled);
    a.get("listen_address", c.admin_listen_address);
    a.get("port", c.admin_port);
    a.get("bearer_token_file", c.admin_bearer_token_file);
    a.get("max_connections", c.admin_max_connections);
    a.refuse_unknown();
  }
  top.known("admin");
  if (const auto* policies = root.get("policies")) {
    if (!policies->is_table()) bad("config key 'policies' must be a table ([policies])");
    const auto& t = *policies->as_table();
    table_reader p(t, "policies.", path);
    p.known("server_only");
    p.get("care_rules", c.care_rules);
    if (const auto* list = t.get("server_only")) {
      const auto* array = list->as_array();
      if (!array) bad("config key 'policies.server_only' must be an array of \"collection.field\" strings");
      for (const auto& item : *array) {
        if (!item.is_string()) bad("config key 'policies.server_only' must be an array of \"collection.field\" strings");
        c.server_only_fields.push_back(**item.as_string());
      }
    }
    p.refuse_unknown();
  }
  top.known("policies");
  if (const auto* scopes = root.get("scopes")) {
    if (!scopes->is_table()) bad("config key 'scopes' must be a table ([scopes])");
    read_scopes(*scopes->as_table(), c.scopes);
  }
  top.known("scopes");
  if (const auto* devices = root.get("devices")) {
    const auto* array = devices->as_array();
    if (!array) bad("config key 'devices' must be an array of tables ([[devices]])");
    for (std::size_t i = 0; i < array->size(); ++i) {
      const auto* t = array->get(i)->as_table();
      const std::string prefix = "devices[" + std::to_string(i) + "].";
      if (!t) bad("config key '" + prefix.substr(0, prefix.size() - 1) + "' must be a table");
      table_reader d(*t, prefix, path);
      device_credential cred;
      d.get("device_id", cred.device_id);
      d.get("token_sha256", cred.token_sha256);
      d.get("server_side", cred.server_side);
      d.refuse_unknown();
      c.devices.push_back(std::move(cred));
    }
  }
  top.known("devices");
  top.refuse_unknown();
  const auto base = std::filesystem::path(path).parent_path();
  c.certificate_file = resolve(base, c.certificate_file);
  c.private_key_file = resolve(base, c.private_key_file);
  c.database_file = resolve(base, c.database_file);
  if (!c.admin_bearer_token_file.empty()) {
    c.admin_bearer_token_file = resolve(base, c.admin_bearer_token_file);
    c.admin_bearer_token = read_token_file(c.admin_bearer_token_file);
  }
  return c;
}

void validate(const server_config& c) {
  if (c.listen_address.empty()) bad("config key 'listen_address' is empty; use e.g. 127.0.0.1 or 0.0.0.0");
  if (c.certificate_file.empty()) bad("config key 'certificate_file' is missing; run 'caresync-server init' to make one");
  if (c.private_key_file.empty()) bad("config key 'private_key_file' is missing; run 'caresync-server init' to make one");
  if (c.database_file.empty()) bad("config key 'database_file' is empty");
  if (c.log_level != "info" && c.log_level != "error") {
    bad("config key 'log_level' is '" + c.log_level + "'; it must be \"info\" or \"error\"");
  }
  if (c.admin_enabled && c.admin_listen_address.empty()) {
    bad("config key 'admin.listen_address' is empty; use 127.0.0.1, or set admin.bearer_token_file");
  }
  if (c.admin_enabled && !is_loopback(c.admin_listen_address) && c.admin_bearer_token.empty()) {
    // /metrics tells who syncs how much: not for anyone on the network to read.
    bad("config key 'admin.listen_address' is '" + c.admin_listen_address +
        "', which is not a loopback address; the admin listener then needs a token: set admin.bearer_token_file "
        "to a file (mode 0600) holding a long random token, or listen on 127.0.0.1");
  }
  if (c.admin_max_connections < 1 || c.admin_max_connections > 1024) {
    bad("config key 'admin.max_connections' must be between 1 and 1024");
  }
  if (c.max_sessions_per_device < 1 || c.max_sessions_per_device > 1024) {
    bad("config key 'limits.max_sessions_per_device' must be between 1 and 1024");
  }
  if (c.token_rotation_days > 3650) {
    bad("config key 'auth.token_rotation_days' must be at most 3650 (ten years; 0: tokens are not rotated)");
  }
  if (c.failed_auth_burst > 100'000) bad("config key 'limits.failed_auth_burst' must be at most 100000 (0: no throttling)");
  if (c.max_frame_bytes_in_flight < c.max_frame_bytes) {
    bad("config key 'limits.max_frame_bytes_in_flight' must be at least limits.max_frame_bytes (" +
        std::to_string(c.max_frame_bytes) + "), or no large frame could ever be read");
  }
  if (c.threads < 1 || c.threads > 256) bad("config key 'threads' must be between 1 and 256");
  if (c.max_frame_bytes < 4096) bad("config key 'limits.max_frame_bytes' must be at least 4096");
  if (c.max_push_changes < 1) bad("config key 'limits.max_push_changes' must be at least 1");
  if (c.page_max_changes < 1) bad("config key 'limits.page_max_changes' must be at least 1");
  if (c.page_max_bytes < 1024 || c.page_max_bytes > c.max_frame_bytes / 2) {
    bad("config key 'limits.page_max_bytes' must be at least 1024 and at most half of limits.max_frame_bytes");
  }
  if (c.max_value_bytes < 1 || c.max_value_bytes > c.max_frame_bytes / 2) {
    bad("config key 'limits.max_value_bytes' must be at least 1 and at most half of limits.max_frame_bytes");
  }
  if (c.max_clock_ahead.count() < 1000) {
    bad("config key 'limits.max_clock_ahead_ms' must be at least 1000 (clocks of devices and server differ a little)");
  }
  if (c.max_connections_per_address > 65535) {
    // One address reaches one port from at most 65535 source ports: a larger bound limits nothing.
    bad("config key 'limits.max_connections_per_address' must be at most 65535 (0: no limit)");
  }
  std::set<std::string> fields;
  for (const auto& f : c.server_only_fields) {
    // The names a schema allows (client-lib's validate): [a-z][a-z0-9_]{0,62}, twice.
    const auto name_ok = [](std::string_view n) {
      return !n.empty() && n.size() <= 63 && n[0] >= 'a' && n[0] <= 'z' &&
             std::all_of(n.begin(), n.end(), [](char ch) { return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_'; });
    };
    const auto dot = f.find('.');
    if (dot == std::string::npos || !name_ok(std::string_view(f).substr(0, dot)) || !name_ok(std::string_view(f).substr(dot + 1))) {
      bad("config key 'policies.server_only' lists '" + f + "'; each entry is \"collection.field\" in lowercase letters, digits and _");
    }
    if (!fields.insert(f).second) bad("config key 'policies.server_only' lists '" + f + "' twice");
  }
  if (const auto why = check_rules(c.scopes); !why.empty()) bad("config key " + why);
  std::set<std::string> ids;
  for (std::size_t i = 0; i < c.devices.size(); ++i) {
    const auto& d = c.devices[i];
    const std::string key = "devices[" + std::to_string(i) + "]";
    if (d.device_id.empty() || d.device_id.size() > 128) bad("config key '" + key + ".device_id' must be 1-128 characters");
    if (!ids.insert(d.device_id).second) bad("config key '" + key + ".device_id' repeats device '" + d.device_id + "'");
    if (d.token_sha256.size() != 64 || !is_lower_hex(d.token_sha256)) {
      bad("config key '" + key + ".token_sha256' must be 64 lowercase hex characters (caresync-server hash-token)");
    }
  }
}

std::string hash_token(const std::string& token) { return sha256_hex(token); }

}  // namespace caresync::server
