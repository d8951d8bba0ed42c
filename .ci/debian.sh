#!/usr/bin/env bash
# CI: the Debian package. Built with debhelper from the release binary (built once, reused when up
# to date), checked by lintian, then installed and exercised under a real systemd in a booted
# Debian 12 container (crates/oqsdns/tests/systemd.rs; the debootstrapped root is cached in
# target/systemd-root/ for the rest of the run). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS

deb=$(packaging/debian/build-deb.sh | tail -n1)
echo "== built $deb ($((SECONDS - start)) s)"
dpkg-deb --info "$deb"
dpkg-deb --contents "$deb"

echo "== lintian (fails on errors)"
lintian --fail-on error --display-level '>=warning' "$deb"

echo "== under systemd ($((SECONDS - start)) s so far)"
OQSDNS_SYSTEMD=require OQSDNS_DEB=$(readlink -f "$deb") \
  cargo test -p oqsdns --test systemd -- --nocapture
echo "debian package: ok in $((SECONDS - start)) s"
