"""Dev only: read the mail the SMTP sink stored (registered in dev and test only)."""
from pathlib import Path

from flask import Blueprint, abort, render_template

from saas.dev.maildir import read_maildir
from saas.web.extensions import app_settings

bp = Blueprint("devmail", __name__, url_prefix="/dev/mail")


def _messages():
    maildir = app_settings().dev_maildir
    return list(reversed(read_maildir(Path(maildir)))) if maildir else []


def _parts(msg):
    text = html = ""
    for part in msg.walk():
        if part.get_content_type() == "text/plain" and not part.get_filename():
            text = part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8", "replace")
        elif part.get_content_type() == "text/html":
            html = part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8", "replace")
    return text, html


@bp.get("/")
def inbox():
    return render_template("dev/mail_list.html", messages=list(enumerate(_messages())))


@bp.get("/<int:index>")
def message(index: int):
    messages = _messages()
    if not 0 <= index < len(messages):
        abort(404)
    msg = messages[index]
    text, html = _parts(msg)
    attachments = [p.get_filename() for p in msg.walk() if p.get_filename()]
    return render_template("dev/mail_show.html", msg=msg, text=text, html=html, attachments=attachments, index=index)
