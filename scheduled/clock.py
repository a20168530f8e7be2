"""The scheduler's clock: the real time, or a shared test clock that the chaos suite advances.

Beat, the runner, the ledger's heartbeats and the watchdog read `now()`. With
SAAS_TEST_CLOCK_FILE set (tests only) they all read the instant written in that file, so a
driver can move every process through a month of nightly slots in minutes. Off by default;
refused in production (Settings.from_env fails when it is set there).
"""
from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

TEST_CLOCK_ENV = "SAAS_TEST_CLOCK_FILE"


def now() -> datetime:
    """The current instant (UTC, aware): real time unless a test clock file is configured."""
    path = os.environ.get(TEST_CLOCK_ENV, "").strip()
    if not path:
        return datetime.now(UTC)
    return datetime.fromisoformat(Path(path).read_text().strip()).astimezone(UTC)


def set_test_clock(path: Path, instant: datetime) -> None:
    """Write the test clock atomically (readers never see a half-written file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(instant.astimezone(UTC).isoformat())
    os.replace(tmp, path)
