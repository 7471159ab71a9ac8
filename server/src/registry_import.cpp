#include <caresync/server/registry_import.hpp>

#include <caresync/protocol/errors.hpp>
#include <caresync/protocol/hlc.hpp>
#include <caresync/protocol/merge.hpp>

#include <csv.h>
#include <openssl/sha.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>
#include <memory>
#include <set>

namespace caresync::server {

namespace {

[[noreturn]] void bad(const std::string& what) { throw error(make_error_code(storage_errc::invalid_argument), what); }

/// The CSV's records as libcsv parses them (RFC 4180, strict).
struct csv_records {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row;
};

void on_field(void* text, std::size_t length, void* data) {
  static_cast<csv_records*>(data)->row.emplace_back(static_cast<const char*>(text), length);
}

void on_row(int, void* data) {
  auto* r = static_cast<csv_records*>(data);
  r->rows.push_back(std::move(r->row));
  r->row.clear();
}

std::vector<std::vector<std::string>> parse_csv(std::string_view text) {
  if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);  // a UTF-8 byte order mark
  csv_parser parser;
  if (csv_init(&parser, CSV_STRICT | CSV_STRICT_FINI) != 0) bad("the CSV parser could not start");
  const std::unique_ptr<csv_parser, void (*)(csv_parser*)> guard(&parser, csv_free);
  csv_records records;
  const bool parsed = csv_parse(&parser, text.data(), text.size(), on_field, on_row, &records) == text.size() &&
                      csv_fini(&parser, on_field, on_row, &records) == 0;
  if (!parsed) {
    bad("the CSV is not valid (RFC 4180): " + std::string(csv_strerror(csv_error(&parser))) + ", in record " +
        std::to_string(records.rows.size() + 1) + " (the header is record 1)");
  }
  return std::move(records.rows);
}

struct column {
  std::string name;
  value_kind type = value_kind::text;
};

value cell_value(const std::string& cell, const column& c, std::size_t record) {
  if (cell.empty()) return value{};
  const auto where = [&] { return "record " + std::to_string(record) + ", column '" + c.name + "'"; };
  switch (c.type) {
    case value_kind::integer: {
      std::int64_t v = 0;
      const auto [end, ec] = std::from_chars(cell.data(), cell.data() + cell.size(), v);
      if (ec != std::errc{} || end != cell.data() + cell.size()) bad(where() + ": '" + cell + "' is not an integer");
      return v;
    }
    case value_kind::real: {
      double v = 0;
      const auto [end, ec] = std::from_chars(cell.data(), cell.data() + cell.size(), v);
      if (ec != std::errc{} || end != cell.data() + cell.size() || !std::isfinite(v)) {
        bad(where() + ": '" + cell + "' is not a number");
      }
      return v;
    }
    default: return cell;
  }
}

std::vector<column> read_header(const std::vector<std::string>& header, const std::string& key, std::size_t& key_index) {
  std::vector<column> columns;
  std::set<std::string> seen;
  key_index = header.size();
  for (std::size_t i = 0; i < header.size(); ++i) {
    column c;
    const auto colon = header[i].find(':');
    c.name = header[i].substr(0, colon);
    if (colon != std::string::npos) {
      const auto type = header[i].substr(colon + 1);
      if (type == "integer") {
        c.type = value_kind::integer;
      } else if (type == "real") {
        c.type = value_kind::real;
      } else if (type != "text") {
        bad("header column '" + header[i] + "': the type after ':' must be integer, real or text");
      }
    }
    if (!is_valid_name(c.name)) {
      bad("header column '" + header[i] + "' is not a field name: 1-63 characters of a-z, 0-9 and _, starting with a letter");
    }
    if (!seen.insert(c.name).second) bad("header column '" + c.name + "' appears twice");
    if (c.name == key) {
      if (c.type != value_kind::text) bad("the key column '" + key + "' must be text");
      key_index = i;
    }
    columns.push_back(std::move(c));
  }
  if (key_index == header.size()) bad("the header has no key column '" + key + "'");
  return columns;
}

}  // namespace

record_id registry_record_id(const std::string& collection, const std::string& key) {
  std::string input = "caresync registry";
  input += '\0';
  input += collection;
  input += '\0';
  input += key;
  std::uint8_t digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(input.data()), input.size(), digest);
  record_id id;
  std::copy(digest, digest + id.bytes.size(), id.bytes.begin());
  id.bytes[6] = static_cast<std::uint8_t>((id.bytes[6] & 0x0f) | 0x40);
  id.bytes[8] = static_cast<std::uint8_t>((id.bytes[8] & 0x3f) | 0x80);
  return id;
}

registry_import_result import_registry(change_store& store, const std::string& csv, const registry_import_options& options) {
  if (!is_valid_name(options.collection)) bad("'" + options.collection + "' is not a collection name");
  const auto records = parse_csv(csv);
  if (records.empty()) bad("the CSV is empty: it needs a header line naming the fields");
  std::size_t key_index = 0;
  const auto columns = read_header(records[0], options.key, key_index);

  // The collection as the log holds it now: live records by key, and every id in use.
  std::map<std::string, std::pair<record_id, record_state>> live;
  std::set<record_id> used;
  hybrid_clock clock(options.now_ms ? hybrid_clock::time_source([t = options.now_ms] { return t; }) : system_time_ms);
  for (auto& [k, state] : store.materialize()) {
    if (k.first != options.collection) continue;
    used.insert(k.second);
    for (const auto& v : held_versions(state)) clock.observe(v.stamp);  // the import's writes are newer
    if (is_hidden(state)) continue;
    const auto f = state.fields.find(options.key);
    const auto* key = f == state.fields.end() ? nullptr : std::get_if<std::string>(&f->second.val);
    if (key) live.emplace(*key, std::make_pair(k.second, std::move(state)));
  }

  registry_import_result result;
  std::vector<change> changes;
  const node_id node = [] {
    // A writer of its own: a random node id, as a device's store has.
    node_id n = 0;
    const auto r = record_id::generate();
    std::copy_n(r.bytes.begin(), sizeof n, reinterpret_cast<std::uint8_t*>(&n));
    return n == 0 ? node_id{1} : n;
  }();
  std::set<std::string> keys;
  for (std::size_t i = 1; i < records.size(); ++i) {
    const auto& row = records[i];
    const auto number = i + 1;
    if (row.size() == 1 && row[0].empty()) continue;  // a blank line
    if (row.size() != columns.size()) {
      bad("record " + std::to_string(number) + " has " + std::to_string(row.size()) + " columns; the header has " +
          std::to_string(columns.size()));
    }
    const auto& key = row[key_index];
    if (key.empty()) bad("record " + std::to_string(number) + " has no " + options.key);
    if (!keys.insert(key).second) bad("record " + std::to_string(number) + " repeats " + options.key + " '" + key + "'");
    ++result.rows;
    change c;
    c.collection = options.collection;
    const auto existing = live.find(key);
    if (existing != live.end()) {
      c.id = existing->second.first;
    } else {
      // A new entry, or one deleted before (tombstones are final): an id not used yet.
      std::string seed = key;
      for (int generation = 1; used.count(c.id = registry_record_id(options.collection, seed)); ++generation) {
        seed = key + '\0' + std::to_string(generation);
      }
      used.insert(c.id);
    }
    for (std::size_t col = 0; col < columns.size(); ++col) {
      auto v = cell_value(row[col], columns[col], number);
      if (existing != live.end()) {
        const auto& fields = existing->second.second.fields;
        const auto f = fields.find(columns[col].name);
        if (f == fields.end() ? v == value{} : f->second.val == v) continue;
      } else if (v == value{}) {
        continue;
      }
      c.fields.push_back(field_write{columns[col].name, std::move(v)});
    }
    if (c.fields.empty()) {
      ++result.unchanged;
      continue;
    }
    std::sort(c.fields.begin(), c.fields.end(), [](const field_write& a, const field_write& b) { return a.name < b.name; });
    c.ver = version{clock.now(), node};
    if (auto reason = check_change(c, options.limits); !reason.empty()) bad("record " + std::to_string(number) + ": " + reason);
    ++(existing != live.end() ? result.updated : result.created);
    changes.push_back(std::move(c));
  }
  for (const auto& [key, entry] : live) {
    if (keys.count(key)) continue;
    if (!options.delete_missing) {
      ++result.missing_kept;
      continue;
    }
    change c;
    c.collection = options.collection;
    c.id = entry.first;
    c.kind = change_kind::remove;
    c.ver = version{clock.now(), node};
    c.covers = held_versions(entry.second);  // the importer saw all of it
    changes.push_back(std::move(c));
    ++result.deleted;
  }
  if (!changes.empty()) {
    const auto outcome = store.append("registry-import", record_id::generate(), changes);
    result.first_seq = outcome.first_seq;
    result.last_seq = outcome.last_seq;
  }
  return result;
}

}  // namespace caresync::server
