#!/usr/bin/env bash
# Runs README.md's two-tablet story ("### Two tablets from the command line": its first
# ```sh block) literally, as a newcomer pastes it into bash at the repository's root: in
# a new directory whose `build` is BUILD_DIR. Fails if any of its commands fails, if it
# does not finish in 3 minutes, or if what it shows is not what the story says: Petr sees
# Jana's visit, Eva accepts the referral, the registry search finds services, the server
# stops cleanly.
# Usage: story.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src="$1"
build="$2"
work="$(mktemp -d)"
story_pid=""
cleanup() {
  # The story's own server, if it stopped half way.
  if [ -n "$story_pid" ]; then kill -TERM -- "-$story_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
ln -s "$build" "$work/build"

awk '
  /^### Two tablets from the command line/ { heading = 1; next }
  heading && /^```sh[[:space:]]*$/ && !done { inside = 1; next }
  inside && /^```/ { inside = 0; done = 1; next }
  inside { print }
  END { if (!done) { print "README.md: no ```sh block after \"### Two tablets from the command line\"" > "/dev/stderr"; exit 1 } }
' "$src/README.md" >"$work/story.sh"

cd "$work"
# -e: the first failing command ends the story (as it would stop a newcomer); its own
# process group, so that a server it started can be stopped whatever happens.
set +e
setsid timeout 180 bash -e story.sh >out.txt 2>err.txt &
story_pid=$!
wait "$story_pid"
status=$?
set -e
story_pid=""
fail() {
  echo "README story: $1" >&2
  echo "--- its standard output:" >&2
  cat out.txt >&2
  echo "--- its standard error:" >&2
  cat err.txt >&2
  [ -f region/server.log ] && { echo "--- the server's log:" >&2; cat region/server.log >&2; }
  exit 1
}
[ "$status" -eq 0 ] || fail "it exited with status $status"
grep -q "Marie Vzorová" out.txt || fail "Petr's visits do not show Jana's visit to Marie Vzorová"
grep -Eq "^referral [0-9a-f-]+: accepted$" out.txt || fail "Eva did not accept the referral"
grep -Eq "from kraj/orp-a/team-1 +discharge" out.txt || fail "Eva's inbox did not list the referral from team 1"
[ "$(grep -Ec '^[0-9a-f-]{36}  .*\(' out.txt)" -ge 1 ] || fail "the registry search found no service"
grep -q '"event":"stopped"' region/server.log || fail "the server did not stop cleanly"
echo "README story: ran as written; $(wc -l <story.sh) lines"
