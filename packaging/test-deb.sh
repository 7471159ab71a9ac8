#!/usr/bin/env bash
# Builds the caresync-server .deb from BUILD_DIR, installs it, runs the server as its
# systemd unit would (user caresync, the config the package made), syncs one tablet
# against it, stops it with SIGTERM and purges the package. Needs root. CI runs it.
# Usage: packaging/test-deb.sh BUILD_DIR
set -euo pipefail
build="$(cd "$1" && pwd)"
if [ "$(id -u)" -ne 0 ]; then
  echo "test-deb: needs root (dpkg)" >&2
  exit 1
fi
if dpkg-query -W -f='${Status}' caresync-server 2>/dev/null | grep -q "install ok installed" || [ -e /etc/caresync ]; then
  echo "test-deb: caresync-server is installed here already (or /etc/caresync exists); leaving this machine alone" >&2
  exit 1
fi
work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill -KILL "$server_pid" 2>/dev/null || true; fi
  dpkg --purge caresync-server >/dev/null 2>&1 || true
  rm -rf /var/lib/caresync "$work"
  if getent passwd caresync >/dev/null; then deluser --system --quiet caresync >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

(cd "$build" && cpack -G DEB >/dev/null)
deb="$(ls "$build"/caresync-server_*_amd64.deb | head -n 1)"
echo "test-deb: installing $(basename "$deb")"
dpkg -i "$deb" >/dev/null
test -x /usr/bin/caresync-server
test -f /usr/lib/systemd/system/caresync-server.service
test -f /etc/caresync/caresync-server.toml
getent passwd caresync >/dev/null

caresync-server add-device --config /etc/caresync/caresync-server.toml --device-id ci-tablet > "$work/device.txt"
token="$(tail -n 1 "$work/device.txt")"

# As the unit runs it: user caresync (setpriv execs, so the pid is the server's), the
# installed config; OS-chosen ports here.
setpriv --reuid=caresync --regid=caresync --init-groups --reset-env -- /usr/bin/caresync-server serve --config /etc/caresync/caresync-server.toml \
  --port 0 --admin-port 0 2> "$work/server.log" &
server_pid=$!
port=""
for _ in $(seq 1 100); do
  port="$(grep '"event":"listening"' "$work/server.log" | grep -o '"port":[0-9]*' | cut -d: -f2 || true)"
  [ -n "$port" ] && break
  sleep 0.1
done
if [ -z "$port" ]; then
  echo "test-deb: the installed server did not start; its log:" >&2
  cat "$work/server.log" >&2
  exit 1
fi

"$build/tests/integration/caresync-test-tablet" --store "$work/tablet.db" --host localhost --port "$port" \
  --ca /etc/caresync/ca.pem --device ci-tablet --token "$token" --visits 5

kill -TERM "$server_pid"
wait "$server_pid"
server_pid=""
grep -q '"event":"stopped"' "$work/server.log"
test -f /var/lib/caresync/caresync-server.db

dpkg --purge caresync-server >/dev/null
test ! -e /usr/bin/caresync-server
test ! -e /etc/caresync
echo "test-deb: installed, served a tablet as the unit would, stopped cleanly, purged"
