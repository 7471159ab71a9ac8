#pragma once
/// What the server checks in each pushed change before storing the push. Shared by the
/// session and by simulations that play the server without a network.
/// Thread contract: pure function.

#include <caresync/protocol/change.hpp>
#include <caresync/protocol/messages.hpp>

#include <cstdint>
#include <span>
#include <vector>

namespace caresync::server {

struct push_rules {
  change_limits limits;
  std::uint64_t max_clock_ahead_ms = 300'000;
};

/// The verdict on a push.
struct push_screen {
  /// A change carries another replica's node id: the device could forge versions that
  /// beat another replica's words. No mistake of one record: the whole push is refused.
  bool foreign_node = false;
  /// Changes refused alone, in increasing index order: breaking a limit
  /// (limit_exceeded), or stamped more than max_clock_ahead_ms ahead of `now_ms`
  /// (clock_ahead: the device re-stamps and resends it). The rest are stored.
  std::vector<wire::refusal> refused;
};

push_screen screen_push(std::span<const change> changes, node_id device_node, const push_rules& rules,
                        std::uint64_t now_ms);

}  // namespace caresync::server
