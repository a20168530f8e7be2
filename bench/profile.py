"""`python -m bench.profile`: where the contact POST and the dashboard GET spend their time, in process.

The bench app (bench.webapp.create_bench_app) behind Flask's test client, on a small seeded data
set with the real PostgreSQL and Redis: no network between client and app, so what is left is the
request path's own CPU and its round trips to PostgreSQL and Redis. Each request kind is timed
unprofiled first (wall and CPU per request), then run again under cProfile; the breakdown lists
the cumulative time of the parts that matter, scaled to the unprofiled CPU time, and the
heaviest functions follow.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import time
from collections.abc import Callable

from bench.harness import Harness
from bench.report import Report
from bench.seed import BENCH_PASSWORD, seed_template
from bench.web import dashboard_user
from bench.webapp import create_bench_app, create_floor_app
from saas.core.db import get_engine

# (label, a piece of the function's file path, the function's name): cumulative time of each.
PROBES = {
    "contact": [
        ("whole request (Flask's wsgi_app)", "flask/app.py", "wsgi_app"),
        ("request hooks (before_request)", "flask/app.py", "preprocess_request"),
        ("  Flask-Login's user lookup", "flask_login/login_manager.py", "_load_user"),
        ("  the limiter's own hook", "flask_limiter/_extension.py", "_check_request_limit"),
        ("  NUL check (parses the form)", "saas/web/input_guard.py", "refuse_nul"),
        ("the view", "saas/web/views/contact.py", "form"),
        ("  form built (ContactForm())", "wtforms/form.py", "__call__"),
        ("  form validated", "flask_wtf/form.py", "validate_on_submit"),
        ("    email syntax (email_validator)", "email_validator/validate_email.py", "validate_email"),
        ("  rate limit (saas.web.limits.take)", "saas/web/limits.py", "take"),
        ("  outbox INSERT (queue_email)", "saas/core/outbox/__init__.py", "queue_email"),
        ("  commit (with the publish)", "sqlalchemy/orm/scoping.py", "commit"),
        ("    Celery publish", "saas/core/queue.py", "publish"),
        ("  flash + redirect", "flask/helpers.py", "flash"),
        ("after hooks + session cookie", "flask/app.py", "process_response"),
        ("  session cookie saved", "flask/sessions.py", "save_session"),
        ("teardown (session removed)", "flask/app.py", "do_teardown_appcontext"),
    ],
    "dashboard": [
        ("whole request (Flask's wsgi_app)", "flask/app.py", "wsgi_app"),
        ("session cookie opened", "flask/sessions.py", "open_session"),
        ("request hooks (before_request)", "flask/app.py", "preprocess_request"),
        ("  user loaded (saas.web.login.load_user)", "saas/web/login.py", "load_user"),
        ("the view", "saas/web/views/dashboard.py", "index"),
        ("  card and subscription", "billing/current.py", "card_subscription_and_case"),
        ("  recent invoices", "billing/current.py", "recent_invoices"),
        ("  banners", "saas/web/views/dashboard.py", "banners_for"),
        ("  template rendered", "flask/templating.py", "render_template"),
        ("    CSRF token (generate_csrf)", "flask_wtf/csrf.py", "generate_csrf"),
        ("after hooks + session cookie", "flask/app.py", "process_response"),
        ("  session cookie saved", "flask/sessions.py", "save_session"),
        ("teardown (session removed)", "flask/app.py", "do_teardown_appcontext"),
    ],
}
SQL_PROBES = [
    ("  PostgreSQL round trips (psycopg execute)", "psycopg/cursor.py", "execute"),
    ("  PostgreSQL commit", "psycopg/connection.py", "commit"),
    ("  PostgreSQL rollback (connection returned)", "psycopg/connection.py", "rollback"),
    ("  pool checkout (pre-ping)", "sqlalchemy/pool/base.py", "_checkout"),
    ("  Redis round trips (redis-py execute_command)", "redis/client.py", "_execute_command"),
]


def contact_requests(app) -> Callable[[int], None]:
    client = app.test_client(use_cookies=False)  # like wrk: every POST a new visitor, no cookie kept

    def one(i: int) -> None:
        answer = client.post("/contact", headers={"X-Bench-Client": f"profile-{time.time_ns()}-{i}"},
                             data={"name": "Bench", "email": "bench@example.com", "subject": "Hello",
                                   "message": f"Benchmark message number {i}", "submission": f"p{time.time_ns()}"})
        assert answer.status_code == 302, answer.status_code

    return one


def dashboard_requests(app, email: str) -> Callable[[int], None]:
    client = app.test_client()
    signed_in = client.post("/login", data={"email": email, "password": BENCH_PASSWORD})
    assert signed_in.status_code == 302, signed_in.status_code
    client.get("/dashboard")  # the first one may record activity

    def one(i: int) -> None:
        answer = client.get("/dashboard")
        assert answer.status_code == 200, answer.status_code

    return one


def contact_floor_requests(floor) -> Callable[[int], None]:
    client = floor.test_client(use_cookies=False)

    def one(i: int) -> None:
        answer = client.post("/contact-io", headers={"X-Bench-Client": f"profile-{time.time_ns()}-{i}"},
                             data={"name": "Bench", "email": "bench@example.com", "subject": "Hello",
                                   "message": f"Benchmark message number {i}", "submission": f"p{time.time_ns()}"})
        assert answer.status_code == 302, answer.status_code

    return one


def dashboard_floor_requests(floor, email: str) -> Callable[[int], None]:
    client = floor.test_client()
    with get_engine().connect() as conn:
        token = conn.exec_driver_sql("SELECT session_token FROM users WHERE email = %(e)s", {"e": email}).scalar_one()
    client.set_cookie("floor_token", token)

    def one(i: int) -> None:
        answer = client.get("/dashboard-sql")
        assert answer.status_code == 200, answer.status_code

    return one


def measure(one: Callable[[int], None], requests: int) -> tuple[float, float]:
    """Wall and CPU milliseconds per request, unprofiled."""
    for i in range(min(50, requests)):  # warm: compiled statements, pools, templates
        one(-i - 1)
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(requests):
        one(i)
    return ((time.perf_counter() - wall) * 1000 / requests, (time.process_time() - cpu) * 1000 / requests)


def profile(one: Callable[[int], None], requests: int) -> pstats.Stats:
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    for i in range(requests):
        one(10_000_000 + i)
    profiler.disable()
    return pstats.Stats(profiler)


def cumulative(stats: pstats.Stats, path: str, name: str) -> float:
    """Seconds spent in (and under) every function `name` whose file path contains `path`, outermost calls."""
    return sum(entry[3] for (file, _line, func), entry in stats.stats.items()  # type: ignore[attr-defined]
               if func == name and path in file)


def breakdown(kind: str, stats: pstats.Stats, requests: int, cpu_ms: float) -> None:
    total = cumulative(stats, "flask/app.py", "wsgi_app") or 1.0
    print(f"  {'part':52} {'ms/request':>10} {'share':>6}")
    for label, path, name in PROBES[kind] + SQL_PROBES:
        seconds = cumulative(stats, path, name)
        share = seconds / total
        print(f"  {label:52} {share * cpu_ms:10.3f} {share:6.0%}")


def heaviest(stats: pstats.Stats, top: int) -> None:
    out = io.StringIO()
    stats.stream = out  # type: ignore[attr-defined]
    stats.sort_stats("tottime").print_stats(top)
    lines = out.getvalue().splitlines()
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls")), 0)
    print("\n".join("    " + line for line in lines[start:] if line.strip()))


def timing_rounds(ones: dict[str, Callable[[int], None]], requests: int, rounds: int = 5) -> None:
    """Unprofiled CPU time per request, the kinds interleaved round by round (the machine's noise
    then falls on all of them alike); a request and its floor give a ratio per round."""
    cpu: dict[str, list[float]] = {kind: [] for kind in ones}
    for _ in range(rounds):
        for kind, one in ones.items():
            cpu[kind].append(measure(one, requests)[1])
    for kind, values in cpu.items():
        print(f"== {kind}: CPU ms per request, {rounds} rounds: {', '.join(f'{v:.3f}' for v in values)} "
              f"(median {statistics.median(values):.3f})", flush=True)
        floor = cpu.get(f"{kind}_floor")
        if floor:
            ratios = [f / v for f, v in zip(floor, values, strict=True)]
            print(f"   {kind}_floor / {kind} per round: {', '.join(f'{r:.2f}' for r in ratios)} "
                  f"(median {statistics.median(ratios):.2f})", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--users", type=int, default=2000, help="accounts to seed (default 2000)")
    parser.add_argument("--requests", type=int, default=500, help="requests of each kind (default 500)")
    parser.add_argument("--top", type=int, default=25, help="heaviest functions to list (default 25)")
    parser.add_argument("--only", default="contact,dashboard", help="among contact, dashboard, contact_floor, dashboard_floor "
                        "(the floors: timing only)")
    parser.add_argument("--timing-only", action="store_true", help="only the unprofiled timing, several rounds")
    args = parser.parse_args(argv)
    with Harness() as harness:
        seed_template(harness, Report(), args.users)
        url = harness.fresh_copy()
        app = create_bench_app()
        kinds = {"contact": lambda: contact_requests(app),
                 "dashboard": lambda: dashboard_requests(app, dashboard_user(url)),
                 "contact_floor": lambda: contact_floor_requests(create_floor_app()),
                 "dashboard_floor": lambda: dashboard_floor_requests(create_floor_app(), dashboard_user(url))}
        chosen = [k.strip() for k in args.only.split(",") if k.strip()]
        ones = {kind: kinds[kind]() for kind in chosen}
        if args.timing_only or any(kind.endswith("_floor") for kind in chosen):
            timing_rounds(ones, args.requests)
            return 0
        for kind, one in ones.items():
            wall_ms, cpu_ms = measure(one, args.requests)
            print(f"\n== {kind}: {wall_ms:.3f} ms wall, {cpu_ms:.3f} ms CPU per request "
                  f"(unprofiled, {args.requests} requests)", flush=True)
            stats = profile(one, args.requests)
            breakdown(kind, stats, args.requests, cpu_ms)
            print(f"  heaviest functions (own CPU time, {args.requests} profiled requests):")
            heaviest(stats, args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
