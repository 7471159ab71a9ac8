#include <caresync/server/push_rules.hpp>

#include <caresync/protocol/errors.hpp>

namespace caresync::server {

std::map<std::string, std::set<std::string, std::less<>>, std::less<>> server_only_map(const std::vector<std::string>& entries) {
  std::map<std::string, std::set<std::string, std::less<>>, std::less<>> out;
  for (const auto& e : entries) {
    const auto dot = e.find('.');
    if (dot == std::string::npos) continue;
    out[e.substr(0, dot)].insert(e.substr(dot + 1));
  }
  return out;
}

std::vector<wire::restored_field> server_only_writes(const change& c, const push_rules& rules) {
  std::vector<wire::restored_field> out;
  if (rules.server_side || c.kind != change_kind::upsert) return out;
  const auto it = rules.server_only.find(c.collection);
  if (it == rules.server_only.end()) return out;
  const auto add = [&](const std::string& name) {
    if (!it->second.contains(name)) return;
    for (const auto& f : out) {
      if (f.name == name) return;
    }
    out.push_back(wire::restored_field{name, value{}, version{}});
  };
  for (const auto& f : c.fields) add(f.name);
  for (const auto& op : c.items) add(op.field);
  return out;
}

push_screen screen_push(std::span<const change> changes, node_id device_node, const push_rules& rules,
                        std::uint64_t now_ms) {
  push_screen out;
  for (std::size_t i = 0; i < changes.size(); ++i) {
    const auto& c = changes[i];
    if (c.ver.node != device_node) {
      out.foreign_node = true;
      out.refused.clear();
      return out;
    }
    const auto index = static_cast<std::uint32_t>(i);
    if (auto reason = check_change(c, rules.limits); !reason.empty()) {
      out.refused.push_back(wire::refusal{index, static_cast<std::uint16_t>(protocol_errc::limit_exceeded), std::move(reason)});
    } else if (c.ver.stamp.wall_ms() > now_ms + rules.max_clock_ahead_ms) {
      out.refused.push_back(wire::refusal{
          index, static_cast<std::uint16_t>(protocol_errc::clock_ahead),
          "the change is stamped " + std::to_string((c.ver.stamp.wall_ms() - now_ms) / 1000) +
              " s ahead of the server's clock; the device re-stamps it with the server's time"});
    } else if (auto fields = server_only_writes(c, rules); !fields.empty()) {
      std::string names;
      for (const auto& f : fields) names += (names.empty() ? "'" : ", '") + c.collection + "." + f.name + "'";
      out.refused.push_back(wire::refusal{index, static_cast<std::uint16_t>(protocol_errc::server_only),
                                          "only the server side writes " + names +
                                              "; the device puts back the server's value and sends the rest of the change",
                                          std::move(fields)});
    }
  }
  return out;
}

}  // namespace caresync::server
