"""Draws bench/peers.sh's results as an SVG bar chart, by hand, with the standard library only.

Why by hand: the chart goes into the repository (docs/bench-peers.svg) and is regenerated from
any run's JSON on any machine, so it must not need matplotlib or a browser. Two panels of
horizontal bars, one bar per contender: rows per second once running (higher is better), and
CPU seconds per 100,000 rows (lower is better), the contender's own process beside PostgreSQL's
(the backends of its own connections; COPY's work is all PostgreSQL's). Values are printed at the
bars, on a linear scale, so that a short bar is as short as the figure is small.

Usage: peers_chart.py RESULTS_JSON OUT_SVG
"""

import json
import sys
from xml.sax.saxutils import escape

WIDTH, LABEL_W, BAR_W, ROW_H, PAD = 900, 330, 440, 26, 20
OURS, PEER, PG = "#1f77b4", "#9aa5b1", "#f2b134"


def text(x: float, y: float, body: str, **attrs) -> str:
    extra = " ".join(f'{k.replace("_", "-")}="{v}"' for k, v in attrs.items())
    return f'<text x="{x:.1f}" y="{y:.1f}" {extra}>{escape(body)}</text>'


def bar(x: float, y: float, w: float, h: float, colour: str) -> str:
    return f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 1):.1f}" height="{h:.1f}" fill="{colour}"/>'


def panel(title: str, runs: list, series: list, top: float, unit: str) -> tuple:
    """series: (key, colour, legend) per bar in a row. Returns (svg parts, height)."""
    parts = [text(PAD, top + 16, title, font_size=15, font_weight="bold")]
    values = [r.get(key) or 0 for r in runs for key, _, _ in series]
    scale = BAR_W / max(max(values), 1e-9)
    h = (ROW_H - 6) / len(series)
    y = top + 30
    for run in runs:
        parts.append(text(PAD, y + ROW_H / 2 + 1, run["label"], font_size=12, dominant_baseline="middle"))
        for i, (key, colour, _) in enumerate(series):
            value = run.get(key)
            if value is None:
                parts.append(text(LABEL_W, y + i * h + h / 2 + 1, "n/a", font_size=11, dominant_baseline="middle"))
                continue
            fill = OURS if run["kind"] == "ledger" and colour == PEER else colour
            parts.append(bar(LABEL_W, y + i * h, value * scale, h - 1, fill))
            parts.append(text(LABEL_W + value * scale + 5, y + i * h + h / 2 + 1, f"{value:,.{unit}f}",
                              font_size=11, dominant_baseline="middle"))
        y += ROW_H
    if len(series) > 1:
        x = LABEL_W
        for _, colour, legend in series:
            parts.append(bar(x, y + 4, 12, 12, colour))
            parts.append(text(x + 16, y + 14, legend, font_size=11))
            x += 22 + 7 * len(legend)
        y += 20
    return parts, y - top + 10


def chart(data: dict) -> str:
    runs = data["runs"]
    meta = data.get("meta", {})
    title = (f"bench-peers: {int(meta.get('records', 0)):,} transactions, 3 partitions, 2 cores "
             f"({meta.get('date', '')[:10]}); the ledger in blue")
    parts = [text(PAD, 24, title, font_size=16, font_weight="bold")]
    rate, h1 = panel("rows/s once running (first row visible to last), higher is better", runs,
                     [("rows_per_s_running", PEER, "rows/s")], 40, "0")
    cpu, h2 = panel("CPU seconds per 100,000 rows (from process start), lower is better", runs,
                    [("cpu_s_per_100k", PEER, "the contender's process"),
                     ("pg_cpu_s_per_100k", PG, "PostgreSQL (its backends)")], 40 + h1 + 10, "2")
    height = 40 + h1 + 10 + h2 + PAD
    body = "\n".join(parts + rate + cpu)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0f}" '
            f'viewBox="0 0 {WIDTH} {height:.0f}" font-family="sans-serif">\n'
            f'<rect width="100%" height="100%" fill="white"/>\n{body}\n</svg>\n')


def main(argv: list) -> None:
    if len(argv) != 2:
        raise SystemExit(__doc__)
    with open(argv[0]) as f:
        data = json.load(f)
    with open(argv[1], "w") as f:
        f.write(chart(data))


if __name__ == "__main__":
    main(sys.argv[1:])
