"""/admin/dunning: the cases being won back (step, amount, days open, next action and when), the ended
ones with their outcome; pause, resume, write off, each audited. On the admin blueprint (its role check)."""
from __future__ import annotations

from datetime import UTC, datetime

from flask import abort, flash, redirect, render_template, request, url_for

from billing import dunning
from billing.models import DunningCase
from saas.core.db import web_session
from saas.web.extensions import app_settings
from saas.web.views.admin import audit, bp

ACTIONS = {"pause": "paused", "resume": "resumed", "write-off": "written off"}


@bp.get("/dunning")
def dunning_cases():
    settings = app_settings()
    running, ended = dunning.admin_cases(web_session, settings, datetime.now(UTC))
    return render_template("admin/dunning.html", running=running, ended=ended, schedule=settings.dunning_schedule,
                           final_action=settings.dunning_final_action)


@bp.post("/dunning/<int:case_id>/<action>")
def dunning_act(case_id: int, action: str):
    if action not in ACTIONS:
        abort(404)
    case = web_session.get(DunningCase, case_id, with_for_update=True)
    if case is None:
        abort(404)
    note = request.form.get("note", "").strip()[:500]
    now = datetime.now(UTC)
    before = case.status
    try:
        if action == "pause":
            dunning.pause(web_session, case, now)
        elif action == "resume":
            dunning.resume(web_session, case)
        else:
            dunning.write_off(web_session, case, now, note)
    except dunning.CaseError as exc:
        flash(str(exc), "error")
        return redirect(url_for("admin.dunning_cases"), 303)
    audit(f"dunning.{action}", "dunning_case", case.id, status_before=before, status_after=case.status,
          step=case.step, amount_cents=case.amount_cents, note=bool(note))
    web_session.commit()
    flash(f"Case #{case.id} {ACTIONS[action]}.", "success")
    return redirect(url_for("admin.dunning_cases"), 303)
