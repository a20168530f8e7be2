"""The contact form: validated, rate limited, written to the outbox, answered at once."""
from __future__ import annotations

import hashlib
import secrets

from flask import Blueprint, redirect, render_template, request, url_for
from flask_limiter.util import get_remote_address
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import EmailField, HiddenField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length

from saas.core.db import web_session
from saas.core.outbox import queue_email
from saas.web.extensions import app_settings
from saas.web.limits import LimitReached, take
from saas.web.views.forms import sendable_email

bp = Blueprint("contact", __name__)
CONTACT_LIMIT = "1 per 10 seconds"


class ContactForm(FlaskForm):
    name = StringField("Your name", validators=[Length(max=200)])
    email = EmailField("Your email", validators=[DataRequired(), Length(max=320), sendable_email])
    subject = StringField("Subject", validators=[DataRequired(), Length(max=200)])
    message = TextAreaField("Message", validators=[DataRequired(), Length(min=10, max=5000)])
    # A fresh token per page view: a resubmitted form (refresh, double click) queues one email.
    submission = HiddenField(validators=[Length(max=64)])
    # The honeypot: hidden from people and screen readers, filled in by bots.
    website = StringField("Leave this empty", validators=[Length(max=500)])


def client_key() -> str:
    """Rate-limit per signed-in user, or per IP address for visitors."""
    if current_user.is_authenticated:
        return f"user:{current_user.id}"
    return f"ip:{get_remote_address()}"


def support_address() -> str:
    return ", ".join(app_settings().admin_emails)


def _idempotency_key(form: ContactForm) -> str:
    digest = hashlib.sha256("\n".join(
        [form.submission.data or "", form.email.data.lower(), form.subject.data, form.message.data]).encode())
    return f"contact:{digest.hexdigest()[:40]}"


@bp.route("/contact", methods=["GET", "POST"])
def form():
    form = ContactForm()
    if request.method == "GET":
        form.submission.data = secrets.token_urlsafe(16)
        if current_user.is_authenticated:
            form.email.data = form.email.data or current_user.email
            form.name.data = form.name.data or current_user.name
    if form.validate_on_submit():
        try:
            take(CONTACT_LIMIT, "contact:" + client_key(), "That was too quick after the last one: please wait "
                 "a little between messages.")
        except LimitReached as exc:  # the form comes back as typed, with when to send it again
            if request.accept_mimetypes.best == "application/json":
                raise
            return (render_template("contact.html", form=form, limited=exc.description, retry_after=exc.retry_after),
                    429, {"Retry-After": str(exc.retry_after)})
        if not form.website.data:  # a filled honeypot gets the same answer and nothing is written
            queue_email(web_session, key=_idempotency_key(form), kind="contact", to=support_address(),
                        reply_to=form.email.data.strip(), template="contact",
                        user_id=current_user.id if current_user.is_authenticated else None,
                        context={"name": form.name.data.strip(), "email": form.email.data.strip(),
                                 "subject": form.subject.data.strip(), "message": form.message.data})
            web_session.commit()
        # The answer is a page of its own, not a flash message on the form: nothing to store in the
        # session, so the POST signs and sends no session cookie (issue 18: about 8% of the POST).
        return redirect(url_for("contact.sent"))
    status = 400 if form.errors else 200
    return render_template("contact.html", form=form), status


@bp.get("/contact/sent")
def sent():
    """Where a sent message (or a bot's filled honeypot) lands: the thanks, and a way to write again."""
    return render_template("contact_sent.html")
