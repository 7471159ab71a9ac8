#pragma once
// The column layout of a page's changes (protocol version 7; docs/protocol.md, "Change
// blocks"): the items and the backfilled changes of a `changes` page are each sent as one
// block, part by part (all sequence numbers, then all collections, all ids, ...; the
// values field name by field name), so that like bytes lie together and compress
// together. Internal to protocol/.
// Thread contract: free functions, no shared state.

#include "wire_io.hpp"

#include <cstddef>
#include <span>
#include <vector>

namespace caresync::wire::detail {

/// Writes a block of the changes in `rows`: each item its sequence number (uvarint) and
/// its change in stored form less the marker byte, one after another, the i-th ending at
/// `ends[i]`. Throws protocol_error (malformed) if a row does not parse as a change.
void write_block(writer& w, std::span<const std::uint8_t> rows, std::span<const std::size_t> ends);

/// Reads a block as write_block() writes it, every count checked against the bytes left
/// before anything is allocated and every change checked as a row change is. Throws
/// protocol_error (malformed).
std::vector<sequenced_change> read_block(reader& r);

}  // namespace caresync::wire::detail
