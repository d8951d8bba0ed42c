#!/usr/bin/env bash
# Builds target/debian/oqsdns_VERSION-1_ARCH.deb from the workspace with dpkg-deb on a staged tree.
#   packaging/debian/build-deb.sh            # cargo build --release, then package
#   OQSDNS_BIN=path/to/oqsdns build-deb.sh   # package an already built binary (e.g. musl)
# Prints the path of the .deb on its last line.
set -euo pipefail
cd "$(dirname "$0")/../.."

upstream=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
version="$upstream-1"
arch=${OQSDNS_ARCH:-$(dpkg --print-architecture)}
bin=${OQSDNS_BIN:-target/release/oqsdns}
if [ -z "${OQSDNS_BIN:-}" ]; then
  cargo build --release --locked -p oqsdns >&2
fi

out=target/debian
stage=$out/stage
rm -rf "$stage"
mkdir -p "$stage/DEBIAN"
doc=$stage/usr/share/doc/oqsdns

install -D -m 0755 "$bin" "$stage/usr/bin/oqsdns"
install -D -m 0644 packaging/systemd/oqsdns.service "$stage/usr/lib/systemd/system/oqsdns.service"
# The shipped configuration is the example with its [[route]] for clinic.example commented out:
# a fresh install should not send a real domain to a made-up server.
install -d -m 0755 "$stage/etc/oqsdns"
awk '/^\[\[route\]\]/ { route = 1 } route && !/^#/ && NF { $0 = "#" $0 } { print }' \
  config/oqsdns.toml >"$stage/etc/oqsdns/oqsdns.toml"
chmod 0644 "$stage/etc/oqsdns/oqsdns.toml"
install -D -m 0644 packaging/debian/oqsdns.8 "$stage/usr/share/man/man8/oqsdns.8"
sed -i "s/\"oqsdns [0-9.]*\"/\"oqsdns $upstream\"/" "$stage/usr/share/man/man8/oqsdns.8"
gzip -9n "$stage/usr/share/man/man8/oqsdns.8"
install -D -m 0644 packaging/debian/copyright "$doc/copyright"
install -D -m 0644 packaging/debian/lintian-overrides "$stage/usr/share/lintian/overrides/oqsdns"
install -m 0644 README.md "$doc/README.md"
for f in docs/CONFIG.md docs/setup.md; do
  [ -f "$f" ] && install -m 0644 "$f" "$doc/"
done
[ -f docs/ja/setup.md ] && install -m 0644 docs/ja/setup.md "$doc/setup.ja.md"
gzip -9nc packaging/debian/changelog >"$doc/changelog.Debian.gz"
chmod 0644 "$doc/changelog.Debian.gz"

echo /etc/oqsdns/oqsdns.toml >"$stage/DEBIAN/conffiles"

# The shared libraries the binary links, as dpkg-shlibdeps finds them; libc6 when it is absent.
depends="libc6"
if command -v dpkg-shlibdeps >/dev/null; then
  work=$(mktemp -d)
  mkdir "$work/debian"
  printf 'Source: oqsdns\n\nPackage: oqsdns\nArchitecture: any\n' >"$work/debian/control"
  abs_bin=$(readlink -f "$stage/usr/bin/oqsdns")
  found=$(cd "$work" && dpkg-shlibdeps -O "$abs_bin" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
  rm -rf "$work"
  [ -n "$found" ] && depends=$found
fi

size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" \
  -e "s/@DEPENDS@/$depends/" packaging/debian/control.in >"$stage/DEBIAN/control"
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f ! -path './etc/*' -printf '%P\0' \
  | LC_ALL=C sort -z | xargs -0 md5sum) >"$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/conffiles" "$stage/DEBIAN/md5sums"

deb=$out/oqsdns_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >&2
echo "$deb"
