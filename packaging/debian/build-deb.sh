#!/usr/bin/env bash
# Builds target/debian/oqsdns_VERSION_ARCH.deb with debhelper (dpkg-buildpackage -b): this
# directory is copied as debian/ into target/debian/oqsdns-UPSTREAM/, and debian/rules takes the
# binary and the files from the workspace.
#   packaging/debian/build-deb.sh            # cargo build --release (a no-op when built), package
#   OQSDNS_BIN=path/to/oqsdns build-deb.sh   # package an already built binary (e.g. musl)
# Prints the path of the .deb on its last line.
set -euo pipefail
cd "$(dirname "$0")/../.."
src=$(pwd)

version=$(dpkg-parsechangelog -l packaging/debian/changelog -S Version)
upstream=${version%-*}
cargo_version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
if [ "$upstream" != "$cargo_version" ]; then
  echo "packaging/debian/changelog is at $version, Cargo.toml at $cargo_version: add a changelog entry" >&2
  exit 1
fi
arch=$(dpkg --print-architecture)

out=$src/target/debian
build=$out/oqsdns-$upstream
rm -rf "$build"
mkdir -p "$build"
cp -r packaging/debian "$build/debian"
rm "$build/debian/build-deb.sh"
cp packaging/systemd/oqsdns.service "$build/debian/oqsdns.service"
if [ -n "${OQSDNS_BIN:-}" ]; then
  OQSDNS_BIN=$(readlink -f "$OQSDNS_BIN")
  export OQSDNS_BIN
fi
export OQSDNS_SRC=$src
(cd "$build" && dpkg-buildpackage -b -us -uc) >&2

deb=$out/oqsdns_${version}_${arch}.deb
test -f "$deb"
echo "$deb"
