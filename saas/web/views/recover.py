"""The dunning emails' no-login link: pay or replace the card of one account, without signing in.

The link carries the case's random secret (`DunningCase.link_token`, 256 bits): it works only while
that case is open or paused, only for the case's account (a visitor signed in as someone else is
refused), and only for these pages: paying the open invoice and replacing the card (whose save retries
the invoice). Nothing else of the account is shown or reachable through it.
"""
from __future__ import annotations

from flask import Blueprint, abort, jsonify, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from billing import progress, tasks
from billing.dunning import OPEN, next_step
from billing.models import DunningCase, Invoice
from saas.core.db import web_session
from saas.core.models import User
from saas.core.queue import enqueue
from saas.web.extensions import app_settings

bp = Blueprint("recover", __name__, url_prefix="/billing/recover")


def _case(token: str) -> tuple[DunningCase, User]:
    """The open case the link names, with its account; 410 once the case has ended, 403 for another account."""
    case = web_session.scalar(select(DunningCase).where(DunningCase.link_token == token)) if len(token) <= 64 else None
    if case is None:
        abort(404, "This link is not valid. Sign in to see your billing.")
    user = web_session.get(User, case.user_id) if case.user_id else None
    if case.status not in OPEN or user is None or user.purged_at is not None:
        abort(410, "This link has expired: there is nothing left to pay on it. Sign in to see your billing.")
    if current_user.is_authenticated and current_user.id != user.id:
        abort(403, "This link belongs to another account. Sign out first, or use the link sent to you.")
    return case, user


def _own_state(op_id: str, user: User) -> dict:
    state = progress.get_state(op_id)
    if state is None or state.get("user_id") != user.id:
        abort(404)
    return state


@bp.get("/<token>")
def page(token: str):
    case, user = _case(token)
    invoice = web_session.get(Invoice, case.invoice_id) if case.invoice_id else None
    confirm_url = (invoice.hosted_invoice_url if invoice is not None and invoice.status == "open"
                   and invoice.action_required_at is not None else None)  # the bank asks for authentication
    return render_template("billing/recover.html", case=case, token=token, user=user, confirm_url=confirm_url,
                           next=next_step(case, app_settings()), message=request.args.get("message"),
                           ok=request.args.get("ok") == "1")


@bp.post("/<token>/pay")
def pay(token: str):
    case, user = _case(token)
    op_id = progress.new_operation(user.id, "pay")
    enqueue(tasks.pay_open_invoice, user_id=user.id, op_id=op_id)
    return redirect(url_for("recover.wait", token=token, op_id=op_id), 303)


@bp.post("/<token>/card")
def card(token: str):
    case, user = _case(token)
    base = app_settings().app_url
    success = base + url_for("recover.card_return", token=token) + "?session_id={CHECKOUT_SESSION_ID}"
    cancel = base + url_for("recover.page", token=token)
    op_id = progress.new_operation(user.id, "card")
    enqueue(tasks.start_card_update, user_id=user.id, op_id=op_id, success_url=success, cancel_url=cancel)
    return redirect(url_for("recover.wait", token=token, op_id=op_id), 303)


@bp.get("/<token>/card/return")
def card_return(token: str):
    case, user = _case(token)
    checkout_id = request.args.get("session_id", "")
    if not checkout_id.startswith("cs_"):
        abort(400, "That link is incomplete; your card is unchanged.")
    op_id = progress.new_operation(user.id, "card")
    enqueue(tasks.sync_card, user_id=user.id, checkout_id=checkout_id, op_id=op_id)
    return redirect(url_for("recover.wait", token=token, op_id=op_id), 303)


def _token_for_result(token: str) -> tuple[DunningCase | None, User]:
    """Like _case, but a case that ended while the page waited (paid: the point) still shows its result."""
    case = web_session.scalar(select(DunningCase).where(DunningCase.link_token == token)) if len(token) <= 64 else None
    user = web_session.get(User, case.user_id) if case is not None and case.user_id else None
    if case is None or user is None or (current_user.is_authenticated and current_user.id != user.id):
        abort(404)
    return case, user


@bp.get("/<token>/wait/<op_id>")
def wait(token: str, op_id: str):
    case, user = _token_for_result(token)
    state = _own_state(op_id, user)
    if state["state"] == "pending":
        return render_template("billing/wait.html", status_url=url_for("recover.status", token=token, op_id=op_id),
                               wait_url=url_for("recover.wait", token=token, op_id=op_id))
    if state.get("next"):
        return redirect(state["next"], 303)
    if case is not None and case.status not in OPEN:
        return render_template("billing/recover_done.html", case=case, message=state.get("message", ""))
    return redirect(url_for("recover.page", token=token, message=state.get("message", ""),
                            ok="1" if state["state"] == "done" else "0"), 303)


@bp.get("/<token>/status/<op_id>")
def status(token: str, op_id: str):
    case, user = _token_for_result(token)
    state = _own_state(op_id, user)
    return jsonify(state=state["state"], message=state.get("message"))
