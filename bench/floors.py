"""The floor of each nightly job: the bare SQL statements that produce the same effects.

Written as a DBA would, one transaction per job, no ledger, no batching, no Python per row:
the outbox rows (template name and JSON context, as the jobs write them) are built by
jsonb_build_object() in SQL. The Stripe-deletion tasks the purge enqueues are left out.
"""
from __future__ import annotations

import calendar
import time
from datetime import UTC, datetime, timedelta
from datetime import time as dtime

import psycopg

from billing.expiry import expiring_horizon
from billing.finance import periods_for
from saas.core.slots import latest_slot

FLAG = [
    "UPDATE cards SET is_expiring = false WHERE is_expiring AND NOT (is_default AND expires_on <= %(horizon)s)",
    """WITH flagged AS (
         UPDATE cards c SET is_expiring = true FROM users u
         WHERE u.id = c.user_id AND NOT c.is_expiring AND c.is_default AND c.expires_on <= %(horizon)s
         RETURNING c.id, c.brand, c.last4, c.exp_month, c.exp_year, c.expires_on, c.user_id, u.email, u.name,
                   u.purged_at)
       INSERT INTO outbox (idempotency_key, kind, user_id, to_addr, template, context, attachments,
                           status, attempts, created_at, next_attempt_at)
       SELECT 'card-expiring:' || id || ':' || exp_year || '-' || lpad(exp_month::text, 2, '0'), 'card-expiring',
              user_id, email, 'card_expiring',
              jsonb_build_object('name', name, 'brand', brand, 'last4', last4, 'exp_month', exp_month,
                                 'exp_year', exp_year, 'expires_on', expires_on, 'update_url', %(update_url)s::text),
              '[]', 'pending', 0, now(), now()
       FROM flagged WHERE purged_at IS NULL
       ON CONFLICT (idempotency_key) DO NOTHING""",
]

REMIND = [
    """WITH warned AS (
         UPDATE users SET inactive_warned_at = now(), purge_due_at = now() + interval '30 days', purge_approved_at = NULL
         WHERE role = 'subscriber' AND purged_at IS NULL AND purge_exempt_reason IS NULL
           AND last_seen_at < %(cutoff)s AND (inactive_warned_at IS NULL OR inactive_warned_at < last_seen_at)
         RETURNING id, email, name, last_seen_at)
       INSERT INTO outbox (idempotency_key, kind, user_id, to_addr, template, context, attachments,
                           status, attempts, created_at, next_attempt_at)
       SELECT 'inactive-warning:' || id || ':' || to_char(last_seen_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'), 'inactive-warning', id, email, 'inactive_warning',
              jsonb_build_object('name', name, 'last_seen_on', last_seen_at::date,
                                 'purge_on', (now() + interval '30 days')::date, 'login_url', %(login_url)s::text),
              '[]', 'pending', 0, now(), now()
       FROM warned ON CONFLICT (idempotency_key) DO NOTHING""",
]

PURGE = [
    """CREATE TEMP TABLE purge_ids ON COMMIT DROP AS
       SELECT u.id FROM users u
       WHERE u.role = 'subscriber' AND u.purged_at IS NULL AND u.inactive_warned_at IS NOT NULL
         AND u.last_seen_at < u.inactive_warned_at AND u.purge_exempt_reason IS NULL
         AND (u.purge_due_at <= now() OR u.purge_approved_at IS NOT NULL)
         AND u.credit_balance_cents <= 0
         AND NOT EXISTS (SELECT 1 FROM subscriptions s WHERE s.user_id = u.id
                         AND s.status IN ('active', 'trialing', 'past_due'))
         AND NOT EXISTS (SELECT 1 FROM invoices i WHERE i.user_id = u.id AND i.status IN ('open', 'uncollectible'))
       FOR UPDATE OF u""",
    """INSERT INTO audit_log (at, actor, action, subject_type, subject_id, details)
       SELECT now(), 'job:purge-dormant-accounts', 'account.purged', 'user', u.id::text,
              jsonb_build_object('reason', 'no sign-in', 'warned_at', u.inactive_warned_at, 'purge_due_at', u.purge_due_at)
       FROM users u JOIN purge_ids p USING (id)""",
    "UPDATE invoices SET customer_email = NULL, customer_name = NULL WHERE user_id IN (SELECT id FROM purge_ids)",
    "DELETE FROM cards WHERE user_id IN (SELECT id FROM purge_ids)",
    """UPDATE outbox SET to_addr = 'purged-' || user_id || '@invalid', reply_to = NULL, template = '_prerendered',
              context = '{"subject": "[removed]", "text": "[removed]", "html": "[removed]"}', attachments = '[]',
              status = CASE WHEN status IN ('pending', 'sending') THEN 'failed' ELSE status END
       WHERE user_id IN (SELECT id FROM purge_ids)""",
    """UPDATE users SET name = '', email = 'purged-' || id || '@invalid', password_hash = NULL,
              session_token = md5(random()::text) || md5(random()::text), purged_at = now(),
              purge_due_at = NULL, purge_approved_at = NULL
       WHERE id IN (SELECT id FROM purge_ids)""",
]

FINANCE = [
    """WITH p AS (SELECT %(start)s::timestamptz AS s, %(end)s::timestamptz AS e),
       figures AS (SELECT jsonb_build_object(
         'mrr', (SELECT sum(CASE WHEN interval = 'year' THEN (amount_cents + 6) / 12 ELSE amount_cents END)
                 FROM subscriptions WHERE status IN ('active', 'past_due')),
         'movements', (SELECT jsonb_object_agg(kind, d) FROM (SELECT kind, sum(mrr_after_cents - mrr_before_cents) d
                       FROM mrr_movements, p WHERE at >= p.s AND at < p.e GROUP BY kind) m),
         'failed', (SELECT count(*) FROM invoices, p WHERE first_failed_at >= p.s AND first_failed_at < p.e),
         'recovered', (SELECT count(*) FROM invoices, p WHERE paid_at >= p.s AND paid_at < p.e
                       AND first_failed_at IS NOT NULL AND first_failed_at < paid_at),
         'at_risk', (SELECT sum(CASE WHEN interval = 'year' THEN (amount_cents + 6) / 12 ELSE amount_cents END)
                     FROM subscriptions WHERE status IN ('active', 'past_due') AND user_id IN (
                       SELECT c.user_id FROM cards c JOIN users u ON u.id = c.user_id
                       WHERE c.is_default AND c.expires_on >= %(today)s AND c.expires_on <= %(horizon)s
                         AND u.purged_at IS NULL)),
         'expiring', (SELECT count(*) FROM cards c JOIN users u ON u.id = c.user_id
                      WHERE c.is_default AND c.expires_on >= %(today)s AND c.expires_on <= %(horizon)s
                        AND u.purged_at IS NULL),
         'active', (SELECT count(*) FROM subscriptions WHERE status IN ('active', 'past_due')),
         'trialing', (SELECT count(*) FROM subscriptions WHERE status = 'trialing'),
         'new', (SELECT count(*) FROM subscriptions, p WHERE created_at >= p.s AND created_at < p.e),
         'cancelled', (SELECT count(*) FROM subscriptions, p WHERE canceled_at >= p.s AND canceled_at < p.e),
         'reminders', (SELECT count(*) FROM outbox, p WHERE kind = 'inactive-warning' AND created_at >= p.s AND created_at < p.e),
         'purged', (SELECT count(*) FROM audit_log, p WHERE action = 'account.purged' AND at >= p.s AND at < p.e),
         'pending', (SELECT count(*) FROM users WHERE purge_due_at IS NOT NULL AND purged_at IS NULL)) AS f),
       summary AS (INSERT INTO finance_summaries (period, period_start, period_end, figures, csv, created_at)
                   SELECT %(period)s, %(first)s, %(last)s, f, f::text, now() FROM figures
                   ON CONFLICT DO NOTHING RETURNING figures)
       INSERT INTO outbox (idempotency_key, kind, to_addr, template, context, attachments,
                           status, attempts, created_at, next_attempt_at)
       SELECT 'finance-summary:' || %(period)s || ':' || %(first)s, 'finance-summary', 'finance@example.com',
              'finance_summary', jsonb_build_object('period', %(period)s::text, 'figures', figures),
              jsonb_build_array(jsonb_build_object('filename', 'summary.csv', 'content_type', 'text/csv',
                                                   'content', figures::text)),
              'pending', 0, now(), now()
       FROM summary ON CONFLICT (idempotency_key) DO NOTHING""",
]

STATEMENTS = {"flag-expiring-cards": FLAG, "remind-inactive-users": REMIND,
              "purge-dormant-accounts": PURGE, "finance-summary": FINANCE}


STARTED = datetime.now(UTC)  # one moment for the whole bench run (seed, slots, floors)


def job_slot(job: str, settings) -> datetime:
    """The job's newest slot when the bench started: the job's runs, its floor and its naive loop all
    work on this one, even when the run crosses midnight."""
    return latest_slot(settings.schedules[job], settings.tz, STARTED)


def slot_day(job: str, settings):
    """The local date of that slot: the `today` the job works on (before 06:00, finance-summary's
    newest slot is yesterday's), so the floor and the naive loop take the same day."""
    return job_slot(job, settings).astimezone(settings.tz).date()


def params(today, settings) -> dict:
    """The values the floors' statements take for `today`; finance-summary runs once per period of
    the job's own `periods_for` (two on the 1st of a month), so job and floor do the same work."""
    tz = settings.tz
    cutoff_month = today.month - settings.inactive_after_months
    year, month = today.year + (cutoff_month - 1) // 12, (cutoff_month - 1) % 12 + 1
    cutoff = datetime.combine(today.replace(year=year, month=month, day=min(today.day, calendar.monthrange(year, month)[1])),
                              dtime(0), tz)
    periods = [{"period": period, "first": first, "last": last, "start": datetime.combine(first, dtime(0), tz),
                "end": datetime.combine(last + timedelta(days=1), dtime(0), tz)}
               for period, first, last in periods_for(today)]
    return {"horizon": expiring_horizon(today, settings.card_expiring_days), "cutoff": cutoff,
            "today": today, "periods": periods,
            "update_url": f"{settings.app_url}/billing/card", "login_url": f"{settings.app_url}/login"}


def _passes(job: str, values: dict) -> list[dict]:
    """One set of values per run of the job's statements (finance: one per period)."""
    if job == "finance-summary":
        return [{**values, **period} for period in values["periods"]]
    return [values]


def run_floor(database_url: str, job: str, values: dict) -> float:
    """Run the job's statements in one transaction; returns seconds. Warm like the job: connected,
    and after a first pass over the same statements that is rolled back."""
    passes = _passes(job, values)
    with psycopg.connect(database_url) as conn:
        with conn.transaction(force_rollback=True):
            for vals in passes:
                for statement in STATEMENTS[job]:
                    conn.execute(statement, vals)
        start = time.perf_counter()
        with conn.transaction():
            for vals in passes:
                for statement in STATEMENTS[job]:
                    conn.execute(statement, vals)
        return time.perf_counter() - start
