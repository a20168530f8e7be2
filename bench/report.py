"""Samples, medians with min–max, ratios, and the JSON dump."""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field


@dataclass
class Stat:
    """Repeated samples of one figure."""

    name: str
    unit: str
    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")

    def __str__(self) -> str:
        if not self.samples:
            return f"{self.name}: n/a"
        return (f"{self.name}: {fmt(self.median)} {self.unit} "
                f"(min {fmt(min(self.samples))}, max {fmt(max(self.samples))}, n={len(self.samples)})")


def fmt(value: float) -> str:
    if value != value:
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.4f}"


class Report:
    """Collects every figure of a run, prints as it goes, and dumps JSON at the end."""

    def __init__(self) -> None:
        self.stats: dict[str, Stat] = {}
        self.checks: list[dict] = []
        self.notes: list[str] = []
        self.meta: dict = {}

    def stat(self, key: str, unit: str) -> Stat:
        if key not in self.stats:
            self.stats[key] = Stat(key, unit)
        return self.stats[key]

    def add(self, key: str, unit: str, value: float) -> None:
        self.stat(key, unit).samples.append(value)

    def section(self, title: str) -> None:
        print(f"\n== {title}", flush=True)

    def show(self, *keys: str) -> None:
        for key in keys:
            if key in self.stats:
                print("  " + str(self.stats[key]), flush=True)

    def check(self, what: str, value: float, target: str, ok: bool | None) -> None:
        """A target: value, the target in words, and whether it was met."""
        verdict = "n/a" if ok is None else ("MET" if ok else "MISSED")
        self.checks.append({"what": what, "value": value, "target": target, "verdict": verdict})
        print(f"  -> {what}: {fmt(value)} (target {target}) {verdict}", flush=True)

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  note: {text}", flush=True)

    def summary(self) -> None:
        print("\n== Targets")
        for c in self.checks:
            print(f"  {c['verdict']:6} {c['what']}: {fmt(c['value'])} (target {c['target']})")

    def dump(self, path: str) -> None:
        data = {
            "meta": self.meta,
            "stats": {k: {"unit": s.unit, "median": s.median, "min": min(s.samples, default=None),
                          "max": max(s.samples, default=None), "samples": s.samples}
                      for k, s in self.stats.items()},
            "checks": self.checks,
            "notes": self.notes,
        }
        with open(path, "w") as fh:
            json.dump(data, fh, indent=2, default=str)


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")
