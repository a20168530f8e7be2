"""An SMTP sink in its own process, so the code under test does not share its GIL.

`python -m bench.sink PORT MAILDIR [DELAY_SECONDS]`: the project's MailSink, optionally taking
DELAY seconds per message (the slow relay that shows what Celery saves the request path).
"""
from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
from pathlib import Path

from saas.dev.embedded import MailSink, die_with_parent, port_is_open, wait_for


def serve(port: int, maildir: Path, delay: float) -> None:
    class SlowSink(MailSink):
        async def handle_DATA(self, server, session, envelope):
            if delay:
                await asyncio.sleep(delay)
            return await super().handle_DATA(server, session, envelope)

    sink = SlowSink(maildir, port).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print("ready", flush=True)
    stop.wait()
    sink.stop()


def start_sink(port: int, maildir: Path, delay: float = 0.0) -> subprocess.Popen:
    """Start the sink process and wait until it accepts connections."""
    proc = subprocess.Popen([sys.executable, "-m", "bench.sink", str(port), str(maildir), str(delay)],
                            stdout=subprocess.DEVNULL, preexec_fn=die_with_parent)
    wait_for(lambda: port_is_open(port), "SMTP sink", proc=proc)
    return proc


if __name__ == "__main__":
    serve(int(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]) if len(sys.argv) > 3 else 0.0)
