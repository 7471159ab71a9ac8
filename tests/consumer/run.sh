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

export PKG_CONFIG_PATH="$(dirname "$(find "$work/prefix" -name caresync.pc)")"
# shellcheck disable=SC2046  # pkg-config prints several words on purpose
c++ -std=c++20 -o "$work/consumer-pc" "$src/tests/consumer/main.cpp" $(pkg-config --cflags --libs --static caresync)
"$work/consumer-pc" "$work/b.db"
echo "consumer: find_package(caresync) and pkg-config caresync both build and run"
