#include <caresync/protocol/change.hpp>
#include <caresync/protocol/errors.hpp>

#include <catch2/catch.hpp>

#include <limits>
#include <string>

using namespace caresync;

TEST_CASE("names: 1-63 characters of a-z, 0-9, _, starting with a letter, not cs_", "[protocol]") {
  CHECK(is_valid_name("visit"));
  CHECK(is_valid_name("a"));
  CHECK(is_valid_name("visit_note_2"));
  CHECK(is_valid_name(std::string(63, 'a')));
  CHECK(is_valid_name("cs"));
  CHECK(is_valid_name("csx_field"));
  CHECK_FALSE(is_valid_name(""));
  CHECK_FALSE(is_valid_name(std::string(64, 'a')));
  CHECK_FALSE(is_valid_name("Visit"));
  CHECK_FALSE(is_valid_name("_visit"));
  CHECK_FALSE(is_valid_name("1visit"));
  CHECK_FALSE(is_valid_name("cs_outbox"));
  CHECK_FALSE(is_valid_name("visit-note"));
  CHECK_FALSE(is_valid_name("visit note"));
  CHECK_FALSE(is_valid_name("poznámka"));
  CHECK_FALSE(is_valid_name(std::string("a\0b", 3)));
}

TEST_CASE("check_change enforces the limits of a received change", "[protocol]") {
  change c;
  c.collection = "visit";
  c.fields = {{"note", value{std::string("ok")}}};
  CHECK(check_change(c).empty());

  SECTION("invalid collection") {
    c.collection = "cs_meta";
    CHECK_FALSE(check_change(c).empty());
  }
  SECTION("invalid field name") {
    c.fields.push_back({"Bad", value{}});
    CHECK(check_change(c).find("invalid field") != std::string::npos);
  }
  SECTION("duplicate field") {
    c.fields.push_back({"note", value{}});
    CHECK(check_change(c).find("twice") != std::string::npos);
  }
  SECTION("a delete with fields") {
    c.kind = change_kind::remove;
    CHECK_FALSE(check_change(c).empty());
    c.fields.clear();
    CHECK(check_change(c).empty());
  }
  SECTION("NaN") {
    c.fields.push_back({"score", value{std::numeric_limits<double>::quiet_NaN()}});
    CHECK(check_change(c).find("NaN") != std::string::npos);
  }
  SECTION("infinity is a value, not NaN") {
    c.fields.push_back({"score", value{std::numeric_limits<double>::infinity()}});
    CHECK(check_change(c).empty());
  }
  SECTION("256 fields is the default most, 257 too many") {
    c.fields.clear();
    for (int i = 0; i < 256; ++i) c.fields.push_back({"f" + std::to_string(i), value{}});
    CHECK(check_change(c).empty());
    c.fields.push_back({"f256", value{}});
    CHECK(check_change(c).find("256") != std::string::npos);
  }
  SECTION("value size: 1 MiB default, text and bytes") {
    c.fields = {{"note", value{std::string(1u << 20, 'x')}}};
    CHECK(check_change(c).empty());
    c.fields = {{"note", value{std::string((1u << 20) + 1, 'x')}}};
    CHECK_FALSE(check_change(c).empty());
    c.fields = {{"photo", value{blob{std::vector<std::uint8_t>((1u << 20) + 1)}}}};
    CHECK_FALSE(check_change(c).empty());
    CHECK(check_change(c, change_limits{256, 2u << 20}).empty());
  }
  SECTION("the reason never quotes a value") {
    c.fields = {{"note", value{std::string(2u << 20, 'x')}}};
    const auto reason = check_change(c);
    CHECK(reason.find("xxx") == std::string::npos);
    CHECK(reason.find("note") != std::string::npos);
  }
}

TEST_CASE("check_change enforces the rules of kept fields", "[protocol][keep_both]") {
  const auto at = [](std::uint64_t ms, node_id node) { return version{hlc_stamp::make(ms, 0), node}; };
  change c;
  c.collection = "visit";
  c.ver = at(500, 7);
  c.fields = {{"note", value{std::string("ok")}}, {"minutes", value{std::int64_t{5}}}};
  c.kept = {kept_field{"note", {at(100, 1), at(100, 2), at(200, 1)}}};
  REQUIRE(check_change(c).empty());
  const auto names = [](const std::string& reason, const std::string& field) {
    INFO(reason);
    CHECK(reason.find("'" + field + "'") != std::string::npos);
    CHECK(reason.find("'visit'") != std::string::npos);
  };

  SECTION("a first write replaces nothing; two fields may both be kept") {
    c.kept = {kept_field{"note", {}}, kept_field{"minutes", {at(499, 7)}}};
    CHECK(check_change(c).empty());
  }
  SECTION("a kept entry for a field the change does not write") {
    c.kept.push_back(kept_field{"place", {}});
    const auto reason = check_change(c);
    CHECK(reason.find("does not write") != std::string::npos);
    CHECK(reason.find("'visit'") != std::string::npos);
  }
  SECTION("an invalid kept name is refused without echoing it") {
    c.kept.push_back(kept_field{"Bad\nName", {}});
    const auto reason = check_change(c);
    CHECK_FALSE(reason.empty());
    CHECK(reason.find("Bad") == std::string::npos);
  }
  SECTION("the same field kept twice") {
    c.kept.push_back(kept_field{"note", {}});
    const auto reason = check_change(c);
    CHECK(reason.find("twice") != std::string::npos);
    names(reason, "note");
  }
  SECTION("64 replaced versions at most by default") {
    c.ver = at(1000, 7);
    c.kept.front().supersedes.clear();
    for (std::uint64_t i = 0; i < 64; ++i) c.kept.front().supersedes.push_back(at(100 + i, 1));
    CHECK(check_change(c).empty());
    c.kept.front().supersedes.push_back(at(900, 1));
    const auto reason = check_change(c);
    CHECK(reason.find("64") != std::string::npos);
    names(reason, "note");
    change_limits wider;
    wider.max_supersedes = 65;
    CHECK(check_change(c, wider).empty());
    change_limits narrow;
    narrow.max_supersedes = 2;
    c.kept.front().supersedes.resize(3);
    CHECK(check_change(c, narrow).find("more than 2") != std::string::npos);
  }
  SECTION("replaced versions must ascend strictly") {
    c.kept.front().supersedes = {at(200, 1), at(100, 1)};
    auto reason = check_change(c);
    CHECK(reason.find("ascending") != std::string::npos);
    names(reason, "note");
    c.kept.front().supersedes = {at(100, 1), at(100, 1)};  // a version twice
    reason = check_change(c);
    CHECK(reason.find("ascending") != std::string::npos);
    names(reason, "note");
    c.kept.front().supersedes = {at(100, 2), at(100, 1)};  // same stamp: the node orders them
    CHECK_FALSE(check_change(c).empty());
  }
  SECTION("a write replaces only older versions, never its own or a later one") {
    c.kept.front().supersedes = {at(100, 1), c.ver};
    auto reason = check_change(c);
    CHECK(reason.find("not older") != std::string::npos);
    names(reason, "note");
    c.kept.front().supersedes = {at(600, 1)};
    names(check_change(c), "note");
    c.kept.front().supersedes = {at(500, 6)};  // same stamp, smaller node: older
    CHECK(check_change(c).empty());
    c.kept.front().supersedes = {at(500, 8)};  // same stamp, greater node: newer
    names(check_change(c), "note");
  }
  SECTION("a delete carries no kept entries") {
    c.kind = change_kind::remove;
    c.fields.clear();
    const auto reason = check_change(c);
    CHECK(reason.find("delete") != std::string::npos);
    CHECK(reason.find("'visit'") != std::string::npos);
    c.kept.clear();
    CHECK(check_change(c).empty());
  }
  SECTION("the reason never quotes a value") {
    c.fields.front().val = value{std::string("secret diagnosis")};
    c.kept.push_back(kept_field{"note", {}});
    CHECK(check_change(c).find("secret") == std::string::npos);
  }
}

TEST_CASE("error codes: numbers, category and which are transient", "[protocol]") {
  CHECK(static_cast<int>(protocol_errc::malformed) == 1);
  CHECK(static_cast<int>(protocol_errc::timeout) == 11);
  const std::error_code ec = protocol_errc::server_busy;
  CHECK(ec.category().name() == std::string("caresync.protocol"));
  for (int v = 1; v <= 11; ++v) {
    const std::error_code e(v, protocol_category());
    const bool expected = v == 8 || v == 9 || v == 10 || v == 11;
    CHECK(is_transient(e) == expected);
    CHECK_FALSE(e.message().empty());
  }
  CHECK(is_transient(network_errc::connection_lost));
  CHECK_FALSE(is_transient(network_errc::pin_mismatch));
  CHECK_FALSE(is_transient(std::make_error_code(std::errc::timed_out)));
  const protocol_error err(protocol_errc::malformed, "bad");
  CHECK(err.code() == protocol_errc::malformed);
}
