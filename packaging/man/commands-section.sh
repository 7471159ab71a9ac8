#!/bin/sh
# Writes a help2man include file whose COMMANDS section holds every subcommand's
# options, read from the program's own --help, so that the man page follows the code.
# Usage: commands-section.sh PROGRAM OUTPUT   (the build runs it; see packaging/CMakeLists.txt)
set -eu
program="$1"
output="$2"
name="$(basename "$program")"
# CLI11's help: a "Subcommands:" block of "  name   description" lines; each
# subcommand's own help has an "Options:" block of "  option   description" lines, a
# long option alone on its line with its description on the next.
to_roff='
  function roff(s) { gsub(/\\/, "\\e", s); sub(/^[.'"'"']/, "\\\\\\&&", s); return s }
  function flush() {
    if (opt != "" && opt != "-h,--help") {
      o = roff(opt); gsub(/-/, "\\-", o)
      print ".TP"; print "\\fB" o "\\fR"; if (desc != "") print roff(desc)
    }
    opt = ""; desc = ""
  }
  NR == 1 { print roff($0); print ".PP"; next }
  /^Usage:/ { sub(/^Usage: [^ ]*/, "Usage: " prog); print roff($0); next }
  /^(Options|Positionals):/ { on = 1; next }
  on && /^  [^ ]/ {
    flush(); line = substr($0, 3)
    split_at = match(line, /   +/)
    if (split_at) { opt = substr(line, 1, split_at - 1); desc = substr(line, split_at + RLENGTH) } else { opt = line }
    next
  }
  on && /^      +[^ ]/ { d = $0; sub(/^ +/, "", d); desc = (desc == "" ? d : desc " " d); next }
  END { flush() }
'
{
  echo "[COMMANDS]"
  "$program" --help | awk '/^Subcommands:/ { on = 1; next } on && /^  [a-z]/ { print $1 }' |
    while read -r sub; do
      printf '.SS "%s"\n' "$sub"
      "$program" "$sub" --help | awk -v prog="$name" "$to_roff"
    done
} > "$output.tmp"
mv "$output.tmp" "$output"
