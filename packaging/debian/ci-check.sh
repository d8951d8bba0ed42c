#!/usr/bin/env bash
# CI: build the .deb, check it with lintian, install it, run the installed binary, purge it.
# The install steps need root; lintian and the build do not.
set -euo pipefail
cd "$(dirname "$0")/../.."

deb=$(packaging/debian/build-deb.sh | tail -n1)
echo "== built $deb"
dpkg-deb --info "$deb"
dpkg-deb --contents "$deb"

echo "== lintian (fails on errors)"
lintian --fail-on error --display-level '>=warning' "$deb"

if [ "$(id -u)" != 0 ]; then
  echo "skipped: installing the package needs root"
  exit 0
fi
if dpkg-query -W -f '${Status}' oqsdns 2>/dev/null | grep -q installed; then
  echo "oqsdns is already installed on this machine; not touching it" >&2
  exit 1
fi

echo "== dpkg -i"
trap 'dpkg -P oqsdns >/dev/null 2>&1 || true' EXIT
dpkg -i "$deb"
/usr/bin/oqsdns --version
oqsdns config check /etc/oqsdns/oqsdns.toml
oqsdns config show --config /etc/oqsdns/oqsdns.toml >/dev/null
grep -qx '/etc/oqsdns/oqsdns.toml' /var/lib/dpkg/info/oqsdns.conffiles
man -w oqsdns
# The installed unit, its man page in place (Documentation=man:oqsdns(8)).
systemd-analyze verify /usr/lib/systemd/system/oqsdns.service

echo "== dpkg -P"
dpkg -P oqsdns
trap - EXIT
for f in /usr/bin/oqsdns /usr/lib/systemd/system/oqsdns.service /etc/oqsdns/oqsdns.toml; do
  if [ -e "$f" ]; then
    echo "$f is still there after purge" >&2
    exit 1
  fi
done
echo "debian package: ok"
