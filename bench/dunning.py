"""Part `dunning`: advance-dunning at --users accounts (and a tenth of them, for memory): 60% subscribe,
2% of the subscriptions are in dunning, 1/14 of the cases due in the slot. The job (child process, via
run_job) against its bare-SQL floor and a naive ORM loop, each on a fresh copy of the same data.

The data is made in SQL (generate_series), not by the COPY seed of the other parts: the job reads only
cases and their owners, so a million users take seconds to make.
"""
from __future__ import annotations

import os
import time

import psycopg

from bench.floors import job_slot
from bench.jobs import run_in_child
from bench.report import Report, ratio
from billing import dunning
from billing.models import DunningCase, DunningStep
from saas.core import runtime
from saas.core.db import reset_engines, session_scope
from saas.core.models import User
from saas.core.outbox import queue_email

JOB = "advance-dunning"
DB = "bench_dunning"


def seed_cases(database_url: str, users: int, slot, schedule: tuple[int, ...]) -> dict[str, int]:
    """Users, subscriptions (60% of users, past_due in dunning, else active) and the open cases of 2% of
    the subscriptions, opened within the schedule; every 14th case has a step due in `slot`, the others
    have taken every step due so far (their next step is after the slot)."""
    days = list(schedule)
    with psycopg.connect(database_url, autocommit=False) as conn:
        conn.execute("""
            INSERT INTO users (id, email, name, password_hash, role, session_token, created_at, last_seen_at,
                               credit_balance_cents)
            SELECT g, 'user' || g || '@example.com', 'User ' || g, 'x', 'subscriber', 'tok' || g,
                   %(slot)s - interval '400 days', %(slot)s - interval '1 day', 0
            FROM generate_series(1, %(users)s) g""", {"users": users, "slot": slot})
        conn.execute("""
            INSERT INTO subscriptions (id, user_id, stripe_subscription_id, plan, status, amount_cents, currency,
                                       interval, cancel_at_period_end, created_at, updated_at, stripe_event_created)
            SELECT n, u, 'sub_' || n, 'pro', CASE WHEN n %% 50 = 0 THEN 'past_due' ELSE 'active' END, 2900, 'usd',
                   'month', false, %(slot)s - interval '300 days', %(slot)s - interval '300 days', 0
            FROM (SELECT u, row_number() OVER (ORDER BY u) AS n FROM generate_series(1, %(users)s) u
                  WHERE u %% 5 < 3) s""", {"users": users, "slot": slot})
        # age in days: due cases in [3, 15), the others in [0, 14); step = the steps due at that age
        # (minus one for a due case, whose newest step is this slot's work)
        conn.execute("""
            INSERT INTO dunning_cases (user_id, subscription_id, invoice_id, status, step, amount_cents, currency,
                                       mrr_cents, opened_at, link_token)
            SELECT user_id, id, NULL, 'open',
                   (SELECT count(*) FROM unnest(%(days)s::int[]) d WHERE d <= age) - 1 - (due::int), 2900, 'usd',
                   2900, %(slot)s - make_interval(secs => age * 86400), md5('case' || id)
            FROM (SELECT id, user_id, (id / 50) %% 14 = 0 AS due,
                         CASE WHEN (id / 50) %% 14 = 0 THEN 3 + 12 * random() ELSE 14 * random() END AS age
                  FROM subscriptions WHERE status = 'past_due') c""", {"days": days, "slot": slot})
        conn.execute("SELECT setval(pg_get_serial_sequence('users', 'id'), %(n)s + 1, false)", {"n": users})
        counts = conn.execute("SELECT (SELECT count(*) FROM subscriptions), (SELECT count(*) FROM dunning_cases), "
                              "(SELECT count(*) FROM dunning_cases WHERE (subscription_id / 50) % 14 = 0)").fetchone()
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
    return {"users": users, "subscriptions": counts[0], "cases": counts[1], "due": counts[2]}


def floor_statements(settings, slot) -> list[tuple[str, dict]]:
    """advance-dunning as a DBA would write it: per step, newest first, one statement that moves the due
    cases, records their steps and queues their emails; one transaction, no ledger, no batches."""
    schedule, tz, action = settings.dunning_schedule, settings.tz, settings.dunning_final_action
    out = []
    for k in range(len(schedule) - 1, 0, -1):
        final = k == len(schedule) - 1
        closes = final and action != "keep"
        set_final = ", status = 'lost', closed_at = %(slot)s, final_action = %(action)s" if closes else ""
        next_days = schedule[k + 1] if not final else schedule[-1]
        out.append((f"""
            WITH moved AS (
              UPDATE dunning_cases SET step = %(k)s {set_final}
              WHERE status = 'open' AND step < %(k)s AND opened_at <= %(cutoff)s
              RETURNING id, user_id, amount_cents, currency, opened_at, link_token),
            steps AS (INSERT INTO dunning_steps (case_id, step, days, final, taken_at)
                      SELECT id, %(k)s, %(days)s, %(final)s, %(slot)s FROM moved ON CONFLICT DO NOTHING)
            INSERT INTO outbox (idempotency_key, kind, user_id, to_addr, template, context, attachments,
                                status, attempts, created_at, next_attempt_at)
            SELECT 'dunning:' || m.id || ':' || %(k)s, 'dunning', u.id, u.email, %(template)s,
                   jsonb_build_object('name', coalesce(nullif(u.name, ''), u.email), 'amount_cents', m.amount_cents,
                     'currency', upper(m.currency), 'step', %(k)s, 'steps', %(steps)s, 'days_since', %(days)s,
                     'next_on', ((m.opened_at AT TIME ZONE %(tz)s) + make_interval(days => %(next)s))::date,
                     'final_on', ((m.opened_at AT TIME ZONE %(tz)s) + make_interval(days => %(last)s))::date,
                     'next_is_final', %(next_is_final)s, 'final_action', %(action)s::text,
                     'final_words', %(words)s::text, 'recover_url', %(url)s || m.link_token),
                   '[]', 'pending', 0, now(), now()
            FROM moved m JOIN users u ON u.id = m.user_id WHERE u.purged_at IS NULL
            ON CONFLICT (idempotency_key) DO NOTHING""",
                    {"k": k, "cutoff": dunning.opened_by(slot, schedule[k], tz), "slot": slot, "action": action,
                     "days": schedule[k], "final": final, "template": "dunning_final" if final else "dunning_reminder",
                     "steps": len(schedule) - 1, "next": next_days, "last": schedule[-1], "tz": settings.app_timezone,
                     "next_is_final": k + 1 == len(schedule) - 1, "words": dunning.FINAL_WORDS[action],
                     "url": settings.app_url + dunning.RECOVER_PATH}))
    return out


def run_floor(database_url: str, settings, slot) -> float:
    statements = floor_statements(settings, slot)
    with psycopg.connect(database_url) as conn:
        with conn.transaction(force_rollback=True):  # warm, as the job's dry run warms it
            for sql, values in statements:
                conn.execute(sql, values)
        start = time.perf_counter()
        with conn.transaction():
            for sql, values in statements:
                conn.execute(sql, values)
        return time.perf_counter() - start


def run_naive(settings, slot) -> float:
    """Every open case through the ORM: its next step computed in Python, its owner loaded, the step
    taken and the email queued with queue_email, one commit per case moved."""
    start = time.perf_counter()
    with session_scope() as session:
        for case in session.scalars(DunningCase.__table__.select().where(DunningCase.status == "open")
                                    .with_only_columns(DunningCase.id)).all():
            row = session.get(DunningCase, case)
            upcoming = dunning.next_step(row, settings)
            if upcoming is None or upcoming.due_at > slot:
                continue
            user = session.get(User, row.user_id)
            row.step = upcoming.step
            if upcoming.final and settings.dunning_final_action != "keep":
                row.status, row.closed_at, row.final_action = "lost", slot, settings.dunning_final_action
            session.add(DunningStep(case_id=row.id, step=upcoming.step, days=settings.dunning_schedule[upcoming.step],
                                    final=upcoming.final, taken_at=slot))
            queue_email(session, key=f"dunning:{row.id}:{upcoming.step}", kind="dunning", to=user.email,
                        template="dunning_final" if upcoming.final else "dunning_reminder", user_id=user.id,
                        context={"name": user.name, "amount_cents": row.amount_cents, "step": upcoming.step})
            session.commit()
    return time.perf_counter() - start


def moved(database_url: str) -> tuple[int, int]:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT (SELECT count(*) FROM dunning_steps), "
                            "(SELECT count(*) FROM outbox WHERE kind = 'dunning')").fetchone()


def bench_dunning(harness, report: Report, users: int, repeat: int) -> None:
    settings = runtime.settings()
    slot = job_slot(JOB, settings)
    sizes = sorted({max(users // 10, 1000), users})
    report.section(f"advance-dunning: the job (child process, via run_job, warm) | bare SQL floor | naive ORM loop, "
                   f"at {', '.join(f'{n:,}' for n in sizes)} users (2% of subscriptions in dunning, 1/14 due)")
    for n in sizes:
        name = f"{DB}_{n}"
        start = time.perf_counter()
        counts = seed_cases(harness.create_database(name), n, slot, settings.dunning_schedule)
        reset_engines()
        print(f"  seeded {n:,} users: {counts['subscriptions']:,} subscriptions, {counts['cases']:,} cases, "
              f"{counts['due']:,} due; {time.perf_counter() - start:.1f}s", flush=True)
        tag = f"dunning.{n}"
        for _ in range(repeat):
            harness.fresh_copy(name)
            harness.clear_redis()
            result = run_in_child(JOB)
            report.add(f"{tag}.job", "s", result["seconds"])
            report.add(f"{tag}.peak_rss", "MB", result["peak_mb"])
            job_effects = moved(os.environ["DATABASE_URL"])  # the copy the job ran on
            url = harness.fresh_copy(name)
            report.add(f"{tag}.floor", "s", run_floor(url, settings, slot))
            floor_effects = moved(url)
            harness.fresh_copy(name)
            report.add(f"{tag}.naive", "s", run_naive(settings, slot))
            naive_effects = moved(os.environ["DATABASE_URL"])
        print(f"  {n:,} users: steps/emails job {job_effects}, floor {floor_effects}, naive {naive_effects}; "
              f"job moved {result['changed']:,}, emails {result['emails']:,}", flush=True)
        report.show(f"{tag}.job", f"{tag}.floor", f"{tag}.naive", f"{tag}.peak_rss")
    med = lambda key: report.stats[key].median  # noqa: E731
    big = f"dunning.{users}"
    vs_floor = ratio(med(f"{big}.job"), med(f"{big}.floor"))
    report.check(f"advance-dunning / floor at {users:,} users", vs_floor, "<= 2", vs_floor <= 2)
    speedup = ratio(med(f"{big}.naive"), med(f"{big}.job"))
    report.check(f"naive loop / advance-dunning at {users:,} users", speedup, ">= 50", speedup >= 50)
    if len(sizes) > 1:
        small = f"dunning.{sizes[0]}"
        growth = ratio(max(report.stats[f"{big}.peak_rss"].samples), max(report.stats[f"{small}.peak_rss"].samples))
        report.check(f"advance-dunning peak RSS, {users:,} / {sizes[0]:,} users", growth, "about 1 (flat)",
                     growth <= 1.1)

