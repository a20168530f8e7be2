"""Slots: the instants a cron string names, computed in the app's time zone, DST-safe.

Cron fields are parsed by Celery's own `crontab`, so day-of-month and day-of-week are ANDed
as Celery does ("0 1 8-14 * tue" is the second Tuesday); POSIX cron ORs them instead.
A job may have several crons joined by ';' (the finance summary runs daily and monthly).

The latest and next slot are found however far apart slots are (`0 0 29 2 *` runs every four
years, `0 0 29 2 mon` every 28 at most): two days are searched slot by slot, then the search jumps
to the next calendar day the cron names. The Gregorian calendar repeats every 400 years (146097
days, a whole number of weeks), so a cron with no day in 400 years names none at all.

DST policy, per wall-clock time the cron names on a local day:
- a time in the skipped hour runs at the same offset past the gap (02:30 -> 03:30 new time);
- a time in the repeated hour runs once, at its first occurrence.
"""
from __future__ import annotations

import calendar
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from celery.schedules import crontab

CYCLE_MONTHS = 400 * 12  # the Gregorian calendar's period: a day a cron names recurs within it
WINDOW = timedelta(days=2)  # searched slot by slot before jumping to the next day the cron names


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


def _months(start: date, step: int) -> Iterator[tuple[int, int]]:
    """(year, month) from `start`'s month, one calendar cycle forward (step 1) or back (-1)."""
    index = start.year * 12 + start.month - 1
    for offset in range(CYCLE_MONTHS + 1):
        year, month0 = divmod(index + step * offset, 12)
        if not 1 <= year <= 9999:
            return
        yield year, month0 + 1


def _named_day(cron: crontab, start: date, step: int) -> date | None:
    """The first day at or after `start` (step 1), or at or before it (-1), whose month, day of
    month and weekday the cron names; None if there is none within a calendar cycle."""
    for year, month in _months(start, step):
        if month not in cron.month_of_year:
            continue
        last = calendar.monthrange(year, month)[1]
        for dom in sorted(cron.day_of_month, reverse=step < 0):
            if dom > last:
                continue
            day = date(year, month, dom)
            if (day - start).days * step >= 0 and day.isoweekday() % 7 in cron.day_of_week:
                return day
    return None


def _nearest_named_day(expr: str, start: date, step: int) -> date | None:
    days = [d for d in (_named_day(cron, start, step) for cron in _crons(expr)) if d is not None]
    if not days:
        return None
    return min(days) if step > 0 else max(days)


def fires(expr: str) -> bool:
    """Whether the cron names at least one day that exists (Celery's crontab already refuses
    `0 0 31 2 *`; this also covers day-of-week combinations)."""
    return _nearest_named_day(expr, date(2000, 1, 1), 1) is not None


def _day_start(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def latest_slot(expr: str, tz: ZoneInfo | str, at: datetime) -> datetime | None:
    """The newest slot at or before `at` (None only for a cron that names no existing day)."""
    tz = ZoneInfo(tz) if isinstance(tz, str) else tz
    end = at
    while True:
        found = slots_between(expr, tz, end - WINDOW, end)
        if found:
            return found[-1]
        # Nothing in (end - WINDOW, end]: the next candidates are on the newest named day before.
        day = _nearest_named_day(expr, (end - WINDOW).astimezone(tz).date() + timedelta(days=1), -1)
        if day is None:
            return None
        end = min(end - WINDOW, _day_start(day + timedelta(days=2), tz))


def next_slot(expr: str, tz: ZoneInfo | str, after: datetime) -> datetime | None:
    """The first slot strictly after `after` (None only for a cron that names no existing day)."""
    tz = ZoneInfo(tz) if isinstance(tz, str) else tz
    start = after
    while True:
        found = slots_between(expr, tz, start, start + WINDOW)
        if found:
            return found[0]
        # Nothing in (start, start + WINDOW]: jump to the first named day after it.
        day = _nearest_named_day(expr, (start + WINDOW).astimezone(tz).date() - timedelta(days=1), 1)
        if day is None:
            return None
        start = max(start + WINDOW, _day_start(day - timedelta(days=1), tz))
