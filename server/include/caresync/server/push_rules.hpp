#pragma once
/// What the server checks in each pushed change before storing the push. Shared by the
/// session and by simulations that play the server without a network.
/// Thread contract: pure function.

#include <caresync/protocol/change.hpp>
#include <caresync/protocol/messages.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <span>
#include <string>
#include <vector>

namespace caresync::server {

struct push_rules {
  change_limits limits;
  std::uint64_t max_clock_ahead_ms = 300'000;
  /// Fields only the server side may write, by collection (server_config::server_only_fields).
  std::map<std::string, std::set<std::string, std::less<>>, std::less<>> server_only;
  /// The pushing device is a server-side writer: server_only does not apply to it.
  bool server_side = false;
};

/// The rules' server_only map from "collection.field" entries (validated by the config).
std::map<std::string, std::set<std::string, std::less<>>, std::less<>> server_only_map(const std::vector<std::string>& entries);

/// The verdict on a push.
struct push_screen {
  /// A change carries another replica's node id: the device could forge versions that
  /// beat another replica's words. No mistake of one record: the whole push is refused.
  bool foreign_node = false;
  /// Changes refused alone, in increasing index order: breaking a limit
  /// (limit_exceeded), or stamped more than max_clock_ahead_ms ahead of `now_ms`
  /// (clock_ahead: the device re-stamps and resends it), or writing a server_only field
  /// (server_only: `restore` names those fields, with null values and version 0, for
  /// the caller to fill with the server's). The rest are stored.
  std::vector<wire::refusal> refused;
};

/// The server_only fields `c` writes (plain writes and item operations) unless the
/// rules' writer is server-side, each once, with null values and version 0.
std::vector<wire::restored_field> server_only_writes(const change& c, const push_rules& rules);

push_screen screen_push(std::span<const change> changes, node_id device_node, const push_rules& rules,
                        std::uint64_t now_ms);

}  // namespace caresync::server
