#!/usr/bin/env bash
# A paragraph title (a line opening with **Title.**) appears once per document: the same
# title twice reads as a paragraph printed twice, or leaves a reader unsure which of two
# rules a link means (issue 21: "Why it converges" in docs/protocol.md).
# Usage: run.sh SOURCE_DIR
set -euo pipefail
src="$1"
status=0
for f in "$src"/README.md "$src"/docs/*.md; do
  dups="$(grep -oE '^\*\*[^*]+\*\*' "$f" | sort | uniq -d || true)"
  if [ -n "$dups" ]; then
    echo "${f#"$src"/}: paragraph title(s) used more than once: $dups" >&2
    status=1
  fi
done
[ "$status" -eq 0 ] && echo "docs: every paragraph title is used once per document"
exit "$status"
