// The local SQLite store: real files in a fresh temporary directory per test, checked
// both through the store's API and with plain SQL the way an app reads them.
#include "../support/temp_dir.hpp"
#include "../support/thread_nice.hpp"
#include "store_impl.hpp"  // next_batch: the changes a sync would send

#include <caresync/protocol/codec.hpp>
#include <caresync/protocol/errors.hpp>
#include <caresync/protocol/frame.hpp>
#include <caresync/store.hpp>

#include <catch2/catch.hpp>
#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using caresync::blob;
using caresync::change;
using caresync::change_kind;
using caresync::collection_def;
using caresync::field_def;
using caresync::field_write;
using caresync::record_fields;
using caresync::record_id;
using caresync::storage_errc;
using caresync::store;
using caresync::value;
using caresync::value_kind;
using caresync::testing::temp_dir;

namespace Catch {
template <>
struct StringMaker<caresync::value> {
  static std::string convert(const caresync::value& v) {
    std::ostringstream out;
    switch (caresync::kind_of(v)) {
      case value_kind::null: out << "null"; break;
      case value_kind::integer: out << "integer " << std::get<std::int64_t>(v); break;
      case value_kind::real: out << "real " << std::get<double>(v); break;
      case value_kind::text: out << "text \"" << std::get<std::string>(v) << '"'; break;
      case value_kind::bytes: out << "bytes[" << std::get<blob>(v).bytes.size() << ']'; break;
    }
    return out.str();
  }
};
}  // namespace Catch

namespace {

caresync::schema care_schema() {
  return caresync::schema{{
      collection_def{"visits",
                     {{"client", value_kind::text},
                      {"minutes", value_kind::integer},
                      {"temperature", value_kind::real},
                      {"signature", value_kind::bytes},
                      {"notes", value_kind::text}}},
      collection_def{"caregivers", {{"name", value_kind::text}}},
  }};
}

std::unique_ptr<store> open_store(const std::string& path, caresync::schema s = care_schema()) {
  return store::open(caresync::store_options{path, std::move(s)});
}

blob bytes(std::vector<std::uint8_t> b) { return blob{std::move(b)}; }

/// A plain SQLite connection to the store file, as an app or a test inspector uses.
/// One row of cs_outbox, read with plain SQL.
struct outbox_entry {
  std::string collection;
  record_id id;
  caresync::hlc_stamp stamp;
  change_kind kind{};
};

class raw_db {
 public:
  /// Opens an existing file, or with `create` makes a new one (another app's database).
  explicit raw_db(const std::string& path, bool create = false) {
    sqlite3* raw = nullptr;
    const int rc =
        sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0), nullptr);
    db_.reset(raw);
    if (rc != SQLITE_OK) throw std::runtime_error("test cannot open " + path);
  }

  /// Runs `sql` with text parameters and returns every row as text (NULL as "<null>").
  std::vector<std::vector<std::string>> rows(const std::string& sql, const std::vector<std::string>& params = {}) {
    sqlite3_stmt* raw = nullptr;
    if (sqlite3_prepare_v2(db_.get(), sql.c_str(), -1, &raw, nullptr) != SQLITE_OK) {
      throw std::runtime_error("test SQL failed: " + sql + ": " + sqlite3_errmsg(db_.get()));
    }
    const std::unique_ptr<sqlite3_stmt, decltype(&sqlite3_finalize)> stmt(raw, &sqlite3_finalize);
    for (std::size_t i = 0; i < params.size(); ++i) {
      sqlite3_bind_text(raw, static_cast<int>(i + 1), params[i].c_str(), -1, SQLITE_TRANSIENT);
    }
    std::vector<std::vector<std::string>> out;
    int rc;
    while ((rc = sqlite3_step(raw)) == SQLITE_ROW) {
      auto& row = out.emplace_back();
      for (int c = 0; c < sqlite3_column_count(raw); ++c) {
        const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(raw, c));
        row.emplace_back(sqlite3_column_type(raw, c) == SQLITE_NULL ? "<null>" : text ? text : "");
      }
    }
    if (rc != SQLITE_DONE) throw std::runtime_error("test SQL failed: " + sql + ": " + sqlite3_errmsg(db_.get()));
    return out;
  }

  /// The single value of a one-row, one-column query.
  std::string scalar(const std::string& sql, const std::vector<std::string>& params = {}) {
    const auto r = rows(sql, params);
    if (r.size() != 1 || r[0].size() != 1) throw std::runtime_error("test SQL did not return one value: " + sql);
    return r[0][0];
  }

  /// Every outbox entry, oldest first: which record a local write touched, its stamp and kind.
  std::vector<outbox_entry> outbox() {
    std::vector<outbox_entry> out;
    for (const auto& row : rows("SELECT collection, hex(id), stamp, kind FROM cs_outbox ORDER BY seq")) {
      outbox_entry e;
      e.collection = row.at(0);
      const auto& hex = row.at(1);
      for (std::size_t i = 0; i < e.id.bytes.size(); ++i) {
        e.id.bytes[i] = static_cast<std::uint8_t>(std::stoul(hex.substr(2 * i, 2), nullptr, 16));
      }
      e.stamp = caresync::hlc_stamp{std::stoull(row.at(2))};
      e.kind = static_cast<change_kind>(std::stoi(row.at(3)));
      out.push_back(e);
    }
    return out;
  }

  sqlite3* get() const noexcept { return db_.get(); }

 private:
  struct closer {
    void operator()(sqlite3* db) const noexcept { sqlite3_close_v2(db); }
  };
  std::unique_ptr<sqlite3, closer> db_;
};

struct refusal {
  std::error_code code;
  std::string message;
};

/// What `body` throws as caresync::error; an empty code if it does not throw.
template <class Body>
refusal refusal_of(Body&& body) {
  try {
    body();
  } catch (const caresync::error& e) {
    return {e.code(), e.what()};
  }
  return {};
}

std::error_code code(storage_errc e) { return make_error_code(e); }

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_file(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary);
  out << content;
}

/// The live record's fields; fails the test if the record does not exist.
record_fields fields_of(const store& s, std::string_view collection, const record_id& id) {
  auto got = s.get(collection, id);
  REQUIRE(got.has_value());
  return *got;
}

std::size_t files_in(const std::filesystem::path& dir) {
  return static_cast<std::size_t>(std::distance(std::filesystem::directory_iterator(dir), {}));
}

}  // namespace

TEST_CASE("open creates one table per collection with the declared column types", "[store]") {
  temp_dir dir;
  const auto path = dir.file("tablet.db");
  const auto s = open_store(path);
  raw_db app(path);

  const std::vector<std::vector<std::string>> visits{
      {"id", "TEXT", "1"},          {"client", "TEXT", "0"}, {"minutes", "INTEGER", "0"},
      {"temperature", "REAL", "0"}, {"signature", "BLOB", "0"}, {"notes", "TEXT", "0"},
      {"cs_clock", "BLOB", "0"},  // the record's field clock, caresync's own column
  };
  CHECK(app.rows("SELECT name, type, pk FROM pragma_table_info('visits') ORDER BY cid") == visits);
  const std::vector<std::vector<std::string>> caregivers{
      {"id", "TEXT", "1"}, {"name", "TEXT", "0"}, {"cs_clock", "BLOB", "0"}};
  CHECK(app.rows("SELECT name, type, pk FROM pragma_table_info('caregivers') ORDER BY cid") == caregivers);
  // Nothing else but caresync's own cs_ tables.
  CHECK(app.scalar("SELECT count(*) FROM sqlite_schema WHERE type='table' AND name NOT LIKE 'cs\\_%' ESCAPE '\\'") ==
        "2");
  CHECK(s->path() == path);
  CHECK(s->schema().collections.size() == 2);
}

TEST_CASE("the store file is in WAL mode", "[store]") {
  temp_dir dir;
  const auto path = dir.file("tablet.db");
  const auto s = open_store(path);
  raw_db app(path);
  CHECK(app.scalar("PRAGMA journal_mode") == "wal");
}

TEST_CASE("create then get returns every kind of value exactly", "[store]") {
  temp_dir dir;
  const auto path = dir.file("tablet.db");
  const auto s = open_store(path);

  record_fields written;
  SECTION("ordinary values") {
    written = {{"client", value{std::string("Ana Ruiz")}},
               {"minutes", value{std::int64_t{45}}},
               {"temperature", value{36.6}},
               {"signature", value{bytes({0x00, 0x01, 0xfe, 0xff})}},
               {"notes", value{}}};
  }
  SECTION("edge values") {
    written = {{"client", value{std::string()}},
               {"minutes", value{std::numeric_limits<std::int64_t>::min()}},
               {"temperature", value{-0.125}},
               {"signature", value{blob{}}},
               {"notes", value{std::string("line one\nline two, \"quoted\", ünïcode")}}};
  }
  SECTION("extremes") {
    written = {{"client", value{std::string(1000, 'x')}},
               {"minutes", value{std::numeric_limits<std::int64_t>::max()}},
               {"temperature", value{-1.5e300}},
               {"signature", value{bytes(std::vector<std::uint8_t>(4096, 0xab))}},
               {"notes", value{std::string("-1")}}};  // numeric-looking text stays text
  }
  SECTION("negative numbers") {
    written = {{"minutes", value{std::int64_t{-1}}}, {"temperature", value{-273.15}}};
  }

  std::vector<field_write> fields;
  for (const auto& [name, v] : written) fields.push_back(field_write{name, v});
  const record_id id = s->create("visits", fields);

  const auto got = s->get("visits", id);
  REQUIRE(got.has_value());
  REQUIRE(got->size() == written.size());
  for (const auto& [name, v] : written) {
    INFO("field " << name);
    REQUIRE(got->count(name) == 1);
    CHECK(caresync::kind_of(got->at(name)) == caresync::kind_of(v));
    CHECK(got->at(name) == v);
  }
  CHECK_FALSE(s->get("visits", record_id::generate()).has_value());
  CHECK_FALSE(s->get("caregivers", id).has_value());
}

TEST_CASE("the app reads a created record with plain SQL", "[store]") {
  temp_dir dir;
  const auto path = dir.file("tablet.db");
  const auto s = open_store(path);
  const record_id full = s->create("visits", {{"client", std::string("Ana Ruiz")},
                                              {"minutes", std::int64_t{-45}},
                                              {"temperature", 36.5},
                                              {"signature", bytes({0xca, 0xfe})},
                                              {"notes", value{}}});
  const record_id empty = s->create("visits", {{"client", std::string()}, {"signature", blob{}}});

  raw_db app(path);
  const std::string sql =
      "SELECT client, typeof(client), minutes, typeof(minutes), temperature, typeof(temperature),"
      " hex(signature), typeof(signature), notes, typeof(notes) FROM visits WHERE id=?";
  const std::vector<std::vector<std::string>> want_full{
      {"Ana Ruiz", "text", "-45", "integer", "36.5", "real", "CAFE", "blob", "<null>", "null"}};
  CHECK(app.rows(sql, {full.to_string()}) == want_full);
  const std::vector<std::vector<std::string>> want_empty{
      {"", "text", "<null>", "null", "<null>", "null", "", "blob", "<null>", "null"}};
  CHECK(app.rows(sql, {empty.to_string()}) == want_empty);
  CHECK(app.scalar("SELECT count(*) FROM visits") == "2");
}

TEST_CASE("update sets only the named fields", "[store]") {
  temp_dir dir;
  const auto path = dir.file("tablet.db");
  const auto s = open_store(path);
  const record_id id = s->create("visits", {{"client", std::string("Ana Ruiz")},
                                            {"minutes", std::int64_t{30}},
                                            {"temperature", 36.6},
                                            {"notes", std::string("first visit")}});
  const record_id other = s->create("visits", {{"client", std::string("Bo Lind")}, {"minutes", std::int64_t{5}}});

  s->update("visits", id, {{"minutes", std::int64_t{50}}, {"notes", value{}}, {"signature", bytes({7})}});

  const auto got = s->get("visits", id);
  REQUIRE(got.has_value());
  const record_fields want{{"client", std::string("Ana Ruiz")},
                           {"minutes", std::int64_t{50}},
                           {"temperature", 36.6},
                           {"notes", value{}},
                           {"signature", bytes({7})}};
  CHECK(got->size() == want.size());
  CHECK(*got == want);
  const record_fields other_want{{"client", std::string("Bo Lind")}, {"minutes", std::int64_t{5}}};
  CHECK(fields_of(*s, "visits", other) == other_want);

  raw_db app(path);
  const std::vector<std::vector<std::string>> row{{"Ana Ruiz", "50", "36.6", "07", "<null>"}};
  CHECK(app.rows("SELECT client, minutes, temperature, hex(signature), notes FROM visits WHERE id=?",
                 {id.to_string()}) == row);
}

TEST_CASE("remove deletes the record and its row and later changes to it are not_found", "[store]") {
  temp_dir dir;
  const auto path = dir.file("tablet.db");
  const auto s = open_store(path);
  const record_id id = s->create("visits", {{"client", std::string("Ana Ruiz")}});
  const record_id kept = s->create("visits", {{"client", std::string("Bo Lind")}});
  s->remove("visits", id);

  CHECK_FALSE(s->get("visits", id).has_value());
  CHECK(s->get("visits", kept).has_value());
  CHECK(s->count("visits") == 1);
  raw_db app(path);
  CHECK(app.scalar("SELECT count(*) FROM visits WHERE id=?", {id.to_string()}) == "0");
  CHECK(app.scalar("SELECT count(*) FROM visits WHERE id=?", {kept.to_string()}) == "1");
  REQUIRE(s->outbox_size() == 3);

  const record_id unknown = record_id::generate();
  SECTION("update of the deleted record") {
    const auto r = refusal_of([&] { s->update("visits", id, {{"minutes", std::int64_t{1}}}); });
    CHECK(r.code == code(storage_errc::not_found));
    CHECK_THAT(r.message, Catch::Contains(id.to_string()));
  }
  SECTION("remove of the deleted record") {
    CHECK(refusal_of([&] { s->remove("visits", id); }).code == code(storage_errc::not_found));
  }
  SECTION("update of an unknown id") {
    CHECK(refusal_of([&] { s->update("visits", unknown, {{"minutes", std::int64_t{1}}}); }).code ==
          code(storage_errc::not_found));
  }
  SECTION("remove of an unknown id") {
    CHECK(refusal_of([&] { s->remove("visits", unknown); }).code == code(storage_errc::not_found));
  }
  SECTION("a record id used in another collection") {
    CHECK(refusal_of([&] { s->remove("caregivers", kept); }).code == code(storage_errc::not_found));
  }
  // A refused write leaves no trace.
  CHECK(s->outbox_size() == 3);
  CHECK(app.scalar("SELECT count(*) FROM visits") == "1");
  CHECK_FALSE(s->get("visits", unknown).has_value());
}

TEST_CASE("bad writes are refused with invalid_argument naming the culprit", "[store]") {
  temp_dir dir;
  const auto path = dir.file("tablet.db");
  const auto s = open_store(path);
  const record_id existing = s->create("visits", {{"minutes", std::int64_t{10}}});
  const auto digest = s->state_digest();

  std::vector<field_write> fields;
  std::string collection = "visits";
  std::string culprit;
  SECTION("an unknown collection") {
    collection = "reports";
    fields = {{"minutes", std::int64_t{1}}};
    culprit = "reports";
  }
  SECTION("an unknown field") {
    fields = {{"minutes", std::int64_t{1}}, {"colour", std::string("red")}};
    culprit = "colour";
  }
  SECTION("text for an integer field") {
    fields = {{"minutes", std::string("ten")}};
    culprit = "minutes";
  }
  SECTION("an integer for a real field") {
    fields = {{"temperature", std::int64_t{37}}};
    culprit = "temperature";
  }
  SECTION("text for a bytes field") {
    fields = {{"signature", std::string("cafe")}};
    culprit = "signature";
  }
  SECTION("an invalid field name") {
    fields = {{"Minutes", std::int64_t{1}}};
    culprit = "Minutes";
  }
  SECTION("a reserved field name") {
    fields = {{"cs_clock", std::int64_t{1}}};
    culprit = "cs_clock";
  }
  SECTION("a NaN real, which SQLite would store as null") {
    fields = {{"temperature", std::numeric_limits<double>::quiet_NaN()}};
    culprit = "temperature";
  }
  SECTION("a field written twice") {
    fields = {{"minutes", std::int64_t{1}}, {"minutes", std::int64_t{2}}};
    culprit = "minutes";
  }

  const auto on_create = refusal_of([&] { (void)s->create(collection, fields); });
  CHECK(on_create.code == code(storage_errc::invalid_argument));
  CHECK_THAT(on_create.message, Catch::Contains("'" + culprit + "'"));
  const auto on_update = refusal_of([&] { s->update(collection, existing, fields); });
  CHECK(on_update.code == code(storage_errc::invalid_argument));
  CHECK_THAT(on_update.message, Catch::Contains("'" + culprit + "'"));

  CHECK(s->outbox_size() == 1);
  CHECK(s->count("visits") == 1);
  CHECK(fields_of(*s, "visits", existing) == record_fields{{"minutes", std::int64_t{10}}});
  CHECK(s->state_digest() == digest);
}

TEST_CASE("every write puts one change in the outbox and clears the receipt", "[store]") {
  temp_dir dir;
  const auto path = dir.file("tablet.db");
  const auto s = open_store(path);
  CHECK(s->outbox_size() == 0);

  const record_id a = s->create("visits", {{"client", std::string("Ana Ruiz")}, {"minutes", std::int64_t{30}}});
  CHECK(s->outbox_size() == 1);
  CHECK_FALSE(s->is_synced("visits", a));
  const record_id b = s->create("caregivers", {{"name", std::string("Cai")}});
  CHECK(s->outbox_size() == 2);
  CHECK_FALSE(s->is_synced("caregivers", b));
  CHECK(s->is_synced("visits", b));  // no change of b waits in "visits"
  s->update("visits", a, {{"minutes", std::int64_t{40}}});
  CHECK(s->outbox_size() == 3);
  s->remove("caregivers", b);
  CHECK(s->outbox_size() == 4);
  CHECK_FALSE(s->is_synced("caregivers", b));

  raw_db app(path);
  const auto entries = app.outbox();
  REQUIRE(entries.size() == 4);
  CHECK(entries[0].collection == "visits");
  CHECK(entries[0].id == a);
  CHECK(entries[0].kind == change_kind::upsert);
  CHECK(entries[1].collection == "caregivers");
  CHECK(entries[1].id == b);
  CHECK(entries[2].id == a);
  CHECK(entries[3].collection == "caregivers");
  CHECK(entries[3].id == b);
  CHECK(entries[3].kind == change_kind::remove);
  for (std::size_t i = 1; i < entries.size(); ++i) CHECK(entries[i].stamp > entries[i - 1].stamp);

  // What a sync sends is rebuilt from the records: each entry carries the fields it
  // wrote that no later write overwrote; a write to a record deleted since was frozen
  // as it was when the delete came, and goes before the delete, which covers it.
  const auto batch = s->internal().next_batch(100);
  REQUIRE(batch);
  const auto out = batch->decode_changes();
  REQUIRE(out.size() == 4);
  CHECK(batch->change_count == 4);
  CHECK(batch->max_stamp == entries[3].stamp);
  CHECK(out[0].collection == "visits");
  CHECK(out[0].id == a);
  CHECK(out[0].kind == change_kind::upsert);
  CHECK(out[0].ver.stamp == entries[0].stamp);
  CHECK(out[0].fields == std::vector<field_write>{{"client", std::string("Ana Ruiz")}});
  CHECK(out[1].collection == "caregivers");
  CHECK(out[1].id == b);
  CHECK(out[1].kind == change_kind::upsert);
  CHECK(out[1].ver.stamp == entries[1].stamp);
  CHECK(out[1].fields == std::vector<field_write>{{"name", std::string("Cai")}});
  CHECK(out[2].id == a);
  CHECK(out[2].ver.stamp == entries[2].stamp);
  CHECK(out[2].fields == std::vector<field_write>{{"minutes", std::int64_t{40}}});
  CHECK(out[3].collection == "caregivers");
  CHECK(out[3].id == b);
  CHECK(out[3].kind == change_kind::remove);
  CHECK(out[3].ver.stamp == entries[3].stamp);
  CHECK(out[3].fields.empty());
  // The delete names what it covers: the record's one write.
  CHECK(out[3].covers == std::vector<caresync::version>{out[1].ver});
  for (const auto& c : out) CHECK(c.ver.node == s->node());
  // The batch is pinned: asked again, the store gives the same batch, byte for byte.
  const auto again = s->internal().next_batch(100);
  REQUIRE(again);
  CHECK(again->id == batch->id);
  CHECK(again->payload == batch->payload);
}

TEST_CASE("a pinned batch is kept as the frame it is sent as, compressed, and read back the same", "[store]") {
  temp_dir dir;
  const auto path = dir.file("tablet.db");
  const auto s = open_store(path);
  for (int i = 0; i < 50; ++i) {
    s->create("visits", {{"client", std::string("Ana Ruiz")}, {"notes", std::string(300, 'a' + static_cast<char>(i % 3))}});
  }
  const auto batch = s->internal().next_batch(100, caresync::wire::codec::zstd);
  REQUIRE(batch);
  CHECK(batch->change_count == 50);
  REQUIRE(batch->frame.size() > caresync::wire::k_frame_header_size);
  const auto h = caresync::wire::parse_header(std::span<const std::uint8_t, caresync::wire::k_frame_header_size>(batch->frame.data(),
                                                                                             caresync::wire::k_frame_header_size),
                                    caresync::wire::k_default_max_frame);
  CHECK(h.type == caresync::wire::message_type::push);
  CHECK(h.compression == caresync::wire::codec::zstd);
  CHECK(batch->frame_codec == caresync::wire::codec::zstd);
  CHECK(batch->frame.size() < batch->payload.size() / 2);
  raw_db app(path);
  CHECK(app.scalar("SELECT framed FROM cs_batch") == "2");  // a version 7 frame
  CHECK(batch_number(batch->id) == 1);  // the store's first batch
  CHECK(app.scalar("SELECT length(payload) FROM cs_batch") == std::to_string(batch->frame.size()));
  // Read back (as after a crash): the same id, frame, payload and changes.
  const auto again = s->internal().next_batch(100, caresync::wire::codec::zstd);
  REQUIRE(again);
  CHECK(again->id == batch->id);
  CHECK(again->frame == batch->frame);
  CHECK(again->frame_codec == caresync::wire::codec::zstd);
  CHECK(again->payload == batch->payload);
  CHECK(again->decode_changes() == batch->decode_changes());
  CHECK(again->change_count == batch->change_count);
  CHECK(again->max_stamp == batch->max_stamp);

  SECTION("a batch a version 6 store pinned (its payload, or its frame) is resent with its id, in version 7's form") {
    // Version 6: a random 16-byte id, and each change with its node.
    const auto legacy_id = caresync::record_id::generate();
    const auto changes = batch->decode_changes();
    std::vector<std::uint8_t> v6(legacy_id.bytes.begin(), legacy_id.bytes.end());
    v6.insert(v6.begin(), 0x01);  // the marker
    v6.push_back(static_cast<std::uint8_t>(changes.size()));  // 50: a one-byte varint
    for (const auto& c : changes) {
      const auto stored = caresync::wire::encode_change(c);
      v6.insert(v6.end(), stored.begin() + 1, stored.end());
    }
    const bool framed = GENERATE(false, true);
    CAPTURE(framed);
    const auto pinned = framed ? caresync::wire::make_frame(caresync::wire::message_type::push, v6, caresync::wire::codec::zstd) : v6;
    sqlite3* raw = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &raw) == SQLITE_OK);
    const std::unique_ptr<sqlite3, decltype(&sqlite3_close)> db(raw, &sqlite3_close);
    sqlite3_stmt* st = nullptr;
    REQUIRE(sqlite3_prepare_v2(raw, "UPDATE cs_batch SET id=?, payload=?, framed=?", -1, &st, nullptr) == SQLITE_OK);
    sqlite3_bind_blob(st, 1, legacy_id.bytes.data(), 16, SQLITE_TRANSIENT);
    sqlite3_bind_blob(st, 2, pinned.data(), static_cast<int>(pinned.size()), SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 3, framed ? 1 : 0);
    CHECK(sqlite3_step(st) == SQLITE_DONE);
    sqlite3_finalize(st);
    const auto old = s->internal().next_batch(100, caresync::wire::codec::zstd);
    REQUIRE(old);
    CHECK(old->id == legacy_id);
    CHECK(old->frame.empty());  // framed again when sent, in version 7's form
    CHECK(old->payload == caresync::wire::encode(caresync::wire::push{legacy_id, changes}));
    CHECK(old->decode_changes() == changes);
    CHECK(old->change_count == batch->change_count);
    CHECK(old->max_stamp == batch->max_stamp);
  }
  SECTION("a damaged pinned frame is reported, not sent") {
    app.rows("UPDATE cs_batch SET payload=substr(payload, 1, 20)");
    try {
      s->internal().next_batch(100, caresync::wire::codec::zstd);
      FAIL("a damaged batch was read");
    } catch (const caresync::error& e) {
      CHECK(e.code() == storage_errc::corrupt);
    }
  }
}

TEST_CASE("the store's WAL is checkpointed by a thread of its own and emptied when the store is quiet", "[store]") {
  temp_dir dir;
  const auto path = dir.file("tablet.db");
  const auto s = open_store(path);
  // Well over 1,000 pages (4 MiB) of commits.
  for (int t = 0; t < 8; ++t) {
    s->transaction([&] {
      for (int i = 0; i < 200; ++i) s->create("visits", {{"client", std::string("Ana Ruiz")}, {"notes", std::string(4000, 'n')}});
    });
  }
  // SQLite's own checkpoint would leave the WAL file at its largest size; the store's
  // thread copies it into the database file and then truncates it. Waited for, not timed.
  const auto size = [](const std::string& p) {
    std::error_code ec;
    const auto n = std::filesystem::file_size(p, ec);
    return ec ? std::uintmax_t{0} : n;
  };
  for (int i = 0; i < 400 && !(size(path + "-wal") == 0 && size(path) > (6u << 20)); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  CHECK(size(path + "-wal") == 0);
  CHECK(size(path) > (6u << 20));
  raw_db app(path);
  CHECK(app.scalar("SELECT count(*) FROM visits") == "1600");
  // Writes go on after it.
  s->create("visits", {{"client", std::string("Cai")}});
  CHECK(app.scalar("SELECT count(*) FROM visits") == "1601");
}

#if defined(__linux__)
TEST_CASE("the store's checkpoint thread runs at a background priority, and the app's threads keep theirs", "[store]") {
  temp_dir dir;
  using caresync::testing::thread_nice_values;
  const auto before = thread_nice_values();
  const int own = before.at(caresync::testing::this_thread_id());
  const auto s = open_store(dir.file("tablet.db"));
  // The thread lowers its own priority as it starts: waited for, not timed.
  std::vector<int> started;
  for (int i = 0; i < 400; ++i) {
    started.clear();
    for (const auto& [tid, nice] : thread_nice_values()) {
      if (!before.contains(tid)) started.push_back(nice);
    }
    if (std::find(started.begin(), started.end(), std::min(own + 10, 19)) != started.end()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  CHECK(std::count(started.begin(), started.end(), std::min(own + 10, 19)) == 1);
  CHECK(thread_nice_values().at(caresync::testing::this_thread_id()) == own);
  s->create("visits", {{"client", std::string("Ana Ruiz")}});
  CHECK(s->count("visits") == 1);
}
#endif

TEST_CASE("a transaction commits its writes together", "[store]") {
  temp_dir dir;
  const auto path = dir.file("tablet.db");
  const auto s = open_store(path);
  raw_db app(path);
  std::vector<record_id> ids;

  s->transaction([&] {
    for (std::int64_t i = 0; i < 10; ++i) ids.push_back(s->create("visits", {{"minutes", i}}));
    s->update("visits", ids[0], {{"notes", std::string("changed in the same transaction")}});
    // The store sees its own writes; another connection sees nothing before the commit.
    CHECK(s->count("visits") == 10);
    CHECK(s->outbox_size() == 11);
    CHECK(app.scalar("SELECT count(*) FROM visits") == "0");
    CHECK(app.scalar("SELECT count(*) FROM cs_outbox") == "0");
  });

  CHECK(app.scalar("SELECT count(*) FROM visits") == "10");
  CHECK(app.scalar("SELECT count(*) FROM cs_outbox") == "11");
  CHECK(s->count("visits") == 10);
  CHECK(fields_of(*s, "visits", ids[9]) == record_fields{{"minutes", std::int64_t{9}}});
  CHECK(s->get("visits", ids[0])->at("notes") == value{std::string("changed in the same transaction")});
}

TEST_CASE("a throw inside a transaction rolls back every write in it", "[store]") {
  temp_dir dir;
  const auto path = dir.file("tablet.db");
  const auto s = open_store(path);
  const record_id a = s->create("visits", {{"minutes", std::int64_t{10}}});
  const record_id b = s->create("visits", {{"minutes", std::int64_t{20}}});
  const auto digest = s->state_digest();
  std::optional<record_id> created;

  CHECK_THROWS_WITH(s->transaction([&] {
    s->update("visits", a, {{"minutes", std::int64_t{11}}});
    s->remove("visits", b);
    created = s->create("caregivers", {{"name", std::string("Cai")}});
    throw std::runtime_error("the app changed its mind");
  }),
                    "the app changed its mind");

  REQUIRE(created.has_value());
  CHECK(fields_of(*s, "visits", a) == record_fields{{"minutes", std::int64_t{10}}});
  CHECK(fields_of(*s, "visits", b) == record_fields{{"minutes", std::int64_t{20}}});
  CHECK_FALSE(s->get("caregivers", *created).has_value());
  CHECK(s->outbox_size() == 2);
  CHECK(s->count("visits") == 2);
  CHECK(s->count("caregivers") == 0);
  CHECK(s->state_digest() == digest);
  raw_db app(path);
  CHECK(app.scalar("SELECT count(*) FROM visits") == "2");
  CHECK(app.scalar("SELECT count(*) FROM caregivers") == "0");
  CHECK(app.scalar("SELECT minutes FROM visits WHERE id=?", {a.to_string()}) == "10");

  // The store is usable afterwards and commits normally.
  s->update("visits", a, {{"minutes", std::int64_t{12}}});
  CHECK(s->outbox_size() == 3);
  CHECK(app.scalar("SELECT minutes FROM visits WHERE id=?", {a.to_string()}) == "12");
}

TEST_CASE("a refused write caught inside a transaction does not spoil it", "[store]") {
  temp_dir dir;
  const auto path = dir.file("tablet.db");
  const auto s = open_store(path);
  s->transaction([&] {
    (void)s->create("visits", {{"minutes", std::int64_t{1}}});
    CHECK(refusal_of([&] { s->update("visits", record_id::generate(), {{"minutes", std::int64_t{2}}}); }).code ==
          code(storage_errc::not_found));
    CHECK(refusal_of([&] { (void)s->create("visits", {{"colour", std::string("red")}}); }).code ==
          code(storage_errc::invalid_argument));
    (void)s->create("visits", {{"minutes", std::int64_t{3}}});
  });
  CHECK(s->count("visits") == 2);
  CHECK(s->outbox_size() == 2);
  raw_db app(path);
  CHECK(app.scalar("SELECT group_concat(minutes) FROM (SELECT minutes FROM visits ORDER BY minutes)") == "1,3");
}

TEST_CASE("nested transactions", "[store]") {
  temp_dir dir;
  const auto path = dir.file("tablet.db");
  const auto s = open_store(path);
  const record_id existing = s->create("visits", {{"minutes", std::int64_t{10}}});

  SECTION("an inner throw caught by the outer undoes only the inner writes") {
    record_id outer_before, outer_after;
    std::optional<record_id> inner;
    s->transaction([&] {
      outer_before = s->create("visits", {{"minutes", std::int64_t{1}}});
      CHECK_THROWS_AS(s->transaction([&] {
        inner = s->create("visits", {{"minutes", std::int64_t{2}}});
        s->update("visits", existing, {{"minutes", std::int64_t{99}}});
        s->remove("visits", outer_before);
        throw std::runtime_error("inner step failed");
      }),
                      std::runtime_error);
      // Inside the outer transaction the inner writes are already gone.
      CHECK(s->get("visits", outer_before).has_value());
      outer_after = s->create("visits", {{"minutes", std::int64_t{3}}});
    });
    REQUIRE(inner.has_value());
    CHECK_FALSE(s->get("visits", *inner).has_value());
    CHECK(fields_of(*s, "visits", existing) == record_fields{{"minutes", std::int64_t{10}}});
    CHECK(fields_of(*s, "visits", outer_before) == record_fields{{"minutes", std::int64_t{1}}});
    CHECK(fields_of(*s, "visits", outer_after) == record_fields{{"minutes", std::int64_t{3}}});
    CHECK(s->count("visits") == 3);
    CHECK(s->outbox_size() == 3);  // existing, outer_before, outer_after
    raw_db app(path);
    const auto out = app.outbox();
    REQUIRE(out.size() == 3);
    CHECK(out[1].id == outer_before);
    CHECK(out[2].id == outer_after);
  }
  SECTION("a completed inner transaction joins the outer one and rolls back with it") {
    std::optional<record_id> inner;
    CHECK_THROWS_AS(s->transaction([&] {
      s->transaction([&] { inner = s->create("visits", {{"minutes", std::int64_t{2}}}); });
      s->update("visits", existing, {{"minutes", std::int64_t{11}}});
      throw std::runtime_error("outer step failed");
    }),
                    std::runtime_error);
    REQUIRE(inner.has_value());
    CHECK_FALSE(s->get("visits", *inner).has_value());
    CHECK(fields_of(*s, "visits", existing) == record_fields{{"minutes", std::int64_t{10}}});
    CHECK(s->outbox_size() == 1);
  }
  SECTION("a throw two levels deep caught one level up") {
    std::optional<record_id> middle, deepest;
    s->transaction([&] {
      s->transaction([&] {
        middle = s->create("visits", {{"minutes", std::int64_t{2}}});
        CHECK_THROWS_AS(s->transaction([&] {
          deepest = s->create("visits", {{"minutes", std::int64_t{3}}});
          throw std::runtime_error("deepest step failed");
        }),
                        std::runtime_error);
      });
    });
    REQUIRE(middle.has_value());
    REQUIRE(deepest.has_value());
    CHECK(fields_of(*s, "visits", *middle) == record_fields{{"minutes", std::int64_t{2}}});
    CHECK_FALSE(s->get("visits", *deepest).has_value());
    CHECK(s->outbox_size() == 2);
  }
}

TEST_CASE("reopening keeps records and node id and outbox and cursor", "[store]") {
  temp_dir dir;
  const auto path = dir.file("tablet.db");
  record_id kept, removed;
  caresync::node_id node = 0;
  std::string digest;
  {
    const auto s = open_store(path);
    kept = s->create("visits", {{"client", std::string("Ana Ruiz")}, {"signature", bytes({1, 2, 3})}});
    removed = s->create("caregivers", {{"name", std::string("Cai")}});
    s->update("visits", kept, {{"minutes", std::int64_t{-5}}});
    s->remove("caregivers", removed);
    node = s->node();
    digest = s->state_digest();
    CHECK(node != 0);
  }
  const auto s = open_store(path);
  CHECK(s->node() == node);
  CHECK(s->outbox_size() == 4);
  CHECK(s->cursor() == 0);
  CHECK_FALSE(s->is_synced("visits", kept));
  const record_fields want{
      {"client", std::string("Ana Ruiz")}, {"signature", bytes({1, 2, 3})}, {"minutes", std::int64_t{-5}}};
  CHECK(fields_of(*s, "visits", kept) == want);
  CHECK_FALSE(s->get("caregivers", removed).has_value());
  CHECK(s->count("visits") == 1);
  CHECK(s->count("caregivers") == 0);
  CHECK(s->state_digest() == digest);
  CHECK(refusal_of([&] { s->update("caregivers", removed, {{"name", std::string("again")}}); }).code ==
        code(storage_errc::not_found));

  // A second store file gets its own node id.
  CHECK(open_store(dir.file("other.db"))->node() != node);
}

TEST_CASE("the hybrid clock does not go backwards across a reopen", "[store]") {
  temp_dir dir;
  const auto path = dir.file("tablet.db");
  record_id id;
  caresync::hlc_stamp before;
  {
    const auto s = open_store(path);
    id = s->create("visits", {{"minutes", std::int64_t{1}}});
  }
  {
    raw_db inspect(path);
    const auto out = inspect.outbox();
    REQUIRE(out.size() == 1);
    before = out[0].stamp;
  }

  SECTION("a normal reopen") {
  }
  SECTION("a reopen after the clock ran ahead of the wall clock (the device time was corrected back)") {
    // A stamp a day ahead of the wall clock, as left by a device whose time was wrong.
    before = caresync::hlc_stamp::make(before.wall_ms() + 24 * 3600 * 1000, 17);
    raw_db inspect(path);
    REQUIRE(inspect.scalar("SELECT count(*) FROM cs_state WHERE key='hlc'") == "1");
    inspect.rows("UPDATE cs_state SET value=? WHERE key='hlc'", {std::to_string(before.value)});
  }

  const auto s = open_store(path);
  s->update("visits", id, {{"minutes", std::int64_t{2}}});
  raw_db inspect(path);
  const auto out = inspect.outbox();
  REQUIRE(out.size() == 2);
  CHECK(out[1].stamp > before);
  CHECK(out[1].stamp > out[0].stamp);
}

TEST_CASE("reopening with an added field adds its column and keeps the data", "[store]") {
  temp_dir dir;
  const auto path = dir.file("tablet.db");
  record_id old;
  {
    const auto s = open_store(path);
    old = s->create("visits", {{"client", std::string("Ana Ruiz")}, {"minutes", std::int64_t{30}}});
  }
  auto evolved = care_schema();
  evolved.collections[0].fields.push_back(field_def{"mood", value_kind::text});
  evolved.collections.push_back(collection_def{"referrals", {{"reason", value_kind::text}}});
  const auto s = open_store(path, evolved);

  raw_db app(path);
  CHECK(app.scalar("SELECT type FROM pragma_table_info('visits') WHERE name='mood'") == "TEXT");
  CHECK(app.scalar("SELECT type FROM pragma_table_info('referrals') WHERE name='reason'") == "TEXT");
  const record_fields old_fields{{"client", std::string("Ana Ruiz")}, {"minutes", std::int64_t{30}}};
  CHECK(fields_of(*s, "visits", old) == old_fields);
  CHECK(app.scalar("SELECT mood FROM visits WHERE id=?", {old.to_string()}) == "<null>");

  s->update("visits", old, {{"mood", std::string("calm")}});
  const record_id fresh = s->create("visits", {{"mood", std::string("tired")}});
  const auto referral = s->create("referrals", {{"reason", std::string("physio")}});
  CHECK(s->get("visits", old)->at("mood") == value{std::string("calm")});
  CHECK(app.scalar("SELECT mood FROM visits WHERE id=?", {old.to_string()}) == "calm");
  CHECK(app.scalar("SELECT mood FROM visits WHERE id=?", {fresh.to_string()}) == "tired");
  CHECK(app.scalar("SELECT reason FROM referrals WHERE id=?", {referral.to_string()}) == "physio");
  CHECK(s->count("visits") == 2);
}

TEST_CASE("reopening with a field's type changed is refused as schema_mismatch", "[store]") {
  temp_dir dir;
  const auto path = dir.file("tablet.db");
  record_id id;
  {
    const auto s = open_store(path);
    id = s->create("visits", {{"minutes", std::int64_t{30}}});
  }
  auto changed = care_schema();
  changed.collections[0].fields[1].type = value_kind::real;  // minutes: integer -> real
  changed.collections[0].fields.push_back(field_def{"mood", value_kind::text});

  const auto r = refusal_of([&] { (void)open_store(path, changed); });
  CHECK(r.code == code(storage_errc::schema_mismatch));
  CHECK_THAT(r.message, Catch::Contains("'minutes'"));

  // Nothing of the refused schema was applied; the old schema still opens.
  {
    raw_db app(path);
    CHECK(app.scalar("SELECT type FROM pragma_table_info('visits') WHERE name='minutes'") == "INTEGER");
    CHECK(app.scalar("SELECT count(*) FROM pragma_table_info('visits') WHERE name='mood'") == "0");
  }
  const auto s = open_store(path);
  CHECK(fields_of(*s, "visits", id) == record_fields{{"minutes", std::int64_t{30}}});
}

TEST_CASE("opening a file that is not a caresync store is refused as corrupt and leaves it alone", "[store]") {
  temp_dir dir;
  const auto path = dir.file("tablet.db");

  SECTION("garbage bytes") {
    std::string garbage;
    for (int i = 0; i < 8192; ++i) garbage.push_back(static_cast<char>((i * 131 + 7) % 251));
    write_file(path, garbage);
  }
  SECTION("a short text file") {
    write_file(path, "these are my notes, not a database\n");
  }
  SECTION("another app's SQLite database") {
    raw_db other(path, /*create=*/true);
    other.rows("CREATE TABLE patients(name TEXT, born INTEGER)");
    other.rows("INSERT INTO patients VALUES('Ana', 1950)");
  }
  SECTION("a caresync store written by a newer format") {
    (void)open_store(path);
    raw_db newer(path);
    newer.rows("PRAGMA user_version=3");
  }
  SECTION("a caresync store of the format before this one") {
    (void)open_store(path);
    raw_db older(path);
    older.rows("PRAGMA user_version=1");
  }

  const std::string bytes_before = read_file(path);
  const auto files_before = files_in(dir.path());
  REQUIRE_FALSE(bytes_before.empty());

  const auto r = refusal_of([&] { (void)open_store(path); });
  CHECK(r.code == code(storage_errc::corrupt));
  CHECK_THAT(r.message, Catch::Contains(path));

  CHECK(read_file(path) == bytes_before);
  CHECK(files_in(dir.path()) == files_before);
}

TEST_CASE("opening a path in a missing directory fails with open_failed", "[store]") {
  temp_dir dir;
  const auto path = dir.file("no/such/dir/tablet.db");
  const auto r = refusal_of([&] { (void)open_store(path); });
  CHECK(r.code == code(storage_errc::open_failed));
  CHECK_THAT(r.message, Catch::Contains(path));
  CHECK_FALSE(std::filesystem::exists(dir.path() / "no"));
}

TEST_CASE("state_digest changes with every write and is stable across reopen", "[store]") {
  temp_dir dir;
  const auto path = dir.file("tablet.db");
  std::string after_update;
  {
    const auto s = open_store(path);
    const auto empty = s->state_digest();
    CHECK(empty.size() == 64);
    CHECK(empty.find_first_not_of("0123456789abcdef") == std::string::npos);
    CHECK(s->state_digest() == empty);

    const record_id id = s->create("visits", {{"minutes", std::int64_t{30}}});
    const auto after_create = s->state_digest();
    CHECK(after_create != empty);
    s->update("visits", id, {{"minutes", std::int64_t{30}}});  // same value, newer version
    after_update = s->state_digest();
    CHECK(after_update != after_create);
    CHECK(s->state_digest() == after_update);
  }
  const auto s = open_store(path);
  CHECK(s->state_digest() == after_update);
  const record_id other = s->create("caregivers", {{"name", std::string("Cai")}});
  const auto with_other = s->state_digest();
  CHECK(with_other != after_update);
  s->remove("caregivers", other);
  CHECK(s->state_digest() != with_other);
}

TEST_CASE("count counts live records per collection", "[store]") {
  temp_dir dir;
  const auto s = open_store(dir.file("tablet.db"));
  CHECK(s->count("visits") == 0);
  std::vector<record_id> visits;
  for (std::int64_t i = 0; i < 3; ++i) visits.push_back(s->create("visits", {{"minutes", i}}));
  (void)s->create("caregivers", {{"name", std::string("Cai")}});
  (void)s->create("visits", {});  // a record with no fields is still a record
  s->remove("visits", visits[1]);
  CHECK(s->count("visits") == 3);
  CHECK(s->count("caregivers") == 1);
  CHECK(s->count("referrals") == 0);
}
