"""Refresh the README's screenshots (docs/img/*.png) from a throwaway instance with the demo personas.

Starts its own PostgreSQL, Redis and SMTP sink in a temporary directory, seeds the personas, runs the
nightly jobs that set the flags, serves the app on loopback and photographs the pages with Chromium.
Usage: python docs/screenshots.py
"""
from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: the project's packages come from the checkout

from werkzeug.serving import make_server  # noqa: E402

from billing.finance import FinanceReport  # noqa: E402
from saas.core import runtime  # noqa: E402
from saas.core.db import reset_engines, session_scope  # noqa: E402
from saas.core.migrate import upgrade  # noqa: E402
from saas.core.settings import Settings  # noqa: E402
from saas.dev.embedded import MailSink, free_port, start_postgres, start_redis  # noqa: E402
from saas.dev.seed import DEV_PASSWORD, seed_demo  # noqa: E402
from saas.web.app import create_app  # noqa: E402
from scheduled.runner import run_job  # noqa: E402

OUT = ROOT / "docs" / "img"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def start_services(workdir: Path) -> list:
    """The embedded parts, and the environment pointing at them."""
    pg = start_postgres(workdir / "pg", free_port(), database="saas_screens")
    rd = start_redis(workdir / "redis", free_port(), persist=False)
    sink = MailSink(workdir / "mail", free_port()).start()
    port = free_port()
    os.environ.update(SAAS_ENV="dev", DATABASE_URL=pg.url, REDIS_URL=rd.url, SMTP_URL=sink.url,
                      APP_URL=f"http://127.0.0.1:{port}", SECRET_KEY="screenshots-only-secret-key",
                      DEV_MAILDIR=str(sink.maildir_path))
    os.environ["SCREENSHOT_PORT"] = str(port)
    return [sink, rd, pg]


def prepare_data(settings: Settings) -> None:
    """Personas, the flags their nightly jobs set, and one report half way through."""
    upgrade(settings.database_url)
    seed_demo(settings, datetime.now(UTC), DEV_PASSWORD)
    for job in ("flag-expiring-cards", "remind-inactive-users", "advance-dunning", "finance-summary"):
        run_job(job, settings)
    with session_scope() as session:
        session.add(FinanceReport(kind="revenue-churn", status="done", progress=100, csv="date\n",
                                  params={"start": "2025-01-01", "end": "2025-03-31"},
                                  finished_at=datetime.now(UTC)))
        session.add(FinanceReport(kind="revenue-churn", status="running", progress=62,
                                  params={"start": "2025-04-01", "end": "2025-06-30"}))


def serve(settings: Settings):
    """The app on loopback in a thread; returns the server (to shut down) and its URL."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = int(os.environ["SCREENSHOT_PORT"])
    server = make_server("127.0.0.1", port, create_app(settings), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{port}"


def photograph(base_url: str) -> list[Path]:
    from playwright.sync_api import sync_playwright  # here: Playwright is in the test extra only

    shots = [(None, "/", "landing.png"),
             ("ana@example.com", "/dashboard", "dashboard.png"),
             ("ana@example.com", "/billing", "billing.png"),
             ("admin@example.com", "/admin", "admin-attention.png"),
             ("admin@example.com", "/admin/dormant", "admin-dormant.png"),
             ("finance@example.com", "/finance", "finance-mrr.png"),
             ("finance@example.com", "/finance/reports", "finance-progress.png"),
             ("fabio@example.com", "/dashboard", "dunning-dashboard.png"),
             ("admin@example.com", "/admin/dunning", "admin-dunning.png")]
    written = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        for email, path, name in shots:
            context = browser.new_context(base_url=base_url, viewport={"width": 1200, "height": 800},
                                          device_scale_factor=1)
            page = context.new_page()
            if email:  # None: the page a visitor sees
                page.goto("/login")
                page.get_by_label("Email").fill(email)
                page.get_by_label("Password").fill(DEV_PASSWORD)
                page.get_by_role("button", name="Sign in").click()
                page.wait_for_url(lambda url: not url.split("?")[0].endswith("/login"))  # the role's home
            page.goto(path)
            page.wait_for_load_state("networkidle") if path != "/finance/reports" else page.wait_for_timeout(500)
            target = OUT / name
            page.screenshot(path=str(target), full_page=True)
            written.append(target)
            context.close()
        browser.close()
    return written


def main() -> int:
    if not Path(CHROMIUM).exists():
        print(f"Chromium is needed at {CHROMIUM} (apt-get install chromium).", file=sys.stderr)
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="saas-screens-"))
    workdir.chmod(0o755)  # the embedded PostgreSQL user must be able to enter it when run as root
    services = start_services(workdir)
    try:
        settings = runtime.configure(Settings.from_env())  # the entry point, once the environment points at the services
        prepare_data(settings)
        server, base_url = serve(settings)
        try:
            for path in photograph(base_url):
                print(f"wrote {path.relative_to(ROOT)}")
        finally:
            server.shutdown()
    finally:
        reset_engines()
        for service in services:
            service.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
