"""Turns one `wrk --latency` output into one CSV row of results.csv.

    parse_wrk.py WRK_OUTPUT ROUND SCENARIO PROXY PROXY_CPU_PCT  ->  prints the row
    parse_wrk.py --header                                        ->  the column names

PROXY_CPU_PCT is measured by bench.sh (proc_cpu.py) and passed through.

wrk prints latencies with a unit chosen per value (`812.00us`, `1.20ms`,
`2.01s`, even `1.00m`); every latency is normalised to milliseconds here.
Exits non-zero when the output has no `Requests/sec:` line (wrk failed).
"""
import re
import sys

COLUMNS = [
    "round", "scenario", "proxy", "rps", "p50_ms", "p75_ms", "p90_ms", "p99_ms",
    "requests", "non_2xx", "socket_errors", "proxy_cpu_pct",
]

TO_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
NUMBER_UNIT = re.compile(r"^([0-9.]+)(us|ms|s|m|h)$")


def latency_ms(text):
    match = NUMBER_UNIT.match(text.strip())
    if not match:
        raise ValueError(f"not a wrk latency: {text!r}")
    return float(match.group(1)) * TO_MS[match.group(2)]


def parse(text):
    """Returns a dict of the numbers in one wrk output (latencies in ms)."""
    out = {"non_2xx": 0, "socket_errors": 0}
    rps = re.search(r"^Requests/sec:\s*([0-9.]+)", text, re.M)
    if not rps:
        raise ValueError("no `Requests/sec:` line: wrk did not finish")
    out["rps"] = float(rps.group(1))
    for pct in ("50", "75", "90", "99"):
        line = re.search(rf"^\s*{pct}(?:\.0+)?%\s+(\S+)\s*$", text, re.M)
        if not line:
            raise ValueError(f"no {pct}% latency line: was wrk run with --latency?")
        out[f"p{pct}_ms"] = latency_ms(line.group(1))
    total = re.search(r"^\s*(\d+) requests in ", text, re.M)
    out["requests"] = int(total.group(1)) if total else 0
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    if non_2xx:
        out["non_2xx"] = int(non_2xx.group(1))
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if errors:
        out["socket_errors"] = sum(int(n) for n in errors.groups())
    return out


def main(argv):
    if argv[1:] == ["--header"]:
        print(",".join(COLUMNS))
        return
    if len(argv) != 6:
        sys.exit("usage: parse_wrk.py WRK_OUTPUT ROUND SCENARIO PROXY PROXY_CPU_PCT")
    with open(argv[1]) as f:
        text = f.read()
    try:
        numbers = parse(text)
    except ValueError as e:
        sys.exit(f"{argv[1]}: {e}")
    row = {"round": argv[2], "scenario": argv[3], "proxy": argv[4], **numbers,
           "proxy_cpu_pct": float(argv[5])}
    print(",".join(
        f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in COLUMNS))


if __name__ == "__main__":
    main(sys.argv)
