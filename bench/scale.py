"""Part 2: flag-expiring-cards over N and 10*N cards with the same number of cards to flag."""
from __future__ import annotations

import time

from bench.floors import params, run_floor, slot_day
from bench.jobs import run_in_child
from bench.report import Report, ratio
from bench.seed import seed
from saas.core import runtime
from saas.core.db import reset_engines

TO_FLAG = 1000


def bench_scale(harness, report: Report, users: int, repeat: int) -> None:
    sizes = {"small": users, "large": users * 10}
    report.section(f"Cost follows the work: flag-expiring-cards over {users:,} and {users * 10:,} users' cards, "
                   f"{TO_FLAG:,} cards to flag in both")
    for label, n in sizes.items():
        start = time.perf_counter()
        counts = seed(harness.create_database(f"bench_scale_{label}"), n, entering=TO_FLAG)
        reset_engines()
        print(f"  seeded {label}: {counts['cards']:,} cards, {counts['cards_to_flag']:,} to flag; "
              f"{time.perf_counter() - start:.1f}s", flush=True)
    settings = runtime.settings()
    values = params(slot_day("flag-expiring-cards", settings), settings)
    for _ in range(repeat):
        for label in sizes:
            harness.fresh_copy(f"bench_scale_{label}")
            result = run_in_child("flag-expiring-cards")
            report.add(f"scale.flag.{label}", "s", result["seconds"])
            report.add(f"scale.flag.{label}.peak_rss", "MB", result["peak_mb"])
            # The floor on the same data: what a larger table costs the bare statements too.
            report.add(f"scale.floor.{label}", "s", run_floor(harness.fresh_copy(f"bench_scale_{label}"),
                                                             "flag-expiring-cards", values))
    report.show("scale.flag.small", "scale.flag.large", "scale.floor.small", "scale.floor.large",
                "scale.flag.small.peak_rss", "scale.flag.large.peak_rss")
    floor_growth = ratio(report.stats["scale.floor.large"].median, report.stats["scale.floor.small"].median)
    report.check("floor time, large / small (reference)", floor_growth, "-", None)
    growth = ratio(report.stats["scale.flag.large"].median, report.stats["scale.flag.small"].median)
    report.check(f"flag-expiring-cards time, {users * 10:,} / {users:,} users", growth, "<= 1.5", growth <= 1.5)
    mem = ratio(max(report.stats["scale.flag.large.peak_rss"].samples), max(report.stats["scale.flag.small.peak_rss"].samples))
    report.check("flag-expiring-cards peak RSS, large / small", mem, "about 1 (flat)", None)
