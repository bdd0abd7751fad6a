"""An SVG chart of bench.py's issue-14 figures, written with the standard library only.

    python benchmarks/chart.py results.json benchmarks/chart.svg   # from a bench.py --json file

Three panels: per target, server CPU per call, p50 and throughput at 16 connections as
ratios to the stdlib floor (1.0, dashed), with the goals marked; the payload sizes' p50;
the cold path split (import, first tool, ensure()) against its 5 ms goal.
"""

from __future__ import annotations

import json
import sys
from typing import Any
from xml.sax.saxutils import escape

COLORS = {"cpu": "#4c78a8", "p50": "#f58518", "tput16": "#54a24b"}
NAMES = {"cpu": "server CPU / call", "p50": "p50 latency", "tput16": "throughput, 16 conns"}
GOALS = {"cpu": 0.7, "p50": 0.8, "tput16": 1.25}


def _text(x: float, y: float, text: str, size: int = 12, anchor: str = "start", weight: str = "normal") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" font-weight="{weight}"'
            f' font-family="sans-serif">{escape(text)}</text>')


def _rect(x: float, y: float, w: float, h: float, color: str) -> str:
    return f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{h:.1f}" fill="{color}"/>'


def _line(x1: float, y1: float, x2: float, y2: float, color: str = "#333", dash: str = "") -> str:
    extra = f' stroke-dasharray="{dash}"' if dash else ""
    return f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{color}"{extra}/>'


def render(goals: dict[str, Any], title: str = "") -> str:
    parts: list[str] = []
    add = parts.append
    width = 860
    left, scale_w = 150, 520
    y = 30
    add(_text(20, y, title or "loopback benchmark", 14, weight="bold"))
    y += 28
    add(_text(20, y, "Ratios to the stdlib http.server floor (1.0 = floor; shorter is better for CPU and p50, "
                     "longer for throughput)", 12))
    y += 14
    targets = [name for name in goals["ratios"] if name != "floor"]
    top = max(2.0, max(max(goals["ratios"][t].values()) for t in targets) * 1.05)
    scale = scale_w / top
    panel_top = y
    for name in targets:
        add(_text(left - 8, y + 27, name, 12, "end"))
        for key in ("cpu", "p50", "tput16"):
            value = goals["ratios"][name][key]
            add(_rect(left, y + 4, value * scale, 12, COLORS[key]))
            add(_text(left + value * scale + 4, y + 14, f"{value:.2f}x", 10))
            y += 14
        y += 12
    add(_line(left + scale, panel_top, left + scale, y, "#000", "4,3"))
    for key, goal in GOALS.items():
        add(_line(left + goal * scale, panel_top, left + goal * scale, y, COLORS[key], "2,2"))
    add(_line(left, panel_top, left, y))
    for tick in range(0, int(top) + 1):
        add(_text(left + tick * scale, y + 14, f"{tick}x", 10, "middle"))
    y += 28
    x = left
    for key in ("cpu", "p50", "tput16"):
        add(_rect(x, y - 10, 12, 12, COLORS[key]))
        add(_text(x + 16, y, f"{NAMES[key]} (goal {GOALS[key]:g}x, dotted)", 11))
        x += 230
    y += 30

    add(_text(20, y, "Payload p50, ms (a '-> str' tool: the text is content and structuredContent; goal for 1 MB: 3 ms)", 12))
    y += 10
    payloads = goals["payloads"]
    top_ms = max(4.0, max(p["p50_ms"] for p in payloads.values()) * 1.05)
    ms_scale = scale_w / top_ms
    for label, p in payloads.items():
        add(_text(left - 8, y + 14, label, 12, "end"))
        add(_rect(left, y + 4, p["p50_ms"] * ms_scale, 14, "#72b7b2"))
        add(_text(left + p["p50_ms"] * ms_scale + 4, y + 15, f"{p['p50_ms']:.2f} ms", 10))
        y += 20
    add(_line(left + 3 * ms_scale, y - 60, left + 3 * ms_scale, y, "#e45756", "2,2"))
    y += 24

    cold = goals["cold"]
    add(_text(20, y, "Cold path in a fresh process, ms (goal: 5 ms in all)", 12))
    y += 10
    top_cold = max(6.0, cold["total_ms"] * 1.05)
    c_scale = scale_w / top_cold
    x = left
    add(_text(left - 8, y + 14, "cold start", 12, "end"))
    for key, color, label in (("import_ms", "#b279a2", "import"), ("first_tool_ms", "#ff9da6", "first tool"),
                              ("ensure_ms", "#9d755d", "ensure()")):
        add(_rect(x, y + 4, cold[key] * c_scale, 14, color))
        add(_text(x + 2, y + 32, f"{label} {cold[key]:.2f}", 10))
        x += cold[key] * c_scale
    add(_line(left + 5 * c_scale, y, left + 5 * c_scale, y + 22, "#e45756", "2,2"))
    y += 50
    burst = goals["burst"]["loopback"]
    add(_text(20, y, f"Burst of connects: {burst['answered']} answered, slowest {burst['max_ms']:.1f} ms, "
                     f"longest stall with no answer {burst['stall_ms']:.1f} ms (goal: no stall over 50 ms)", 12))
    y += 20
    body = "\n".join(parts)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y}" viewBox="0 0 {width} {y}">\n'
            f'<rect width="100%" height="100%" fill="white"/>\n{body}\n</svg>\n')


def write_svg(path: str, goals: dict[str, Any], title: str = "") -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(render(goals, title))


if __name__ == "__main__":
    document = json.load(open(sys.argv[1], encoding="utf-8"))
    machine = document.get("machine", {})
    write_svg(sys.argv[2], document["goals"],
              title=f"loopback {machine.get('loopback_version', '')}, {machine.get('date', '')}")
