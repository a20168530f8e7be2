"""Part 4: outbox rows delivered per second, against bare smtplib on one connection."""
from __future__ import annotations

import json
import smtplib
import time
from email.message import EmailMessage

from sqlalchemy import text

from bench.report import Report, ratio
from saas.core import runtime
from saas.core.db import get_engine
from saas.core.mail import render_email
from saas.core.outbox.delivery import claim_batch, deliver_rows

MESSAGES = 2000


CONTEXT = {"name": "Bench Person", "email": "bench@example.com", "subject": "Benchmark",
           "message": "A message of a realistic length. " * 10}


def _fill_outbox(n: int) -> None:
    """n pending contact emails (template and context, as queue_email writes them), in one statement."""
    with get_engine().begin() as conn:
        conn.execute(text("TRUNCATE outbox RESTART IDENTITY"))
        conn.execute(text("""
            INSERT INTO outbox (idempotency_key, kind, to_addr, reply_to, template, context,
                                attachments, status, attempts, created_at, next_attempt_at)
            SELECT 'bench:' || g, 'contact', 'support@example.com', 'bench' || g || '@example.com',
                   'contact', CAST(:context AS jsonb), '[]'::jsonb, 'pending', 0, now(), now() - interval '1 second'
            FROM generate_series(1, :n) AS g"""), {"context": json.dumps(CONTEXT), "n": n})


def run_outbox(n: int) -> float:
    """Deliver n rows through saas.core.outbox.delivery (claim_batch + deliver_rows, which renders each
    row as it sends it); returns seconds."""
    settings = runtime.settings()
    _fill_outbox(n)
    sent = 0
    start = time.perf_counter()
    while rows := claim_batch("bench"):
        sent += deliver_rows(rows, settings)[0]
    elapsed = time.perf_counter() - start
    if sent != n:
        raise RuntimeError(f"outbox delivery sent {sent} of {n} messages")
    return elapsed


def run_bare(n: int) -> float:
    """The floor: the same messages, built and sent by smtplib on one connection, no database
    (rendered once, before the timer)."""
    settings = runtime.settings()
    subject, body, html = render_email("contact", CONTEXT)
    host, port = settings.smtp_url.removeprefix("smtp://").split(":")
    start = time.perf_counter()
    conn = smtplib.SMTP(host, int(port), timeout=30)
    for i in range(n):
        msg = EmailMessage()
        msg["From"] = settings.mail_from
        msg["To"] = "support@example.com"
        msg["Reply-To"] = f"bench{i}@example.com"
        msg["Subject"] = subject
        msg["Message-ID"] = f"<bare-{i}@example.com>"
        msg.set_content(body)
        msg.add_alternative(html, subtype="html")
        conn.send_message(msg)
    conn.quit()
    return time.perf_counter() - start


def bench_email(harness, report: Report, repeat: int, messages: int = MESSAGES) -> None:
    report.section(f"Email delivery: {messages} outbox rows to a local SMTP sink (separate process)")
    harness.fresh_copy()
    for _ in range(repeat):  # interleaved, so both see the same noise
        report.add("email.outbox_rate", "msg/s", messages / run_outbox(messages))
        report.add("email.bare_smtplib_rate", "msg/s", messages / run_bare(messages))
    report.show("email.outbox_rate", "email.bare_smtplib_rate")
    share = ratio(report.stats["email.outbox_rate"].median, report.stats["email.bare_smtplib_rate"].median)
    report.check("outbox delivery / bare smtplib", share, ">= 0.50", share >= 0.5)
