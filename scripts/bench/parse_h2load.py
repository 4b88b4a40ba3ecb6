"""Turns one h2load run into one CSV row of results.csv (the columns of
parse_wrk.py).

    parse_h2load.py H2LOAD_OUTPUT H2LOAD_LOG ROUND SCENARIO PROXY PROXY_CPU_PCT

h2load prints no percentiles, so they come from its `--log-file`: one line
per request, `start (us since the epoch) TAB status TAB duration (us)`.
Requests per second is h2load's own `finished in ..., N req/s`. Failed,
errored and timed-out requests count as socket errors, as wrk's do.
Exits non-zero when the output has no `finished in` line (h2load failed).
"""
import re
import sys

from parse_wrk import COLUMNS


def percentile(sorted_values, pct):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return 0.0
    rank = max(1, -(-len(sorted_values) * pct // 100))
    return sorted_values[int(rank) - 1]


def parse(text, log_lines):
    out = {}
    finished = re.search(r"^finished in [^,]+, ([0-9.]+) req/s", text, re.M)
    if not finished:
        raise ValueError("no `finished in` line: h2load did not finish")
    out["rps"] = float(finished.group(1))
    requests = re.search(
        r"^requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, "
        r"(\d+) errored, (\d+) timeout", text, re.M)
    if not requests:
        raise ValueError("no `requests:` line")
    done, failed, errored, timeout = (int(requests.group(i)) for i in (2, 4, 5, 6))
    statuses = re.search(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text, re.M)
    ok = int(statuses.group(1)) if statuses else 0
    out["requests"] = done
    # h2load can count a response whose request it then calls errored.
    out["non_2xx"] = max(0, done - ok)
    # `failed` counts non-2xx answers too; only the rest are transport errors.
    out["socket_errors"] = max(0, failed - out["non_2xx"]) + errored + timeout
    durations = []
    for line in log_lines:
        fields = line.split("\t")
        if len(fields) == 3 and fields[2].strip().isdigit():
            durations.append(int(fields[2]) / 1000.0)
    if not durations:
        raise ValueError("the --log-file holds no requests")
    durations.sort()
    for pct in (50, 75, 90, 99):
        out[f"p{pct}_ms"] = percentile(durations, pct)
    return out


def main(argv):
    if len(argv) != 7:
        sys.exit("usage: parse_h2load.py H2LOAD_OUTPUT H2LOAD_LOG ROUND SCENARIO PROXY PROXY_CPU_PCT")
    with open(argv[1]) as f:
        text = f.read()
    with open(argv[2]) as f:
        log_lines = f.readlines()
    try:
        numbers = parse(text, log_lines)
    except ValueError as e:
        sys.exit(f"{argv[1]}: {e}")
    row = {"round": argv[3], "scenario": argv[4], "proxy": argv[5], **numbers,
           "proxy_cpu_pct": float(argv[6])}
    print(",".join(
        f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in COLUMNS))


if __name__ == "__main__":
    main(sys.argv)
