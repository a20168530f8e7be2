"""flag-expiring-cards reads small ranges: a card flagged without its email since the last run is still warned."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from billing.models import Card
from saas.core.db import session_scope
from scheduled.models import JobRun
from scheduled.runner import run_job
from tests.helpers import utc


def test_card_flagged_by_a_webhook_after_the_last_run_is_warned(settings, make_user, card, outbox_keys):
    ana = make_user(email="ana@example.com")
    c = card(ana.id, 12, 2030)
    assert run_job("flag-expiring-cards", settings, utc(2025, 5, 10), now=utc(2025, 5, 10, 0, 1)).status == "succeeded"
    with session_scope() as s:  # the run records when it started, on the clock of cards.updated_at
        assert s.scalar(select(JobRun.details["started"].astext)) is not None
    with session_scope() as s:  # what a card webhook does: new expiry, flag recomputed, no email
        row = s.get(Card, c.id)
        row.exp_month, row.exp_year, row.is_expiring = 5, 2025, True
    run = run_job("flag-expiring-cards", settings, utc(2025, 5, 11), now=utc(2025, 5, 11, 0, 1))
    assert (run.status, run.emails_queued) == ("succeeded", 1)
    assert outbox_keys("card-expiring") == [f"card-expiring:{c.id}:2025-05"]
    # The next night it is neither flagged again nor warned again.
    run = run_job("flag-expiring-cards", settings, utc(2025, 5, 12), now=utc(2025, 5, 12, 0, 1))
    assert (run.changed, run.emails_queued) == (0, 0)


def test_dry_run_and_resume_walk_each_range_once(settings, make_user, card, monkeypatch, outbox_keys):
    from scheduled import ledger

    monkeypatch.setattr(ledger, "BATCH_SIZE", 2)
    cards = [card(make_user().id, 5, 2025) for _ in range(5)]
    stale = card(make_user().id, 12, 2030, is_expiring=True, updated_at=utc(2020, 1, 1))
    dry = run_job("flag-expiring-cards", settings, utc(2025, 5, 10), dry_run=True, now=utc(2025, 5, 10, 0, 1))
    assert dry.status == "succeeded" and outbox_keys() == []
    assert sorted(dry.details["would_flag_or_clear"]) == sorted([c.id for c in cards] + [stale.id])

    def kill_after_two_batches(ctx):
        if ctx.scanned >= 3:
            raise KeyboardInterrupt

    try:
        run_job("flag-expiring-cards", settings, utc(2025, 5, 10), now=utc(2025, 5, 10, 0, 1), after_batch=kill_after_two_batches)
    except KeyboardInterrupt:
        pass
    later = utc(2025, 5, 10, 0, 1) + ledger.STALE_AFTER + timedelta(minutes=1)
    run = run_job("flag-expiring-cards", settings, utc(2025, 5, 10), now=later)
    assert (run.status, run.attempts, run.emails_queued) == ("succeeded", 2, 5)
    assert sorted(outbox_keys("card-expiring")) == sorted(f"card-expiring:{c.id}:2025-05" for c in cards)
    with session_scope() as s:
        assert dict(s.execute(select(Card.id, Card.is_expiring)).all()) == {**{c.id: True for c in cards}, stale.id: False}
