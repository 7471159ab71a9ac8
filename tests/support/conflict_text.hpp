#pragma once
// Values and open conflicts as readable text, so that two replicas' conflicts compare
// (and print, when a check fails) as lists of lines.

#include <caresync/store.hpp>

#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

namespace caresync::testing {

inline std::string describe(const value& v) {
  std::ostringstream out;
  switch (kind_of(v)) {
    case value_kind::null: out << "null"; break;
    case value_kind::integer: out << std::get<std::int64_t>(v); break;
    case value_kind::real: out << std::get<double>(v); break;
    case value_kind::text: out << '"' << std::get<std::string>(v) << '"'; break;
    case value_kind::bytes: out << "bytes[" << std::get<blob>(v).bytes.size() << ']'; break;
  }
  return out.str();
}

inline std::string describe(const conflict_value& c) {
  return describe(c.val) + "@" + std::to_string(c.ver.stamp.value) + "/" + std::to_string(c.ver.node);
}

/// One line per open conflict: record, field, current value and the others.
inline std::vector<std::string> describe(const std::vector<open_conflict>& conflicts) {
  std::vector<std::string> out;
  for (const auto& c : conflicts) {
    std::string line = c.collection + "/" + c.record.to_string() + "/" + c.field + (c.record_deleted ? " (deleted)" : "") +
                       ": current " + describe(c.current) + ", others";
    for (const auto& o : c.others) line += " " + describe(o);
    out.push_back(std::move(line));
  }
  return out;
}

/// A visit's note as text, or why there is none.
inline std::string note_of(const store& s, const record_id& id) {
  const auto fields = s.get("visits", id);
  if (!fields) return "<no record>";
  const auto it = fields->find("note");
  return it == fields->end() ? "<no note>" : describe(it->second);
}

}  // namespace caresync::testing
