// The exact text of an append or set_union field's value, as docs/protocol.md ("append and
// set_union: item operations") states it byte for byte: a store's column holds this text,
// and apps parse it.
#include <caresync/protocol/merge.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <string>
#include <vector>

using namespace caresync;

namespace {

/// An upsert of record 1 whose only part is one item operation on `field`.
change item_change(std::uint64_t ms, item_policy policy, std::vector<std::string> add, std::vector<version> remove = {}) {
  change c;
  c.collection = "visits";
  c.id.bytes[15] = 1;
  c.ver = version{hlc_stamp::make(ms, 0), 7};
  c.kind = change_kind::upsert;
  c.items.push_back(item_op{"codes", policy, std::move(add), std::move(remove)});
  return c;
}

std::string shown(const record_state& st) { return std::get<std::string>(st.fields.at("codes").val); }

}  // namespace

TEST_CASE("item fields show a JSON array of strings, byte for byte as protocol.md says", "[protocol]") {
  record_state st;

  SECTION("append: every entry in version order, no spaces") {
    merge(st, item_change(200, item_policy::append, {"second"}));
    merge(st, item_change(100, item_policy::append, {"first"}));
    merge(st, item_change(300, item_policy::append, {"first"}));  // a log keeps repeats
    CHECK(shown(st) == R"(["first","second","first"])");
  }
  SECTION("set_union: distinct, sorted by bytes (unsigned), [] once everything is removed") {
    merge(st, item_change(100, item_policy::set_union, {"meals", "hygiene", "\xc5\xa1kola"}));  // "škola"
    merge(st, item_change(200, item_policy::set_union, {"hygiene", "Zebra"}));
    CHECK(shown(st) == "[\"Zebra\",\"hygiene\",\"meals\",\"\xc5\xa1kola\"]");
    merge(st, item_change(300, item_policy::set_union, {"x"}, {version{hlc_stamp::make(100, 0), 7},
                                                              version{hlc_stamp::make(200, 0), 7}}));
    CHECK(shown(st) == R"(["x"])");
    merge(st, item_change(400, item_policy::set_union, {}, {version{hlc_stamp::make(300, 0), 7}}));
    CHECK(shown(st) == "[]");
  }
  SECTION("escapes: quote, backslash and control characters only; invalid UTF-8 becomes U+FFFD") {
    merge(st, item_change(100, item_policy::append, {"a\"b\\c/d"}));
    merge(st, item_change(200, item_policy::append, {"\b\f\n\r\t\x01\x1f\x7f"}));
    merge(st, item_change(300, item_policy::append, {"bad \xff byte"}));
    CHECK(shown(st) == "[\"a\\\"b\\\\c/d\",\"\\b\\f\\n\\r\\t\\u0001\\u001f\x7f\",\"bad \xef\xbf\xbd byte\"]");
  }
}
