"""The one definition of an account's current subscription, default card and recent invoices.

The dashboard, the billing page, the subscribe and cancel actions and every email read them
from here. The current subscription is the newest live one (active, trialing, past_due,
incomplete), else the newest ended one: an older past_due subscription does not outrank a
newer active one. The default card is the one Stripe marks default, else the newest.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import BindParameter, ColumnElement, Select, bindparam, select, true, update
from sqlalchemy.orm import Session, aliased

from billing.models import Card, DunningCase, Invoice, Subscription
from saas.core.models import User

LIVE_STATUSES = ("active", "trialing", "past_due", "incomplete")
INVOICES_SHOWN = 12


def current_subscription_query(user_id: int | ColumnElement[Any]) -> Select[Subscription]:
    return (select(Subscription).where(Subscription.user_id == user_id)
            .order_by(Subscription.status.in_(LIVE_STATUSES).desc(), Subscription.created_at.desc(),
                      Subscription.id.desc())
            .limit(1))


def default_card_query(user_id: int | ColumnElement[Any]) -> Select[Card]:
    return (select(Card).where(Card.user_id == user_id)
            .order_by(Card.is_default.desc(), Card.created_at.desc(), Card.id.desc()).limit(1))


def recent_invoices_query(user_id: int | ColumnElement[Any]) -> Select[Invoice]:
    return (select(Invoice).where(Invoice.user_id == user_id)
            .order_by(Invoice.created_at.desc(), Invoice.id.desc()).limit(INVOICES_SHOWN))


def current_case_query(user_id: int | ColumnElement[Any]) -> Select[DunningCase]:
    """The account's newest dunning case still open or paused (billing/dunning.py)."""
    return (select(DunningCase).where(DunningCase.user_id == user_id, DunningCase.status.in_(("open", "paused")))
            .order_by(DunningCase.opened_at.desc(), DunningCase.id.desc()).limit(1))


def _card_subscription_and_case_query(user_id: ColumnElement[Any],
                                      clear_cancelled_notice: bool) -> Select[Card, Subscription, DunningCase]:
    card_q = default_card_query(user_id).lateral("card")
    sub_q = current_subscription_query(user_id).lateral("sub")
    case_q = current_case_query(user_id).lateral("dcase")
    card, sub, dcase = aliased(Card, card_q), aliased(Subscription, sub_q), aliased(DunningCase, case_q)
    stmt: Select[Card, Subscription, DunningCase] = (
        select(card, sub, dcase).select_from(User)
        .outerjoin(card_q, true()).outerjoin(sub_q, true()).outerjoin(case_q, true()).where(User.id == user_id))
    if clear_cancelled_notice:
        stmt = stmt.add_cte(update(User).where(User.id == user_id, User.deletion_cancelled_at.is_not(None))
                            .values(deletion_cancelled_at=None).cte("cleared"))
    return stmt


# The statements every dashboard and billing page runs are built once, here, with the account as a
# bound parameter. SQLAlchemy caches the compiled SQL of any statement, but finds it by the
# statement's cache key, and a statement built per call (two laterals, their ORM aliases, the
# ordering) must be built and walked again on every request to compute that key: the profile
# showed it costing more than running the query. A statement object reused with new parameter
# values keeps its memoized cache key, so a request pays only for the execution and the rows.
USER_ID: BindParameter[Any] = bindparam("user_id")
_CURRENT_SUBSCRIPTION = current_subscription_query(USER_ID)
_DEFAULT_CARD = default_card_query(USER_ID)
_RECENT_INVOICES = recent_invoices_query(USER_ID)
_CARD_SUBSCRIPTION_AND_CASE = {clear: _card_subscription_and_case_query(USER_ID, clear) for clear in (False, True)}


def current_subscription(session: Session, user_id: int) -> Subscription | None:
    return session.scalar(_CURRENT_SUBSCRIPTION, {"user_id": user_id})


def default_card(session: Session, user_id: int) -> Card | None:
    return session.scalar(_DEFAULT_CARD, {"user_id": user_id})


def recent_invoices(session: Session, user_id: int) -> list[Invoice]:
    return list(session.scalars(_RECENT_INVOICES, {"user_id": user_id}))


def card_and_subscription(session: Session, user_id: int,
                          clear_cancelled_notice: bool = False) -> tuple[Card | None, Subscription | None]:
    """The default card and the current subscription in one round trip (card_subscription_and_case)."""
    card, sub, _case = card_subscription_and_case(session, user_id, clear_cancelled_notice)
    return card, sub


def card_subscription_and_case(session: Session, user_id: int, clear_cancelled_notice: bool = False
                               ) -> tuple[Card | None, Subscription | None, DunningCase | None]:
    """The default card, the current subscription and the open dunning case in one round trip (three laterals).

    With `clear_cancelled_notice`, the same statement also clears the account's one-time
    "deletion cancelled" notice (a data-modifying CTE), so the dashboard stays within three queries.
    """
    row = session.execute(_CARD_SUBSCRIPTION_AND_CASE[clear_cancelled_notice], {"user_id": user_id}).first()
    return (row[0], row[1], row[2]) if row else (None, None, None)


def payment_to_confirm(invoices: list[Invoice]) -> Invoice | None:
    """An open invoice whose charge the bank holds until the subscriber authenticates it (on its hosted page)."""
    return next((i for i in invoices if i.status == "open" and i.action_required_at is not None
                 and i.hosted_invoice_url), None)


def payment_failed_showing(subscription: Subscription | None, invoices: list[Invoice]) -> bool:
    """Whether to say "your last payment failed": the subscription is past_due, unless every failed invoice
    of it we know was voided (nothing is owed any more), or one waits for the subscriber's confirmation."""
    if subscription is None or subscription.status != "past_due" or payment_to_confirm(invoices) is not None:
        return False
    failed = [i for i in invoices if i.subscription_id == subscription.id and i.first_failed_at is not None]
    return not failed or any(i.status != "void" for i in failed)
