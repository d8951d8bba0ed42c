"""Turns the result files of bench/run.sh into the results section of docs/PERFORMANCE.md.

usage: report.py RESULTS_DIR BINARY_SIZE STRIPPED_SIZE SECONDS CLIENTS OUTSTANDING TIMEOUT [DOC]

Without DOC the section is printed; with it, DOC's section between the markers is replaced.
"""

import datetime
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

PROGRAMS = ["oqsdns", "dnsmasq", "unbound"]
WORKLOADS = [
    ("cached", "cached (UDP)"),
    ("miss", "cache miss, mixed (UDP)"),
    ("missnet", "cache miss, internet names (UDP)"),
    ("tcp", "cached (TCP)"),
    ("tcp100", "cached (TCP, 100 connections)"),
    ("failover", "failover (UDP)"),
]
BASELINE = "dnsmasq"
# The workloads the UDP echo floor runs too (bench/run.sh).
FLOOR_WORKLOADS = ("cached", "miss")
MIB = 1024 * 1024
# Issue 18's targets for the x86_64 binary; the other CPUs' sizes are reported beside it.
SIZE_LIMIT = 3 * MIB
CROSS = ["aarch64-unknown-linux-gnu", "armv7-unknown-linux-gnueabihf"]


def parse_dnsperf(path):
    """The summary figures and each answered query's latency from `dnsperf -v` output."""
    text = path.read_text(errors="replace")
    stats = {}
    for key, pattern in [
        ("sent", r"Queries sent:\s+(\d+)"),
        ("completed", r"Queries completed:\s+(\d+)"),
        ("lost", r"Queries lost:\s+(\d+)"),
        ("qps", r"Queries per second:\s+([\d.]+)"),
        ("avg", r"Average Latency \(s\):\s+([\d.]+)"),
        ("max", r"Average Latency \(s\):.*max ([\d.]+)"),
    ]:
        m = re.search(pattern, text)
        stats[key] = float(m.group(1)) if m else None
    m = re.search(r"Response codes:\s+(.*)", text)
    stats["rcodes"] = m.group(1).strip() if m else ""
    latencies = []
    for line in text.splitlines():
        if line.startswith("> "):
            parts = line.split()
            if parts[1] not in ("T", "I"):
                try:
                    latencies.append(float(parts[-1]))
                except ValueError:
                    pass
    latencies.sort()

    def pct(p):
        if not latencies:
            return None
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))]

    stats["p50"], stats["p99"], stats["p999"] = pct(50), pct(99), pct(99.9)
    return stats


def load(results, prog, workload):
    base = results / f"{prog}.{workload}"
    dnsperf = Path(f"{base}.dnsperf")
    if not dnsperf.exists():
        return None
    stats = parse_dnsperf(dnsperf)
    ticks, hz = (int(x) for x in Path(f"{base}.cpu").read_text().split())
    completed = stats["completed"] or 0
    stats["cpu_us"] = ticks / hz / completed * 1e6 if completed else None
    hwm = Path(f"{base}.hwm").read_text().strip()
    stats["rss_mib"] = int(hwm) / 1024 if hwm else None
    return stats


def fmt(value, spec):
    return "—" if value is None else format(value, spec)


def secs(value):
    return "none" if value is None else f"{value:.2f} s"


def ratio(value, base):
    if value is None or not base:
        return "—"
    return f"{value / base:.2f}×"


def ms(seconds):
    return None if seconds is None else seconds * 1000


def results_table(results):
    head = (
        "| program | workload | queries/s | ×dnsmasq | lost / sent | avg ms | p99 ms | "
        "p99 ×dnsmasq | max ms | CPU µs/query | ×dnsmasq | peak RSS MiB | ×dnsmasq |\n"
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n"
    )
    rows = []
    for workload, label in WORKLOADS:
        base = load(results, BASELINE, workload) or {}
        progs = PROGRAMS + (["echo"] if workload in FLOOR_WORKLOADS else [])
        for prog in progs:
            s = load(results, prog, workload)
            if s is None:
                continue
            name = "UDP echo (floor)" if prog == "echo" else prog
            rows.append(
                f"| {name} | {label} | {fmt(s['qps'], ',.0f')} | {ratio(s['qps'], base.get('qps'))} "
                f"| {fmt(s['lost'], ',.0f')} / {fmt(s['sent'], ',.0f')} "
                f"| {fmt(ms(s['avg']), '.2f')} | {fmt(ms(s['p99']), '.2f')} "
                f"| {ratio(s['p99'], base.get('p99'))} | {fmt(ms(s['max']), '.0f')} "
                f"| {fmt(s['cpu_us'], '.1f')} | {ratio(s['cpu_us'], base.get('cpu_us'))} "
                f"| {fmt(s['rss_mib'], '.1f')} | {ratio(s['rss_mib'], base.get('rss_mib'))} |"
            )
    return head + "\n".join(rows) + "\n"


def mark(met):
    return "—" if met is None else ("✅ met" if met else "❌ missed")


def targets_table(results, stripped):
    """Issue 18's targets, each as measured in this run, with a mark."""
    rows = []

    def cpu_ratio(workload, base_prog):
        s, b = load(results, "oqsdns", workload), load(results, base_prog, workload)
        if not s or not b or not s["cpu_us"] or not b["cpu_us"]:
            return None, "not measured"
        r = s["cpu_us"] / b["cpu_us"]
        return r, f"{s['cpu_us']:.1f} µs vs {b['cpu_us']:.1f} µs: {r:.2f}×"

    def ratio_row(target, workload, base_prog, limit):
        r, text = cpu_ratio(workload, base_prog)
        rows.append((target, text, None if r is None else r <= limit))

    ratio_row("cache miss, mixed: CPU per query ≤ 0.6× dnsmasq", "miss", "dnsmasq", 0.6)
    ratio_row("cache miss, mixed: CPU per query ≤ 3× the echo floor", "miss", "echo", 3.0)
    s, b = load(results, "oqsdns", "miss"), load(results, "dnsmasq", "miss")
    if s and b:
        rows.append((
            "cache miss, mixed: nothing lost at the highest rate dnsmasq sustains",
            f"{s['lost']:,.0f} lost of {s['sent']:,.0f} at {s['qps']:,.0f} q/s "
            f"(dnsmasq's highest: {b['qps']:,.0f} q/s)",
            s["lost"] == 0 and s["qps"] >= b["qps"],
        ))
    else:
        rows.append(("cache miss, mixed: nothing lost", "not measured", None))
    peaks = [
        (w, load(results, "oqsdns", w)) for w, _ in WORKLOADS if load(results, "oqsdns", w)
    ]
    if peaks:
        worst, st = max(peaks, key=lambda p: p[1]["rss_mib"] or 0)
        rows.append((
            "peak RSS ≤ 12 MiB in every workload (cache of 10,000)",
            f"highest {st['rss_mib']:.1f} MiB ({worst}; "
            + ", ".join(f"{w} {p['rss_mib']:.1f}" for w, p in peaks) + ")",
            all(p["rss_mib"] is not None and p["rss_mib"] <= 12 for _, p in peaks),
        ))
    ratio_row("cached: CPU per query ≤ 0.65× dnsmasq", "cached", "dnsmasq", 0.65)
    ratio_row("cached: CPU per query ≤ 1.2× the echo floor", "cached", "echo", 1.2)
    rows.append((
        "release binary ≤ 3 MiB stripped (x86_64)",
        f"{int(stripped):,} bytes ({int(stripped) / MIB:.2f} MiB)",
        int(stripped) <= SIZE_LIMIT,
    ))
    for target in CROSS:
        # Built by .ci/cross.sh (Debian's cross toolchains); reported, no target of their own.
        path = Path("target/cross") / target / "release" / "oqsdns"
        if path.exists():
            when = datetime.datetime.fromtimestamp(path.stat().st_mtime).strftime("%Y-%m-%d %H:%M")
            size = path.stat().st_size
            text = f"{size:,} bytes ({size / MIB:.2f} MiB), built by .ci/cross.sh at {when}"
        else:
            text = "not built here (`.ci/cross.sh` builds it)"
        rows.append((f"release binary, {target.split('-')[0]} (reported)", text, None))
    head = "| target | measured | |\n|---|---|---|\n"
    return head + "\n".join(f"| {t} | {m} | {mark(ok)} |" for t, m, ok in rows) + "\n"


def idle_table(results):
    rows = []
    for prog in PROGRAMS:
        path = results / f"{prog}.cached.idle"
        if path.exists() and path.read_text().strip():
            rows.append(f"| {prog} | {int(path.read_text()) / 1024:.1f} |")
    head = "| program | RSS at idle, MiB |\n|---|--:|\n"
    return head + "\n".join(rows) + "\n"


def failover_table(results):
    head = (
        "| program | trial | before the cut, answered by | cut → first answer from the alternate | "
        "last dig that stalled, sent at (cut +) | digs after the cut: failed / retried / all | "
        "slowest answered dig |\n"
        "|---|--:|---|--:|--:|--:|--:|\n"
    )
    rows = []
    trials = [(prog, t) for prog in PROGRAMS for t in range(1, 100)]
    for prog, trial in trials:
        base = results / f"{prog}.failtime{trial}"
        cut_file = Path(f"{base}.cut")
        if not cut_file.exists():
            continue
        cut = float(cut_file.read_text())
        pre = [line.strip().strip('"') for line in Path(f"{base}.pre").read_text().splitlines()]
        pre = [p for p in pre if p and not p.startswith(";;")]
        who = {}
        for p in pre:
            who[p.replace("nw-base-east-", "")] = who.get(p.replace("nw-base-east-", ""), 0) + 1
        post = []
        for line in Path(f"{base}.post").read_text().splitlines():
            i, start, end, answer = line.split(maxsplit=3)
            post.append((int(i), float(start), float(end), answer.strip()))
        answered = [p for p in post if "alternate" in p[3] or "primary" in p[3]]
        first = min((p[2] for p in answered if "alternate" in p[3]), default=None)
        # A dig that stalled: unanswered after its three tries, or answered only after a retry.
        failed = [p for p in post if p not in answered]
        retried = [p for p in answered if p[2] - p[1] > 1.0]
        last_stall = max((p[1] - cut for p in failed + retried), default=None)
        slowest = max((p[2] - p[1] for p in answered), default=None)
        rows.append(
            f"| {prog} | {trial} | {', '.join(f'{k} {v}' for k, v in sorted(who.items())) or '—'} "
            f"| {secs(None if first is None else first - cut)} "
            f"| {secs(last_stall)} "
            f"| {len(failed)} / {len(retried)} / {len(post)} | {secs(slowest)} |"
        )
    return head + "\n".join(rows) + "\n"


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def machine(results):
    cpu = next(
        (l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")),
        platform.processor(),
    )
    mem_kib = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal"))
    # The commit measured, and whether the daemon's code differed from it.
    commit_file = results / "commit"
    lines = commit_file.read_text().split("\n", 1) if commit_file.exists() else ["?", ""]
    commit = lines[0] + (" with uncommitted changes" if len(lines) > 1 and lines[1].strip() else "")
    versions = {
        "dnsperf": sh("dnsperf -h 2>&1 | sed -n 's/^Version //p'"),
        "dnsmasq": "dnsmasq " + sh("dnsmasq --version | head -1 | awk '{print $3}'"),
        "unbound": sh("unbound -V | sed -n 's/^Version //p'"),
        "knotd": sh("knotd -V | awk '{print $NF}'"),
    }
    return (
        f"- CPU: {os.cpu_count()} × {cpu} (`nproc` = {sh('nproc')})\n"
        f"{steal(results)}"
        f"- memory: {mem_kib / 1024 / 1024:.1f} GiB\n"
        f"- kernel: Linux {platform.release()}\n"
        f"- oqsdns: commit {commit}, "
        f"`cargo build --release`\n"
        f"- dnsperf {versions['dnsperf']}, {versions['dnsmasq']}, unbound {versions['unbound']}, "
        f"knotd {versions['knotd']}\n"
    )


def steal(results):
    """The line on the steal time over the runs (run.sh's steal.before and steal.after), if any."""
    try:
        (stolen0, all0), (stolen1, all1) = (
            map(int, (results / f"steal.{at}").read_text().split()) for at in ("before", "after")
        )
    except (OSError, ValueError):
        return ""
    if all1 <= all0:
        return ""
    share = 100 * (stolen1 - stolen0) / (all1 - all0)
    return (
        f"- steal time over the runs: {share:.1f} % of the CPUs' time (taken by the virtual "
        f"machine's host; the more there is, the more the ratios vary from run to run)\n"
    )


BEGIN = "<!-- bench/run.sh: results begin -->"
END = "<!-- bench/run.sh: results end -->"


def results_section(results, size, stripped, seconds, clients, outstanding, timeout):
    """The generated part of docs/PERFORMANCE.md: the run's tables, between the markers."""
    date_file = results / "date"
    now = (
        date_file.read_text().strip()
        if date_file.exists()
        else datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    )
    return f"""{BEGIN}
## Results

Run on {now}, on:

{machine(results)}
dnsperf: {seconds} s per run (`-l {seconds}`, and at most 30,000 passes over the 10-name file or one
pass over the 400,000 unique names), {clients} sockets or TCP connections (`-c {clients}`),
{outstanding} queries in flight (`-q {outstanding}`), a query unanswered after {timeout} s counts as
lost. Ratios are to dnsmasq in the same workload: above 1× is more queries/s, or more latency, CPU
or memory.

### Targets (issue 18)

{targets_table(results, stripped)}
### All runs

{results_table(results)}
**Workloads.** The mixed cache-miss run (`miss`) is the clinic's traffic: every other query an
internet name (`<n>.miss.example A`, through the rebinding filter), the others NW-base names
(`<n>.miss.<one of the six domains> AAAA`, four addresses each, to the NW-base pool). The second
cache-miss run (`missnet`) has internet names only. dnsmasq runs with OpenWrt's rebinding
protection (`stop-dns-rebind`, the split domains in `rebind-domain-ok`), unbound with
`private-address` and the split domains as `private-domain`; oqsdns with its default
(`rebind_protection = true`). The echo floor answers each query by sending it back (recvmmsg,
sendmmsg): the least a UDP server can do per query, in the same workload.

**Caches.** All three cache: oqsdns (10,000 answers by default), dnsmasq (its default, 150 names)
and unbound (4 MiB of messages and 4 MiB of RRsets) answer all but the first query of each cached
name from memory. The cache-miss run asks each name once, so every query goes upstream: the
like-for-like comparison of forwarding. The per-client rate limit of oqsdns stays on (set far above
dnsperf's rate, since dnsperf is one address) so its cost is measured.

**Failover.** In the failover run all UDP and TCP traffic to the NW-base primary
(2404:1a8:f583:d00::53:1) is dropped by nftables 30 % into the run, and every query is a unique
name under the six NW-base domains, so no cache hides the cut.

### Time to fail over

Each program started fresh, three times; five queries before the cut, then one query every 100 ms for 8 s
after it, each a unique `<n>.whoami.lineauth.mnw TXT` (TTL 0, answered by a wildcard that names
the server), sent by `dig +time=1 +tries=3` (a first retry after 1 s, like a Windows stub
resolver). Times are from the cut (nft returned): to the first answer naming the alternate, and
to the sending of the last dig that stalled (got no answer within 1 s, so a retry or nothing).

{failover_table(results)}
### Memory at idle

`VmRSS` of each program started fresh for the cached run, after the few `dig` queries that show
it answers and before dnsperf starts.

{idle_table(results)}
### Binary size

`target/release/oqsdns` (release profile: LTO, one codegen unit, `panic = "abort"`, stripped):
**{int(size):,} bytes** ({int(size) / 1024 / 1024:.2f} MiB); after `strip` again: {int(stripped):,} bytes.
{END}
"""


def main():
    """Prints the results section; with a file as the 8th argument, replaces that file's section
    between the markers instead, so the hand-written text around it stays."""
    results = Path(sys.argv[1])
    section = results_section(results, *sys.argv[2:8])
    if len(sys.argv) < 9:
        print(section, end="")
        return
    doc = Path(sys.argv[8])
    text = doc.read_text()
    if BEGIN not in text or END not in text:
        sys.exit(f"report.py: {doc} lacks the markers {BEGIN} / {END}")
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    doc.write_text(head + section.rstrip("\n") + tail)


if __name__ == "__main__":
    main()
