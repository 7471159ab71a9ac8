#pragma once
/// What the server checks in each pushed change before storing the push. Shared by the
/// session and by simulations that play the server without a network.
/// Thread contract: screen_push, server_only_writes and strip_server_only are pure;
/// fill_restores and refuse_illegal_transitions read the store (any thread the store allows).

#include <caresync/protocol/change.hpp>
#include <caresync/protocol/messages.hpp>
#include <caresync/server/change_store.hpp>

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
  /// Refuse changes that break the care schema's rules (care::check_care_change: codes,
  /// dates, times; server_config::care_rules).
  bool care_rules = false;
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
  /// (clock_ahead: the device re-stamps and resends it). A change writing a server_only
  /// field is listed too (server_only: `restore` names those fields, with null values and
  /// version 0, for the caller to fill with the server's), but stored without those
  /// fields (strip_server_only). The rest are stored.
  std::vector<wire::refusal> refused;
};

/// The server_only fields `c` writes (plain writes and item operations) unless the
/// rules' writer is server-side, each once, with null values and version 0.
std::vector<wire::restored_field> server_only_writes(const change& c, const push_rules& rules);

push_screen screen_push(std::span<const change> changes, node_id device_node, const push_rules& rules,
                        std::uint64_t now_ms);

/// Adds to `refused` (keeping index order) each change of `changes` not refused yet that
/// moves a referral's state where the care schema does not allow it, judged against the
/// record's state in `store` and the batch's earlier changes: a new referral starts as
/// "new", and a move must follow legal moves (care::legal_referral_transition), several
/// at once allowed, since a tablet's outbox sends only the newest state of a record
/// (accept and start made offline arrive as new -> in_progress). So a closed or declined
/// referral never reopens and none moves back. Refused as limit_exceeded: the device
/// sets the change aside (quarantine). Throws caresync::error (storage).
void refuse_illegal_transitions(change_store& store, std::span<const change> changes, std::vector<wire::refusal>& refused);

/// Takes the fields that `refused`'s server_only refusals name out of their changes
/// (field writes, kept entries and item operations): what the store then stores.
void strip_server_only(std::vector<change>& changes, const std::vector<wire::refusal>& refused);

/// Fills the restore lists of the server_only refusals among `refused` (an answer to a
/// push of `changes`) with the store's current values: each field's newest stored write,
/// merged from the record's log. A refusal stored before (a replayed batch) keeps no
/// field names: they are named again from `rules`. Throws caresync::error (storage).
void fill_restores(change_store& store, std::span<const change> changes, std::vector<wire::refusal>& refused,
                   const push_rules& rules);

/// The key a push batch is remembered by (change_store::append). A numbered batch
/// (protocol version 7) is numbered by its store: the pushing node goes into its first
/// eight bytes, so the batches of two stores of one device (the app reinstalled) never
/// meet. Other ids (pinned by version 6 stores) are random and used as they are.
batch_id batch_key(const batch_id& sent, node_id node) noexcept;

}  // namespace caresync::server
