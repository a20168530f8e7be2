"""advance-dunning: take every dunning case's step that fell due, one email per (case, step), and at the
end of DUNNING_SCHEDULE the last email and the final action."""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Boolean, Date, String, any_, cast, func, literal, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from billing import dunning
from billing.models import DunningCase, DunningStep
from billing.tasks import apply_dunning_final_action
from saas.core.models import User
from saas.core.outbox import count_added, json_object, note_added, queue_from
from saas.core.queue import enqueue, enqueue_after_commit
from scheduled.ledger import RunContext

KIND = "dunning"
SWEEP_AFTER = timedelta(minutes=10)  # a final action still not applied this long after its step: queue it again


def advance_dunning(session: Session, ctx: RunContext) -> None:
    """For each step k from the last down to 1, batches of one statement: the open cases before step k
    that opened by the step's cutoff move to step k (RETURNING them), their step rows and emails are
    inserted from that RETURNING (keys `dunning:{case}:{k}`, ON CONFLICT DO NOTHING), committed with a
    keyset cursor on (opened_at, id). The last step first, so a case that missed several slots (every
    beat down for days) gets the newest step's email only. The final step also closes the case as
    lost and queues the final action (apply_dunning_final_action, through the gateway)."""
    schedule, action = ctx.settings.dunning_schedule, ctx.settings.dunning_final_action
    _sweep_final_actions(session, ctx)
    for k in range(len(schedule) - 1, 0, -1):
        final = k == len(schedule) - 1
        _advance_to(session, ctx, k, final, action)


def _advance_to(session: Session, ctx: RunContext, k: int, final: bool, action: str) -> None:
    schedule, tz = ctx.settings.dunning_schedule, ctx.tz
    cutoff = dunning.opened_by(ctx.slot, schedule[k], tz)
    cursor_name = f"step_{k}_cursor"
    due = (DunningCase.status == "open", DunningCase.step < k, DunningCase.opened_at <= cutoff)
    closes = final and action != "keep"
    while True:
        pick = select(DunningCase.id).where(*due).order_by(DunningCase.opened_at, DunningCase.id).limit(ctx.batch_size)
        cursor = ctx.cursor(cursor_name, None)
        if cursor is not None:
            pick = pick.where(tuple_(DunningCase.opened_at, DunningCase.id)
                              > tuple_(literal(datetime.fromisoformat(cursor[0])), literal(cursor[1])))
        values: dict = {"step": k}
        if closes:
            values.update(status="lost", closed_at=ctx.slot, final_action=action)
        elif final:
            values.update(final_action=action)
        moved = (update(DunningCase).where(DunningCase.id == any_(func.array(pick.scalar_subquery())), *due)
                 .values(**values)
                 .returning(DunningCase.id, DunningCase.user_id, DunningCase.amount_cents, DunningCase.currency,
                            DunningCase.opened_at, DunningCase.link_token)
                 .cte("moved"))
        m = moved.c
        steps = (insert(DunningStep).from_select(
            ["case_id", "step", "days", "final", "taken_at"],
            select(m.id, literal(k), literal(schedule[k]), literal(final, Boolean), literal(ctx.slot)).select_from(moved))
            .on_conflict_do_nothing(index_elements=["case_id", "step"]).returning(DunningStep.id).cte("steps"))
        queued = _queue_emails(ctx, moved, k, final, action).cte("queued")
        rows = session.execute(select(m.id, m.opened_at, count_added(queued).label("emails"),
                                      select(func.count()).select_from(steps).scalar_subquery().label("steps"))).all()
        if not rows:
            return
        emails = note_added(session, rows[0].emails)
        if ctx.dry_run:
            ctx.note(f"would_take_step_{k}", sorted(r.id for r in rows))
        elif closes:
            enqueue_after_commit(session, apply_dunning_final_action, case_ids=sorted(r.id for r in rows))
        last = max((r.opened_at, r.id) for r in rows)
        ctx.batch_done(session, name=cursor_name, cursor=[last[0].isoformat(), last[1]], scanned=len(rows),
                       changed=len(rows), emails=emails)
        if len(rows) < ctx.batch_size:  # the last batch (a case a concurrent change skipped: the next slot)
            return


def _queue_emails(ctx: RunContext, moved, k: int, final: bool, action: str):
    """The step's email for each case moved, to its owner unless purged: amount, the next step and its
    date (or, at the last step, what was done), and the no-login link."""
    settings, m = ctx.settings, moved.c
    schedule = settings.dunning_schedule
    local_opened = func.timezone(settings.app_timezone, m.opened_at)

    def local_date(days: int):
        return cast(local_opened + timedelta(days=days), Date)

    key = literal(f"{KIND}:") + cast(m.id, String) + literal(f":{k}")
    next_days = schedule[k + 1] if not final else schedule[-1]
    context = json_object(
        name=func.coalesce(func.nullif(User.name, ""), User.email), amount_cents=m.amount_cents,
        currency=func.upper(m.currency), step=literal(k), steps=literal(len(schedule) - 1),
        days_since=literal(schedule[k]), next_on=local_date(next_days), final_on=local_date(schedule[-1]),
        next_is_final=literal(k + 1 == len(schedule) - 1, Boolean), final_action=literal(action),
        final_words=literal(dunning.FINAL_WORDS[action]),
        recover_url=literal(settings.app_url + dunning.RECOVER_PATH) + m.link_token)
    template = "dunning_final" if final else "dunning_reminder"
    return queue_from(KIND, template, select(key, User.email, User.id, context)
                      .join_from(moved, User, User.id == m.user_id).where(User.purged_at.is_(None)))


def _sweep_final_actions(session: Session, ctx: RunContext) -> None:
    """Final actions whose task was lost (Redis down at the commit, say) are queued again."""
    if ctx.dry_run:
        return
    stuck = session.scalars(select(DunningCase.id).where(
        DunningCase.status == "lost", DunningCase.final_action.in_(("cancel", "mark_unpaid")),
        DunningCase.final_action_done_at.is_(None), DunningCase.closed_at < ctx.now - SWEEP_AFTER).limit(1000)).all()
    if stuck:
        enqueue(apply_dunning_final_action, case_ids=list(stuck))
