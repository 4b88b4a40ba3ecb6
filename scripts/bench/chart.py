"""Draws docs/bench.svg from results.csv with the standard library only.

    chart.py RESULTS_CSV OUT_SVG

Two grouped bar charts, one above the other: median requests per second,
and median p99 latency, both by scenario (groups) and proxy (colours).
"""
import math
import sys
from xml.sax.saxutils import escape

from stats import PROXIES, SCENARIOS, load, summarize

COLOURS = {"nginx": "#009639", "haproxy": "#1f6fb2", "pingora": "#f38020", "sluice": "#7b3fa0",
           "sluice_rr": "#b08fd0", "sluice_lc": "#9a6cc4", "sluice_la": "#4b1f70"}
WIDTH, PANEL_H, TOP, LEFT, RIGHT, BOTTOM = 960, 300, 70, 80, 20, 60


def nice_ticks(top):
    """Round tick values from 0 to at least `top`."""
    if top <= 0:
        return [0, 1]
    raw = top / 5
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    return [i * step for i in range(int(math.ceil(top / step)) + 1)]


def fmt(value):
    if value == 0:
        return "0"
    if value >= 1000:
        return f"{value / 1000:.1f}k" if value < 100_000 else f"{value / 1000:.0f}k"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def text(x, y, s, size=12, anchor="middle", weight="normal", rotate=None):
    extra = f' transform="rotate({rotate} {x:.1f} {y:.1f})"' if rotate else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
            f'font-weight="{weight}"{extra}>{escape(s)}</text>')


def panel(summary, groups, key, title, y0):
    """One bar chart whose plot area starts at height y0."""
    out = [text(LEFT, y0 - 12, title, 14, "start", "bold")]
    plot_w = WIDTH - LEFT - RIGHT
    ticks = nice_ticks(max((s[key] for s in summary.values()), default=1))
    scale = PANEL_H / ticks[-1]
    for t in ticks:
        y = y0 + PANEL_H - t * scale
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" '
                   f'stroke="#ddd"/>')
        out.append(text(LEFT - 6, y + 4, fmt(t).replace(".0k", "k"), 11, "end"))
    group_w = plot_w / len(groups)
    for i, (scenario, label, proxies) in enumerate(groups):
        gx = LEFT + i * group_w
        bar_w = min(40, (group_w - 20) / len(proxies))
        start = gx + (group_w - bar_w * len(proxies)) / 2
        for j, proxy in enumerate(proxies):
            value = summary[(scenario, proxy)][key]
            h = value * scale
            x, y = start + j * bar_w, y0 + PANEL_H - h
            out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w - 2:.1f}" '
                       f'height="{h:.1f}" fill="{COLOURS[proxy]}"><title>{escape(proxy)}: '
                       f'{value:.3f}</title></rect>')
            out.append(text(x + bar_w / 2 - 1, y - 4, fmt(value), 10))
        out.append(text(gx + group_w / 2, y0 + PANEL_H + 18, label, 12))
    out.append(f'<line x1="{LEFT}" y1="{y0 + PANEL_H}" x2="{WIDTH - RIGHT}" '
               f'y2="{y0 + PANEL_H}" stroke="#333"/>')
    return out


def svg(summary):
    groups = []
    for scenario, label in SCENARIOS:
        proxies = [p for p, _ in PROXIES if (scenario, p) in summary]
        if proxies:
            groups.append((scenario, label, proxies))
    height = TOP + 2 * PANEL_H + BOTTOM + 40 + BOTTOM
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
           f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif">',
           f'<rect width="{WIDTH}" height="{height}" fill="white"/>']
    # Legend.
    x = LEFT
    for proxy, label in PROXIES:
        if any(p == proxy for _, p in summary):
            out.append(f'<rect x="{x}" y="14" width="14" height="14" fill="{COLOURS[proxy]}"/>')
            out.append(text(x + 20, 26, label, 13, "start"))
            x += 40 + 8 * len(label)
    out += panel(summary, groups, "rps", "Requests per second (median; higher is better)", TOP)
    out += panel(summary, groups, "p99_ms", "p99 latency, ms (median; lower is better)",
                 TOP + PANEL_H + BOTTOM + 40)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv):
    if len(argv) != 3:
        sys.exit("usage: chart.py RESULTS_CSV OUT_SVG")
    summary = summarize(load(argv[1]))
    if not summary:
        sys.exit("chart.py: no results to draw")
    with open(argv[2], "w") as f:
        f.write(svg(summary))


if __name__ == "__main__":
    main(sys.argv)
