// The C API (caresync.h): a thin layer over the C++ store and sync client. Every entry
// point catches everything at the boundary and turns it into a cs_status and a message;
// JSON goes through nlohmann-json.

#include <caresync/caresync.h>

#include <caresync/protocol/errors.hpp>
#include <caresync/store.hpp>
#include <caresync/sync_client.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

/// The handle behind cs_store*: the C++ store and the message of its last failed call.
struct cs_store {
  std::unique_ptr<caresync::store> local;
  std::string last_error;
  /// Token rotation (cs_set_token_callback): NULL, or the app's function and its pointer.
  cs_token_fn on_new_token = nullptr;
  void* token_user = nullptr;
};

namespace {

using caresync::storage_errc;
using json = nlohmann::json;
// Output keeps the order written ("id" first), which reads better than sorted keys.
using ordered_json = nlohmann::ordered_json;

/// The message of the last failed call without a store, per thread (cs_open_error).
thread_local std::string t_open_error;

[[noreturn]] void refuse(const std::string& what) {
  throw caresync::error(make_error_code(storage_errc::invalid_argument), what);
}

cs_status status_of(std::error_code ec) noexcept {
  using caresync::network_errc;
  using caresync::protocol_errc;
  if (ec.category() == caresync::storage_category()) {
    switch (static_cast<storage_errc>(ec.value())) {
      case storage_errc::invalid_argument: return CS_INVALID_ARGUMENT;
      case storage_errc::not_found: return CS_NOT_FOUND;
      case storage_errc::io_failed:
      case storage_errc::busy: return CS_STORAGE_BUSY;
      case storage_errc::open_failed:
      case storage_errc::corrupt:
      case storage_errc::schema_mismatch:
      case storage_errc::constraint: return CS_STORAGE;
    }
    return CS_STORAGE;
  }
  if (ec.category() == caresync::network_category()) {
    switch (static_cast<network_errc>(ec.value())) {
      case network_errc::connect_failed:
      case network_errc::connection_lost:
      case network_errc::timeout: return CS_NETWORK;
      case network_errc::tls_failed:
      case network_errc::certificate_untrusted:
      case network_errc::pin_mismatch: return CS_TLS;
    }
    return CS_NETWORK;
  }
  if (ec.category() == caresync::protocol_category()) {
    switch (static_cast<protocol_errc>(ec.value())) {
      case protocol_errc::auth_failed: return CS_AUTH;
      case protocol_errc::device_revoked: return CS_REVOKED;
      case protocol_errc::enrollment_refused: return CS_ENROLLMENT_REFUSED;
      case protocol_errc::server_busy:
      case protocol_errc::storage_failed:
      case protocol_errc::shutting_down:
      case protocol_errc::timeout: return CS_SERVER_BUSY;
      default: return CS_PROTOCOL;
    }
  }
  return CS_INTERNAL;
}

/// Sets `message` without letting an allocation failure escape: a message lost to a full
/// heap is better than an exception across the C boundary.
void set_message(std::string& message, std::string_view text) noexcept {
  try {
    message.assign(text);
  } catch (...) {
    message.clear();
  }
}

/// Runs `body`, turning whatever it throws into a status and `message`.
template <class Body>
cs_status guarded(std::string& message, Body&& body) noexcept {
  try {
    body();
    message.clear();
    return CS_OK;
  } catch (const std::system_error& e) {  // caresync::error and std's own
    set_message(message, e.what());
    return status_of(e.code());
  } catch (const json::exception& e) {
    set_message(message, std::string("JSON: ") + e.what());
    return CS_INVALID_ARGUMENT;
  } catch (const std::bad_alloc&) {
    set_message(message, "out of memory");
    return CS_NO_MEMORY;
  } catch (const std::exception& e) {
    set_message(message, e.what());
    return CS_INTERNAL;
  } catch (...) {
    set_message(message, "an unknown failure inside caresync; please report it");
    return CS_INTERNAL;
  }
}

/// Runs `body` with the store, its errors kept on the store (or the thread, if NULL).
template <class Body>
cs_status with_store(cs_store* store, const char* function, Body&& body) noexcept {
  if (!store) {
    set_message(t_open_error, std::string(function) + ": the store is NULL; open one with cs_store_open");
    return CS_INVALID_ARGUMENT;
  }
  return guarded(store->last_error, [&] { body(*store->local); });
}

void require(const void* argument, const char* function, const char* name) {
  if (!argument) refuse(std::string(function) + ": " + name + " is NULL");
}

/// A malloc'd copy of `text`, for cs_free.
char* to_c_string(const std::string& text) {
  auto* out = static_cast<char*>(std::malloc(text.size() + 1));
  if (!out) throw std::bad_alloc();
  std::memcpy(out, text.data(), text.size());
  out[text.size()] = '\0';
  return out;
}

/// JSON text for output; text that is not valid UTF-8 (written through the C++ API)
/// gets replacement characters rather than failing the read.
std::string dump(const ordered_json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

json parse(const char* text, const char* what) {
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    refuse(std::string(what) + " is not valid JSON (" + e.what() + ")");
  }
}

// --- base64 (RFC 4648, standard alphabet, padded) for bytes values ---

constexpr char k_base64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string to_base64(const std::vector<std::uint8_t>& bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (std::size_t i = 0; i < bytes.size(); i += 3) {
    const std::size_t n = std::min<std::size_t>(3, bytes.size() - i);
    std::uint32_t group = std::uint32_t{bytes[i]} << 16;
    if (n > 1) group |= std::uint32_t{bytes[i + 1]} << 8;
    if (n > 2) group |= bytes[i + 2];
    out += k_base64[(group >> 18) & 63];
    out += k_base64[(group >> 12) & 63];
    out += n > 1 ? k_base64[(group >> 6) & 63] : '=';
    out += n > 2 ? k_base64[group & 63] : '=';
  }
  return out;
}

std::optional<std::vector<std::uint8_t>> from_base64(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  const auto digit = [](char c) -> int {
    const char* p = std::strchr(k_base64, c);
    return c != '\0' && p ? static_cast<int>(p - k_base64) : -1;
  };
  std::vector<std::uint8_t> out;
  out.reserve(text.size() / 4 * 3);
  for (std::size_t i = 0; i < text.size(); i += 4) {
    const bool last = i + 4 == text.size();
    const int pad = last ? (text[i + 3] == '=') + (text[i + 2] == '=') : 0;
    if (pad == 1 && text[i + 2] == '=') return std::nullopt;  // "x=y=" is not padding
    std::uint32_t group = 0;
    for (int k = 0; k < 4 - pad; ++k) {
      const int d = digit(text[i + k]);
      if (d < 0) return std::nullopt;
      group = group << 6 | static_cast<std::uint32_t>(d);
    }
    group <<= 6 * pad;
    out.push_back(static_cast<std::uint8_t>(group >> 16));
    if (pad < 2) out.push_back(static_cast<std::uint8_t>(group >> 8));
    if (pad < 1) out.push_back(static_cast<std::uint8_t>(group));
  }
  return out;
}

// --- values ---

/// The caresync value of JSON `j` for field `name` (declared as `def`, or nullptr).
caresync::value to_value(const json& j, const std::string& name, const caresync::field_def* def) {
  using caresync::value_kind;
  const bool real_field = def && def->type == value_kind::real;
  switch (j.type()) {
    case json::value_t::null: return std::monostate{};
    case json::value_t::number_integer: {
      const auto v = j.get<std::int64_t>();
      if (real_field) return static_cast<double>(v);
      return v;
    }
    case json::value_t::number_unsigned: {
      const auto v = j.get<std::uint64_t>();
      if (real_field) return static_cast<double>(v);
      if (v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        refuse("field '" + name + "': " + std::to_string(v) + " is beyond a 64-bit signed integer");
      }
      return static_cast<std::int64_t>(v);
    }
    case json::value_t::number_float: return j.get<double>();
    case json::value_t::string: return j.get<std::string>();
    case json::value_t::object: {
      const auto b = j.find("base64");
      if (j.size() == 1 && b != j.end() && b->is_string()) {
        auto bytes = from_base64(b->get_ref<const std::string&>());
        if (!bytes) refuse("field '" + name + "': the base64 text is not valid (RFC 4648, standard alphabet, padded)");
        return caresync::blob{std::move(*bytes)};
      }
      break;
    }
    default: break;
  }
  refuse("field '" + name + "': " + std::string(j.type_name()) +
         " is not a caresync value; write null, a number, a string or {\"base64\": \"...\"} for bytes");
}

ordered_json to_json(const caresync::value& v) {
  struct visitor {
    ordered_json operator()(std::monostate) const { return nullptr; }
    ordered_json operator()(std::int64_t i) const { return i; }
    ordered_json operator()(double d) const { return d; }  // inf and NaN come out as null
    ordered_json operator()(const std::string& s) const { return s; }
    ordered_json operator()(const caresync::blob& b) const { return ordered_json{{"base64", to_base64(b.bytes)}}; }
  };
  return std::visit(visitor{}, v);
}

const caresync::field_def* declared(const caresync::store& local, std::string_view collection, const std::string& field) {
  const auto* c = local.schema().find(collection);
  return c ? c->find(field) : nullptr;
}

std::vector<caresync::field_write> to_fields(const caresync::store& local, std::string_view collection,
                                             const char* fields_json) {
  const auto j = parse(fields_json, "fields_json");
  if (!j.is_object()) refuse("fields_json must be a JSON object of field name to value, not " + std::string(j.type_name()));
  std::vector<caresync::field_write> out;
  for (const auto& [name, v] : j.items()) out.push_back({name, to_value(v, name, declared(local, collection, name))});
  return out;
}

caresync::record_id to_id(const char* id) {
  auto parsed = caresync::record_id::parse(id);
  if (!parsed) refuse(std::string("'") + id + "' is not a record id; ids are UUIDs such as 0b7c5c3e-6f1d-4a52-9d0e-2f3a4b5c6d7e");
  return *parsed;
}

// --- schema ---

caresync::merge_policy to_policy(const std::string& name, const std::string& field) {
  using caresync::merge_policy;
  if (name == "last_writer_wins") return merge_policy::last_writer_wins;
  if (name == "keep_both") return merge_policy::keep_both;
  if (name == "append") return merge_policy::append;
  if (name == "set_union") return merge_policy::set_union;
  refuse("field '" + field + "': policy '" + name + "' is unknown; use last_writer_wins, keep_both, append or set_union");
}

const std::string& string_member(const json& object, const char* key, const std::string& where) {
  const auto it = object.find(key);
  if (it == object.end() || !it->is_string()) refuse(where + " needs \"" + key + "\" as a string");
  return it->get_ref<const std::string&>();
}

void only_keys(const json& object, std::initializer_list<std::string_view> keys, const std::string& where) {
  for (const auto& [key, v] : object.items()) {
    bool known = false;
    for (const auto k : keys) known = known || key == k;
    if (!known) refuse(where + ": \"" + key + "\" is not a key it takes");
  }
}

caresync::schema to_schema(const char* schema_json) {
  const auto j = parse(schema_json, "schema_json");
  if (!j.is_object() || !j.contains("collections") || !j["collections"].is_array()) {
    refuse("schema_json must be an object with a \"collections\" array");
  }
  only_keys(j, {"collections"}, "the schema");
  caresync::schema s;
  for (const auto& c : j["collections"]) {
    if (!c.is_object()) refuse("each collection in schema_json must be an object with \"name\" and \"fields\"");
    only_keys(c, {"name", "fields", "deletes"}, "a collection");
    caresync::collection_def def;
    def.name = string_member(c, "name", "a collection");
    if (c.contains("deletes")) {
      const auto& deletes = string_member(c, "deletes", "collection '" + def.name + "'");
      if (deletes == "update_revives") {
        def.deletes = caresync::delete_policy::update_revives;
      } else if (deletes != "delete_wins") {
        refuse("collection '" + def.name + "': deletes '" + deletes + "' is unknown; use delete_wins or update_revives");
      }
    }
    const auto fields = c.find("fields");
    if (fields == c.end() || !fields->is_array()) refuse("collection '" + def.name + "' needs a \"fields\" array");
    for (const auto& f : *fields) {
      if (!f.is_object()) refuse("each field of collection '" + def.name + "' must be an object with \"name\" and \"type\"");
      only_keys(f, {"name", "type", "policy", "server_only"}, "a field of collection '" + def.name + "'");
      caresync::field_def field;
      field.name = string_member(f, "name", "a field of collection '" + def.name + "'");
      const auto& type = string_member(f, "type", "field '" + field.name + "'");
      if (!caresync::parse_value_kind(type, field.type)) {
        refuse("field '" + field.name + "': type '" + type + "' is unknown; use integer, real, text or bytes");
      }
      if (f.contains("policy")) field.policy = to_policy(string_member(f, "policy", "field '" + field.name + "'"), field.name);
      if (const auto so = f.find("server_only"); so != f.end()) {
        if (!so->is_boolean()) refuse("field '" + field.name + "': \"server_only\" must be true or false");
        field.server_only = so->get<bool>();
      }
      def.fields.push_back(std::move(field));
    }
    s.collections.push_back(std::move(def));
  }
  return s;  // names and types are checked by caresync::validate() when the store opens
}

// --- sync options ---

caresync::sync_options to_options(const char* options_json) {
  const auto j = parse(options_json, "options_json");
  if (!j.is_object()) refuse("options_json must be a JSON object");
  only_keys(j,
            {"host", "port", "ca_file", "pinned_key_sha256", "device_id", "token", "app_version", "max_attempts",
             "connect_timeout_ms", "io_timeout_ms"},
            "the sync options");
  caresync::sync_options o;
  const auto text = [&](const char* key, std::string& out) {
    if (j.contains(key)) out = string_member(j, key, "the sync options");
  };
  const auto number = [&](const char* key, std::uint64_t low, std::uint64_t high) -> std::optional<std::uint64_t> {
    const auto it = j.find(key);
    if (it == j.end()) return std::nullopt;
    if (!it->is_number_unsigned() || it->get<std::uint64_t>() < low || it->get<std::uint64_t>() > high) {
      refuse(std::string("sync option \"") + key + "\" must be an integer from " + std::to_string(low) + " to " +
             std::to_string(high));
    }
    return it->get<std::uint64_t>();
  };
  text("host", o.host);
  text("ca_file", o.ca_file);
  text("pinned_key_sha256", o.pinned_key_sha256);
  text("device_id", o.device_id);
  text("token", o.token);
  text("app_version", o.app_version);
  if (auto v = number("port", 1, 65535)) o.port = static_cast<std::uint16_t>(*v);
  if (auto v = number("max_attempts", 1, 100)) o.retry.max_attempts = static_cast<unsigned>(*v);
  constexpr std::uint64_t k_day_ms = 86'400'000;
  if (auto v = number("connect_timeout_ms", 1, k_day_ms)) o.connect_timeout = std::chrono::milliseconds(*v);
  if (auto v = number("io_timeout_ms", 1, k_day_ms)) o.io_timeout = std::chrono::milliseconds(*v);
  return o;
}

ordered_json to_json(const caresync::sync_report& r) {
  return ordered_json{{"pushed", r.pushed},
                      {"quarantined", r.quarantined},
                      {"reverted", r.reverted},
                      {"batches", r.batches},
                      {"pulled", r.pulled},
                      {"pages", r.pages},
                      {"primed", r.primed},
                      {"conflicts", r.conflicts},
                      {"bytes_sent", r.bytes_sent},
                      {"bytes_received", r.bytes_received},
                      {"duration_ms", r.duration.count()},
                      {"cursor", r.cursor},
                      {"attempts", r.attempts},
                      {"resolved", r.resolved},
                      {"purged", r.purged},
                      {"refused_out_of_scope", r.refused_out_of_scope},
                      {"tokens_stored", r.tokens_stored}};
}

ordered_json to_json(const caresync::conflict_value& v) {
  char node[17];
  std::snprintf(node, sizeof node, "%016llx", static_cast<unsigned long long>(v.ver.node));
  return ordered_json{{"value", to_json(v.val)}, {"at_ms", v.ver.stamp.wall_ms()}, {"node", node}};
}

}  // namespace

extern "C" {

const char* cs_status_name(cs_status status) {
  switch (status) {
    case CS_OK: return "CS_OK";
    case CS_INVALID_ARGUMENT: return "CS_INVALID_ARGUMENT";
    case CS_NOT_FOUND: return "CS_NOT_FOUND";
    case CS_STORAGE: return "CS_STORAGE";
    case CS_STORAGE_BUSY: return "CS_STORAGE_BUSY";
    case CS_NETWORK: return "CS_NETWORK";
    case CS_TLS: return "CS_TLS";
    case CS_AUTH: return "CS_AUTH";
    case CS_REVOKED: return "CS_REVOKED";
    case CS_ENROLLMENT_REFUSED: return "CS_ENROLLMENT_REFUSED";
    case CS_SERVER_BUSY: return "CS_SERVER_BUSY";
    case CS_PROTOCOL: return "CS_PROTOCOL";
    case CS_NO_MEMORY: return "CS_NO_MEMORY";
    case CS_INTERNAL: return "CS_INTERNAL";
  }
  return "CS_UNKNOWN";
}

int cs_is_transient(cs_status status) {
  return status == CS_STORAGE_BUSY || status == CS_NETWORK || status == CS_SERVER_BUSY;
}

const char* cs_last_error(const cs_store* store) {
  return store ? store->last_error.c_str() : t_open_error.c_str();
}

const char* cs_open_error(void) { return t_open_error.c_str(); }

void cs_free(char* text) { std::free(text); }

cs_status cs_store_open(const char* path, const char* schema_json, cs_store** out) {
  if (out) *out = nullptr;
  return guarded(t_open_error, [&] {
    require(path, "cs_store_open", "path");
    require(schema_json, "cs_store_open", "schema_json");
    require(out, "cs_store_open", "out");
    auto handle = std::make_unique<cs_store>();
    handle->local = caresync::store::open(caresync::store_options{path, to_schema(schema_json)});
    *out = handle.release();
  });
}

void cs_store_close(cs_store* store) {
  // The store's destructor closes SQLite and does not throw; the handle owns it.
  std::unique_ptr<cs_store> owned(store);
}

cs_status cs_create(cs_store* store, const char* collection, const char* fields_json, char** id_out) {
  if (id_out) *id_out = nullptr;
  return with_store(store, "cs_create", [&](caresync::store& local) {
    require(collection, "cs_create", "collection");
    require(fields_json, "cs_create", "fields_json");
    require(id_out, "cs_create", "id_out");
    const auto fields = to_fields(local, collection, fields_json);
    // The copy is made before the write so that a full heap cannot lose the new id.
    std::unique_ptr<char, decltype(&std::free)> id(to_c_string(std::string(36, '0')), &std::free);
    const auto made = local.create(collection, fields).to_chars();
    std::memcpy(id.get(), made.data(), made.size());
    *id_out = id.release();
  });
}

cs_status cs_update(cs_store* store, const char* collection, const char* id, const char* fields_json) {
  return with_store(store, "cs_update", [&](caresync::store& local) {
    require(collection, "cs_update", "collection");
    require(id, "cs_update", "id");
    require(fields_json, "cs_update", "fields_json");
    const auto record = to_id(id);
    local.update(collection, record, to_fields(local, collection, fields_json));
  });
}

cs_status cs_remove(cs_store* store, const char* collection, const char* id) {
  return with_store(store, "cs_remove", [&](caresync::store& local) {
    require(collection, "cs_remove", "collection");
    require(id, "cs_remove", "id");
    local.remove(collection, to_id(id));
  });
}

cs_status cs_get(cs_store* store, const char* collection, const char* id, char** record_json_out) {
  if (record_json_out) *record_json_out = nullptr;
  return with_store(store, "cs_get", [&](caresync::store& local) {
    require(collection, "cs_get", "collection");
    require(id, "cs_get", "id");
    require(record_json_out, "cs_get", "record_json_out");
    const auto record = to_id(id);
    // store::get() answers an unknown collection with "no record"; a C caller is better
    // told, as cs_create and cs_update tell it.
    if (!local.schema().find(collection)) {
      refuse("collection '" + std::string(collection) + "' is not declared in the schema");
    }
    const auto fields = local.get(collection, record);
    if (!fields) {
      throw caresync::error(make_error_code(storage_errc::not_found), "record " + record.to_string() + " of collection '" +
                                                                          collection + "' does not exist or was deleted");
    }
    ordered_json j;
    j["id"] = record.to_string();
    for (const auto& [name, v] : *fields) j[name] = to_json(v);
    *record_json_out = to_c_string(dump(j));
  });
}

cs_status cs_conflicts(cs_store* store, char** json_out) {
  if (json_out) *json_out = nullptr;
  return with_store(store, "cs_conflicts", [&](caresync::store& local) {
    require(json_out, "cs_conflicts", "json_out");
    auto all = ordered_json::array();
    for (const auto& c : local.conflicts()) {
      auto others = ordered_json::array();
      for (const auto& o : c.others) others.push_back(to_json(o));
      all.push_back(ordered_json{{"collection", c.collection},
                                 {"id", c.record.to_string()},
                                 {"field", c.field},
                                 {"record_deleted", c.record_deleted},
                                 {"record_revived", c.record_revived},
                                 {"current", to_json(c.current)},
                                 {"others", std::move(others)}});
    }
    *json_out = to_c_string(dump(all));
  });
}

cs_status cs_resolve_conflict(cs_store* store, const char* collection, const char* id, const char* field,
                              const char* value_json) {
  return with_store(store, "cs_resolve_conflict", [&](caresync::store& local) {
    require(collection, "cs_resolve_conflict", "collection");
    require(id, "cs_resolve_conflict", "id");
    require(field, "cs_resolve_conflict", "field");
    require(value_json, "cs_resolve_conflict", "value_json");
    const auto record = to_id(id);
    const auto v = to_value(parse(value_json, "value_json"), field, declared(local, collection, field));
    local.resolve_conflict(collection, record, field, v);
  });
}

cs_status cs_dismiss_conflict(cs_store* store, const char* collection, const char* id, const char* field) {
  return with_store(store, "cs_dismiss_conflict", [&](caresync::store& local) {
    require(collection, "cs_dismiss_conflict", "collection");
    require(id, "cs_dismiss_conflict", "id");
    require(field, "cs_dismiss_conflict", "field");
    local.dismiss_conflict(collection, to_id(id), field);
  });
}

cs_status cs_sync(cs_store* store, const char* options_json, cs_progress_fn progress, void* user,
                  char** report_json_out) {
  if (report_json_out) *report_json_out = nullptr;
  return with_store(store, "cs_sync", [&](caresync::store& local) {
    require(options_json, "cs_sync", "options_json");
    auto options = to_options(options_json);
    if (progress) {
      options.on_progress = [progress, user](const caresync::sync_progress& p) {
        const cs_progress c{p.pushed,         p.to_push,      p.pulled,        p.to_pull,           p.bytes_sent,
                            p.bytes_received, p.pulled_bytes, p.to_pull_bytes, p.priority_ready ? 1 : 0};
        progress(&c, user);
      };
    }
    if (const auto fn = store->on_new_token) {
      options.on_new_token = [fn, user = store->token_user](const std::string& token) {
        // Not stored: the C++ side keeps the old token (sync_options::on_new_token).
        if (fn(token.c_str(), user) != 0) throw std::runtime_error("the app could not store the new token");
      };
    }
    const auto report = caresync::sync_client(local, std::move(options)).sync();
    if (report_json_out) *report_json_out = to_c_string(dump(to_json(report)));
  });
}

cs_status cs_set_token_callback(cs_store* store, cs_token_fn fn, void* user) {
  return with_store(store, "cs_set_token_callback", [&](caresync::store&) {
    store->on_new_token = fn;
    store->token_user = fn ? user : nullptr;
  });
}

cs_status cs_enroll(const char* options_json, const char* code, char** enrollment_json_out) {
  if (enrollment_json_out) *enrollment_json_out = nullptr;
  return guarded(t_open_error, [&] {
    require(options_json, "cs_enroll", "options_json");
    require(code, "cs_enroll", "code");
    require(enrollment_json_out, "cs_enroll", "enrollment_json_out");
    const auto got = caresync::enroll(to_options(options_json), code);
    *enrollment_json_out = to_c_string(dump(ordered_json{
        {"device_id", got.device_id}, {"token", got.token}, {"user_id", got.user_id}, {"user_name", got.user_name}}));
  });
}

}  // extern "C"
