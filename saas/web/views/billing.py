"""Billing pages and the Stripe webhook endpoint; the slow Stripe calls run in Celery tasks."""
from __future__ import annotations

from flask import Blueprint, Response, abort, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import RadioField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Length, Optional

from billing import progress, subscriptions, tasks
from billing.models import CANCEL_COMMENT_MAX, CANCEL_REASONS, StripeEvent
from billing.plans import PLANS
from billing.webhooks import WebhookRejected, store_event, verify
from saas.core import metrics
from saas.core.db import web_session
from saas.core.queue import enqueue
from saas.web.extensions import app_settings, csrf

bp = Blueprint("billing", __name__, url_prefix="/billing")
NO_REASON = ""


class CancelForm(FlaskForm):
    """The cancellation's confirmation: an optional reason (Stripe's feedback values) and comment."""

    reason = RadioField("Why are you leaving? (optional)", default=NO_REASON, validators=[Optional()],
                        choices=[SelectChoice(NO_REASON, "I'd rather not say"),
                                 *(SelectChoice(key, words) for key, words in CANCEL_REASONS.items())],
                        validate_choice=True)
    comment = TextAreaField("Anything you would like to tell us? (optional)",
                            validators=[Length(max=CANCEL_COMMENT_MAX)])


def _overview() -> dict:
    return subscriptions.overview(web_session, current_user.id)


def _start(kind: str, task, task_args) -> Response:
    """Mark an operation pending, hand it to a worker (keyword args built from its id), show its waiting page."""
    op_id = progress.new_operation(current_user.id, kind)
    enqueue(task, **task_args(op_id))
    return redirect(url_for("billing.wait", op_id=op_id), 303)


def _own_state(op_id: str) -> dict:
    state = progress.get_state(op_id)
    if state is None or state.get("user_id") != current_user.id:
        abort(404)
    return state


@bp.get("")
@login_required
def index():
    return render_template("billing/index.html", **_overview())


@bp.post("/subscribe")
@login_required
def subscribe():
    plan = request.form.get("plan", "")
    if plan not in PLANS:
        flash("Choose one of the plans listed.", "error")
        return render_template("billing/index.html", **_overview()), 400
    return _start("subscribe", tasks.subscribe, lambda op: {"user_id": current_user.id, "plan_key": plan, "op_id": op})


@bp.get("/card")
@login_required
def update_card():
    card = subscriptions.default_card(web_session, current_user.id)
    return render_template("billing/update_card.html", card=card)


@bp.post("/card")
@login_required
def start_card_update():
    base = app_settings().app_url
    success = base + url_for("billing.card_return") + "?session_id={CHECKOUT_SESSION_ID}"
    cancel = base + url_for("billing.update_card", cancelled=1)
    return _start("card", tasks.start_card_update, lambda op: {"user_id": current_user.id, "op_id": op, "success_url": success, "cancel_url": cancel})


@bp.get("/card/return")
@login_required
def card_return():
    checkout_id = request.args.get("session_id", "")
    if not checkout_id.startswith("cs_"):
        flash("That link is incomplete; your card is unchanged.", "error")
        return redirect(url_for("billing.update_card"))
    return _start("card", tasks.sync_card, lambda op: {"user_id": current_user.id, "checkout_id": checkout_id, "op_id": op})


@bp.route("/cancel", methods=["GET", "POST"])
@login_required
def cancel():
    """The cancellation's confirmation step; the reason is optional, an unknown one or a long comment is sent back."""
    overview = _overview()
    sub = overview["subscription"]
    if sub is None or sub.status not in ("active", "trialing", "past_due") or sub.cancel_at_period_end:
        flash("You have no subscription to cancel.", "info")
        return redirect(url_for("billing.index"), 303)
    form = CancelForm()
    if not form.validate_on_submit():
        return render_template("billing/cancel.html", form=form, **overview), 400 if form.errors else 200
    reason = form.reason.data or None
    return _start("cancel", tasks.set_cancel_at_period_end, lambda op: {
        "user_id": current_user.id, "cancel": True, "op_id": op, "reason": reason, "comment": form.comment.data or None})


@bp.post("/plan/preview")
@login_required
def preview_plan():
    """Ask (in a worker) what moving to another plan would charge; the answer is shown on the confirm page."""
    overview = _overview()
    plan, sub = request.form.get("plan", ""), overview["subscription"]
    if plan not in PLANS:
        flash("Choose one of the plans listed.", "error")
        return render_template("billing/index.html", **overview), 400
    if sub is None or sub.status not in ("active", "trialing") or sub.cancel_at_period_end or sub.plan == plan:
        flash("That plan change is not possible for your subscription just now.", "error")
        return render_template("billing/index.html", **overview), 400
    return _start("plan-preview", tasks.preview_plan_change, lambda op: {
        "user_id": current_user.id, "plan_key": plan, "op_id": op,
        "confirm_url": url_for("billing.confirm_plan", op_id=op)})


def _preview(op_id: str) -> dict | None:
    state = progress.get_state(op_id)
    if state is None or state.get("user_id") != current_user.id or state.get("kind") != "plan-preview":
        return None
    return state.get("preview")


@bp.route("/plan/<op_id>", methods=["GET", "POST"])
@login_required
def confirm_plan(op_id: str):
    """The previewed change, to confirm (POST applies it, in a worker, at the preview's proration date)."""
    preview, overview = _preview(op_id), _overview()
    sub = overview["subscription"]
    if preview is None or sub is None or sub.status not in ("active", "trialing") or preview["plan_key"] not in PLANS:
        flash("That price preview has expired. Choose the plan again to see what it costs now.", "error")
        return redirect(url_for("billing.index"), 303)
    if request.method == "GET":
        return render_template("billing/change_plan.html", preview=preview, plan=PLANS[preview["plan_key"]],
                               op_id=op_id, **overview)
    progress.set_state(op_id, preview=None)  # one confirmation per preview
    # The preview's id is the change's attempt: a second confirmation that slips in replays the first at Stripe.
    return _start("plan", tasks.change_plan, lambda op: {
        "user_id": current_user.id, "plan_key": preview["plan_key"], "price_id": preview["price_id"],
        "proration_date": preview["proration_date"], "op_id": op, "attempt": op_id})


@bp.post("/resume")
@login_required
def resume():
    return _start("resume", tasks.set_cancel_at_period_end, lambda op: {"user_id": current_user.id, "cancel": False, "op_id": op})


@bp.post("/pay-now")
@login_required
def pay_now():
    """Dunning's Pay now: the open invoice is charged in a worker. JSON for the banner's script (it polls
    the status and shows the outcome in place), else the waiting page."""
    op_id = progress.new_operation(current_user.id, "pay")
    enqueue(tasks.pay_open_invoice, user_id=current_user.id, op_id=op_id)
    if request.accept_mimetypes.best == "application/json":
        return jsonify(op_id=op_id, status_url=url_for("billing.status", op_id=op_id)), 202
    return redirect(url_for("billing.wait", op_id=op_id), 303)


@bp.get("/wait/<op_id>")
@login_required
def wait(op_id: str):
    """The waiting page: polls the status until the worker is done, then moves on (works without JS too)."""
    state = _own_state(op_id)
    if state["state"] == "pending":
        return render_template("billing/wait.html", status_url=url_for("billing.status", op_id=op_id),
                               wait_url=url_for("billing.wait", op_id=op_id))
    if state.get("next"):
        return redirect(state["next"], 303)
    flash(state.get("message", "Done."), "success" if state["state"] == "done" else "error")
    return redirect(url_for("billing.index"), 303)


@bp.get("/status/<op_id>")
@login_required
def status(op_id: str):
    state = _own_state(op_id)
    return jsonify(state=state["state"], message=state.get("message"))


@bp.post("/webhooks/stripe")
@csrf.exempt
def stripe_webhook():
    """Verify, store by id, answer; a worker processes it. A replay is a no-op answering 200."""
    try:
        event = verify(request.get_data(), request.headers.get("Stripe-Signature"),
                       app_settings().stripe_webhook_secrets)
    except WebhookRejected as exc:
        metrics.WEBHOOK_EVENTS.labels("rejected").inc()
        return jsonify(error=str(exc)), 400
    new = store_event(web_session, event)
    web_session.commit()
    metrics.WEBHOOK_EVENTS.labels("received" if new else "duplicate").inc()
    if new or web_session.get(StripeEvent, event["id"]).processed_at is None:  # enqueue lost earlier: again
        enqueue(tasks.process_stripe_event, event_id=event["id"])
    return jsonify(received=True, duplicate=not new)
