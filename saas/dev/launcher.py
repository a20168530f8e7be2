"""`saas dev`: every part on loopback, data under var/, one Ctrl-C stops it all."""
from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from saas.core import runtime
from saas.core.migrate import upgrade
from saas.core.settings import ROOT, Settings
from saas.dev.embedded import MailSink, Service, die_with_parent, port_is_open, start_postgres, start_redis, wait_for
from saas.dev.seed import DEV_PASSWORD, personas, seed_demo
from scheduled.runner import run_job

VAR = ROOT / "var"
PORTS = {"postgres": 54329, "redis": 63799, "smtp": 10025, "stripe": 12111}
DEV_WEBHOOK_SECRET = "whsec_dev_emulator_secret"


def _port(name: str) -> int:
    return int(os.environ.get(f"DEV_{name.upper()}_PORT", PORTS[name]))


def _spawn(name: str, args: list[str], env: dict[str, str], log_dir: Path) -> Service:
    log = open(log_dir / f"{name}.log", "ab")
    proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
    return Service(name, "", proc)


def start_infrastructure(env: dict[str, str]) -> tuple[list[Service], MailSink | None]:
    """Start whichever of PostgreSQL, Redis and the SMTP sink the environment does not replace."""
    services: list[Service] = []
    sink = None
    if not env.get("DATABASE_URL"):
        pg = start_postgres(VAR / "postgres", _port("postgres"))
        services.append(pg)
        env["DATABASE_URL"] = pg.url
    if not env.get("REDIS_URL"):
        rd = start_redis(VAR / "redis", _port("redis"))
        services.append(rd)
        env["REDIS_URL"] = rd.url
    if not env.get("SMTP_URL"):
        sink = MailSink(VAR / "mail", _port("smtp")).start()
        env["SMTP_URL"] = sink.url
        env["DEV_MAILDIR"] = str(sink.maildir_path)
    return services, sink


def run_dev(web_port: int = 5000, with_worker: bool = True) -> int:
    """Start everything, print the URLs and logins, wait for Ctrl-C, stop everything."""
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    VAR.mkdir(exist_ok=True)
    (VAR / "log").mkdir(exist_ok=True)
    env = dict(os.environ)
    env.setdefault("SAAS_ENV", "dev")
    env.setdefault("APP_URL", f"http://127.0.0.1:{web_port}")
    if port_is_open(web_port):
        print(f"error: port {web_port} is taken; run `saas dev --port N` with a free port", file=sys.stderr)
        return 2
    children: list[Service] = []
    sink = None
    try:
        print("starting PostgreSQL, Redis and the SMTP sink ...", flush=True)
        infra, sink = start_infrastructure(env)
        children += infra
        emulator = None
        if importlib.util.find_spec("billing.emulator") and not env.get("STRIPE_API_BASE"):
            stripe_port = _port("stripe")
            env.update(STRIPE_API_BASE=f"http://127.0.0.1:{stripe_port}", STRIPE_SECRET_KEY="sk_test_emulator",
                       STRIPE_WEBHOOK_SECRET=env.get("STRIPE_WEBHOOK_SECRET") or DEV_WEBHOOK_SECRET)
            emulator = _spawn("stripe-emulator", [
                sys.executable, "-m", "billing.emulator", "--port", str(stripe_port),
                "--webhook-url", f"{env['APP_URL']}/billing/webhooks/stripe",
                "--webhook-secret", env["STRIPE_WEBHOOK_SECRET"].split(",")[0],
                "--data", str(VAR / "stripe.json")], env, VAR / "log")
            children.append(emulator)
        os.environ.update(env)  # this process's settings now point at the parts above
        print("applying migrations ...", flush=True)  # while the emulator starts
        settings = runtime.configure(Settings.from_env())
        upgrade(settings.database_url)
        # The web app starts now and answers while the personas are seeded (its first request
        # waits for nothing: the schema is there); worker and beat start once the seed is in.
        saas = [sys.executable, "-m", "saas"]
        web = _spawn("web", saas + ["run", "--host", "127.0.0.1", "--port", str(web_port),
                                    "--no-reload", "--with-threads"], env, VAR / "log")
        children.append(web)
        if emulator is not None:
            wait_for(lambda: port_is_open(stripe_port), "Stripe emulator", proc=emulator.process)
        print("seeding the demo personas ...", flush=True)
        now = datetime.now(UTC)
        if seed_demo(settings, now):
            _run_warning_jobs(settings)
        if with_worker:
            celery = [sys.executable, "-m", "celery", "-A", "scheduled"]
            children.append(_spawn("worker", celery + ["worker", "--loglevel", "INFO", "--concurrency", "2"],
                                   env, VAR / "log"))
            children.append(_spawn("beat", celery + ["beat", "--loglevel", "INFO"], env, VAR / "log"))
        wait_for(lambda: port_is_open(web_port), "web app", timeout=30, proc=web.process)
        _print_banner(env, web_port, [p["local"] for p in personas(now)], DEV_PASSWORD)
        return _wait(children)
    except KeyboardInterrupt:
        return 0
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        print("\nstopping ...", flush=True)
        for child in reversed(children):
            child.signal_stop()
        for child in reversed(children):
            child.stop()
        if sink is not None:
            sink.stop()


def _run_warning_jobs(settings: Settings) -> None:
    """On a fresh demo database, run the current slot of the jobs that only warn, through the
    ledger, so the personas show their banners and mail at once (fabio's second dunning email). The
    purge waits for its slot (or an admin), so dario stays in the review queue."""
    for job in ("flag-expiring-cards", "remind-inactive-users", "advance-dunning"):
        run = run_job(job, settings, explicit=True)
        if run is not None:
            print(f"  ran {job} for today's slot: {run.changed} changed, {run.emails_queued} emails", flush=True)


def _wait(children: list[Service]) -> int:
    """Block until Ctrl-C or a child dies (then say which, and stop the rest)."""
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    while True:
        for child in children:
            if child.process is not None and child.process.poll() is not None:
                print(f"error: {child.name} exited with code {child.process.returncode}; see var/log/{child.name}.log",
                      file=sys.stderr)
                return 1
        time.sleep(0.5)


RESET_ENV = ("SAAS_ENV", "DATABASE_URL", "REDIS_URL", "STRIPE_API_BASE", "STRIPE_SECRET_KEY")


def reset_command(env: dict[str, str]) -> str:
    """`saas seed demo --reset` against this running instance (its database and Stripe emulator)."""
    assignments = " ".join(f"{name}={env[name]}" for name in RESET_ENV if env.get(name))
    return f"{assignments} .venv/bin/saas seed demo --reset"


def _print_banner(env: dict[str, str], web_port: int, logins: list[str], password: str) -> None:
    lines = [
        "",
        f"  App          http://127.0.0.1:{web_port}",
        f"  Dev mail     http://127.0.0.1:{web_port}/dev/mail",
        f"  Stripe emu   {env.get('STRIPE_API_BASE', '(not running)')}",
        f"  PostgreSQL   {env['DATABASE_URL']}",
        f"  Redis        {env['REDIS_URL']}",
        f"  SMTP         {env['SMTP_URL']}",
        "  Logs         var/log/",
        "",
        f"  Demo logins (password: {password}):",
        *[f"    {name}@example.com" for name in logins],
        "  Signing in as carla or dario cancels their deletion. Put every persona back into its story with:",
        f"    {reset_command(env)}",
        "",
        "  Ctrl-C stops everything.",
    ]
    print("\n".join(lines), flush=True)
