"""Slots: the instants a cron string names, computed in the app's time zone, DST-safe.

Cron fields are parsed by Celery's own `crontab`, so day-of-month and day-of-week are ANDed
as Celery does ("0 1 8-14 * tue" is the second Tuesday); POSIX cron ORs them instead.
A job may have several crons joined by ';' (the finance summary runs daily and monthly).

DST policy, per wall-clock time the cron names on a local day:
- a time in the skipped hour runs at the same offset past the gap (02:30 -> 03:30 new time);
- a time in the repeated hour runs once, at its first occurrence.
"""
from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from celery.schedules import crontab

MAX_LOOKBACK_DAYS = 800  # enough for a cron that fires once a year on a rare weekday


def parse_cron(expr: str) -> crontab:
    """Parse one five-field cron string ("m h dom mon dow"); ValueError names what is wrong."""
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}")
    minute, hour, day_of_month, month_of_year, day_of_week = fields
    try:
        return crontab(minute=minute, hour=hour, day_of_month=day_of_month,
                       month_of_year=month_of_year, day_of_week=day_of_week)
    except Exception as exc:  # celery raises ParseException / ValueError
        raise ValueError(str(exc)) from None


def _crons(expr: str) -> list[crontab]:
    return [parse_cron(part) for part in expr.split(";") if part.strip()]


def _local_instant(day: date, hour: int, minute: int, tz: ZoneInfo) -> datetime:
    """The UTC instant of a wall-clock time; fold=0 picks the first of a repeated hour and
    shifts a skipped time forward by the gap."""
    return datetime.combine(day, time(hour, minute), tzinfo=tz).astimezone(UTC)


def _slots_on(day: date, cron: crontab, tz: ZoneInfo) -> list[datetime]:
    if day.month not in cron.month_of_year or day.day not in cron.day_of_month:
        return []
    if (day.isoweekday() % 7) not in cron.day_of_week:  # cron: 0 = Sunday
        return []
    return [_local_instant(day, h, m, tz) for h in sorted(cron.hour) for m in sorted(cron.minute)]


def slots_between(expr: str, tz: ZoneInfo | str, start: datetime, end: datetime) -> list[datetime]:
    """Every slot s of `expr` with start < s <= end, in UTC, oldest first, each once."""
    tz = ZoneInfo(tz) if isinstance(tz, str) else tz
    crons = _crons(expr)
    first = start.astimezone(tz).date() - timedelta(days=1)
    last = end.astimezone(tz).date() + timedelta(days=1)
    found: set[datetime] = set()
    day = first
    while day <= last:
        for cron in crons:
            found.update(s for s in _slots_on(day, cron, tz) if start < s <= end)
        day += timedelta(days=1)
    return sorted(found)


def latest_slot(expr: str, tz: ZoneInfo | str, at: datetime) -> datetime | None:
    """The newest slot at or before `at` (None if the cron never fired in MAX_LOOKBACK_DAYS)."""
    window = timedelta(days=2)
    end = at
    while end > at - timedelta(days=MAX_LOOKBACK_DAYS):
        found = slots_between(expr, tz, end - window, end)
        if found:
            return found[-1]
        end -= window
    return None


def next_slot(expr: str, tz: ZoneInfo | str, after: datetime) -> datetime | None:
    """The first slot strictly after `after`."""
    window = timedelta(days=2)
    start = after
    while start < after + timedelta(days=MAX_LOOKBACK_DAYS):
        found = slots_between(expr, tz, start, start + window)
        if found:
            return found[0]
        start += window
    return None
