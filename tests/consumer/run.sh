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
# With pkg-config: libcaresync.so, found at run time through LD_LIBRARY_PATH. No -std
# here either: the Cflags carry it.
# shellcheck disable=SC2046  # pkg-config prints several words on purpose
c++ -o "$work/consumer-pc" "$src/tests/consumer/main.cpp" $(pkg-config --cflags --libs caresync)
LD_LIBRARY_PATH="$(pkg-config --variable=libdir caresync)" "$work/consumer-pc" "$work/b.db"

# With pkg-config --static: the link line it prints, as it prints it, must link a program
# that needs no caresync library at run time. Built from a copy of the prefix without
# libcaresync.so, so that -lcaresync can only mean the archive; a library missing from
# that line is an undefined reference here.
cp -a "$work/prefix" "$work/static-prefix"
find "$work/static-prefix" -name 'libcaresync.so*' -delete
pc_static="$(dirname "$(find "$work/static-prefix" -name caresync.pc)")"
# shellcheck disable=SC2046
c++ -o "$work/consumer-static" "$src/tests/consumer/main.cpp" \
  $(PKG_CONFIG_PATH="$pc_static" pkg-config --cflags --static --libs caresync)
"$work/consumer-static" "$work/c.db"
libs="$(ldd "$work/consumer-static")"
if grep -q "libcaresync" <<<"$libs"; then
  echo "consumer-static needs a caresync shared library at run time:" >&2
  echo "$libs" >&2
  exit 1
fi
# A C program (the C API's example) linked the same way, with cc: the archives are C++,
# so the static line must bring the C++ runtime too. C takes only the -I flags (the
# Cflags carry -std=c++20, which C compilers warn about).
# shellcheck disable=SC2046
cc -std=c99 -o "$work/field-note-static" "$src/examples/c/field_note.c" \
  $(PKG_CONFIG_PATH="$pc_static" pkg-config --cflags-only-I --static --libs caresync)
"$work/field-note-static" "$work/d.db" >/dev/null
echo "consumer: find_package(caresync) (caresync::client static, caresync::client_shared), pkg-config caresync and pkg-config --static caresync (C++ and C) build and run, none setting a C++ standard"
