"""The job ledger: one row per (job, slot) run."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, Index, Integer, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from saas.core.db import Base, utcnow

RUN_STATUSES = ("running", "succeeded", "failed", "skipped")


class JobRun(Base):
    """One run of a job for one scheduled slot; (job, slot) is claimed before work starts."""

    __tablename__ = "job_runs"
    __table_args__ = (
        CheckConstraint(f"status IN {RUN_STATUSES}", name="status"),
        # Real runs are unique per slot; dry runs are records only and never block a slot.
        Index("uq_job_runs_job_slot", "job", "slot", unique=True, postgresql_where="NOT dry_run"),
        Index("ix_job_runs_started_at", "started_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    job: Mapped[str] = mapped_column(String(50))
    slot: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(10), default="running")
    dry_run: Mapped[bool] = mapped_column(default=False)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    scanned: Mapped[int] = mapped_column(Integer, default=0)
    changed: Mapped[int] = mapped_column(Integer, default=0)
    emails_queued: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    # Batch cursor and anything a job wants to report (a dry run's list, for example).
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)


class JobPause(Base):
    """A paused job: beat records its slots as skipped with this reason until it is resumed."""

    __tablename__ = "job_pauses"

    job: Mapped[str] = mapped_column(String(50), primary_key=True)
    reason: Mapped[str] = mapped_column(Text)
    paused_at: Mapped[datetime] = mapped_column(default=utcnow)
    paused_by: Mapped[str] = mapped_column(String(100))  # "admin:3", "cli:alice"
