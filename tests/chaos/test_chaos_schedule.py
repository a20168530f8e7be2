"""Chaos: three beats, two workers, a month of nightly slots, SIGKILLs at random and a Redis crash;
run three times: with Redis as the Celery broker; with RabbitMQ (SIGKILLed and restarted mid-month
too); and with every Redis client behind Sentinel, where the mid-month crash is the primary's
SIGKILL and the Sentinels' failover to its replica (the old primary comes back as a replica).
Dunning cases open along the month, so advance-dunning (daily here: the compressed clock would make its
hourly slots 768 runs) takes their steps under the same kills.

The processes share a test clock (scheduled.clock) that this driver moves one day per step, so
32 nightly slots per job pass in a few minutes. Afterwards every slot has exactly one succeeded
run, every email reached the SMTP sink exactly once and the database is consistent.
"""
from __future__ import annotations

import collections
import random
import time
from datetime import UTC, date, datetime, timedelta

import pytest
from chaos_cluster import Cluster, wait_until
from sqlalchemy import func, select

from tests.engines import rabbitmq_binary

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(480)]

START = datetime(2031, 1, 20, 6, 30, tzinfo=UTC)  # after each job's slot of the day
STEPS = 32  # days, so 32 slots per job after the first start
STEP_SECONDS = 4.0
SETTLE_SECONDS = 150
BEATS = ("beat-1", "beat-2", "beat-3")
WORKERS = ("worker-1", "worker-2")


def seed(start: date) -> dict[str, int]:
    """Subscribers whose cards enter the expiry window and who turn inactive along the month."""
    from billing.models import Card
    from saas.core.db import session_scope
    from saas.core.models import User

    noon = datetime.combine(start, datetime.min.time(), tzinfo=UTC) + timedelta(hours=12)
    with session_scope() as s:
        for i, (year, month) in enumerate([(2031, 1)] * 15 + [(2031, 2)] * 15 + [(2031, 3)] * 10):
            user = User(email=f"card{i}@example.com", name=f"Card {i}", last_seen_at=noon)
            s.add(user)
            s.flush()
            s.add(Card(user_id=user.id, stripe_payment_method_id=f"pm_chaos_{i}", brand="visa",
                       last4=f"{i:04d}", exp_month=month, exp_year=year))
        six_months_ago = date(start.year - (start.month <= 6), (start.month - 7) % 12 + 1, start.day)
        for k in range(STEPS + 2):
            last_seen = datetime.combine(six_months_ago + timedelta(days=k), datetime.min.time(),
                                         tzinfo=UTC) + timedelta(hours=12)
            s.add(User(email=f"idle{k}@example.com", name=f"Idle {k}", last_seen_at=last_seen))
    return {"cards": 40, "idle": STEPS + 2}


DUNNING_CRON = "0 5 * * *"  # before START's time of day: the settle loop's nudges add no slot


def seed_dunning(start: date) -> list[tuple[int, datetime]]:
    """Subscribers whose renewal failed on days spread over the month (and before it): their cases."""
    from billing.models import DunningCase, Invoice, Subscription
    from saas.core.db import session_scope
    from saas.core.models import User

    noon = datetime.combine(start, datetime.min.time(), tzinfo=UTC) + timedelta(hours=12)
    cases = []
    with session_scope() as s:
        for i in range(24):
            opened = noon + timedelta(days=i - 8, hours=i % 5)
            user = User(email=f"dunning{i}@example.com", name=f"Dunning {i}", last_seen_at=noon)
            s.add(user)
            s.flush()
            sub = Subscription(user_id=user.id, stripe_subscription_id=f"sub_chaos_{i}", plan="pro", status="past_due",
                               amount_cents=2900)
            s.add(sub)
            s.flush()
            inv = Invoice(user_id=user.id, subscription_id=sub.id, stripe_invoice_id=f"in_chaos_{i}", status="open",
                          amount_cents=2900, first_failed_at=opened)
            s.add(inv)
            s.flush()
            case = DunningCase(user_id=user.id, subscription_id=sub.id, invoice_id=inv.id, amount_cents=2900,
                               mrr_cents=2900, opened_at=opened, link_token=f"chaos-{i}")
            s.add(case)
            s.flush()
            cases.append((case.id, opened))
    return cases


BROKERS = [
    "redis",
    "sentinel",  # Redis through Sentinel: broker, RedBeat's lock, limits and progress
    pytest.param("rabbitmq", marks=pytest.mark.skipif(rabbitmq_binary() is None, reason=(
        "rabbitmq-server is not installed (Debian package `rabbitmq-server`; .ci/run installs it)"))),
]


@pytest.mark.parametrize("broker", BROKERS)
def test_month_of_slots_under_sigkill_and_redis_crash(broker, services, wide_catchup_window, tmp_path, monkeypatch):
    from billing.dunning import step_due_at
    from billing.expiry import expiring_clause
    from billing.models import Card, DunningCase
    from saas.core.db import session_scope
    from saas.core.models import AuditLog, User
    from saas.core.outbox import OutboxMessage
    from saas.core.settings import Settings
    from saas.core.slots import latest_slot, slots_between
    from scheduled.models import JobRun

    seed(START.date())
    # Daily dunning slots, and a final action that calls no Stripe (there is none in this cluster).
    monkeypatch.setenv("SCHEDULE_ADVANCE_DUNNING", DUNNING_CRON)
    monkeypatch.setenv("DUNNING_FINAL_ACTION", "keep")
    cases = seed_dunning(START.date())
    rng = random.Random(7)
    cluster = Cluster(tmp_path, services["database_url"], START, broker=broker)
    kills: collections.Counter[str] = collections.Counter()
    try:
        for name in BEATS:
            cluster.start(name, "beat")
        for name in WORKERS:
            cluster.start(name, "worker")
        # The month starts once the leading beat has looked at day 0 (its fresh-install baseline is in
        # the ledger): on a loaded machine a beat can take longer than one step to start, and day 1
        # would then be recorded as baseline too. Waiting for it keeps the test off timing luck.
        early = Settings.from_env(cluster.env)
        baseline = {job for job, cron in early.schedules.items()
                    if slots_between(cron, early.tz, START - early.catchup_window, START)}

        def beat_has_looked() -> bool:
            with session_scope() as s:
                return baseline <= set(s.scalars(select(JobRun.job).where(JobRun.slot <= START).distinct()))

        assert wait_until(beat_has_looked, timeout=120), "no beat recorded the day-0 baseline in 120 s"
        redis_crash_step = STEPS // 2
        broker_crash_step = STEPS * 3 // 4 if broker == "rabbitmq" else None
        failover: dict[str, float | int] = {}
        for step in range(1, STEPS + 1):
            kill_at = rng.uniform(0, STEP_SECONDS)
            time.sleep(kill_at)
            cluster.restart_dead()
            if step == redis_crash_step and cluster.sentinel is not None:
                failover = cluster.sentinel.fail_over()
                kills["redis-primary"] += 1
            elif step == redis_crash_step:
                cluster.kill_redis()
                time.sleep(2)
                cluster.start_redis()
                kills["redis"] += 1
            elif step == broker_crash_step:
                cluster.kill_broker()
                kills["rabbitmq"] += 1
            elif rng.random() < 0.85:
                victim = rng.choice(BEATS + WORKERS)
                cluster.kill(victim)
                kills[victim.split("-")[0]] += 1
                if rng.random() < 0.5:  # sometimes it stays down for a moment
                    time.sleep(rng.uniform(0, 2))
                cluster.start(victim, cluster.kinds[victim])
            time.sleep(STEP_SECONDS - kill_at)
            cluster.advance(START + timedelta(days=step))

        settings = Settings.from_env(cluster.env)  # what the cluster's processes read
        final_day = START + timedelta(days=STEPS)
        # Each job's slots in the window, and its latest slot at the first start, however old: beat records
        # that one as the fresh-install baseline too (reconcile-stripe's leap day of 2028, here).
        expected = {job: set(slots_between(cron, settings.tz, START - settings.catchup_window, final_day))
                    | {slot for slot in [latest_slot(cron, settings.tz, START)] if slot is not None}
                    for job, cron in settings.schedules.items()}

        def settled() -> bool:
            with session_scope() as s:
                done = {(job, slot) for job, slot in s.execute(
                    select(JobRun.job, JobRun.slot).where(~JobRun.dry_run,
                                                          JobRun.status.in_(("succeeded", "skipped"))))}
                busy = s.scalar(select(func.count()).select_from(OutboxMessage)
                                .where(OutboxMessage.status.in_(("pending", "sending"))))
            return busy == 0 and all((job, slot) in done for job, slots in expected.items() for slot in slots)

        def nudge() -> None:
            """Keep the clock moving within the last day (no new slot) so dead runs go stale."""
            cluster.restart_dead()
            if cluster.clock < final_day + timedelta(hours=17):
                cluster.advance(cluster.clock + timedelta(minutes=2))

        ok = wait_until(settled, SETTLE_SECONDS, every=1.0, on_tick=nudge)
        logs = "\n".join(f"--- {n}\n{cluster.log_tail(n, 15)}" for n in cluster.procs)

        with session_scope() as s:
            runs = s.execute(select(JobRun.job, JobRun.slot, JobRun.status, JobRun.attempts)
                             .where(~JobRun.dry_run)).all()
            late_skips = s.execute(select(JobRun.job, JobRun.slot, JobRun.error).where(
                JobRun.status == "skipped", JobRun.slot > START)).all()
            outbox = s.execute(select(OutboxMessage.id, OutboxMessage.status, OutboxMessage.idempotency_key)).all()
            today = cluster.clock.astimezone(settings.tz).date()
            wrong_flags = s.scalar(select(func.count()).select_from(Card).where(
                Card.is_expiring != (Card.is_default & expiring_clause(today, settings.card_expiring_days))))
            flagged_keys = {f"card-expiring:{c.id}:{c.exp_year}-{c.exp_month:02d}"
                            for c in s.scalars(select(Card).where(Card.is_expiring))}
            purged = set(s.scalars(select(User.id).where(User.purged_at.is_not(None))))
            case_steps = dict(s.execute(select(DunningCase.id, DunningCase.step)).all())
            audited = set(int(i) for i in s.scalars(select(AuditLog.subject_id)
                                                    .where(AuditLog.action == "account.purged")))
        sink = collections.Counter(m["Message-ID"] for m in cluster.sink.messages())
    finally:
        cluster.close()

    per_slot = collections.Counter((job, slot) for job, slot, _status, _attempts in runs)
    statuses = {(job, slot): status for job, slot, status, _attempts in runs}
    domain = "example.com"
    sent_ids = {f"<outbox-{i}@{domain}>" for i, status, _key in outbox if status == "sent"}
    failed = [i for i, status, _key in outbox if status == "failed"]
    duplicates = sum(n - 1 for n in sink.values() if n > 1)
    lost = len(sent_ids - set(sink)) + sum(1 for _i, status, _k in outbox if status in ("pending", "sending"))
    slots_run = sum(1 for status in statuses.values() if status == "succeeded")
    takeovers = sum(1 for *_rest, attempts in runs if attempts > 1)
    print(f"\nCHAOS broker: {broker}")
    print(f"CHAOS slots: {sum(len(v) for v in expected.values())} expected "
          f"({len(expected)} jobs), {slots_run} run (succeeded), "
          f"{sum(1 for s in statuses.values() if s == 'skipped')} skipped (fresh-install baseline), "
          f"{takeovers} taken over after a crash")
    print(f"CHAOS kills injected: {sum(kills.values())} ({dict(kills)}); "
          f"process starts: {sum(cluster.starts.values())}")
    print(f"CHAOS emails: {len(outbox)} outbox rows, {len(sent_ids)} sent, {sum(sink.values())} received, "
          f"duplicates {duplicates}, lost {lost}, visibly failed {len(failed)}")
    if failover:
        print(f"CHAOS failover on day {redis_crash_step}: primary :{failover['old']} SIGKILLed at 0 s; the Sentinels "
              f"promoted :{failover['new']} at {failover['promoted']:.1f} s; the old primary restarted at "
              f"{failover['restarted']:.1f} s and was a replica again at {failover.get('replica_again', -1):.1f} s")

    for row in late_skips:
        print("CHAOS skipped after start:", row)
    for job, slots in expected.items():  # what a run that did not settle left behind
        for slot in sorted(slots):
            if statuses.get((job, slot)) not in ("succeeded", "skipped"):
                print("CHAOS not done:", job, slot.isoformat(), statuses.get((job, slot), "no ledger row"))
    for outbox_id, status, key in outbox:
        if status in ("pending", "sending"):
            print("CHAOS left in the outbox:", outbox_id, status, key)
    assert ok, f"did not settle in {SETTLE_SECONDS}s\n{logs}"
    assert max(per_slot.values()) == 1
    for job, slots in expected.items():
        got = {slot for (j, slot) in statuses if j == job}
        assert got == slots, f"{job}: unexpected {sorted(got - slots)} missing {sorted(slots - got)}"
        for slot in slots:
            # Slots before the first start are the fresh-install baseline; every later one ran.
            assert statuses[(job, slot)] == ("skipped" if slot <= START else "succeeded"), (job, slot)
    # No email is lost. A second copy can only come from a worker killed between the SMTP server's
    # acceptance and the row's `sent` (docs/reliability.md, "What the suite does not prove"): it carries
    # the same Message-ID (counted per Message-ID here), so a receiver drops it, and there is at most
    # one such copy per worker kill. Asserting none would make the test pass by timing luck.
    assert lost == 0 and duplicates <= kills["worker"], (duplicates, kills)
    assert set(sink) == sent_ids
    assert wrong_flags == 0
    assert flagged_keys <= {key for _i, _s, key in outbox}
    assert purged <= audited
    # Dunning: each case reached the newest step due by the last slot, each step's email was sent at most
    # once per (case, step) and received exactly once (the sink's duplicates/lost above cover every email)
    last_slot = max(expected["advance-dunning"])
    dunning_keys = collections.Counter(key for _i, _s, key in outbox if key.startswith("dunning:"))
    dunning_emails = sum(dunning_keys.values())
    for case_id, opened in cases:
        due = [k for k, days in enumerate(settings.dunning_schedule) if k and step_due_at(opened, days, settings.tz)
               <= last_slot]
        newest = max(due, default=0)
        assert case_steps[case_id] == newest, (case_id, opened, case_steps[case_id], due)
        sent_steps = {int(key.rsplit(":", 1)[1]) for key in dunning_keys if key.startswith(f"dunning:{case_id}:")}
        assert sent_steps <= set(due) and (newest == 0 or newest in sent_steps), (case_id, sent_steps, due)
    print(f"CHAOS dunning: {len(cases)} cases, {dunning_emails} step emails, each received once")
    assert dunning_emails >= len(cases)
    assert sum(kills.values()) >= 20
    if broker == "sentinel":
        assert "replica_again" in failover, failover  # the Sentinels took the old primary back as a replica
