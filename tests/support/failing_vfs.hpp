#pragma once
// A SQLite VFS for fault tests: it wraps the default VFS and, while told to, fails every
// write and sync to files whose path contains a given text with SQLITE_FULL, as a full
// disk does. Installed as the process's default VFS, so connections opened afterwards
// (the server's change store included) go through it; other files are untouched.
// Thread contract: install() once, before the connections to fail are opened;
// fail_writes() and heal() from any thread.

#include <string>

namespace caresync::testing::failing_vfs {

/// Registers the VFS as SQLite's default (idempotent).
void install();
/// From now on, writes and syncs to files whose path contains `path_part` fail.
void fail_writes(const std::string& path_part);
/// Writes succeed again.
void heal();
/// Writes refused since install().
long refused_writes();

}  // namespace caresync::testing::failing_vfs
