"""Writes the benchmark section of BENCHMARKS.md from results.csv.

    report.py RESULTS_CSV META_FILE BENCHMARKS_MD CHART_PATH

Only the text between `<!-- bench.sh:begin -->` and `<!-- bench.sh:end -->`
is replaced, so sections other people write in the same file survive a
re-run; a missing file is created, a file without the markers gets the
section appended. META_FILE holds `key=value` lines written by bench.sh
(machine, versions, method); `note=` may repeat.
"""
import os
import sys

from stats import EXPECTED_STATUS, PROXY_LABEL, SCENARIO_LABEL, load, summarize

# Below this share of its one core, the proxy was not what limited the run.
SATURATED_CPU_PCT = 85

BEGIN = "<!-- bench.sh:begin -->"
END = "<!-- bench.sh:end -->"


def read_meta(path):
    meta, notes = {}, []
    with open(path) as f:
        for line in f:
            key, _, value = line.rstrip("\n").partition("=")
            if key == "note":
                notes.append(value)
            elif key:
                meta[key] = value
    return meta, notes


def ratio(value, base):
    return f"{value / base:.2f}" if base else "–"


def table(summary):
    """The results table, and a warning for every run that saw unexpected answers."""
    lines = [
        "| Scenario | Proxy | req/s (median) | req/s min – max | p50 ms | p90 ms | p99 ms "
        "| proxy CPU % | vs nginx | vs sluice (a) |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    warnings, unsaturated = [], []
    for (scenario, proxy), s in summary.items():
        # (a) and (b) compare with nginx on the same scenario; the sluice-only
        # scenarios with nginx's (a), the same request without limits, and with
        # sluice's own (a), which tells what the feature costs.
        own = ("a_small", "b_16k", "h_h2", "i_grpc")
        base = "a_small" if scenario not in own else scenario
        nginx = summary.get((base, "nginx"))
        vs_nginx = ratio(s["rps"], nginx["rps"]) if nginx else "–"
        if base != scenario and nginx:
            vs_nginx += " ¹"
        sluice_a = summary.get(("a_small", "sluice"))
        vs_sluice = "–"
        if sluice_a and proxy.startswith("sluice") and scenario not in own:
            vs_sluice = ratio(s["rps"], sluice_a["rps"])
        lines.append(
            f"| {SCENARIO_LABEL[scenario]} | {PROXY_LABEL[proxy]} | {s['rps']:,.0f} "
            f"| {s['rps_min']:,.0f} – {s['rps_max']:,.0f} | {s['p50_ms']:.2f} "
            f"| {s['p90_ms']:.2f} | {s['p99_ms']:.2f} | {s['proxy_cpu_pct']:.0f} | {vs_nginx} | {vs_sluice} |")
        expected = EXPECTED_STATUS.get(scenario, 200)
        unexpected = s["non_2xx"] if expected < 300 else s["requests"] - s["non_2xx"]
        if unexpected:
            warnings.append(
                f"{SCENARIO_LABEL[scenario]}, {PROXY_LABEL[proxy]}: {unexpected} of "
                f"{s['requests']} responses were not {expected}")
        if s["proxy_cpu_pct"] < SATURATED_CPU_PCT:
            unsaturated.append(
                f"{SCENARIO_LABEL[scenario][:3]} {PROXY_LABEL[proxy]} "
                f"{s['proxy_cpu_pct']:.0f}%")
        if s["socket_errors"]:
            warnings.append(
                f"{SCENARIO_LABEL[scenario]}, {PROXY_LABEL[proxy]}: "
                f"{s['socket_errors']} socket errors")
    if unsaturated:
        warnings.append(
            f"Below {SATURATED_CPU_PCT}% of its core: {', '.join(unsaturated)}. In those runs "
            "something else (wrk, the backends, or other load on the machine) set the "
            "pace, so their requests per second understate the proxy.")
    return lines, warnings


def load_line(meta):
    """How busy the machine was, if the run recorded it (older runs did not)."""
    if "load_start" not in meta:
        return []
    return [
        f"- Load average (1, 5, 15 min) when the run began: {meta['load_start']}; when it "
        f"ended: {meta.get('load_end', '?')}. Well above 0 means other work shared the "
        "machine and every number is lower than on a quiet one."
    ]


def section(summary, meta, notes, chart):
    lines, warnings = table(summary)
    m = meta.get
    out = [
        BEGIN,
        "## Proxy throughput and latency",
        "",
        f"Written by `scripts/bench.sh` on {m('date', '?')}; re-run it rather than editing "
        "this section. Raw numbers of every round: `target/bench/results.csv`.",
        "",
        f"![Requests per second and p99 latency by proxy and scenario]({chart})",
        "",
        *lines,
        "",
        "Medians over the rounds. *proxy CPU %*: CPU time the proxy's processes used "
        "during the run, per wall-clock second; near 100 means the one-core proxy was the "
        "bottleneck, much lower means the load generator or the backends were. "
        "*vs nginx*: requests per second divided by nginx's in the same run and scenario "
        "(¹: in scenario (a), the same request without limits). "
        "*vs sluice (a)*: divided by sluice's own (a), which is what admission control "
        "or the balancer costs.",
        "",
    ]
    if warnings or notes:
        out += ["Notes:", ""]
        out += [f"- {w}" for w in warnings + notes]
        out.append("")
    out += [
        "### Machine and versions",
        "",
        f"- CPU: {m('cpu', '?')}, {m('nproc', '?')} cores; kernel {m('kernel', '?')}",
        *load_line(meta),
        f"- {m('nginx', 'nginx ?')}; {m('haproxy', 'HAProxy ?')}; {m('wrk', 'wrk ?')}; "
        f"{m('h2load', 'h2load ?')}",
        f"- {m('rustc', 'rustc ?')}; Pingora {m('pingora', '?')}; sluice {m('sluice', '?')}",
        "",
        "### Method",
        "",
        "- Everything on loopback (127.0.0.1), ports picked free at run time, in front of "
        f"two `sluice-echo` backends. Every scenario requests `{m('small_path', '?')}` "
        f"(a 128-byte body) except (b), `{m('large_path', '?')}`.",
        f"- Pinning: {m('pinning', '?')}.",
        "- Every proxy with one worker: nginx `worker_processes 1` (upstream `keepalive 64`, "
        "HTTP/1.1, `access_log off`); HAProxy `nbthread 1`, `http-reuse always`; bare "
        "Pingora (`examples/bare_pingora.rs`, Pingora's load balancer example without TLS "
        "or health checks) and sluice with `threads: 1`, "
        f"`work_stealing: {m('work_stealing', '?')}` ({m('work_stealing_why', '')}). "
        f"Both Rust proxies use {m('allocator', '?')}, as sluice's `main` does.",
        "- sluice: one route, `round_robin` over both backends, no health checks (nor do "
        "the others check). (c) a token bucket per client IP and a sliding window per "
        "`x-api-key` header (sent by wrk), both large enough to admit everything; (d) a "
        "token bucket of capacity 1 that refills every ~11 days, so every answer is 429; "
        "(e) the same as (a) with `balance: load_aware`.",
        f"- Load: `wrk -t{m('wrk_threads', '?')} -c{m('connections', '?')} "
        f"-d{m('duration', '?')} --latency`, rounds: {m('rounds', '?')}; each round runs "
        "every scenario and proxy in turn (nginx, HAProxy, bare Pingora, sluice, then "
        "again), so slow drift of the machine hits all of them alike. Every proxy is "
        "started once and stays up, idle, while the others are measured. Before every "
        "measurement curl checks that the proxy answers with the expected status.",
        f"- (h): `h2load -c{m('h2_connections', '?')} -m{m('h2_streams', '?')} "
        f"-D{m('duration', '?')}`, HTTP/2 with prior knowledge (h2c) to nginx "
        "(`http2` listener), bare Pingora (`h2c`) and sluice (`h2c: true`), HTTP/1.1 "
        "from each to the backends; percentiles from h2load's per-request log. HAProxy "
        "is left out of (h). (i): the same h2load shape sending gRPC unary calls "
        "(`grpc.health.v1.Health/Check`, an empty request) through nginx (`grpc_pass`), "
        "bare Pingora and sluice, h2c on both sides, to two tonic backends "
        "(`examples/grpc_backend.rs`).",
        END,
    ]
    return "\n".join(out) + "\n"


def splice(existing, new_section):
    """Replaces the marked section of `existing`, or appends one."""
    begin, end = existing.find(BEGIN), existing.find(END)
    if begin != -1 and end > begin:
        return existing[:begin] + new_section.rstrip("\n") + existing[end + len(END):]
    if not existing:
        return "# Benchmarks\n\n" + new_section
    return existing.rstrip("\n") + "\n\n" + new_section


def main(argv):
    if len(argv) != 5:
        sys.exit("usage: report.py RESULTS_CSV META_FILE BENCHMARKS_MD CHART_PATH")
    csv_path, meta_path, md_path, chart = argv[1:]
    summary = summarize(load(csv_path))
    meta, notes = read_meta(meta_path)
    existing = ""
    if os.path.exists(md_path):
        with open(md_path) as f:
            existing = f.read()
    text = splice(existing, section(summary, meta, notes, chart))
    with open(md_path + ".tmp", "w") as f:
        f.write(text)
    os.replace(md_path + ".tmp", md_path)
    lines, warnings = table(summary)
    print("\n".join(lines + [f"warning: {w}" for w in warnings]))


if __name__ == "__main__":
    main(sys.argv)
