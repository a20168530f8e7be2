"""Finance pages: MRR over time and its movements, the latest summaries, and on-demand reports with live progress."""
from __future__ import annotations

import json
import time
from datetime import date, datetime, timedelta

import redis
from flask import Blueprint, Response, abort, jsonify, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import DateField
from wtforms.validators import DataRequired, ValidationError

from billing.finance import FinanceReport, FinanceSummary, dunning_funnel
from billing.finance_history import MOVEMENT_KINDS, mrr_history
from billing.finance_table import summary_rows
from saas.core import redis_client
from saas.core.db import web_session
from saas.core.queue import enqueue_after_commit
from saas.web.charts import KIND_LABELS, NARROW, movements_chart, mrr_chart
from saas.web.extensions import app_settings, app_today
from saas.web.login import role_required
from scheduled.jobs.finance_summary import previous_figures
from scheduled.reports import build_finance_report, channel, progress_key

bp = Blueprint("finance", __name__, url_prefix="/finance")
MAX_RANGE_DAYS = 366 * 3
HEARTBEAT_SECONDS = 15
STREAM_SECONDS = 300  # the browser reconnects by itself after this


@bp.before_request
@role_required("finance", "admin")
def require_finance():
    """Every /finance page: anonymous -> sign in, subscribers -> 403."""


class ReportForm(FlaskForm):
    start = DateField("From", validators=[DataRequired(message="Enter the first day, like 2025-01-01.")])
    end = DateField("To (included)", validators=[DataRequired(message="Enter the last day, like 2025-01-31.")])

    def validate_end(self, field) -> None:
        if self.start.data and field.data:
            if field.data < self.start.data:
                raise ValidationError("The last day must not be before the first day.")
            if (field.data - self.start.data).days >= MAX_RANGE_DAYS:
                raise ValidationError("Choose at most three years.")
        if field.data and field.data > _today() + timedelta(days=1):
            raise ValidationError("The last day cannot be in the future.")


def _today() -> date:
    return app_today()


def _report_or_404(report_id: int):
    report = web_session.get(FinanceReport, report_id)
    if report is None:
        abort(404)
    return report


def report_state(report) -> dict:
    return {"id": report.id, "status": report.status, "progress": report.progress,
            "download": url_for("finance.download", report_id=report.id) if report.status == "done" else None}


def _day_arg(name: str) -> date | None:
    try:
        return date.fromisoformat(request.args.get(name, ""))
    except ValueError:
        return None


def _latest_summary():
    """The newest daily summary and its rows beside the day before's (None before the first run)."""
    latest = web_session.scalars(select(FinanceSummary).where(FinanceSummary.period == "daily")
                                 .order_by(FinanceSummary.period_start.desc()).limit(1)).first()
    if latest is None:
        return None, []
    return latest, summary_rows(latest.figures, previous_figures(web_session, "daily", latest.period_start))


@bp.get("/")
@bp.get("")  # the canonical address (registered first: url_for builds it)
def overview():
    """MRR over the last twelve months and its movements, as SVG charts with their numbers, and the latest summary."""
    history = mrr_history(web_session, _today(), app_settings().tz)
    charts = {currency: {"mrr": mrr_chart(months, currency), "movements": movements_chart(months, currency),
                         "mrr_narrow": mrr_chart(months, currency, NARROW),
                         "movements_narrow": movements_chart(months, currency, NARROW),
                         "months": months, "now": months[-1], "before": months[-2]}
              for currency, months in history.items()}
    latest, rows = _latest_summary()
    return render_template("finance/overview.html", charts=charts, kinds=MOVEMENT_KINDS, kind_labels=KIND_LABELS,
                           latest=latest, rows=rows)


@bp.route("/reports", methods=["GET", "POST"])
def reports():
    """Summaries, the report form, and the reports in progress (found again after a reload).

    After a request the page keeps the days asked for (in its address) and shows the new report
    with a notice that goes when it is done."""
    form = ReportForm()
    if form.is_submitted() is False:
        form.start.data = _day_arg("start") or _today().replace(day=1)
        form.end.data = _day_arg("end") or _today()
    if form.validate_on_submit():
        report = FinanceReport(requested_by_id=current_user.id, kind="revenue-churn",
                               params={"start": form.start.data.isoformat(), "end": form.end.data.isoformat()})
        web_session.add(report)
        web_session.flush()
        enqueue_after_commit(web_session, build_finance_report, report_id=report.id)
        web_session.commit()
        return redirect(url_for("finance.reports", start=form.start.data.isoformat(), end=form.end.data.isoformat(),
                                new=report.id))
    summaries = web_session.scalars(select(FinanceSummary).order_by(FinanceSummary.period_start.desc(),
                                                                    FinanceSummary.id.desc()).limit(10)).all()
    recent = web_session.scalars(select(FinanceReport).order_by(FinanceReport.id.desc()).limit(10)).all()
    status = 400 if form.errors else 200
    funnel_days = 30
    tz = app_settings().tz
    funnel_end = datetime.combine(_today() + timedelta(days=1), datetime.min.time(), tz)
    funnel = dunning_funnel(web_session, funnel_end - timedelta(days=funnel_days), funnel_end)
    return render_template("finance/reports.html", form=form, summaries=summaries, reports=recent, funnel=funnel,
                           funnel_days=funnel_days, new_report=request.args.get("new", type=int)), status


@bp.get("/reports/<int:report_id>/status")
def status(report_id: int):
    """The row's state as JSON: what the page falls back to without server-sent events."""
    return jsonify(report_state(_report_or_404(report_id)))


@bp.get("/reports/<int:report_id>/events")
def events(report_id: int):
    """Server-sent events: the report's progress as the worker publishes it through Redis."""
    report = _report_or_404(report_id)
    download = url_for("finance.download", report_id=report_id)
    client = redis_client.get()
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(channel(report_id))  # before reading the state, so no update falls in between
    first = report_state(report)
    latest = client.get(progress_key(report_id))
    if latest and first["status"] in ("queued", "running"):
        published = json.loads(latest)
        if published["progress"] >= first["progress"]:
            first.update(status=published["status"], progress=published["progress"])
    web_session.remove()  # the stream may last minutes: hold no database connection

    def stream():
        state = first
        deadline = time.monotonic() + STREAM_SECONDS
        try:
            yield "retry: 2000\n\n"
            while True:
                if state["status"] == "done":
                    state["download"] = download
                yield f"data: {json.dumps(state)}\n\n"
                if state["status"] in ("done", "failed") or time.monotonic() > deadline:
                    return
                state = _next_message(pubsub, state)
        except redis.RedisError:  # Redis went away: end the stream; the browser reconnects and reads the row
            return
        finally:
            pubsub.close()
            client.close()  # also keeps `client` alive: collecting it would drop the subscription

    return Response(stream(), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _next_message(pubsub, state: dict):
    """Wait for the next published state, sending a comment line now and then to keep the stream open."""
    waited = 0.0
    while True:
        message = pubsub.get_message(timeout=1.0)
        if message is not None:
            return json.loads(message["data"])
        waited += 1.0
        if waited >= HEARTBEAT_SECONDS:
            return state  # re-send the last state; it doubles as a heartbeat


@bp.get("/reports/<int:report_id>.csv")
def download(report_id: int):
    report = _report_or_404(report_id)
    if report.status != "done" or report.csv is None:
        abort(404, "That report is not ready.")
    name = f"revenue-churn-{report.params['start']}-to-{report.params['end']}.csv"
    return Response(report.csv, mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@bp.get("/summaries/<int:summary_id>.csv")
def summary_csv(summary_id: int):
    summary = web_session.get(FinanceSummary, summary_id)
    if summary is None:
        abort(404)
    name = f"finance-{summary.period}-{summary.period_start.isoformat()}.csv"
    return Response(summary.csv, mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
