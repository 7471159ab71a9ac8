#pragma once
/// Reading a store's tables with plain SQL, as an app does: its own read-only SQLite
/// connection, while the store keeps writing (WAL lets both go on).
/// Thread contract: free function; any thread.

#include <caresync/protocol/record_id.hpp>

#include <string>
#include <vector>

namespace caresync::demo {

/// Runs `sql` (one statement whose first column is a record id in canonical text form,
/// with at most one `?` parameter, bound to `param`) on a read-only connection to
/// `store_path` and returns the ids. Throws std::runtime_error with SQLite's reason.
std::vector<record_id> query_ids(const std::string& store_path, const std::string& sql,
                                 const std::string& param = {});

}  // namespace caresync::demo
