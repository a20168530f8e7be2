"""Reading the dev SMTP sink's Maildir (stdlib only: the dev mail page imports it in every environment)."""
from __future__ import annotations

import mailbox
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path


def read_maildir(path: Path) -> list[EmailMessage]:
    """Messages of a Maildir sorted by arrival (the /dev/mail page and the tests read this)."""
    if not path.exists():
        return []
    box = mailbox.Maildir(path, create=False)
    items = sorted(box.items(), key=lambda kv: kv[1].get_date())
    return [message_from_bytes(msg.as_bytes(), policy=policy.default) for _key, msg in items]
