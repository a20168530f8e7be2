"""Demo personas, their dates relative to a given day. Idempotent; sends no mail."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import select

from saas.auth import hash_password
from saas.db import session_scope
from saas.models import User

DEV_PASSWORD = "demo-password-1"
DOMAIN = "example.com"


def _at(day: date) -> datetime:
    return datetime.combine(day, time(12, 0), tzinfo=timezone.utc)


def personas(today: date) -> list[dict]:
    """The cast DESIGN.md names, with the dates that make each one interesting."""
    return [
        {"name": "Ada Admin", "local": "admin", "role": "admin", "last_seen": today},
        {"name": "Fiona Finance", "local": "finance", "role": "finance", "last_seen": today},
        {"name": "Ana", "local": "ana", "role": "subscriber", "last_seen": today - timedelta(days=2)},
        {"name": "Bruno", "local": "bruno", "role": "subscriber", "last_seen": today - timedelta(days=1)},
        {"name": "Carla", "local": "carla", "role": "subscriber", "last_seen": today - timedelta(days=213)},
        {"name": "Dario", "local": "dario", "role": "subscriber", "last_seen": today - timedelta(days=250),
         "warned": today - timedelta(days=35)},
        {"name": "Elena", "local": "elena", "role": "subscriber", "last_seen": today - timedelta(days=300),
         "warned": today - timedelta(days=40)},
    ]


def seed_demo(today: date, password: str = DEV_PASSWORD, reset_password: bool = False) -> int:
    """Create missing personas (and, when asked, reset every persona's password)."""
    from billing.seed import seed_billing  # cards, subscriptions, invoices per persona

    created = 0
    with session_scope() as session:
        pw_hash = hash_password(password)
        for p in personas(today):
            email = f"{p['local']}@{DOMAIN}"
            user = session.scalar(select(User).where(User.email == email))
            if user is None:
                user = User(email=email, name=p["name"], role=p["role"], password_hash=pw_hash,
                            created_at=_at(today - timedelta(days=400)), last_seen_at=_at(p["last_seen"]))
                if "warned" in p:
                    user.inactive_warned_at = _at(p["warned"])
                    user.purge_due_at = _at(p["warned"] + timedelta(days=30))
                session.add(user)
                session.flush()
                created += 1
            elif reset_password:
                user.password_hash = pw_hash
        seed_billing(session, today)
    return created
