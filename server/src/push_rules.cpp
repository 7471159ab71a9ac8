#include <caresync/server/push_rules.hpp>

#include <caresync/protocol/errors.hpp>

namespace caresync::server {

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
    }
  }
  return out;
}

}  // namespace caresync::server
