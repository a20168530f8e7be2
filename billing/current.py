"""The one definition of an account's current subscription, default card and recent invoices.

The dashboard, the billing page, the subscribe and cancel actions and every email read them
from here. The current subscription is the newest live one (active, trialing, past_due,
incomplete), else the newest ended one: an older past_due subscription does not outrank a
newer active one. The default card is the one Stripe marks default, else the newest.
"""
from __future__ import annotations

import re
from collections import namedtuple
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Select,
    bindparam,
    literal_column,
    select,
    true,
    update,
)
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.sql.selectable import LateralFromClause

from billing.models import Card, DunningCase, Invoice, Subscription
from saas.core.models import User

LIVE_STATUSES = ("active", "trialing", "past_due", "incomplete")
INVOICES_SHOWN = 12


def _constant(value: str | int) -> ColumnElement[Any]:
    """A constant of this module written into the SQL text, not sent as a parameter: compiled once
    with the statement, nothing to convert or send on each execution. The page queries' status lists
    and LIMITs were nine parameters of the dashboard's statement, each dumped by psycopg on every
    request (docs/benchmarks.md, issue 18). Only our own names and numbers: never user input."""
    if isinstance(value, int):
        return literal_column(str(int(value)))
    if not re.fullmatch(r"[a-z_]+", value):
        raise ValueError(f"not a status name: {value!r}")
    return literal_column(f"'{value}'")


def _one_of(column: InstrumentedAttribute[str], values: tuple[str, ...]) -> ColumnElement[bool]:
    """`column IN ('a', 'b')` with the names in the SQL text (_constant)."""
    return column.in_([_constant(v) for v in values])


def current_subscription_query(user_id: int | ColumnElement[Any]) -> Select[Subscription]:
    return (select(Subscription).where(Subscription.user_id == user_id)
            .order_by(_one_of(Subscription.status, LIVE_STATUSES).desc(), Subscription.created_at.desc(),
                      Subscription.id.desc())
            .limit(_constant(1)))


def default_card_query(user_id: int | ColumnElement[Any]) -> Select[Card]:
    return (select(Card).where(Card.user_id == user_id)
            .order_by(Card.is_default.desc(), Card.created_at.desc(), Card.id.desc()).limit(_constant(1)))


def recent_invoices_query(user_id: int | ColumnElement[Any]) -> Select[Invoice]:
    return (select(Invoice).where(Invoice.user_id == user_id)
            .order_by(Invoice.created_at.desc(), Invoice.id.desc()).limit(_constant(INVOICES_SHOWN)))


def current_case_query(user_id: int | ColumnElement[Any]) -> Select[DunningCase]:
    """The account's newest dunning case still open or paused (billing/dunning.py)."""
    return (select(DunningCase).where(DunningCase.user_id == user_id, _one_of(DunningCase.status, ("open", "paused")))
            .order_by(DunningCase.opened_at.desc(), DunningCase.id.desc()).limit(_constant(1)))


def _table_row(model: type) -> Any:
    """A read-only row type with the model's column names as attributes (what the pages read)."""
    return namedtuple(f"{model.__name__}Row", model.__table__.columns.keys())  # type: ignore[attr-defined]


CardRow, SubscriptionRow, DunningCaseRow, InvoiceRow = (_table_row(m) for m in (Card, Subscription, DunningCase, Invoice))


def _columns_of(query: Select[Any], name: str) -> LateralFromClause:
    """`query`'s rows as a lateral subquery of the model's table columns (Core, no ORM entity)."""
    entity = query.column_descriptions[0]["entity"]
    return query.with_only_columns(*entity.__table__.columns).lateral(name)


def _card_subscription_and_case_query(user_id: ColumnElement[Any], clear_cancelled_notice: bool) -> Select[Any]:
    card_q = _columns_of(default_card_query(user_id), "card")
    sub_q = _columns_of(current_subscription_query(user_id), "sub")
    case_q = _columns_of(current_case_query(user_id), "dcase")
    stmt = (select(card_q, sub_q, case_q).select_from(User)
            .outerjoin(card_q, true()).outerjoin(sub_q, true()).outerjoin(case_q, true()).where(User.id == user_id))
    if clear_cancelled_notice:
        stmt = stmt.add_cte(update(User).where(User.id == user_id, User.deletion_cancelled_at.is_not(None))
                            .values(deletion_cancelled_at=None).cte("cleared"))
    return stmt


# The statements every dashboard and billing page runs are built once, here, with the account as a
# bound parameter. SQLAlchemy caches the compiled SQL of any statement, but finds it by the
# statement's cache key, and a statement built per call (laterals, the ordering) must be built
# and walked again on every request to compute that key: the profile showed it costing more
# than running the query. A statement object reused with new parameter values keeps its
# memoized cache key, so a request pays only for the execution and the rows.
USER_ID: BindParameter[Any] = bindparam("user_id")
_CURRENT_SUBSCRIPTION = current_subscription_query(USER_ID)
_DEFAULT_CARD = default_card_query(USER_ID)
_RECENT_INVOICES = recent_invoices_query(USER_ID).with_only_columns(*Invoice.__table__.columns)
_CARD_SUBSCRIPTION_AND_CASE = {clear: _card_subscription_and_case_query(USER_ID, clear) for clear in (False, True)}
_SPLIT = (len(CardRow._fields), len(CardRow._fields) + len(SubscriptionRow._fields))


def current_subscription(session: Session, user_id: int) -> Subscription | None:
    return session.scalar(_CURRENT_SUBSCRIPTION, {"user_id": user_id})


def default_card(session: Session, user_id: int) -> Card | None:
    return session.scalar(_DEFAULT_CARD, {"user_id": user_id})


# What the pages only show (the dashboard's card, subscription and case, every page's invoices)
# is read as Core rows into read-only named tuples, not ORM objects: on the dashboard the ORM's
# loading (an identity map entry, instance state and attribute instrumentation per object) cost
# nearly twice the Core execution of the same statements (docs/benchmarks.md, issue 18). The
# statements stay SQLAlchemy's, run on the session's connection and transaction (so the query
# counters and the data-modifying CTE below behave as before). Code that changes a row loads
# the ORM object (current_subscription, default_card).
def recent_invoices(session: Session, user_id: int) -> list[Any]:
    """The newest INVOICES_SHOWN invoices, as InvoiceRow tuples."""
    return [InvoiceRow._make(row) for row in session.connection().execute(_RECENT_INVOICES, {"user_id": user_id})]


def card_subscription_and_case(session: Session, user_id: int, clear_cancelled_notice: bool = False
                               ) -> tuple[Any, Any, Any]:
    """The default card, the current subscription and the open dunning case in one round trip
    (three laterals), as CardRow, SubscriptionRow and DunningCaseRow tuples, each None when there is none.

    With `clear_cancelled_notice`, the same statement also clears the account's one-time
    "deletion cancelled" notice (a data-modifying CTE), so the dashboard stays within three queries.
    """
    row = session.connection().execute(_CARD_SUBSCRIPTION_AND_CASE[clear_cancelled_notice],
                                       {"user_id": user_id}).first()
    if row is None:
        return None, None, None
    card, sub, case = row[:_SPLIT[0]], row[_SPLIT[0]:_SPLIT[1]], row[_SPLIT[1]:]
    return (CardRow._make(card) if card[0] is not None else None,
            SubscriptionRow._make(sub) if sub[0] is not None else None,
            DunningCaseRow._make(case) if case[0] is not None else None)


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
