#!/usr/bin/env bash
# Builds the caresync-server .deb from BUILD_DIR, installs it, checks what it carries
# (man page, copyright, changelog, a config with the care rules on that check-config
# accepts), runs the server as its systemd unit would (user caresync, the config the
# package made), syncs one tablet against it and stops it with SIGTERM; then purges it
# and installs it again over the kept database: the reinstall must make no new key,
# and with /etc/caresync restored the same tablet syncs again. Needs root. CI runs it.
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
fail() {
  echo "test-deb: $*" >&2
  exit 1
}
dpkg -i "$deb" >/dev/null 2> "$work/install.txt" || { cat "$work/install.txt" >&2; fail "dpkg -i failed"; }
test -x /usr/bin/caresync-server
test -f /usr/lib/systemd/system/caresync-server.service
test -f /etc/caresync/caresync-server.toml
getent passwd caresync >/dev/null
# Without systemd (a CI container) the postinst says it did not start the service.
if [ ! -d /run/systemd/system ]; then
  grep -q "neither enabled nor started" "$work/install.txt" || fail "the postinst did not say the service was not started"
fi

# What a Debian package carries besides the program.
test -s /usr/share/man/man1/caresync-server.1.gz || fail "no man page caresync-server(1)"
gzip -dc /usr/share/man/man1/caresync-server.1.gz | grep -q '^\.SS "check-config"' || fail "the man page lacks check-config"
head -n 1 /usr/share/doc/caresync-server/copyright |
  grep -qx 'Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/' || fail "no DEP-5 copyright file"
gzip -dc /usr/share/doc/caresync-server/changelog.Debian.gz | head -n 1 |
  grep -q "^caresync ($(dpkg-query -W -f='${Version}' caresync-server)) " || fail "changelog.Debian.gz does not name this version"
field_deb="$(ls "$build"/caresync-field_*_amd64.deb 2>/dev/null | head -n 1 || true)"
if [ -n "$field_deb" ]; then
  dpkg-deb -c "$field_deb" | grep -q '/usr/share/man/man1/caresync-field.1.gz' || fail "no man page in $(basename "$field_deb")"
fi
caresync-server --version | grep -qx "caresync-server $(dpkg-query -W -f='${Version}' caresync-server | sed 's/-[^-]*$//')" ||
  fail "--version does not print the package's version"

# The config the package made: care rules on (README, docs/operations.md), and valid as
# the service user reads it.
grep -qx 'care_rules = true' /etc/caresync/caresync-server.toml || fail "the packaged config leaves care_rules off"
setpriv --reuid=caresync --regid=caresync --init-groups --reset-env -- \
  /usr/bin/caresync-server check-config --config /etc/caresync/caresync-server.toml | grep -q "^config OK" ||
  fail "check-config refuses the packaged config"

# add-device writes the database (which it makes if need be): as the service user, as
# docs/operations.md says, so the server can open it.
setpriv --reuid=caresync --regid=caresync --init-groups --reset-env -- \
  /usr/bin/caresync-server add-device --config /etc/caresync/caresync-server.toml --device-id ci-tablet > "$work/device.txt"
token="$(tail -n 1 "$work/device.txt")"

# As the unit runs it: user caresync (setpriv execs, so the pid is the server's), the
# installed config; OS-chosen ports here. Serves, syncs a tablet (its store in
# $work/$1.db) and stops with SIGTERM.
serve_and_sync() {
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

  "$build/tests/integration/caresync-test-tablet" --store "$work/$1.db" --host localhost --port "$port" \
    --ca "$work/tablet-ca.pem" --device ci-tablet --token "$token" --visits 5

  kill -TERM "$server_pid"
  wait "$server_pid"
  server_pid=""
  grep -q '"event":"stopped"' "$work/server.log"
}
# The tablet keeps the CA it was given at the first install, as an enrolled tablet does.
cp /etc/caresync/ca.pem "$work/tablet-ca.pem"
serve_and_sync tablet
test -f /var/lib/caresync/caresync-server.db
grep '"event":"started"' "$work/server.log" | grep -q '"version":"' || fail "the start line names no version"

# The administrator's backup of /etc/caresync, then a purge: the config and keys go, the
# change log stays.
cp -a /etc/caresync "$work/etc-backup"
key_before="$(sha256sum < /etc/caresync/server-key.pem)"
dpkg --purge caresync-server >/dev/null 2>&1
test ! -e /usr/bin/caresync-server
test ! -e /etc/caresync
test -f /var/lib/caresync/caresync-server.db

# A reinstall over the kept change log makes no new CA or key, says what to restore and
# leaves the service alone.
dpkg -i "$deb" >/dev/null 2> "$work/reinstall.txt" || { cat "$work/reinstall.txt" >&2; fail "the reinstall failed"; }
for f in ca.pem ca-key.pem server-cert.pem server-key.pem caresync-server.toml; do
  if [ -e "/etc/caresync/$f" ]; then
    cat "$work/reinstall.txt" >&2
    fail "the reinstall over an existing database made /etc/caresync/$f"
  fi
done
grep -q "Restore /etc/caresync from your backup" "$work/reinstall.txt" || fail "the reinstall did not say what to restore"
grep -q "left disabled and stopped" "$work/reinstall.txt" || fail "the reinstall did not say it left the service alone"

# Restored from the backup, the same server key serves the same tablet again.
rm -rf /etc/caresync
cp -a "$work/etc-backup" /etc/caresync
test "$(sha256sum < /etc/caresync/server-key.pem)" = "$key_before"
dpkg-reconfigure caresync-server 2> "$work/reconfigure.txt" >/dev/null || { cat "$work/reconfigure.txt" >&2; fail "reconfigure failed"; }
serve_and_sync tablet

dpkg --purge caresync-server >/dev/null 2>&1
test ! -e /usr/bin/caresync-server
test ! -e /etc/caresync
echo "test-deb: installed, served a tablet as the unit would, stopped cleanly, purged; reinstalled over the kept database without new keys, served the same tablet from the restored /etc/caresync, purged"
