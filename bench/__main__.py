"""`python -m bench`: run the benchmarks and print medians with min–max and the ratios."""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time

from bench.delivery import bench_delivery
from bench.dunning import bench_dunning
from bench.email import bench_email
from bench.harness import Harness
from bench.jobs import bench_first_night, bench_jobs
from bench.report import Report
from bench.scale import bench_scale
from bench.seed import seed_template
from bench.web import bench_web

PARTS = ("jobs", "firstnight", "scale", "dunning", "web", "email", "delivery", "traffic")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--users", type=int, default=100_000, help="accounts to seed (default 100000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement (default 3)")
    parser.add_argument("--only", default=",".join(PARTS),
                        help=f"comma-separated parts to run, among {','.join(PARTS)} (default: all)")
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per wrk run (default 10)")
    parser.add_argument("--messages", type=int, default=20_000,
                        help="queued emails the delivery part sends per run (default 20000)")
    parser.add_argument("--json", metavar="FILE", help="also write every sample to FILE as JSON")
    args = parser.parse_args(argv)
    args.parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = sorted(set(args.parts) - set(PARTS))
    if unknown:
        parser.error(f"--only: unknown part(s) {', '.join(unknown)}; choose among {', '.join(PARTS)}")
    if args.users < 100:
        parser.error("--users must be at least 100")
    if args.messages < 1:
        parser.error("--messages must be at least 1")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = Report()
    report.meta = {"argv": sys.argv[1:], "users": args.users, "repeat": args.repeat, "cpus": os.cpu_count(),
                   "python": platform.python_version(), "machine": platform.platform(),
                   "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    print(f"bench: {args.users:,} users, {args.repeat} runs each, parts: {', '.join(args.parts)}; "
          f"{os.cpu_count()} CPUs", flush=True)
    with Harness() as harness:
        if "email" in args.parts:
            bench_email(harness, report, args.repeat, messages=min(2000, max(200, args.users // 10)))
        if "delivery" in args.parts:
            bench_delivery(harness, report, args.repeat, args.messages)
        needs_seed = any(p in args.parts for p in ("jobs", "web", "traffic"))
        if needs_seed:
            seed_template(harness, report, args.users)
        if "jobs" in args.parts:
            bench_jobs(harness, report, args.repeat)
        if "firstnight" in args.parts:
            bench_first_night(harness, report, args.users, args.repeat)
        if "scale" in args.parts:
            bench_scale(harness, report, args.users, args.repeat)
        if "dunning" in args.parts:
            bench_dunning(harness, report, args.users, args.repeat)
        if "web" in args.parts or "traffic" in args.parts:
            bench_web(harness, report, args, traffic="traffic" in args.parts, web="web" in args.parts)
    report.summary()
    if args.json:
        report.dump(args.json)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
