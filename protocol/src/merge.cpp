#include <caresync/protocol/merge.hpp>

namespace caresync {

merge_outcome merge(record_state& state, const change& incoming) {
  merge_outcome out;
  if (incoming.kind == change_kind::remove) {
    if (!state.deleted) {
      out.deleted_now = true;
      state.fields.clear();
    }
    if (!state.deleted || *state.deleted < incoming.ver) state.deleted = incoming.ver;
    return out;
  }
  // Delete wins: a tombstone is final, whatever the stamps of later field writes.
  if (state.deleted) return out;
  for (const auto& write : incoming.fields) {
    auto [it, inserted] = state.fields.try_emplace(write.name, field_state{write.val, incoming.ver});
    if (inserted) {
      out.updated.push_back(write.name);
    } else if (it->second.ver < incoming.ver) {
      it->second = field_state{write.val, incoming.ver};
      out.updated.push_back(write.name);
    } else if (incoming.ver < it->second.ver) {
      ++out.superseded;
    }
    // Equal versions: the same write seen again; nothing to do.
  }
  return out;
}

}  // namespace caresync
