"""Slot arithmetic: frozen clocks at boundaries, DST days, the second Tuesday."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from saas.core.slots import latest_slot, slots_between
from tests.helpers import utc


@pytest.mark.parametrize("now, expected", [
    (utc(2025, 5, 9, 23, 59, 59), utc(2025, 5, 9)),   # just before midnight: yesterday's slot
    (utc(2025, 5, 10, 0, 0, 0), utc(2025, 5, 10)),     # at midnight: today's slot
    (utc(2025, 5, 10, 0, 0, 1), utc(2025, 5, 10)),     # just after
])
def test_latest_slot_at_midnight_boundaries(now, expected):
    assert latest_slot("0 0 * * *", "UTC", now) == expected


@pytest.mark.parametrize("zone, spring, autumn", [
    ("America/New_York", "2025-03-09", "2025-11-02"),
    ("Europe/Madrid", "2025-03-30", "2025-10-26"),
])
@pytest.mark.parametrize("hh, mm", [(0, 0), (1, 30), (2, 30)])
def test_daily_job_runs_once_on_both_dst_days(zone, spring, autumn, hh, mm):
    tz = ZoneInfo(zone)
    for day in (spring, autumn):
        start = datetime.fromisoformat(day).replace(tzinfo=tz).astimezone(UTC)
        slots = slots_between(f"{mm} {hh} * * *", zone, start - timedelta(seconds=1), start + timedelta(hours=25))
        on_day = [s for s in slots if s.astimezone(tz).date().isoformat() == day]
        assert len(on_day) == 1, (zone, day, hh, mm, slots)
        assert len(set(slots)) == len(slots)


def test_second_tuesday_cron_ands_day_fields():
    slots = slots_between("0 1 8-14 * tue", "UTC", utc(2025, 1, 1), utc(2025, 12, 31))
    assert len(slots) == 12
    assert all(s.weekday() == 1 and 8 <= s.day <= 14 and s.hour == 1 for s in slots)
    assert slots[0] == utc(2025, 1, 14, 1)


def test_finance_schedule_daily_and_monthly_share_the_first():
    slots = slots_between("0 6 * * *;0 6 1 * *", "UTC", utc(2025, 1, 31), utc(2025, 2, 2, 12))
    assert slots == [utc(2025, 1, 31, 6), utc(2025, 2, 1, 6), utc(2025, 2, 2, 6)]
