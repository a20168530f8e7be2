"""Celery tasks for the nightly jobs: thin wrappers over the runner and the domain functions."""
from __future__ import annotations

from datetime import UTC, datetime

from saas.core import runtime
from saas.core.db import session_scope
from saas.core.queue import app
from scheduled import backfill, runner
from scheduled import watchdog as missed_slots
from scheduled.dormancy import purge_approved

BIG_RUN_SOFT_LIMIT = 3 * 3600  # a night's batches over millions of rows


@app.task(name="scheduled.tasks.run_job", soft_time_limit=BIG_RUN_SOFT_LIMIT, time_limit=BIG_RUN_SOFT_LIMIT + 300)
def run_job(job: str, slot_iso: str, dry_run: bool = False, explicit: bool = False) -> str:
    """Run one slot; a slot already claimed is a logged no-op."""
    run = runner.run_job(job, runtime.settings(), datetime.fromisoformat(slot_iso), dry_run=dry_run,
                         explicit=explicit)
    return "already claimed" if run is None else run.status


@app.task(name="scheduled.tasks.backfill_slots", soft_time_limit=BIG_RUN_SOFT_LIMIT, time_limit=BIG_RUN_SOFT_LIMIT + 300)
def backfill_slots(job: str, slots_iso: list[str]) -> list[str]:
    """The admin page's backfill: the slots oldest first, each through the ledger (once)."""
    results = backfill.run_backfill(job, runtime.settings(), [datetime.fromisoformat(s) for s in slots_iso])
    return ["already claimed" if r.run is None else r.run.status for r in results]


@app.task(name="scheduled.tasks.purge_account")
def purge_account(user_id: int, actor: str) -> bool:
    """The admin's "approve purge now": refuses protected accounts, and accounts whose approval was
    withdrawn while the task waited (a sign-in or an exemption clears it)."""
    with session_scope() as session:
        return purge_approved(session, user_id, actor, datetime.now(UTC))


@app.task(name="scheduled.tasks.watchdog")
def watchdog() -> int:
    """Report slots with no run (also runs on a timer in every worker, for when beat is down)."""
    return missed_slots.run_check(runtime.settings())
