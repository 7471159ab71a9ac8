#!/usr/bin/env bash
# Compiles and links every ```cpp and ```c code block of README.md as a program of its
# own, against the library of BUILD_DIR installed to a temporary prefix, the way an app
# developer copies them: a CMake project with find_package(caresync) and caresync::client
# that sets no C++ standard (the package must bring C++20). A block that stops compiling
# or linking, or that warns (-Wall -Wextra -Wpedantic), fails the test, naming the README
# line it starts on.
# Usage: run.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src="$1"
build="$2"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null

project="$work/blocks"
mkdir -p "$project"
# Each block goes to readme_<line>.cpp or .c, <line> being the README line of its fence.
awk -v out="$project" '
  /^```(cpp|c)[[:space:]]*$/ && !file {
    lang = $0; sub(/^```/, "", lang); sub(/[[:space:]]*$/, "", lang)
    file = out "/readme_" NR "." lang
    printf "" > file
    next
  }
  /^```/ && file { close(file); file = ""; next }
  file { print > file }
  END { if (file) { print "README.md: a code block opened and never closed" > "/dev/stderr"; exit 1 } }
' "$src/README.md"

shopt -s nullglob
blocks=("$project"/readme_*.cpp "$project"/readme_*.c)
if [ "${#blocks[@]}" -eq 0 ]; then
  echo "README.md has no \`\`\`cpp or \`\`\`c code block: nothing was checked" >&2
  exit 1
fi

{
  echo "cmake_minimum_required(VERSION 3.22)"
  echo "project(caresync_readme_blocks LANGUAGES C CXX)"
  echo "# No CMAKE_CXX_STANDARD: caresync::client carries C++20 itself."
  echo "find_package(caresync 0.1 REQUIRED)"
  for b in "${blocks[@]}"; do
    name="$(basename "$b")"
    target="${name%.*}_${name##*.}"
    echo "add_executable($target $name)"
    echo "target_link_libraries($target PRIVATE caresync::client)"
    # Newcomers copy these into projects with warnings on: they compile cleanly.
    echo "target_compile_options($target PRIVATE -Wall -Wextra -Wpedantic -Werror)"
    # The C API is C99.
    [ "${name##*.}" = c ] && echo "set_target_properties($target PROPERTIES C_STANDARD 99 C_STANDARD_REQUIRED ON C_EXTENSIONS OFF)"
  done
} >"$project/CMakeLists.txt"

cmake -S "$project" -B "$work/build" -G "Unix Makefiles" -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
# -k: every block is tried, so one run names all that fail.
if ! cmake --build "$work/build" -- -k >"$work/build.log" 2>&1; then
  cat "$work/build.log" >&2
  echo "README.md: a code block does not compile or link as a program (readme_<line> is the README line of its \`\`\`)" >&2
  exit 1
fi
names=""
for b in "${blocks[@]}"; do names="$names $(basename "$b")"; done
echo "README.md: ${#blocks[@]} code block(s) compile and link:$names"
