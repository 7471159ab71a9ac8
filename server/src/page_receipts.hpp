#pragma once
// The records a page sends, for its `receive` audit lines (docs/operations.md, "Audit"):
// noted change by change while the page is made, then read back once per collection, each
// record once with the last seq sent of it, collections by name and records by id.
// Thread contract: one thread at a time (the change store's, under its mutex).

#include <caresync/protocol/record_id.hpp>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

namespace caresync::server {

class page_receipts {
 public:
  /// A record sent, and the last seq of it the page carries.
  struct receipt {
    record_id id;
    std::uint64_t seq = 0;
  };

  /// Notes that the page sends change `seq` of the record.
  void add(std::string_view collection, const record_id& id, std::uint64_t seq) {
    // A page's changes are mostly of one collection: the last one is looked at first.
    if (collections_.empty() || collections_[last_] != collection) {
      const auto it = std::find(collections_.begin(), collections_.end(), collection);
      last_ = static_cast<std::uint32_t>(it - collections_.begin());
      if (it == collections_.end()) collections_.emplace_back(collection);
    }
    sent_.push_back(sent{last_, id, seq});
  }

  /// Calls `group(collection, receipts)` for each collection noted, in order of name, with
  /// its records in order of id; then forgets everything.
  template <typename Group>
  void drain(Group&& group) {
    // Sorted once at the page's end: cheaper than a map kept sorted change by change.
    std::vector<std::uint32_t> by_name(collections_.size());
    std::iota(by_name.begin(), by_name.end(), 0u);
    std::sort(by_name.begin(), by_name.end(), [&](auto a, auto b) { return collections_[a] < collections_[b]; });
    std::vector<std::uint32_t> rank(collections_.size());
    for (std::uint32_t r = 0; r < by_name.size(); ++r) rank[by_name[r]] = r;
    std::sort(sent_.begin(), sent_.end(), [&](const sent& a, const sent& b) {
      return std::tie(rank[a.collection], a.id, a.seq) < std::tie(rank[b.collection], b.id, b.seq);
    });
    std::vector<receipt> receipts;
    for (auto it = sent_.begin(); it != sent_.end();) {
      const auto collection = it->collection;
      receipts.clear();
      for (; it != sent_.end() && it->collection == collection; ++it) {
        const auto next = it + 1;
        // Only a record's last seq is its receipt.
        if (next != sent_.end() && next->collection == collection && next->id == it->id) continue;
        receipts.push_back(receipt{it->id, it->seq});
      }
      group(std::string_view(collections_[collection]), std::span<const receipt>(receipts));
    }
    clear();
  }

  void clear() noexcept {
    sent_.clear();
    collections_.clear();
    last_ = 0;
  }

 private:
  struct sent {
    std::uint32_t collection;  ///< its place in collections_
    record_id id;
    std::uint64_t seq;
  };
  std::vector<std::string> collections_;
  std::uint32_t last_ = 0;  ///< the collection of the last change noted
  std::vector<sent> sent_;
};

}  // namespace caresync::server
