#!/usr/bin/env bash
# Router CPUs (issue 12): release builds for aarch64, armv7 and MIPS, the workspace's unit and
# loopback integration tests for aarch64 and armv7 under qemu-user, a smoke run (serve, reload,
# stop) of the MIPS and musl binaries under qemu, and the release size of every target.
#
# Toolchain: Debian's rustc-web/cargo-web (/usr/bin, with std for arm64/armhf from
# libstd-rust-web-dev:<arch>, and the library sources from rust-web-src for build-std), called
# explicitly: rustup's toolchain comes first on the PATH and has no foreign std. Its own target
# dirs keep it from rebuilding the host's target/: target/cross, and target/cross-std for the
# build-std targets (RUSTC_BOOTSTRAP is part of cargo's fingerprints: sharing a dir would rebuild
# the build scripts and proc-macros back and forth).
#
#   .ci/cross.sh                                  CI: all but the optional musl builds
#   CROSS_OPTIONAL=1 .ci/cross.sh                 everything
#   CROSS_ONLY="mips-unknown-linux-gnu" .ci/cross.sh   just these targets (x86_64-unknown-linux-gnu too)
#
# Needs root (binfmt_misc for the tests that spawn the binary; knotd for the smoke's upstream).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
started=$SECONDS

cargo_deb=/usr/bin/cargo
export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
export CARGO_TARGET_DIR=$root/target/cross
unset RUSTFLAGS RUSTC_WRAPPER CARGO_BUILD_TARGET
# Built once per run: incremental caches would only cost time and disk (a GB per target).
export CARGO_INCREMENTAL=0
# The network-namespace lab stays on x86_64 (`cargo test --workspace` in .ci/run): under
# qemu-user its tests say why they skip instead of failing (tests/src/lab/env.rs).
export OQSDNS_LAB=skip
# Tests whose count depends on the runtime's timing under native speed (tests/tests/wakeups.rs)
# say they skip under qemu-user, where that timing is another.
export OQSDNS_EMULATED=qemu-user

# Packages, when something is missing (CI's fresh machine); this machine has them.
packages=(qemu-user-static knot bind9-dnsutils iproute2 rustc-web cargo-web rust-web-src
  gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf gcc-mipsel-linux-gnu gcc-mips-linux-gnu
  libc6-dev-arm64-cross libc6-dev-armhf-cross libc6-dev-mipsel-cross libc6-dev-mips-cross
  libstd-rust-web-dev:arm64 libstd-rust-web-dev:armhf libc6:arm64 libc6:armhf
  libgcc-s1:arm64 libgcc-s1:armhf musl-dev:arm64 musl-dev:mipsel)
if ! dpkg-query -W "${packages[@]}" >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || { echo "cross: missing packages and not root" >&2; exit 1; }
  dpkg --add-architecture arm64
  dpkg --add-architecture armhf
  dpkg --add-architecture mipsel
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=arm-linux-gnueabihf-gcc
export CARGO_TARGET_MIPSEL_UNKNOWN_LINUX_GNU_LINKER=mipsel-linux-gnu-gcc
export CARGO_TARGET_MIPS_UNKNOWN_LINUX_GNU_LINKER=mips-linux-gnu-gcc
# No -L: these run against the multiarch libc (libc6:arm64/armhf); with -L /usr/<triple> the
# cross loader mixes with the multiarch libc and the first thread hangs.
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER=qemu-aarch64-static
export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_RUNNER=qemu-arm-static

# musl: Debian's musl-dev:<arch> (crt files and libc.a in /usr/lib/<triple>, the gcc wrapper
# <triple>-gcc) instead of rustup's self-contained objects, which Debian does not ship; static,
# not PIE (the wrapper's start file is Scrt1.o, not rcrt1.o). std's unwind crate links
# libunwind.a on static musl: gcc's libgcc_eh.a has the same symbols but, built for glibc, calls
# _dl_find_object (glibc 2.35), which musl lacks; a stub answering "not found" stands in (the
# unwinder then uses the frames registered by crtbegin; panic=abort never unwinds anyway).
std_target_dir=$root/target/cross-std
musl_dir=$std_target_dir/musl-link
for arch in aarch64 mipsel; do
  mkdir -p "$musl_dir/$arch"
  rm -f "$musl_dir/$arch/libunwind.a"
  cp "$("$arch-linux-gnu-gcc" -print-file-name=libgcc_eh.a)" "$musl_dir/$arch/libunwind.a"
  echo 'int _dl_find_object(void *pc, void *result) { (void)pc; (void)result; return -1; }' \
    >"$musl_dir/$arch/dl_find_object.c"
  "$arch-linux-musl-gcc" -c -O2 -o "$musl_dir/$arch/dl_find_object.o" \
    "$musl_dir/$arch/dl_find_object.c"
  "$arch-linux-gnu-ar" rs "$musl_dir/$arch/libunwind.a" "$musl_dir/$arch/dl_find_object.o" 2>/dev/null
done
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-musl-gcc
export CARGO_TARGET_MIPSEL_UNKNOWN_LINUX_MUSL_LINKER=mipsel-linux-musl-gcc
musl_flags="-C link-self-contained=no -C target-feature=+crt-static -C relocation-model=static"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="$musl_flags -L $musl_dir/aarch64"
export CARGO_TARGET_MIPSEL_UNKNOWN_LINUX_MUSL_RUSTFLAGS="$musl_flags -L $musl_dir/mipsel"

# Targets with std from Debian: built, tested under qemu. The rest: std built from rust-web-src
# (RUSTC_BOOTSTRAP for -Zbuild-std only, in its own environment), smoke-run under qemu: mipsel
# as released (its size is checked), the others in the dev profile, which builds in a fraction
# of the time of the LTO'd release and checks arithmetic overflow on the way.
tested=(aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf)
built_std=(mipsel-unknown-linux-gnu mips-unknown-linux-gnu mipsel-unknown-linux-musl
  aarch64-unknown-linux-musl)
std_release=(mipsel-unknown-linux-gnu)
is_std_release() { [[ " ${std_release[*]} " == *" $1 "* ]]; }
# The musl builds work (see above) but cost another std and dependency build each: CI's time
# budget (~20 min for this script) leaves them out unless CROSS_OPTIONAL=1 or CROSS_ONLY names them.
optional=(mipsel-unknown-linux-musl aarch64-unknown-linux-musl)
wanted() {
  if [ -n "${CROSS_ONLY:-}" ]; then
    [[ " $CROSS_ONLY " == *" $1 "* ]]
  elif [[ " ${optional[*]} " == *" $1 "* ]]; then
    [ "${CROSS_OPTIONAL:-0}" = 1 ]
  else
    true
  fi
}

if [ -z "${CROSS_ONLY:-}" ] && [ "${CROSS_OPTIONAL:-0}" != 1 ]; then
  echo "cross: not built (optional; CROSS_OPTIONAL=1 builds them): ${optional[*]}"
fi

step() { printf '\n=== cross: %s (%ds)\n' "$*" $((SECONDS - started)); }

# --- cleanup: binfmt entries registered here, processes started here --------------------------
binfmt=/proc/sys/fs/binfmt_misc
mounted_binfmt=
registered=()
pids=()
scratch=$(mktemp -d)
cleanup() {
  local p n
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for n in "${registered[@]}"; do [ -e "$binfmt/$n" ] && echo -1 >"$binfmt/$n"; done
  [ -z "$mounted_binfmt" ] || umount "$binfmt" || true
  rm -rf "$scratch"
}
trap cleanup EXIT

# Registers qemu for `name` (qemu-aarch64, qemu-arm) unless it already is, from qemu's own
# /usr/lib/binfmt.d file; unregistered on exit.
register_binfmt() {
  local name=$1
  if ! mountpoint -q "$binfmt"; then
    mount -t binfmt_misc binfmt_misc "$binfmt"
    mounted_binfmt=1
  fi
  [ -e "$binfmt/$name" ] && return
  cat "/usr/lib/binfmt.d/$name.conf" >"$binfmt/register"
  registered+=("$name")
}

declare -A size
binary() {
  case " ${built_std[*]} " in
    *" $1 "*) is_std_release "$1" && echo "$std_target_dir/$1/release/oqsdns" ||
      echo "$std_target_dir/$1/debug/oqsdns" ;;
    *) echo "$CARGO_TARGET_DIR/$1/release/oqsdns" ;;
  esac
}

# --- x86_64: the host's release binary, as packaging/debian/build-deb.sh builds it -----------
if wanted x86_64-unknown-linux-gnu; then
  step "x86_64 release (host toolchain)"
  env -u RUSTC -u RUSTDOC -u CARGO_TARGET_DIR cargo build --release --locked -p oqsdns
  size[x86_64-unknown-linux-gnu]=$(stat -c %s target/release/oqsdns)
fi

# --- aarch64, armv7: release build, then the tests under qemu ---------------------------------
for target in "${tested[@]}"; do
  wanted "$target" || continue
  step "$target release"
  "$cargo_deb" build --release --locked -p oqsdns --target "$target"
  size[$target]=$(stat -c %s "$(binary "$target")")
done
for target in "${tested[@]}"; do
  wanted "$target" || continue
  case $target in
    aarch64-*) register_binfmt qemu-aarch64 ;;
    armv7-*) register_binfmt qemu-arm ;;
  esac
  step "$target tests: build"
  # The tests that spawn the daemon run target/<triple>/debug/oqsdns (through binfmt_misc).
  "$cargo_deb" build --locked -p oqsdns --target "$target"
  "$cargo_deb" test --locked --workspace --target "$target" --no-run
  step "$target tests: run under qemu"
  "$cargo_deb" test --locked --workspace --target "$target" --no-fail-fast
  # Not used again in this run (the smoke runs the release binaries): 1.3 GB each, freed before
  # the next target's are built.
  rm -rf "${CARGO_TARGET_DIR:?}/$target/debug"
done

# --- build-std targets -------------------------------------------------------------------------
for target in "${built_std[@]}"; do
  wanted "$target" || continue
  if is_std_release "$target"; then profile=release; else profile=dev; fi
  step "$target $profile (build-std)"
  CARGO_TARGET_DIR=$std_target_dir RUSTC_BOOTSTRAP=1 "$cargo_deb" build --profile "$profile" \
    --locked -p oqsdns --target "$target" -Zbuild-std=std,panic_abort
  if is_std_release "$target"; then size[$target]=$(stat -c %s "$(binary "$target")"); fi
done

# --- smoke: serve (answers checked field by field), reload, stop --------------------------------
# A port free on loopback for UDP and TCP (picked at random, checked with ss).
free_port() {
  local port
  for _ in $(seq 100); do
    port=$((20000 + RANDOM % 40000))
    if [ -z "$(ss -Hlntu "sport = :$port")" ]; then
      echo "$port"
      return
    fi
  done
  echo "cross: no free port" >&2
  return 1
}

# The upstream: a real knotd on loopback serving smoke.test, whose records have fields of every
# width a byte-order bug would garble (16-bit MX preference and SRV port, 32-bit SOA serial and
# TTL, addresses, a TXT past 255 bytes in two strings).
knot_port=
start_knot() {
  knot_port=$(free_port)
  local dir=$scratch/knot
  mkdir -p "$dir/zones" "$dir/db"
  local long
  long=$(printf 'x%.0s' $(seq 300))
  cat >"$dir/zones/smoke.test.zone" <<EOF
\$ORIGIN smoke.test.
\$TTL 3600
@       SOA ns.smoke.test. admin.smoke.test. 2026120123 7200 900 1209600 86400
@       NS  ns
ns      A   127.0.0.1
www     A   192.0.2.10
www     AAAA 2001:db8::5300:1
@       MX  4660 mail
mail    A   198.51.100.7
_dns._udp SRV 258 772 50000 www
txt     TXT "oqsdns smoke" "${long:0:200}" "${long:200:100}"
EOF
  cat >"$dir/knot.conf" <<EOF
server:
    rundir: "$dir"
    user: root:root
    listen: [ "127.0.0.1@$knot_port" ]
log:
  - target: stderr
    any: info
database:
    storage: "$dir/db"
template:
  - id: default
    storage: "$dir/zones"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
zone:
  - domain: smoke.test
    file: "smoke.test.zone"
EOF
  knotd -c "$dir/knot.conf" >"$dir/log" 2>&1 &
  pids+=($!)
  for _ in $(seq 30); do
    if dig @127.0.0.1 -p "$knot_port" +short +time=1 +tries=1 SOA smoke.test | grep -q 2026120123
    then return; fi
    kill -0 "${pids[-1]}" 2>/dev/null || break
    sleep 0.2
  done
  cat "$dir/log" >&2
  echo "cross: knotd did not come up" >&2
  return 1
}

fail() {
  echo "cross: smoke $smoke_name: $*" >&2
  echo "--- oqsdns log ---" >&2
  cat "$smoke_log" >&2 || true
  exit 1
}

# expect QUERY... EXPECTED: `dig +short QUERY` through the daemon gives exactly EXPECTED.
expect() {
  local want=${*: -1} got
  got=$(dig @127.0.0.1 -p "$smoke_port" +short +time=5 +tries=1 "${@:1:$#-1}" 2>&1) || true
  [ "$got" = "$want" ] || fail "dig ${*:1:$#-1}: got [$got], want [$want]"
}

# smoke NAME BINARY QEMU-COMMAND...: runs BINARY under qemu serving on a free loopback port,
# forwarding to knotd; checks answers over UDP and TCP, a reload on SIGHUP, exit 0 on SIGTERM.
smoke() {
  smoke_name=$1
  local bin=$2
  shift 2
  [ -n "$knot_port" ] || start_knot
  smoke_port=$(free_port)
  local dir=$scratch/$smoke_name
  mkdir -p "$dir"
  smoke_log=$dir/log
  cat >"$dir/oqsdns.toml" <<EOF
area = "none"
[server]
listen = ["127.0.0.1:$smoke_port"]
[forward]
default = ["127.0.0.1:$knot_port"]
timeout = "2s"
EOF
  step "$smoke_name smoke"
  "$@" "$bin" run -c "$dir/oqsdns.toml" >"$smoke_log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  local up=
  for _ in $(seq 60); do
    if [ "$(dig @127.0.0.1 -p "$smoke_port" +short +time=1 +tries=1 localhost A)" = 127.0.0.1 ]
    then up=1; break; fi
    kill -0 "$pid" 2>/dev/null || fail "exited before answering"
    sleep 0.2
  done
  [ -n "$up" ] || fail "no answer within 60 tries"
  # Answered by the daemon itself, then forwarded, over UDP and TCP.
  expect localhost AAAA ::1
  for tcp in +notcp +tcp; do
    expect "$tcp" www.smoke.test A 192.0.2.10
    expect "$tcp" www.smoke.test AAAA 2001:db8::5300:1
    expect "$tcp" smoke.test MX "4660 mail.smoke.test."
    expect "$tcp" _dns._udp.smoke.test SRV "258 772 50000 www.smoke.test."
    expect "$tcp" smoke.test SOA \
      "ns.smoke.test. admin.smoke.test. 2026120123 7200 900 1209600 86400"
    expect "$tcp" txt.smoke.test TXT "\"oqsdns smoke\" \"$(printf 'x%.0s' $(seq 200))\" \"$(printf 'x%.0s' $(seq 100))\""
  done
  expect nothing.smoke.test A ""
  local ttl
  ttl=$(dig @127.0.0.1 -p "$smoke_port" +noall +answer +time=5 +tries=1 +notcp mail.smoke.test A |
    awk '{print $2}')
  [ -n "$ttl" ] && [ "$ttl" -le 3600 ] && [ "$ttl" -ge 3000 ] || fail "TTL [$ttl], want about 3600"
  # Reload: SIGHUP, the log says so, and it still answers.
  kill -HUP "$pid"
  local reloaded=
  for _ in $(seq 100); do
    if grep -q "configuration reloaded" "$smoke_log"; then reloaded=1; break; fi
    kill -0 "$pid" 2>/dev/null || fail "exited on SIGHUP"
    sleep 0.1
  done
  [ -n "$reloaded" ] || fail "no reload logged within 10 s of SIGHUP"
  expect +tcp www.smoke.test A 192.0.2.10
  # Stop: SIGTERM, exit status 0.
  kill -TERM "$pid"
  local status=0 stopped=
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || { stopped=1; break; }
    sleep 0.1
  done
  [ -n "$stopped" ] || fail "still running 10 s after SIGTERM"
  wait "$pid" || status=$?
  [ "$status" = 0 ] || fail "exit status $status after SIGTERM"
  grep -q "stopped" "$smoke_log" || fail "no 'stopped' in the log"
  echo "cross: smoke $smoke_name: served, reloaded, stopped"
}

# The host's binary first: the smoke itself is right where nothing is emulated.
if wanted x86_64-unknown-linux-gnu; then
  smoke x86_64-unknown-linux-gnu target/release/oqsdns env
fi
for target in "${built_std[@]}"; do
  wanted "$target" || continue
  bin=$(binary "$target")
  case $target in
    # glibc: the cross libc under -L (no multiarch libc6 for these here).
    mipsel-unknown-linux-gnu) smoke "$target" "$bin" qemu-mipsel-static -L /usr/mipsel-linux-gnu ;;
    mips-unknown-linux-gnu) smoke "$target" "$bin" qemu-mips-static -L /usr/mips-linux-gnu ;;
    # musl: static, nothing to load.
    mipsel-unknown-linux-musl) smoke "$target" "$bin" qemu-mipsel-static ;;
    aarch64-unknown-linux-musl) smoke "$target" "$bin" qemu-aarch64-static ;;
  esac
done
for target in "${tested[@]}"; do
  wanted "$target" || continue
  [ -n "${CROSS_SMOKE_ALL:-}" ] || continue
  case $target in
    aarch64-*) smoke "$target" "$(binary "$target")" qemu-aarch64-static ;;
    armv7-*) smoke "$target" "$(binary "$target")" qemu-arm-static ;;
  esac
done

# --- sizes ---------------------------------------------------------------------------------------
step "release sizes"
# x86_64 at most 3 MiB (issue 18), the routers' targets at most 5 MiB.
too_big=
for target in $(printf '%s\n' "${!size[@]}" | sort); do
  bytes=${size[$target]}
  mib=5
  [ "$target" = x86_64-unknown-linux-gnu ] && mib=3
  awk -v t="$target" -v b="$bytes" 'BEGIN { printf "%-34s %9d bytes  %5.2f MB\n", t, b, b / 1e6 }'
  if [ "$bytes" -gt $((mib * 1024 * 1024)) ]; then
    echo "cross: $target's release binary is $bytes bytes, over its limit of $mib MiB ($((mib * 1024 * 1024)) bytes)" >&2
    too_big=1
  fi
done
[ -z "$too_big" ]
step "done"
