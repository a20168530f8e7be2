"""Who may use which route: the intended answer per persona, and the docs/reliability.md table made from it.

The test (test_security_access.py) requests every route of the app as each persona and compares
with ACCESS; it also fails when docs/reliability.md does not hold RENDERED exactly. After changing
ACCESS, refresh the doc with `python -m tests.security.access_table`.

Answers: a status code; "302 → /login" is a redirect to the sign-in page. POSTs carry an empty
form (so an allowed persona usually gets the form's 400), which is enough to tell access apart.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

PERSONAS = ("anonymous", "subscriber", "finance", "admin")
LOGIN = "302 → /login"
DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"
START, END = "<!-- access-table:start -->", "<!-- access-table:end -->"


def everyone(answer: str) -> tuple[str, ...]:
    return (answer,) * 4


def signed_in(answer: str) -> tuple[str, ...]:
    return (LOGIN, answer, answer, answer)


def owner_only(answer: str) -> tuple[str, ...]:
    """The subscriber's own billing operation; anybody else's is not found."""
    return (LOGIN, answer, "404", "404")


def finance(answer: str) -> tuple[str, ...]:
    return (LOGIN, "403", answer, answer)


def admin(answer: str) -> tuple[str, ...]:
    return (LOGIN, "403", "403", answer)


# (rule, method) -> answers for (anonymous, subscriber, finance, admin)
ACCESS: dict[tuple[str, str], tuple[str, ...]] = {
    ("/", "GET"): ("200", "302", "302", "302"),  # the landing page; signed in: the dashboard
    ("/favicon.ico", "GET"): everyone("301"),
    ("/healthz", "GET"): everyone("200"),
    ("/readyz", "GET"): everyone("200"),
    ("/metrics", "GET"): everyone("404"),  # METRICS_ALLOW or METRICS_TOKEN opens it to scrapers, to no persona
    ("/static/<path:filename>", "GET"): everyone("200"),
    ("/signup", "GET"): everyone("200"),
    ("/signup", "POST"): everyone("400"),
    ("/login", "GET"): everyone("200"),
    ("/login", "POST"): everyone("400"),
    ("/logout", "POST"): everyone(LOGIN),
    ("/password/forgot", "GET"): everyone("200"),
    ("/password/forgot", "POST"): everyone("400"),
    ("/password/reset/<token>", "GET"): everyone("200"),
    ("/password/reset/<token>", "POST"): everyone("400"),
    ("/contact", "GET"): everyone("200"),
    ("/contact", "POST"): everyone("400"),
    ("/contact/sent", "GET"): everyone("200"),
    ("/billing/webhooks/stripe", "POST"): everyone("400"),  # a valid Stripe signature is the only key
    ("/account/password", "GET"): signed_in("200"),
    ("/account/password", "POST"): signed_in("400"),
    ("/dashboard", "GET"): signed_in("200"),
    ("/billing", "GET"): signed_in("200"),
    ("/billing/subscribe", "POST"): signed_in("400"),
    ("/billing/card", "GET"): signed_in("200"),
    ("/billing/card", "POST"): signed_in("303"),
    ("/billing/card/return", "GET"): signed_in("302"),
    ("/billing/cancel", "GET"): signed_in("303"),  # nothing to cancel: back to the billing page
    ("/billing/cancel", "POST"): signed_in("303"),
    ("/billing/plan/preview", "POST"): signed_in("400"),
    ("/billing/plan/<op_id>", "GET"): signed_in("303"),  # not this persona's preview: "expired", back to billing
    ("/billing/plan/<op_id>", "POST"): signed_in("303"),
    ("/billing/resume", "POST"): signed_in("303"),
    ("/billing/pay-now", "POST"): signed_in("303"),
    # The no-login link (a dunning case's secret; the suite's sample token names no case).
    ("/billing/recover/<token>", "GET"): everyone("404"),
    ("/billing/recover/<token>/pay", "POST"): everyone("404"),
    ("/billing/recover/<token>/card", "POST"): everyone("404"),
    ("/billing/recover/<token>/card/return", "GET"): everyone("404"),
    ("/billing/recover/<token>/wait/<op_id>", "GET"): everyone("404"),
    ("/billing/recover/<token>/status/<op_id>", "GET"): everyone("404"),
    ("/billing/wait/<op_id>", "GET"): owner_only("200"),
    ("/billing/status/<op_id>", "GET"): owner_only("200"),
    ("/finance", "GET"): finance("200"),
    ("/finance/", "GET"): finance("200"),
    ("/finance/reports", "GET"): finance("200"),
    ("/finance/reports", "POST"): finance("400"),
    ("/finance/reports/<int:report_id>/status", "GET"): finance("200"),
    ("/finance/reports/<int:report_id>/events", "GET"): finance("200"),
    ("/finance/reports/<int:report_id>.csv", "GET"): finance("200"),
    ("/finance/summaries/<int:summary_id>.csv", "GET"): finance("200"),
    ("/admin/dormant", "GET"): admin("200"),
    ("/admin/dormant/act", "POST"): admin("400"),
    ("/admin/dunning", "GET"): admin("200"),
    ("/admin/dunning/<int:case_id>/<action>", "POST"): admin("404"),
    ("/admin/jobs", "GET"): admin("200"),
    ("/admin/jobs/<name>/run", "POST"): admin("302"),
    ("/admin/jobs/status.json", "GET"): admin("200"),
    ("/admin/jobs/runs/<int:run_id>", "GET"): admin("200"),
    ("/admin/jobs/<name>/pause", "POST"): admin("400"),  # an empty form has no reason
    ("/admin/jobs/<name>/resume", "POST"): admin("302"),  # not paused: said on the page
    ("/admin/jobs/<name>/backfill", "POST"): admin("400"),  # no slot chosen
    ("/admin", "GET"): admin("200"),
    ("/admin/", "GET"): admin("200"),
    ("/admin/outbox", "GET"): admin("200"),
    ("/admin/outbox/<int:message_id>", "GET"): admin("200"),
    ("/admin/outbox/<int:message_id>/retry", "POST"): admin("302"),
    ("/admin/audit", "GET"): admin("200"),
    # Registered in dev and test only (the test proves production has no /dev/ route).
    ("/dev/mail/", "GET"): everyone("200"),
    ("/dev/mail/<int:index>", "GET"): everyone("200"),
}
DEV_ONLY = {rule for rule, _ in ACCESS if rule.startswith("/dev/")}


def render() -> str:
    """The Markdown table of ACCESS, in the order above."""
    lines = ["| route | method | " + " | ".join(PERSONAS) + " |", "|---|---|" + "---|" * len(PERSONAS)]
    for (rule, method), answers in ACCESS.items():
        note = " (dev/test only)" if rule in DEV_ONLY else ""
        lines.append(f"| `{rule}`{note} | {method} | " + " | ".join(answers) + " |")
    return "\n".join(lines)


def block() -> str:
    return f"{START}\n{render()}\n{END}"


def documented() -> str | None:
    """The table block docs/reliability.md holds now (None without markers)."""
    match = re.search(re.escape(START) + r".*?" + re.escape(END), DOC.read_text(), re.S)
    return match.group(0) if match else None


def write() -> None:
    text = DOC.read_text()
    current = documented()
    DOC.write_text(text.replace(current, block()) if current else text.rstrip() + "\n\n" + block() + "\n")


if __name__ == "__main__":
    write()
    sys.stdout.write(f"{DOC.name}: authorisation table written ({len(ACCESS)} rows)\n")
