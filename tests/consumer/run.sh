#!/usr/bin/env bash
# Installs the build in BUILD_DIR to a temporary prefix, then builds tests/consumer
# against it twice, with CMake (find_package) and with pkg-config, and runs both.
# Usage: run.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src="$1"
build="$2"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null

cmake -S "$src/tests/consumer" -B "$work/cmake-build" -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/cmake-build" >/dev/null
"$work/cmake-build/consumer" "$work/a.db"
"$work/cmake-build/consumer_shared" "$work/a2.db"
# Not `ldd | grep -q`: grep quitting at the first match can kill ldd with SIGPIPE, which
# pipefail turns into a failure.
libs="$(ldd "$work/cmake-build/consumer_shared")"
if ! grep -q "libcaresync.so" <<<"$libs"; then
  echo "consumer_shared is not linked against libcaresync.so:" >&2
  echo "$libs" >&2
  exit 1
fi

export PKG_CONFIG_PATH="$(dirname "$(find "$work/prefix" -name caresync.pc)")"
# With pkg-config: libcaresync.so, found at run time through LD_LIBRARY_PATH.
# shellcheck disable=SC2046  # pkg-config prints several words on purpose
c++ -std=c++20 -o "$work/consumer-pc" "$src/tests/consumer/main.cpp" $(pkg-config --cflags --libs caresync)
LD_LIBRARY_PATH="$(pkg-config --variable=libdir caresync)" "$work/consumer-pc" "$work/b.db"
echo "consumer: find_package(caresync) (caresync::client static, caresync::client_shared) and pkg-config caresync build and run"
