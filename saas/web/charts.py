"""Server-rendered SVG charts for /finance: the geometry here, the markup in templates/finance/_charts.html.

No JavaScript: the page is readable as sent, and each chart has its numbers as a table beside it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from billing.finance_history import MOVEMENT_KINDS, Month
from saas.core.formatting import money

WIDTH, HEIGHT = 720, 260
NARROW = 360  # a second drawing for phones (CSS shows one): the same 12px labels, every third month named
LEFT, RIGHT, TOP, BOTTOM = 88, 12, 14, 30  # room for the axis labels
KIND_LABELS = {"new": "New", "expansion": "Expansion", "reactivation": "Reactivation",
               "contraction": "Contraction", "churn": "Churn", "recovered": "Recovered"}


@dataclass
class Chart:
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    y_ticks: list[tuple[float, str]] = field(default_factory=list)
    x_labels: list[tuple[float, str]] = field(default_factory=list)
    line: str = ""
    area: str = ""
    dots: list[tuple[float, float, str]] = field(default_factory=list)
    bars: list[dict] = field(default_factory=list)
    zero_y: float = 0.0


def nice_step(span: float, ticks: int = 4) -> int:
    """A round step (1, 2 or 5 times a power of ten, in cents) that divides `span` into about `ticks`."""
    if span <= 0:
        return 100
    raw = span / ticks
    power = 10 ** math.floor(math.log10(raw))
    return int(next(m * power for m in (1, 2, 5, 10) if m * power >= raw))


def _x_positions(count: int, width: int) -> list[float]:
    inner = width - LEFT - RIGHT
    step = inner / max(count, 1)
    return [LEFT + step * (i + 0.5) for i in range(count)]


def _labels(xs: list[float], months: list[Month], width: int) -> list[tuple[float, str]]:
    """Every month named on a wide chart; on a narrow one, every third (ending on the current month),
    the year only on January's."""
    every = 1 if width >= WIDTH else 3
    last = len(months) - 1
    return [(round(x, 1), _month_label(m, i == 0 and every == 1)) for i, (x, m) in enumerate(zip(xs, months, strict=True))
            if (last - i) % every == 0]


def _month_label(month: Month, first: bool) -> str:
    return month.start.strftime("%b %Y" if first or month.start.month == 1 else "%b")


def _scale(lo: int, hi: int, currency: str, chart: Chart):
    step = nice_step(hi - lo)
    lo = math.floor(lo / step) * step
    hi = max(math.ceil(hi / step) * step, lo + step)
    inner = HEIGHT - TOP - BOTTOM

    def y(value: float) -> float:
        return round(TOP + inner * (hi - value) / (hi - lo), 1)

    chart.y_ticks = [(y(v), money(v, currency)) for v in range(lo, hi + 1, step)]
    chart.zero_y = y(0) if lo <= 0 <= hi else y(lo)
    return y


def mrr_chart(months: list[Month], currency: str, width: int = WIDTH) -> Chart:
    """MRR at each month's end as a line over a shaded area, from zero."""
    chart = Chart(width=width)
    y = _scale(0, max((m.mrr_cents for m in months), default=0), currency, chart)
    xs = _x_positions(len(months), width)
    points = [(round(x, 1), y(m.mrr_cents)) for x, m in zip(xs, months, strict=True)]
    chart.line = " ".join(f"{px},{py}" for px, py in points)
    if points:
        chart.area = f"{points[0][0]},{chart.zero_y} {chart.line} {points[-1][0]},{chart.zero_y}"
    chart.dots = [(px, py, f"{_month_label(m, True)}: {money(m.mrr_cents, currency)}")
                  for (px, py), m in zip(points, months, strict=True)]
    chart.x_labels = _labels(xs, months, width)
    return chart


def movements_chart(months: list[Month], currency: str, width: int = WIDTH) -> Chart:
    """Each month's movements as stacked bars: gains above the zero line, losses below; beside them, a
    narrower bar of the MRR dunning recovered (not a movement: it never left the total)."""
    chart = Chart(width=width)
    gains = [max(sum(v for v in m.movements.values() if v > 0), m.recovered_cents) for m in months]
    losses = [sum(v for v in m.movements.values() if v < 0) for m in months]
    y = _scale(min(losses, default=0), max(gains, default=0), currency, chart)
    xs = _x_positions(len(months), width)
    bar = (width - LEFT - RIGHT) / max(len(months), 1) * 0.6
    for x, m in zip(xs, months, strict=True):
        up = down = 0
        for kind in MOVEMENT_KINDS:
            value = m.movements.get(kind, 0)
            if not value:
                continue
            base = up if value > 0 else down
            top, bottom = (base + value, base) if value > 0 else (base, base + value)
            chart.bars.append({"x": round(x - bar / 2, 1), "width": round(bar, 1), "y": y(top),
                               "height": round(y(bottom) - y(top), 1), "kind": kind,
                               "title": f"{_month_label(m, True)}, {KIND_LABELS[kind]}: {money(value, currency)}"})
            if value > 0:
                up += value
            else:
                down += value
        if m.recovered_cents:
            chart.bars.append({"x": round(x + bar / 2, 1), "width": round(bar / 3, 1), "y": y(m.recovered_cents),
                               "height": round(y(0) - y(m.recovered_cents), 1), "kind": "recovered",
                               "title": f"{_month_label(m, True)}, recovered by dunning: "
                                        f"{money(m.recovered_cents, currency)}"})
    chart.x_labels = _labels(xs, months, width)
    return chart
