#pragma once
// The baseline every caresync write rate is compared with: the same visit rows inserted
// with plain sqlite3 into a table of the same shape, with the PRAGMAs a store uses.
// Thread contract: free function; call from one thread.

#include "visit_workload.hpp"

#include <caresync/store.hpp>

#include <chrono>
#include <string>
#include <vector>

namespace caresync::bench {

/// Creates a fresh SQLite file at `path` (WAL, synchronous FULL or NORMAL as `mode`
/// says, like store::open), a "visits" table with a TEXT primary key and one column per
/// visit field, and inserts every visit through one prepared INSERT in one transaction.
/// Returns the time from BEGIN to the end of COMMIT. Throws caresync::error
/// (storage_errc::io_failed) naming the SQLite call that failed.
std::chrono::nanoseconds raw_sqlite_insert(const std::string& path, const std::vector<visit>& visits,
                                           durability mode);

}  // namespace caresync::bench
