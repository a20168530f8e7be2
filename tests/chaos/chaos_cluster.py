"""The chaos suite's cluster: real beat and worker processes on a dedicated Redis and SMTP sink.

PostgreSQL is the suite's (tables truncated per test); Redis is started here so a test can kill
and restart it (or, with broker="sentinel", a primary, a replica and three Sentinels, so a test can
kill the primary and watch them fail over); every Celery process reads one shared test clock file
(scheduled.clock).
"""
from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import redis as redis_lib

from saas.core import redis_url
from saas.dev.embedded import MailSink, Service, die_with_parent, free_port, start_redis
from scheduled.clock import TEST_CLOCK_ENV, set_test_clock
from tests.engines import RabbitMQ, SentinelGroup

LAUNCHER = Path(__file__).with_name("chaos_celery.py")
ROOT = Path(__file__).resolve().parents[2]


class SlowMailSink(MailSink):
    """The real sink, answering each message after `delay` seconds (a real server takes time)."""

    delay = 0.0

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)


class Cluster:
    """Start, kill and restart Celery processes by name; stop everything in `close()`."""

    def __init__(self, workdir: Path, database_url: str, start: datetime, visibility_timeout: int = 10,
                 extra_env: dict[str, str] | None = None, broker: str = "redis"):
        self.workdir = workdir
        self.rabbitmq: RabbitMQ | None = None
        broker_env = {}
        if broker == "rabbitmq":  # Celery's broker; Redis stays for RedBeat, limits and progress
            self.rabbitmq = RabbitMQ(workdir / "rabbitmq", free_port(), free_port(), free_port()).start()
            # No visibility timeout to shorten: RabbitMQ redelivers when the consumer's connection closes.
            broker_env = {"CELERY_BROKER_URL": self.rabbitmq.url, "CHAOS_VISIBILITY_TIMEOUT": ""}
        self.redis_port = free_port()
        self.redis: Service | None = None
        # Through Sentinel every Redis client (broker, RedBeat, limits, progress) is given its URL.
        self.sentinel = SentinelGroup(workdir / "sentinel", [free_port() for _ in range(5)]).start() \
            if broker == "sentinel" else None
        self.sink = SlowMailSink(workdir / "mail", free_port()).start()
        self.clock_file = workdir / "clock"
        self.clock = start
        set_test_clock(self.clock_file, start)
        self.procs: dict[str, subprocess.Popen] = {}
        self.kinds: dict[str, str] = {}
        self.starts: collections.Counter[str] = collections.Counter()
        self.start_redis()
        self.env = {
            **os.environ, "SAAS_ENV": "test", "DATABASE_URL": database_url,
            "REDIS_URL": self.redis_url, "SMTP_URL": self.sink.url, "DEV_MAILDIR": str(self.sink.maildir_path),
            TEST_CLOCK_ENV: str(self.clock_file), "CHAOS_VISIBILITY_TIMEOUT": str(visibility_timeout),
            "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1",
            # The cluster has no Stripe: reconcile-stripe is given a leap-day cron, which no test month here
            # reaches (Celery refuses a cron that never fires, such as February 30th).
            "SCHEDULE_RECONCILE_STRIPE": "0 0 29 2 *", **broker_env, **(extra_env or {}),
        }

    @property
    def redis_url(self) -> str:
        return self.sentinel.url if self.sentinel else f"redis://127.0.0.1:{self.redis_port}/0"

    def redis_client(self) -> redis_lib.Redis:
        return redis_url.connect(self.redis_url, socket_timeout=5)

    def start_redis(self) -> None:
        if self.sentinel is None:
            self.redis = start_redis(self.workdir / "redis", self.redis_port, persist=True)

    def kill_redis(self) -> None:
        """SIGKILL Redis (no save at shutdown: it comes back from its last snapshot)."""
        assert self.redis and self.redis.process
        self.redis.process.kill()
        self.redis.process.wait(10)

    def kill_broker(self) -> None:
        """SIGKILL RabbitMQ and start it again on its data: what it confirmed survives."""
        assert self.rabbitmq is not None
        self.rabbitmq.restart()

    def advance(self, to: datetime) -> None:
        self.clock = to
        set_test_clock(self.clock_file, to)

    def start(self, name: str, kind: str) -> None:
        """Start `celery -A scheduled <kind>` (beat or worker) in its own process group."""
        args = [sys.executable, str(LAUNCHER), "-A", "scheduled", kind, "--loglevel", "INFO"]
        if kind == "worker":
            args += ["--concurrency", "2", "--hostname", f"{name}@chaos", "--without-gossip", "--without-mingle"]
        else:
            args += ["--schedule", str(self.workdir / f"{name}-schedule")]
        log = open(self.workdir / f"{name}.log", "ab")
        self.procs[name] = subprocess.Popen(args, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True, preexec_fn=die_with_parent)
        self.kinds[name] = kind
        self.starts[name] += 1

    def signal(self, name: str, sig: int) -> None:
        """Send `sig` to the process's whole group (a worker's pool children too)."""
        proc = self.procs[name]
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self, name: str) -> None:
        self.signal(name, signal.SIGKILL)
        self.procs[name].wait(10)

    def restart_dead(self) -> list[str]:
        """Restart every process that exited on its own (a supervisor's restart policy)."""
        dead = [name for name, proc in self.procs.items() if proc.poll() is not None]
        for name in dead:
            self.signal(name, signal.SIGKILL)  # pool children left behind, if any
            self.start(name, self.kinds[name])
        return dead

    def log_tail(self, name: str, lines: int = 40) -> str:
        text = (self.workdir / f"{name}.log").read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def close(self) -> None:
        for name in list(self.procs):
            self.signal(name, signal.SIGCONT)
            self.signal(name, signal.SIGKILL)
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        self.sink.stop()
        if self.redis is not None:
            self.redis.stop()
        if self.rabbitmq is not None:
            self.rabbitmq.stop()
        if self.sentinel is not None:
            self.sentinel.stop()


def wait_until(check, timeout: float, every: float = 0.5, on_tick=None) -> bool:
    """Poll `check` until true or `timeout` seconds pass; `on_tick` runs between polls."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        if on_tick is not None:
            on_tick()
        time.sleep(every)
    return bool(check())
