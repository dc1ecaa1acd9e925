"""Inline SVG charts for the HTML report: no JavaScript, no external assets."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
DURATION_STEPS = [s * 1000 for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600,
                                     43200, 86400, 172800, 345600, 604800, 1209600)]
W, H, LEFT, RIGHT, TOP, BOTTOM = 820, 300, 80, 170, 34, 46


@dataclass(frozen=True)
class Series:
    name: str
    color: str
    points: Sequence[tuple[float, float]]  # (x, y), x ascending
    dashed: bool = False


def nice_step(top: float, steps: Sequence[float], ticks: int = 5) -> float:
    """The smallest step of `steps` that covers `top` in at most `ticks` ticks."""
    for step in steps:
        if top / step <= ticks:
            return step
    return steps[-1] * (1 + int(top / steps[-1] / ticks))


def _svg(title: str, body: list[str], height: int = H) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {height}" width="{W}" height="{height}" '
            f'role="img" aria-label="{escape(title)}" font-family="sans-serif" font-size="11">'
            f'<text x="{LEFT}" y="18" font-size="14" font-weight="bold">{escape(title)}</text>'
            + "".join(body) + "</svg>")


def _legend(entries: Sequence[tuple[str, str, bool]], x: float) -> list[str]:
    out = []
    for i, (name, color, dashed) in enumerate(entries):
        y = TOP + 14 + i * 18
        dash = ' stroke-dasharray="5,3"' if dashed else ""
        out.append(f'<line x1="{x}" y1="{y - 4}" x2="{x + 22}" y2="{y - 4}" stroke="{color}" stroke-width="2.5"{dash}/>'
                   f'<text x="{x + 28}" y="{y}">{escape(name)}</text>')
    return out


def _y_axis(top: float, step: float, fmt: Callable[[float], str], height: int = H) -> tuple[list[str], float]:
    """Grid lines and labels from 0 to the first tick >= top; returns (elements, axis max)."""
    ticks = max(1, -int(-top // step))
    axis_max, plot_h, out = ticks * step, height - TOP - BOTTOM, []
    for i in range(ticks + 1):
        y = height - BOTTOM - plot_h * i / ticks
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{W - RIGHT}" y2="{y:.1f}" stroke="#ddd"/>'
                   f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(fmt(i * step))}</text>')
    return out, axis_max


def line_chart(title: str, series: Sequence[Series], x_fmt: Callable[[float], str],
               y_fmt: Callable[[float], str], y_steps: Sequence[float] = DURATION_STEPS,
               x_ticks: Sequence[float] | None = None) -> str:
    """Lines with dots over a shared x axis; y from 0. Six evenly spaced x ticks unless `x_ticks`
    names them (an ordinal axis: one tick per run)."""
    xs = sorted({x for s in series for x, _ in s.points})
    ys = [y for s in series for _, y in s.points]
    if not xs:
        return _svg(title, [f'<text x="{LEFT}" y="{H / 2}">no data</text>'])
    lo, hi = xs[0], xs[-1] if xs[-1] > xs[0] else xs[0] + 1
    top = max(ys) or 1
    body, axis_max = _y_axis(top, nice_step(top, y_steps), y_fmt)
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + (plot_w * (x - lo) / (hi - lo) if len(xs) > 1 else plot_w / 2)

    def py(y: float) -> float:
        return H - BOTTOM - plot_h * y / axis_max

    ticks = list(x_ticks) if x_ticks is not None else [lo + (hi - lo) * k / 5 for k in range(6)] if len(xs) > 1 else xs
    for x in ticks:
        body.append(f'<text x="{px(x):.1f}" y="{H - BOTTOM + 16}" text-anchor="middle">{escape(x_fmt(x))}</text>')
    for s in series:
        pts = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in s.points)
        dash = ' stroke-dasharray="5,3"' if s.dashed else ""
        body.append(f'<polyline points="{pts}" fill="none" stroke="{s.color}" stroke-width="2"{dash}/>')
        body += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5" fill="{s.color}">'
                 f'<title>{escape(s.name)} {escape(x_fmt(x))}: {escape(y_fmt(y))}</title></circle>' for x, y in s.points]
    body += _legend([(s.name, s.color, s.dashed) for s in series], W - RIGHT + 14)
    body.append(f'<line x1="{LEFT}" y1="{H - BOTTOM}" x2="{W - RIGHT}" y2="{H - BOTTOM}" stroke="#888"/>')
    return _svg(title, body)


def bar_chart(title: str, groups: Sequence[str], names: Sequence[str], values: dict[tuple[str, str], float],
              colors: Sequence[str] = PALETTE) -> str:
    """Grouped bars of shares in [0, 1] (labelled in %): one group per entry of `groups`, one bar per name."""
    if not groups:
        return _svg(title, [f'<text x="{LEFT}" y="{H / 2}">no data</text>'])
    body, _ = _y_axis(1.0, 0.25, lambda v: f"{100 * v:.0f} %")
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    group_w = plot_w / len(groups)
    bar_w = group_w * 0.8 / max(1, len(names))
    for gi, group in enumerate(groups):
        x0 = LEFT + gi * group_w + group_w * 0.1
        body.append(f'<text x="{x0 + group_w * 0.4:.1f}" y="{H - BOTTOM + 16}" text-anchor="middle">'
                    f'{escape(group)}</text>')
        for ni, name in enumerate(names):
            if (group, name) not in values:
                continue
            v = max(0.0, min(1.0, values[(group, name)]))
            x, h = x0 + ni * bar_w, plot_h * v
            body.append(f'<rect x="{x:.1f}" y="{H - BOTTOM - h:.1f}" width="{bar_w - 2:.1f}" height="{h:.1f}" '
                        f'fill="{colors[ni % len(colors)]}"><title>{escape(group)} {escape(name)}: '
                        f'{100 * v:.1f} %</title></rect>'
                        f'<text x="{x + bar_w / 2 - 1:.1f}" y="{H - BOTTOM - h - 3:.1f}" text-anchor="middle" '
                        f'font-size="9">{100 * v:.0f}</text>')
    body += _legend([(n, colors[i % len(colors)], False) for i, n in enumerate(names)], W - RIGHT + 14)
    body.append(f'<line x1="{LEFT}" y1="{H - BOTTOM}" x2="{W - RIGHT}" y2="{H - BOTTOM}" stroke="#888"/>')
    return _svg(title, body)
