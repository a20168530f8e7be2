"""Seed the benchmark data with COPY (never the ORM): users, cards, subscriptions, invoices.

The data is a steady state as of today: every past night has run, so the nightly jobs find one
night's work, not years of it. Users: last seen over 2 years (half within 6 months); those who
crossed the 6-month line before today are warned, and the unprotected ones whose grace ran out
before today are purged. Cards: expiries over 5 years (12 months back to 48 ahead); expiring
default cards are flagged and warned, except the `entering` ones, which are today's work
(by default the cards of the month that entered the 30-day window today: the busiest night).
"""
from __future__ import annotations

import json
import random
import time
from datetime import UTC, date, datetime, timedelta

import psycopg

from bench.floors import STARTED
from bench.report import Report
from billing.plans import monthly_cents
from saas.core.accounts import hash_password
from saas.core.db import reset_engines

SUBSCRIPTION_MIX = (("active", 0.65), ("trialing", 0.07), ("past_due", 0.05), ("canceled", 0.23))
PLANS = (("starter", 900), ("pro", 2900), ("business", 9900))
BRANDS = ("visa", "mastercard", "amex", "discover")
BENCH_PASSWORD = "bench-password-42"
NULL = "\\N"


def _ts(moment: datetime | None) -> str:
    return NULL if moment is None else moment.isoformat()


def _last_day(year: int, month: int) -> date:
    nxt = date(year + month // 12, month % 12 + 1, 1)
    return nxt - timedelta(days=1)


def _months_back(day: date, months: int) -> datetime:
    """Midnight UTC of `day` minus calendar months, clamped to the month's end (PostgreSQL's rule)."""
    index = day.year * 12 + day.month - 1 - months
    year, month = divmod(index, 12)
    return datetime(year, month + 1, min(day.day, _last_day(year, month + 1).day), tzinfo=UTC)


def _pick(rng: random.Random, mix) -> str:
    x, acc = rng.random(), 0.0
    for value, share in mix:
        acc += share
        if x < acc:
            return value
    return mix[-1][0]


class Rows:
    """Tab-separated COPY text, written in chunks."""

    def __init__(self, copy) -> None:
        self.copy, self.parts = copy, []

    def add(self, *values) -> None:
        self.parts.append("\t".join(NULL if v is None else str(v) for v in values) + "\n")
        if len(self.parts) >= 20000:
            self.flush()

    def flush(self) -> None:
        if self.parts:
            self.copy.write("".join(self.parts))
            self.parts = []


def seed(database_url: str, users: int, entering: int | None = None, seed_value: int = 42,
         expiring_days: int = 30, first_night: bool = False) -> dict[str, int]:
    """Fill an empty, migrated database; returns row counts and the size of tonight's work.

    `first_night`: no job has ever run, so every expiring default card is tonight's to flag and
    warn, and every inactive user tonight's to warn (nobody is warned yet, so nobody is purged).
    """
    rng = random.Random(seed_value)
    now = STARTED.replace(microsecond=0)  # the bench's one moment: seeding after midnight must not shift "last night"
    today = now.date()
    horizon = today + timedelta(days=expiring_days)
    last_month_horizon = horizon - timedelta(days=31)
    cutoff = _months_back(today, 6)  # the job's rule: local (UTC) midnight, calendar months back
    yesterday_cutoff = _months_back(today - timedelta(days=1), 6)
    pw_hash = hash_password(BENCH_PASSWORD)
    counts = {"users": users, "cards": 0, "subscriptions": 0, "invoices": 0, "mrr_movements": 0,
              "outbox": 0, "cards_to_flag": 0, "users_to_warn": 0, "users_to_purge": 0}
    card_id = sub_id = inv_id = mrr_id = out_id = 0
    expiring_cards: list[tuple[int, int, int, int, bool]] = []  # id, user, year, month, purged-owner
    with psycopg.connect(database_url, autocommit=False) as conn, conn.cursor() as cur:
        users_rows, card_rows, sub_rows, inv_rows, mrr_rows = [], [], [], [], []
        for uid in range(1, users + 1):
            age = 730 * rng.random() ** 2
            last_seen = now - timedelta(days=age)
            created = last_seen - timedelta(days=rng.uniform(0, 365))
            status = _pick(rng, SUBSCRIPTION_MIX) if rng.random() < 0.6 else None
            credit = 500 if rng.random() < 0.01 else 0
            unpaid = status == "past_due" or (status == "canceled" and rng.random() < 0.05)
            protected = status in ("active", "trialing", "past_due") or unpaid or credit > 0
            warned = due = purged = exempt = None
            crossed = last_seen + timedelta(days=182)
            if last_seen < yesterday_cutoff and not first_night:  # crossed the line before today: warned then
                warned = crossed
                due = warned + timedelta(days=30)
                if rng.random() < 0.02:
                    exempt = warned + timedelta(days=1)
                elif due < now - timedelta(days=1) and not protected:
                    purged = due
                elif due <= now and not protected:
                    counts["users_to_purge"] += 1
            elif last_seen < cutoff:
                counts["users_to_warn"] += 1
            email = f"purged-{uid}@invalid" if purged else f"user{uid}@example.com"
            users_rows.append((uid, email, "" if purged else f"User {uid}", None if purged else pw_hash,
                               "subscriber", f"tok{uid:012d}{rng.getrandbits(64):016x}", _ts(created),
                               _ts(last_seen), f"cus_{uid:010d}", credit, _ts(warned),
                               NULL if purged else _ts(due), "support call" if exempt else None,
                               _ts(exempt), _ts(purged)))
            if not purged:
                for default in ((True, False) if rng.random() < 0.05 else (True,)):
                    card_id += 1
                    offset = rng.randint(-12, 47)
                    year, month = today.year + (today.month - 1 + offset) // 12, (today.month - 1 + offset) % 12 + 1
                    expiring = default and _last_day(year, month) < horizon
                    if expiring:
                        expiring_cards.append((card_id, uid, year, month,
                                               _last_day(year, month) >= last_month_horizon))
                    card_rows.append([card_id, uid, f"pm_{card_id:012d}", rng.choice(BRANDS),
                                      f"{rng.randint(0, 9999):04d}", month, year, default, expiring,
                                      _ts(created), _ts(created)])
            if status:
                sub_id += 1
                plan, amount = rng.choice(PLANS)
                interval = "year" if rng.random() < 0.1 else "month"
                amount = amount * 10 if interval == "year" else amount
                sub_created = created + timedelta(days=rng.uniform(0, 30))
                canceled = sub_created + timedelta(days=rng.uniform(30, 300)) if status == "canceled" else None
                sub_rows.append((sub_id, uid, f"sub_{sub_id:012d}", plan, status, amount, "usd", interval,
                                 _ts(now + timedelta(days=rng.uniform(1, 30))), False, _ts(canceled),
                                 _ts(sub_created), _ts(sub_created), 0))
                mrr = monthly_cents(amount, interval)
                mrr_id += 1
                mrr_rows.append((mrr_id, sub_id, _ts(sub_created), "new", "usd", 0, mrr))
                if canceled:
                    mrr_id += 1
                    mrr_rows.append((mrr_id, sub_id, _ts(canceled), "churn", "usd", mrr, 0))
                for k in range(rng.randint(1, 3)):
                    inv_id += 1
                    start = now - timedelta(days=30 * (k + 1))
                    inv_status = "open" if unpaid and k == 0 else "paid"
                    inv_rows.append((inv_id, uid, sub_id, f"in_{inv_id:012d}", f"B-{inv_id:08d}", amount, "usd",
                                     inv_status, _ts(start), _ts(start + timedelta(days=30)),
                                     _ts(start) if inv_status == "paid" else None,
                                     _ts(start) if inv_status == "open" else None,
                                     None if purged else f"user{uid}@example.com",
                                     None if purged else f"User {uid}", _ts(start), 0))
        # Tonight's card work: the given number, or the month that just entered the window.
        if first_night:
            tonight = {c[0] for c in expiring_cards}
        elif entering is None:
            tonight = {c[0] for c in expiring_cards if c[4]}
        else:
            tonight = {c[0] for c in rng.sample(expiring_cards, min(entering, len(expiring_cards)))}
        counts["cards_to_flag"] = len(tonight)
        out_rows = []
        for row in card_rows:
            if row[0] in tonight:
                row[8] = False
            elif row[8]:
                out_id += 1
                out_rows.append((out_id, f"card-expiring:{row[0]}:{row[6]}-{row[5]:02d}", "card-expiring",
                                 row[1], f"user{row[1]}@example.com", "card_expiring", json.dumps({
                                     "name": f"User {row[1]}", "brand": row[3], "last4": row[4], "exp_month": row[5],
                                     "exp_year": row[6], "expires_on": "2026-01-31", "update_url": "https://example.com"}),
                                 "[]", "sent", 1,
                                 _ts(now - timedelta(days=1)), _ts(now - timedelta(days=1)),
                                 _ts(now - timedelta(days=1))))
        tables = [
            ("users (id, email, name, password_hash, role, session_token, created_at, last_seen_at, "
             "stripe_customer_id, credit_balance_cents, inactive_warned_at, purge_due_at, purge_exempt_reason, "
             "purge_exempt_at, purged_at)", users_rows),
            ("cards (id, user_id, stripe_payment_method_id, brand, last4, exp_month, exp_year, is_default, "
             "is_expiring, created_at, updated_at)", card_rows),
            ("subscriptions (id, user_id, stripe_subscription_id, plan, status, amount_cents, currency, interval, "
             "current_period_end, cancel_at_period_end, canceled_at, created_at, updated_at, stripe_event_created)",
             sub_rows),
            ("invoices (id, user_id, subscription_id, stripe_invoice_id, number, amount_cents, currency, status, "
             "period_start, period_end, paid_at, first_failed_at, customer_email, customer_name, created_at, "
             "stripe_event_created)", inv_rows),
            ("mrr_movements (id, subscription_id, at, kind, currency, mrr_before_cents, mrr_after_cents)", mrr_rows),
            ("outbox (id, idempotency_key, kind, user_id, to_addr, template, context, attachments, "
             "status, attempts, created_at, next_attempt_at, sent_at)", out_rows),
        ]
        for spec, rows in tables:
            with cur.copy(f"COPY {spec} FROM STDIN") as copy:
                out = Rows(copy)
                for row in rows:
                    out.add(*row)
                out.flush()
            counts[spec.split()[0]] = len(rows)
        for table in ("users", "cards", "subscriptions", "invoices", "mrr_movements", "outbox"):
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT coalesce(max(id), 0) + 1 FROM {table}), false)")
        if not first_night:  # last night's flag-expiring-cards run, whose start the job reads
            cur.execute("INSERT INTO job_runs (job, slot, status, dry_run, started_at, heartbeat_at, finished_at, "
                        "attempts, scanned, changed, emails_queued, details) VALUES ('flag-expiring-cards', "
                        "%(slot)s, 'succeeded', false, %(start)s, %(start)s, %(start)s, 1, 0, 0, 0, %(details)s)",
                        {"slot": datetime.combine(today - timedelta(days=1), datetime.min.time(), UTC),
                         "start": now - timedelta(days=1),
                         "details": json.dumps({"started": (now - timedelta(days=1)).isoformat()})})
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
    return counts


def seed_template(harness, report: Report, users: int) -> dict[str, int]:
    """Seed the template database the repetitions copy."""
    report.section(f"Seeding {users:,} users with COPY")
    harness.use_template()
    start = time.perf_counter()
    counts = seed(harness.template_url, users)
    elapsed = time.perf_counter() - start
    reset_engines()
    print("  " + ", ".join(f"{k}={v:,}" for k, v in counts.items()) + f"; {elapsed:.1f}s", flush=True)
    report.meta.setdefault("seed", {})[str(users)] = {**counts, "seconds": round(elapsed, 1)}
    return counts
