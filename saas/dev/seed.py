"""Demo personas, their dates relative to a given instant. Idempotent; sends no mail."""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.seed import seed_billing  # cards, subscriptions, invoices per persona
from saas.core.accounts import hash_password
from saas.core.db import session_scope
from saas.core.models import User
from saas.core.settings import Settings

DEV_PASSWORD = "demo-password-1"
DOMAIN = "example.com"


def personas(now: datetime) -> list[dict]:
    """The demo cast (docs/development.md, "Demo personas"), with the dates that make each one interesting.

    carla's 213 days are more than 6 calendar months on any day (six months are at most 184
    days); dario's and elena's warnings are older than PURGE_GRACE_DAYS, so their purge is due.
    """
    day = timedelta(days=1)
    return [
        {"name": "Ada Admin", "local": "admin", "role": "admin", "last_seen": now},
        {"name": "Fiona Finance", "local": "finance", "role": "finance", "last_seen": now},
        {"name": "Ana", "local": "ana", "role": "subscriber", "last_seen": now - 2 * day},
        {"name": "Bruno", "local": "bruno", "role": "subscriber", "last_seen": now - day},
        {"name": "Carla", "local": "carla", "role": "subscriber", "last_seen": now - 213 * day},
        {"name": "Dario", "local": "dario", "role": "subscriber", "last_seen": now - 250 * day,
         "warned": now - 35 * day},
        {"name": "Elena", "local": "elena", "role": "subscriber", "last_seen": now - 300 * day,
         "warned": now - 40 * day},
        {"name": "Fabio", "local": "fabio", "role": "subscriber", "last_seen": now - 4 * day},
    ]


def seed_personas(session: Session, now: datetime, password_hash: str, settings: Settings,
                  reset_password: bool = False) -> int:
    """Create the missing personas and their billing in the caller's transaction."""
    cast = {f"{p['local']}@{DOMAIN}": p for p in personas(now)}
    users = {u.email: u for u in session.scalars(select(User).where(User.email.in_(cast)))}
    if reset_password:
        for user in users.values():
            user.password_hash = password_hash
    created = []
    for email, p in cast.items():
        if email in users:
            continue
        user = User(email=email, name=p["name"], role=p["role"], password_hash=password_hash,
                    created_at=now - timedelta(days=500), last_seen_at=p["last_seen"])
        if "warned" in p:
            user.inactive_warned_at = p["warned"]
            user.purge_due_at = p["warned"] + timedelta(days=settings.purge_grace_days)
        created.append(user)
        users[email] = user
    session.add_all(created)
    session.flush()
    seed_billing(session, {email.split("@")[0]: user for email, user in users.items()}, now, settings)
    return len(created)


def seed_demo(settings: Settings, now: datetime, password: str = DEV_PASSWORD, reset_password: bool = False) -> int:
    """Create missing personas (and, when asked, reset every persona's password)."""
    with session_scope() as session:
        return seed_personas(session, now, hash_password(password), settings, reset_password)
