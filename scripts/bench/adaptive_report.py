"""Chart and BENCHMARKS.md section for scripts/bench-adaptive.sh.

    adaptive_report.py RESULTS_CSV BENCHMARKS_MD CHART_SVG META

Draws goodput and p99 against offered load (one line per configuration) as
an SVG without any plotting library, and replaces the text between
`<!-- bench-adaptive.sh:begin -->` and `<!-- bench-adaptive.sh:end -->`.
"""
import csv
import os
import sys

BEGIN = "<!-- bench-adaptive.sh:begin -->"
END = "<!-- bench-adaptive.sh:end -->"
COLORS = {"no limit": "#c0392b", "static max 8": "#7f8c8d", "adaptive": "#2471a3"}


def load(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["clients"] = int(r["clients"])
        for k in ("goodput", "p99_ms", "refused_per_s"):
            r[k] = float(r[k])
    return rows


def panel(rows, key, title, x0, width, height, log_y=False):
    import math

    configs = list(dict.fromkeys(r["config"] for r in rows))
    loads = sorted({r["clients"] for r in rows})
    values = [r[key] for r in rows]
    top = max(values) * 1.1 or 1
    lo = min(v for v in values if v > 0) if log_y else 0
    fy = (lambda v: math.log10(max(v, lo))) if log_y else (lambda v: v)
    ymin, ymax = (fy(lo) - 0.05, fy(top)) if log_y else (0, top)

    def px(i):
        return x0 + 50 + i * (width - 70) / max(len(loads) - 1, 1)

    def py(v):
        return 30 + (height - 70) * (1 - (fy(v) - ymin) / (ymax - ymin or 1))

    out = [f'<text x="{x0 + width / 2}" y="18" text-anchor="middle" font-weight="bold">{title}</text>']
    out.append(f'<line x1="{x0 + 50}" y1="{height - 40}" x2="{x0 + width - 20}" y2="{height - 40}" stroke="#999"/>')
    out.append(f'<line x1="{x0 + 50}" y1="30" x2="{x0 + 50}" y2="{height - 40}" stroke="#999"/>')
    for i, c in enumerate(loads):
        out.append(f'<text x="{px(i)}" y="{height - 24}" text-anchor="middle" font-size="11">{c}</text>')
    out.append(f'<text x="{x0 + width / 2}" y="{height - 6}" text-anchor="middle" font-size="11">clients (offered load)</text>')
    for frac in (0, 0.5, 1):
        v = lo * (top / lo) ** frac if log_y else top * frac
        out.append(f'<text x="{x0 + 45}" y="{py(v) + 4}" text-anchor="end" font-size="10">{v:.0f}</text>')
    for cfg in configs:
        pts = [(px(loads.index(r["clients"])), py(r[key])) for r in rows if r["config"] == cfg]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
        out.append(f'<polyline fill="none" stroke="{COLORS.get(cfg, "#000")}" stroke-width="2" points="{path}"/>')
    return out


def chart(rows, path):
    w, h = 420, 260
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * w}" height="{h + 24}" font-family="sans-serif" font-size="12">']
    parts.append('<rect width="100%" height="100%" fill="white"/>')
    parts += panel(rows, "goodput", "goodput (ok/s; capacity 400)", 0, w, h)
    parts += panel(rows, "p99_ms", "p99 of successful requests (ms, log)", w, w, h, log_y=True)
    x = 60
    for cfg, color in COLORS.items():
        parts.append(f'<rect x="{x}" y="{h + 8}" width="12" height="12" fill="{color}"/>')
        parts.append(f'<text x="{x + 16}" y="{h + 18}">{cfg}</text>')
        x += 140
    parts.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(parts) + "\n")


def section(rows, chart_path, meta):
    lines = [BEGIN, "", "### Adaptive concurrency: goodput and p99 against offered load", ""]
    lines.append(
        "In front of a backend of fixed capacity (8 workers of 20 ms, a FIFO queue beyond: "
        "400 requests/s), one release gateway with `threads: 1`, per configuration. "
        "Offered load is N closed-loop clients; a refused client waits 50 ms. Each point is "
        "5 s after 3 s of warm-up; latency is the client's, of successful requests. "
        f"Run: {meta}. Reproduce with `scripts/bench-adaptive.sh`."
    )
    lines += ["", f"![goodput and p99 against offered load]({chart_path})", ""]
    lines.append("| clients | " + " | ".join(f"{c} ok/s | {c} p99 ms" for c in dict.fromkeys(r["config"] for r in rows)) + " |")
    configs = list(dict.fromkeys(r["config"] for r in rows))
    lines.append("|--:|" + "--:|--:|" * len(configs))
    for n in sorted({r["clients"] for r in rows}):
        cells = []
        for c in configs:
            r = next((r for r in rows if r["config"] == c and r["clients"] == n), None)
            cells += [f"{r['goodput']:.0f}", f"{r['p99_ms']:.1f}"] if r else ["–", "–"]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines += ["", END]
    return "\n".join(lines)


def main():
    results, md, svg, meta = sys.argv[1:5]
    rows = load(results)
    chart(rows, svg)
    text = open(md).read() if os.path.exists(md) else ""
    new = section(rows, os.path.relpath(svg, os.path.dirname(md) or "."), meta)
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + new + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + new + "\n"
    with open(md, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
