"""What the benchmark measured, and the medians over its rounds.

Shared by report.py (the BENCHMARKS.md table) and chart.py (docs/bench.svg),
so that both name and order scenarios and proxies the same way.
"""
import csv
import statistics

# id, label; the order of the table and the chart.
SCENARIOS = [
    ("a_small", "(a) small body"),
    ("b_16k", "(b) 16 KiB body"),
    ("c_admit", "(c) limits, all admitted"),
    ("d_reject", "(d) limits, all rejected (429)"),
    ("e_load_aware", "(e) load_aware balance"),
    ("f_slow_backend", "(f) one backend 10x slower"),
    ("g_redis", "(g) limits of (c) in Redis"),
    ("h_h2", "(h) HTTP/2 (h2c), streams"),
    ("i_grpc", "(i) gRPC unary (h2c)"),
]
PROXIES = [
    ("nginx", "nginx"),
    ("haproxy", "HAProxy"),
    ("pingora", "bare Pingora"),
    ("sluice", "sluice"),
    ("sluice_rr", "sluice round_robin"),
    ("sluice_lc", "sluice least_conn"),
    ("sluice_la", "sluice load_aware"),
]
# The status every response of a scenario must have.
EXPECTED_STATUS = {"d_reject": 429}

SCENARIO_LABEL = dict(SCENARIOS)
PROXY_LABEL = dict(PROXIES)


def load(path):
    """The rows of results.csv, numbers converted."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for key in ("rps", "p50_ms", "p75_ms", "p90_ms", "p99_ms", "proxy_cpu_pct"):
            row[key] = float(row[key])
        for key in ("round", "requests", "non_2xx", "socket_errors"):
            row[key] = int(row[key])
    return rows


def summarize(rows):
    """{(scenario, proxy): medians and totals over the rounds}, in table order."""
    groups = {}
    for row in rows:
        groups.setdefault((row["scenario"], row["proxy"]), []).append(row)
    out = {}
    for scenario, _ in SCENARIOS:
        for proxy, _ in PROXIES:
            runs = groups.get((scenario, proxy))
            if not runs:
                continue
            rps = [r["rps"] for r in runs]
            out[(scenario, proxy)] = {
                "rounds": len(runs),
                "rps": statistics.median(rps),
                "rps_min": min(rps),
                "rps_max": max(rps),
                "p50_ms": statistics.median(r["p50_ms"] for r in runs),
                "p90_ms": statistics.median(r["p90_ms"] for r in runs),
                "p99_ms": statistics.median(r["p99_ms"] for r in runs),
                "proxy_cpu_pct": statistics.median(r["proxy_cpu_pct"] for r in runs),
                "requests": sum(r["requests"] for r in runs),
                "non_2xx": sum(r["non_2xx"] for r in runs),
                "socket_errors": sum(r["socket_errors"] for r in runs),
            }
    return out
