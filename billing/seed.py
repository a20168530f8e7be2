"""Demo billing data for the personas (cards, subscriptions, invoices)."""
from __future__ import annotations

from datetime import date

from sqlalchemy.orm import Session


def seed_billing(session: Session, today: date) -> None:
    """Give each persona the billing state DESIGN.md describes. Idempotent."""
