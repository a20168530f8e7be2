"""Cards, subscriptions, invoices and received Stripe events."""
from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Computed,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from saas.core.db import Base, utcnow

SUBSCRIPTION_STATUSES = ("trialing", "active", "past_due", "canceled", "incomplete", "incomplete_expired", "unpaid", "paused")
INVOICE_STATUSES = ("draft", "open", "paid", "uncollectible", "void")
# Stripe's `cancellation_details.feedback` values, in the words the cancel page offers them.
CANCEL_REASONS = {
    "too_expensive": "It is too expensive", "missing_features": "Some features are missing",
    "switched_service": "I switched to another service", "unused": "I don't use it enough",
    "customer_service": "Customer service was not good enough", "too_complex": "It is too hard to use",
    "low_quality": "Quality was not good enough", "other": "Another reason",
}
CANCEL_COMMENT_MAX = 500


class Card(Base):
    """A saved card: what Stripe tells us about it, never its number or CVC."""

    __tablename__ = "cards"
    __table_args__ = (
        CheckConstraint("exp_month BETWEEN 1 AND 12", name="exp_month"),
        Index("ix_cards_expires_on", "expires_on"),
        Index("ix_cards_user_id", "user_id"),
        Index("ix_cards_is_expiring", "id", postgresql_where="is_expiring"),
        # flag-expiring-cards reads only these small ranges, never the whole table (migration 0002).
        Index("ix_cards_to_flag", "expires_on", "id", postgresql_where="NOT is_expiring AND is_default"),
        Index("ix_cards_to_clear", "is_default", "expires_on", "id", postgresql_where="is_expiring"),
        Index("ix_cards_flagged_updated_at", "updated_at", "id", postgresql_where="is_expiring"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    stripe_payment_method_id: Mapped[str] = mapped_column(String(64), unique=True)
    brand: Mapped[str] = mapped_column(String(20))
    last4: Mapped[str] = mapped_column(String(4))
    exp_month: Mapped[int] = mapped_column(Integer)
    exp_year: Mapped[int] = mapped_column(Integer)
    # The last day the card works: the last day of its expiry month.
    expires_on: Mapped[date] = mapped_column(
        Date, Computed("(make_date(exp_year, exp_month, 1) + interval '1 month' - interval '1 day')::date", persisted=True)
    )
    is_default: Mapped[bool] = mapped_column(default=True)
    is_expiring: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Subscription(Base):
    """A customer's subscription to one plan, mirrored from Stripe."""

    __tablename__ = "subscriptions"
    __table_args__ = (
        CheckConstraint(f"status IN {SUBSCRIPTION_STATUSES}", name="status"),
        CheckConstraint("interval IN ('month', 'year')", name="interval"),
        Index("ix_subscriptions_user_id", "user_id"),
        Index("ix_subscriptions_status", "status"),
        # The finance summary's flows of a day: subscriptions started or cancelled in a period.
        Index("ix_subscriptions_created_at", "created_at"),
        Index("ix_subscriptions_canceled_at", "canceled_at", postgresql_where="canceled_at IS NOT NULL"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    stripe_subscription_id: Mapped[str] = mapped_column(String(64), unique=True)
    plan: Mapped[str] = mapped_column(String(50))
    status: Mapped[str] = mapped_column(String(20))
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3), default="usd")
    interval: Mapped[str] = mapped_column(String(5), default="month")
    current_period_end: Mapped[datetime | None]
    cancel_at_period_end: Mapped[bool] = mapped_column(default=False)
    canceled_at: Mapped[datetime | None]
    # Why the subscriber cancelled (kept for finance): one of CANCEL_REASONS, and their own words.
    cancel_reason: Mapped[str | None] = mapped_column(String(30))
    cancel_comment: Mapped[str | None] = mapped_column(String(CANCEL_COMMENT_MAX))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # `created` of the newest Stripe event applied: an older event never moves the row backwards.
    stripe_event_created: Mapped[int] = mapped_column(BigInteger, default=0)


class MrrMovement(Base):
    """A change in a subscription's monthly recurring revenue, for the finance summary."""

    __tablename__ = "mrr_movements"
    __table_args__ = (
        CheckConstraint("kind IN ('new', 'expansion', 'contraction', 'churn', 'reactivation')", name="kind"),
        Index("ix_mrr_movements_at", "at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    subscription_id: Mapped[int | None] = mapped_column(ForeignKey("subscriptions.id", ondelete="SET NULL"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(20))
    currency: Mapped[str] = mapped_column(String(3))
    mrr_before_cents: Mapped[int] = mapped_column(BigInteger)
    mrr_after_cents: Mapped[int] = mapped_column(BigInteger)


class Invoice(Base):
    """An invoice. Kept after a purge for accounting, with personal fields removed."""

    __tablename__ = "invoices"
    __table_args__ = (
        CheckConstraint(f"status IN {INVOICE_STATUSES}", name="status"),
        Index("ix_invoices_user_id", "user_id"),
        Index("ix_invoices_status", "status"),
        # The finance summary's flows of a day: payments failed, and failed payments recovered.
        Index("ix_invoices_first_failed_at", "first_failed_at", postgresql_where="first_failed_at IS NOT NULL"),
        Index("ix_invoices_recovered_paid_at", "paid_at", postgresql_where="first_failed_at IS NOT NULL"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    subscription_id: Mapped[int | None] = mapped_column(ForeignKey("subscriptions.id", ondelete="SET NULL"))
    stripe_invoice_id: Mapped[str] = mapped_column(String(64), unique=True)
    number: Mapped[str | None] = mapped_column(String(64))
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3), default="usd")
    status: Mapped[str] = mapped_column(String(20))
    period_start: Mapped[datetime | None]
    period_end: Mapped[datetime | None]
    paid_at: Mapped[datetime | None]
    first_failed_at: Mapped[datetime | None]
    failure_reason: Mapped[str | None] = mapped_column(Text)
    hosted_invoice_url: Mapped[str | None] = mapped_column(Text)  # where the subscriber pays or confirms it
    invoice_pdf: Mapped[str | None] = mapped_column(Text)  # its PDF, at Stripe
    action_required_at: Mapped[datetime | None]  # the bank asked the subscriber to authenticate the payment
    customer_email: Mapped[str | None] = mapped_column(String(320))
    customer_name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    stripe_event_created: Mapped[int] = mapped_column(BigInteger, default=0)


class StripeEvent(Base):
    """A verified webhook event, stored by id so a replay is a no-op."""

    __tablename__ = "stripe_events"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    type: Mapped[str] = mapped_column(String(100))
    created: Mapped[int] = mapped_column(BigInteger)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)


DUNNING_STATUSES = ("open", "paused", "recovered", "lost", "written_off", "closed")
DUNNING_CAUSES = ("pay_now", "card_updated", "automatic_retry", "authentication")


class DunningCase(Base):
    """One open invoice of a past_due subscription being won back (billing/dunning.py): one case per invoice.

    `step` is the last step of DUNNING_SCHEDULE done (0: the failure's own email); the next one is due
    DUNNING_SCHEDULE[step + 1] days after `opened_at`, on APP_TIMEZONE's calendar. A case ends
    `recovered` (paid; `cause` says how), `lost` (the final action was applied), `written_off` (an admin
    closed it) or `closed` (the invoice or subscription ended otherwise: voided, canceled at Stripe).
    """

    __tablename__ = "dunning_cases"
    __table_args__ = (
        CheckConstraint(f"status IN {DUNNING_STATUSES}", name="status"),
        CheckConstraint(f"cause IS NULL OR cause IN {DUNNING_CAUSES}", name="cause"),
        CheckConstraint(f"pending_cause IS NULL OR pending_cause IN {DUNNING_CAUSES}", name="pending_cause"),
        # advance-dunning reads, per step, the open cases opened before that step's cutoff (migration 0008).
        Index("ix_dunning_cases_due", "opened_at", "id", postgresql_where="status = 'open'"),
        Index("ix_dunning_cases_user_id", "user_id"),
        Index("ix_dunning_cases_opened_at", "opened_at"),
        Index("ix_dunning_cases_closed_at", "closed_at", postgresql_where="closed_at IS NOT NULL"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    subscription_id: Mapped[int | None] = mapped_column(ForeignKey("subscriptions.id", ondelete="SET NULL"))
    invoice_id: Mapped[int | None] = mapped_column(ForeignKey("invoices.id", ondelete="SET NULL"), unique=True)
    status: Mapped[str] = mapped_column(String(20), default="open")
    step: Mapped[int] = mapped_column(Integer, default=0)
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3), default="usd")
    mrr_cents: Mapped[int] = mapped_column(BigInteger, default=0)  # the subscription's MRR when the case opened
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[datetime | None]
    cause: Mapped[str | None] = mapped_column(String(20))  # how a recovered case was paid
    pending_cause: Mapped[str | None] = mapped_column(String(20))  # a retry we started (pay now, new card)
    final_action: Mapped[str | None] = mapped_column(String(20))  # applied at the end of the schedule
    final_action_done_at: Mapped[datetime | None]
    paused_at: Mapped[datetime | None]
    note: Mapped[str | None] = mapped_column(Text)
    # The no-login link's secret (/billing/recover/<token>): random, one per case, good while the case is open.
    link_token: Mapped[str] = mapped_column(String(64), unique=True)


class DunningStep(Base):
    """A step of a case that was taken: its email (outbox key `dunning:{case}:{step}`), the final action."""

    __tablename__ = "dunning_steps"
    __table_args__ = (UniqueConstraint("case_id", "step", name="uq_dunning_steps_case_step"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("dunning_cases.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    days: Mapped[int] = mapped_column(Integer)  # DUNNING_SCHEDULE's value for this step when it was taken
    final: Mapped[bool] = mapped_column(default=False)
    taken_at: Mapped[datetime] = mapped_column(default=utcnow)
