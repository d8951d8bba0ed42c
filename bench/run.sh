#!/usr/bin/env bash
# The benchmark (issue 5): oqsdns, dnsmasq and unbound with the same East table and the same knotd
# upstreams, driven by the same dnsperf, one after another, inside network namespaces this script
# creates and always removes. Writes docs/PERFORMANCE.md. A benchmark, not a test: nothing fails on
# a timing, and .ci/run does not run it.
#
#   sudo bench/run.sh                 # about 4 minutes on 2 cores
#   BENCH_SECONDS=5 sudo bench/run.sh # shorter dnsperf runs
#   BENCH_PROGRAMS="oqsdns dnsmasq" BENCH_WORKLOADS="cached miss" BENCH_PERF=1 sudo bench/run.sh
#                                     # a part of it, with a perf profile of oqsdns per run; a part
#                                     # prints its tables and leaves docs/PERFORMANCE.md alone
#                                     # (BENCH_PERF=dwarf: call graphs through Rust code too)
#   BENCH_OQSDNS=/tmp/oqsdns-a ...     # that binary instead of building one
#   BENCH_UPSTREAM_BATCH=1 ...         # the knotd upstreams as SCHED_BATCH (a diagnosis: a woken
#                                     # knotd then does not preempt the program that woke it)
#
# Needs root and Debian's dnsperf, dnsmasq-base, unbound, knot, bind9-dnsutils, nftables, iproute2,
# a C compiler and cargo. Every packet stays on loopback or inside the namespaces: the upstream
# namespace has no link to anything but the server namespace.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
LAB="$ROOT/tests/lab"          # zone files and knotd template, shared with the end-to-end lab

SECONDS_PER_RUN=${BENCH_SECONDS:-10}
DNSPERF_TIMEOUT=3              # a query unanswered after this long counts as lost
DNSPERF_CLIENTS=4              # sockets (UDP) or connections (TCP)
DNSPERF_OUTSTANDING=100        # queries in flight at once
PROGRAMS=${BENCH_PROGRAMS:-"oqsdns dnsmasq unbound"}
FAILOVER_TRIALS=${BENCH_FAILOVER_TRIALS:-3}  # dnsmasq and unbound pick a server by speed: repeat
ALL_WORKLOADS="cached miss missnet tcp tcp100 failover failtime"
WORKLOADS=${BENCH_WORKLOADS:-$ALL_WORKLOADS}
# The whole benchmark writes docs/PERFORMANCE.md; a part of it (fewer programs or workloads) only
# prints its tables and keeps its scratch directory.
FULL=
[ "$PROGRAMS" = "oqsdns dnsmasq unbound" ] && [ "$WORKLOADS" = "$ALL_WORKLOADS" ] && FULL=1
[ -n "$FULL" ] || BENCH_KEEP=1

tools="ip knotd dig nft dnsperf dnsmasq unbound cc cargo python3"
[ -n "${BENCH_PERF:-}" ] && tools+=" perf"
for tool in $tools; do
  command -v "$tool" >/dev/null || PATH="$PATH:/usr/sbin:/sbin" command -v "$tool" >/dev/null ||
    { echo "bench: $tool not found (apt-get install dnsperf dnsmasq-base unbound knot bind9-dnsutils nftables iproute2)" >&2; exit 1; }
done
export PATH="$PATH:/usr/sbin:/sbin"
[ "$(id -u)" = 0 ] || { echo "bench: needs root (network namespaces, port 53)" >&2; exit 1; }

# --- addresses: the lab's (tests/src/lab/topology.rs) and the guide's East servers ----------------
CLIENT=2408:82:1234:5600::100          # the terminal, on the LAN
SERVER=2408:82:1234:5600::1            # the program under test, port 53
SERVER_WAN=2001:db8:ff01::2
UPSTREAM_WAN=2001:db8:ff01::1
NWBASE1=2404:1a8:f583:d00::53:1        # NW-base East, primary (優先)
NWBASE2=2404:1a8:f583:d00::53:2        # NW-base East, alternate (代替)
NGN1=2404:1a8:7f01:a::3                # NGN DNS East, primary
NGN2=2404:1a8:7f01:b::3                # NGN DNS East, alternate
INTERNET=2001:db8:53::53               # the internet resolver
NW_BASE_DOMAINS="onshikaku.org lineauth.mnw base.oqs-pdl.org managedpki.ne.jp cybertrust.ne.jp secomtrust.net"
NGN_DOMAINS="flets-east.jp"
INTERNET_ZONES="example.com notonshikaku.org onshikaku.org miss.example"

P="oqsb$$"
NS_C="${P}c" NS_D="${P}d" NS_U="${P}u"
SCRATCH=$(mktemp -d /tmp/oqsdns-bench.XXXXXX)
RESULTS="$SCRATCH/results"
mkdir -p "$RESULTS"
date '+%Y-%m-%d %H:%M %Z' >"$RESULTS/date"
{ git rev-parse --short HEAD; git status --porcelain -- crates Cargo.toml Cargo.lock; } >"$RESULTS/commit" 2>/dev/null || true
# The machine's steal time (a virtual machine's host running something else on its CPUs) over
# all the runs: the report prints it, as the ratios between runs spread with it.
steal_ticks() { awk '/^cpu / { print $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat; }
steal_ticks >"$RESULTS/steal.before"
PIDS=()

cleanup() {
  local pid ns
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  for ns in "$NS_C" "$NS_D" "$NS_U"; do ip netns del "$ns" 2>/dev/null || true; done
  [ -n "${BENCH_KEEP:-}" ] && echo "bench: kept $SCRATCH" >&2 || rm -rf "$SCRATCH"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
# Runs a command in a namespace. Background daemons use `ip netns exec` directly instead, so that
# $! is the daemon's own PID (ip execs it) and /proc/$!/stat is the daemon's.
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# --- build ----------------------------------------------------------------------------------------
if [ -n "${BENCH_OQSDNS:-}" ]; then
  # A binary built elsewhere (an A/B comparison of two builds, run after run).
  OQSDNS=$(realpath "$BENCH_OQSDNS")
elif [ -n "${BENCH_PERF:-}" ]; then
  # The release build with symbols for perf (Cargo.toml's profile `profiling`).
  log "cargo build --profile profiling"
  cargo build --profile profiling --quiet -p oqsdns
  OQSDNS="$ROOT/target/profiling/oqsdns"
else
  log "cargo build --release"
  cargo build --release --quiet -p oqsdns
  OQSDNS="$ROOT/target/release/oqsdns"
fi
cc -O2 -Wall -Wextra -o "$SCRATCH/echo" bench/echo.c

# --- network: client ──lan── server ──wan── upstream (every server address on its loopback) -------
log "namespaces $NS_C $NS_D $NS_U"
for ns in "$NS_C" "$NS_D" "$NS_U"; do
  ip netns add "$ns"
  in_ns "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
  ip -n "$ns" link set lo up
done
ip -n "$NS_D" link add lan0 type veth peer name eth0 netns "$NS_C"
ip -n "$NS_D" link add wan0 type veth peer name cpe0 netns "$NS_U"
ip -n "$NS_C" -6 addr add "$CLIENT/64" dev eth0 nodad
ip -n "$NS_D" -6 addr add "$SERVER/64" dev lan0 nodad
ip -n "$NS_D" -6 addr add "$SERVER_WAN/64" dev wan0 nodad
ip -n "$NS_U" -6 addr add "$UPSTREAM_WAN/64" dev cpe0 nodad
for a in "$NWBASE1" "$NWBASE2" "$NGN1" "$NGN2" "$INTERNET"; do
  ip -n "$NS_U" -6 addr add "$a/128" dev lo nodad
done
ip -n "$NS_C" link set eth0 up
ip -n "$NS_D" link set lan0 up
ip -n "$NS_D" link set wan0 up
ip -n "$NS_U" link set cpe0 up
ip -n "$NS_C" -6 route add default via "$SERVER"
ip -n "$NS_D" -6 route add default via "$UPSTREAM_WAN"
ip -n "$NS_U" -6 route add 2408:82:1234:5600::/64 via "$SERVER_WAN"

# --- upstreams: one knotd per server, the lab's zones plus whoami records naming it ---------------
# `whoami.<zone> TXT` names the server, as in the lab; `<anything>.whoami.<zone>` does too, with
# TTL 0, so every question can be unique and no cache answers it.
start_knot() {
  local id=$1 zone_dir=$2 addr=$3; shift 3
  local dir="$SCRATCH/knot/$id" zones="" zone src
  mkdir -p "$dir/db" "$dir/zones"
  for zone in "$@"; do
    src="$LAB/zones/$zone_dir/$zone.zone"
    if [ "$zone" = miss.example ]; then
      # The cache-miss workload's zone: a wildcard, so every unique name gets an answer.
      printf '$TTL 300\n@ IN SOA ns.miss.example. hostmaster.miss.example. 1 3600 600 86400 300\n@ IN NS ns.example.com.\n* IN A 198.51.100.99\n* IN AAAA 2001:db8:80::99\n' >"$dir/zones/$zone.zone"
    else
      cp "$src" "$dir/zones/$zone.zone"
    fi
    if [[ " $NW_BASE_DOMAINS " == *" $zone "* ]]; then
      # The mixed cache-miss workload's NW-base half: `<n>.miss.<zone> AAAA`, four addresses
      # each (the guide's centre names carry one to fifteen), plus the 10.x A records beside them.
      printf '*.miss IN AAAA 2404:1a8:f583:1a10::%s\n' 11 12 13 14 >>"$dir/zones/$zone.zone"
      printf '*.miss IN A 10.108.65.%s\n' 11 12 13 14 >>"$dir/zones/$zone.zone"
    fi
    printf 'whoami IN TXT "%s"\n*.whoami 0 IN TXT "%s"\n' "$id" "$id" >>"$dir/zones/$zone.zone"
    zones+="  - domain: $zone"$'\n'"    file: \"$zone.zone\""$'\n'
  done
  local conf
  conf=$(<"$LAB/knot.conf.in")
  conf=${conf//@ID@/$id}
  conf=${conf//@DIR@/$dir}
  conf=${conf//@LISTEN@/\"$addr@53\"}
  conf=${conf//@ZONES@/$zones}
  printf '%s\n' "$conf" >"$dir/knot.conf"
  local sched=()
  [ -n "${BENCH_UPSTREAM_BATCH:-}" ] && sched=(chrt --batch 0)
  ip netns exec "$NS_U" "${sched[@]}" knotd -c "$dir/knot.conf" >"$dir/log" 2>&1 &
  PIDS+=($!)
}
# shellcheck disable=SC2086
{
  start_knot nw-base-east-primary east "$NWBASE1" $NW_BASE_DOMAINS
  start_knot nw-base-east-alternate east "$NWBASE2" $NW_BASE_DOMAINS
  start_knot ngn-east-primary east "$NGN1" $NGN_DOMAINS
  start_knot ngn-east-alternate east "$NGN2" $NGN_DOMAINS
  start_knot internet internet "$INTERNET" $INTERNET_ZONES
}

# Waits until `dig` from namespace $1 gets an answer for $3 TXT from $2.
wait_answer() {
  local ns=$1 server=$2 name=$3 i
  for i in $(seq 200); do
    if [ -n "$(in_ns "$ns" dig +short +time=1 +tries=1 "@$server" "$name" TXT 2>/dev/null)" ]; then
      return 0
    fi
    sleep 0.1
  done
  echo "bench: no answer for $name from $server" >&2
  return 1
}
for pair in "$NWBASE1 lineauth.mnw" "$NWBASE2 secomtrust.net" "$NGN1 flets-east.jp" \
            "$NGN2 flets-east.jp" "$INTERNET miss.example"; do
  set -- $pair
  wait_answer "$NS_U" "$1" "whoami.$2"
done
log "knotd upstreams answer"

# --- query files -----------------------------------------------------------------------------------
Q="$SCRATCH/queries"
mkdir -p "$Q"
# Cached: the guide's step-7 names (手順7) and some internet names, repeated.
cat >"$Q/cached" <<'EOF'
www.lineauth.mnw AAAA
assv.asc.flets-east.jp AAAA
hweb.oqs.onshikaku.org AAAA
hweb.oqs.onshikaku.org A
crldownload.obn.managedpki.ne.jp AAAA
pweb.base.oqs-pdl.org AAAA
pweb.base.oqs-pdl.org A
www.example.com A
www.example.com AAAA
notonshikaku.org A
EOF
# Cache miss, mixed (the clinic's traffic): every other name is an internet A name through the
# rebind filter, the rest NW-base AAAA names spread over the six domains; each name used once.
# Cache miss, internet only (missnet): unique names under the internet knotd's wildcard.
python3 - "$Q" <<'EOF'
import sys
q = sys.argv[1]
domains = "onshikaku.org lineauth.mnw base.oqs-pdl.org managedpki.ne.jp cybertrust.ne.jp secomtrust.net".split()
with open(f"{q}/miss", "w") as f:
    f.writelines(
        f"m{i}.miss.example A\n" if i % 2 == 0 else f"m{i}.miss.{domains[i // 2 % 6]} AAAA\n"
        for i in range(400_000)
    )
with open(f"{q}/missnet", "w") as f:
    f.writelines(f"m{i}.miss.example A\n" for i in range(400_000))
with open(f"{q}/failover", "w") as f:
    f.writelines(f"f{i}.whoami.{domains[i % 6]} TXT\n" for i in range(400_000))
EOF

# --- the programs under test: each writes its configuration and starts in the server namespace ---
write_oqsdns() {
  cat >"$1/oqsdns.toml" <<EOF
area = "east"

[server]
listen = ["[$SERVER]:53"]
allow = ["2408:82:1234:5600::/64"]
# dnsperf is one client address: the per-client limit still runs on every query (its cost is
# measured) but far above dnsperf's rate (the default, 200 a second, would refuse nearly all).
rate = 10000000
burst = 10000000
tcp_connections_per_client = 128   # the tcp100 workload: 100 connections from dnsperf's one address

[forward]
default = ["$INTERNET"]
timeout = "1s"
names = ["www.example.com AAAA"]   # the lab's internet server is a knotd: it refuses ". NS"
EOF
}
write_dnsmasq() {
  local d s
  {
    echo "port=53"
    echo "listen-address=$SERVER"
    echo "bind-interfaces"
    echo "no-resolv"
    echo "no-hosts"
    echo "user=root"
    echo "log-facility=-"
    echo "# cache-size: dnsmasq's default (150 names)"
    echo "# rebinding protection as OpenWrt turns it on, the split domains exempt (issue 14)"
    echo "stop-dns-rebind"
    echo "rebind-localhost-ok"
    for d in $NW_BASE_DOMAINS; do for s in "$NWBASE1" "$NWBASE2"; do echo "server=/$d/$s"; done; done
    for d in $NGN_DOMAINS; do for s in "$NGN1" "$NGN2"; do echo "server=/$d/$s"; done; done
    for d in $NW_BASE_DOMAINS $NGN_DOMAINS; do echo "rebind-domain-ok=/$d/"; done
    echo "server=$INTERNET"
  } >"$1/dnsmasq.conf"
}
write_unbound() {
  local d s
  {
    echo "server:"
    echo "  interface: $SERVER@53"
    echo "  access-control: 2408:82:1234:5600::/64 allow"
    echo "  do-daemonize: no"
    echo "  username: \"\""
    echo "  chroot: \"\""
    echo "  directory: \"$1\""
    echo "  pidfile: \"$1/unbound.pid\""
    echo "  use-syslog: no"
    echo "  logfile: \"\""
    echo "  verbosity: 0"
    echo "  num-threads: $(nproc)"
    echo "  so-reuseport: yes"
    echo "  module-config: \"iterator\""
    echo "  do-not-query-localhost: no"
    echo "  # rebinding protection: private addresses dropped, but for the split domains"
    for a in 10.0.0.0/8 172.16.0.0/12 192.168.0.0/16 169.254.0.0/16 fd00::/8 fe80::/10; do
      echo "  private-address: $a"
    done
    for d in $NW_BASE_DOMAINS $NGN_DOMAINS; do echo "  private-domain: \"$d\""; done
    for d in $NW_BASE_DOMAINS; do
      printf 'forward-zone:\n  name: "%s"\n  forward-first: no\n' "$d"
      for s in "$NWBASE1" "$NWBASE2"; do echo "  forward-addr: $s"; done
    done
    for d in $NGN_DOMAINS; do
      printf 'forward-zone:\n  name: "%s"\n  forward-first: no\n' "$d"
      for s in "$NGN1" "$NGN2"; do echo "  forward-addr: $s"; done
    done
    printf 'forward-zone:\n  name: "."\n  forward-first: no\n  forward-addr: %s\n' "$INTERNET"
  } >"$1/unbound.conf"
}

SERVER_PID=
start_program() {
  local prog=$1 dir="$SCRATCH/run/$1"
  mkdir -p "$dir"
  case $prog in
    oqsdns)  write_oqsdns "$dir"
             RUST_LOG=warn ip netns exec "$NS_D" "$OQSDNS" run --config "$dir/oqsdns.toml" >>"$dir/log" 2>&1 & ;;
    dnsmasq) write_dnsmasq "$dir"
             ip netns exec "$NS_D" dnsmasq --keep-in-foreground --conf-file="$dir/dnsmasq.conf" >>"$dir/log" 2>&1 & ;;
    unbound) write_unbound "$dir"
             ip netns exec "$NS_D" unbound -d -c "$dir/unbound.conf" >>"$dir/log" 2>&1 & ;;
    echo)    ip netns exec "$NS_D" "$SCRATCH/echo" "$SERVER" 53 >>"$dir/log" 2>&1 & ;;
  esac
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  if [ "$prog" = echo ]; then
    sleep 0.2
  else
    wait_answer "$NS_C" "$SERVER" whoami.example.com || { cat "$dir/log" >&2; exit 1; }
  fi
}
stop_program() {
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
}

# utime+stime+cutime+cstime of $1, in clock ticks (cutime/cstime: dnsmasq's TCP children).
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 + $14 + $15 }' "/proc/$1/stat"; }

# Drop everything to the NW-base primary, in the upstream namespace.
cut_primary() {
  printf 'flush ruleset\ntable inet bench {\n  chain input {\n    type filter hook input priority 0; policy accept;\n    ip6 daddr %s drop\n  }\n}\n' \
    "$NWBASE1" >"$SCRATCH/cut.nft"
  in_ns "$NS_U" nft -f "$SCRATCH/cut.nft"
}
restore_primary() { in_ns "$NS_U" nft flush ruleset; }

# run_dnsperf PROGRAM WORKLOAD [dnsperf args...]: one bounded dnsperf run against a fresh server.
run_dnsperf() {
  local prog=$1 workload=$2; shift 2
  local out="$RESULTS/$prog.$workload"
  start_program "$prog"
  # Resident set at idle: started, a few digs answered, before the load.
  awk '/^VmRSS/ { print $2 }' "/proc/$SERVER_PID/status" >"$out.idle"
  local before after
  before=$(cpu_ticks "$SERVER_PID")
  log "$prog: $workload (${SECONDS_PER_RUN}s)"
  if [ "$workload" = failover ]; then
    ( sleep "$(awk "BEGIN { print $SECONDS_PER_RUN * 0.3 }")"; cut_primary; echo "$EPOCHREALTIME" >"$out.cut" ) &
    local cutter=$!
  fi
  local perf=
  if [ -n "${BENCH_PERF:-}" ] && [ "$prog" != dnsmasq ] && [ "$prog" != unbound ]; then
    # A profile, and the system calls counted (how many datagrams each batch carried).
    # BENCH_PERF=dwarf: call graphs unwound from the stack copies (Rust code has no frame pointers)
    if [ "$BENCH_PERF" = dwarf ]; then graph=(--call-graph dwarf,16384 -F 499); else graph=(-g); fi
    perf record -q "${graph[@]}" -o "$out.perf.data" -p "$SERVER_PID" 2>>"$out.stderr" &
    perf=$!
    perf stat -x, -o "$out.syscalls" -e context-switches,cpu-migrations \
      -e syscalls:sys_enter_recvmmsg,syscalls:sys_enter_sendmmsg \
      -e syscalls:sys_enter_sendmsg,syscalls:sys_enter_recvfrom,syscalls:sys_enter_epoll_wait \
      -p "$SERVER_PID" 2>>"$out.stderr" &
    perf+=" $!"
  fi
  in_ns "$NS_C" dnsperf -s "$SERVER" -l "$SECONDS_PER_RUN" -t "$DNSPERF_TIMEOUT" \
    -c "$DNSPERF_CLIENTS" -q "$DNSPERF_OUTSTANDING" -v "$@" >"$out.dnsperf" 2>"$out.stderr" || true
  if [ -n "$perf" ]; then
    # shellcheck disable=SC2086
    kill -INT $perf; wait $perf || true
    # Each thread's context switches since it started, voluntary (it waited) and not (preempted).
    local task
    for task in /proc/"$SERVER_PID"/task/*; do
      printf '%s %s\n' "$(<"$task/comm")" "$(awk '/ctxt_switches/ { sub(":", "", $1); printf "%s=%s ", $1, $2 }' "$task/status")"
    done >"$out.threads" 2>/dev/null || true
    perf report -i "$out.perf.data" --stdio --no-children --sort dso,sym --percent-limit 0.5 \
      >"$out.perf.txt" 2>/dev/null || true
    log "profile: $out.perf.txt"
  fi
  [ "$workload" = failover ] && { wait "$cutter"; restore_primary; }
  sleep 0.5   # let dnsmasq reap its TCP children into cutime/cstime
  after=$(cpu_ticks "$SERVER_PID")
  echo "$((after - before)) $(getconf CLK_TCK)" >"$out.cpu"
  awk '/^VmHWM/ { print $2 }' "/proc/$SERVER_PID/status" >"$out.hwm"
  stop_program
}

# measure_failover PROGRAM TRIAL: dig loop of unique whoami names; cut the primary; when does the
# alternate answer? dig retries after 1 s like a Windows stub's first retry.
measure_failover() {
  local prog=$1 out="$RESULTS/$prog.failtime$2" i
  start_program "$prog"
  log "$prog: failover time, trial $2"
  for i in 1 2 3 4 5; do
    in_ns "$NS_C" dig +short +time=1 +tries=3 "@$SERVER" "pre$i.whoami.lineauth.mnw" TXT >>"$out.pre" || true
  done
  cut_primary
  echo "$EPOCHREALTIME" >"$out.cut"
  for i in $(seq 0 79); do
    (
      s=$EPOCHREALTIME
      a=$(in_ns "$NS_C" dig +short +time=1 +tries=3 "@$SERVER" "post$i.whoami.lineauth.mnw" TXT 2>/dev/null | tr -d '"' | grep -v '^;;' | head -1) || true
      echo "$i $s $EPOCHREALTIME ${a:--}" >>"$out.post"
    ) &
    sleep 0.1
  done
  wait_jobs_but_server
  restore_primary
  stop_program
}
# Waits for every background job except the servers and knotds.
wait_jobs_but_server() {
  local job keep
  for job in $(jobs -p); do
    keep=
    for p in "${PIDS[@]}"; do [ "$job" = "$p" ] && keep=1; done
    [ -n "$keep" ] || wait "$job" 2>/dev/null || true
  done
}

# --- the runs ---------------------------------------------------------------------------------------
wants() { [[ " $WORKLOADS " == *" $1 "* ]]; }
for prog in $PROGRAMS; do
  wants cached && run_dnsperf "$prog" cached -d "$Q/cached" -n 30000
  wants miss && run_dnsperf "$prog" miss -d "$Q/miss" -n 1
  wants missnet && run_dnsperf "$prog" missnet -d "$Q/missnet" -n 1
  wants tcp && run_dnsperf "$prog" tcp -m tcp -d "$Q/cached" -n 30000
  wants tcp100 && run_dnsperf "$prog" tcp100 -m tcp -c 100 -d "$Q/cached" -n 30000
  wants failover && run_dnsperf "$prog" failover -d "$Q/failover" -n 1
  if wants failtime; then
    for trial in $(seq "$FAILOVER_TRIALS"); do measure_failover "$prog" "$trial"; done
  fi
done
# The floor: the same dnsperf against a program that only sends each query back, per workload.
wants cached && run_dnsperf echo cached -d "$Q/cached" -n 30000
wants miss && run_dnsperf echo miss -d "$Q/miss" -n 1

# --- the report ------------------------------------------------------------------------------------
steal_ticks >"$RESULTS/steal.after"
size=$(stat -c %s "$OQSDNS")
cp "$OQSDNS" "$SCRATCH/oqsdns.stripped" && strip "$SCRATCH/oqsdns.stripped" 2>/dev/null || true
stripped=$(stat -c %s "$SCRATCH/oqsdns.stripped")
report=(python3 bench/report.py "$RESULTS" "$size" "$stripped" "$SECONDS_PER_RUN"
  "$DNSPERF_CLIENTS" "$DNSPERF_OUTSTANDING" "$DNSPERF_TIMEOUT")
"${report[@]}"
if [ -n "$FULL" ]; then
  "${report[@]}" docs/PERFORMANCE.md
  log "wrote the results section of docs/PERFORMANCE.md"
fi
