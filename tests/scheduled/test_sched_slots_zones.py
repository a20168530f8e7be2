"""Slot computation over every IANA zone this machine knows (hypothesis picks the instants).

Beat relies on three things wherever the product is deployed: a window's slots are in order and
inside it; cutting a window in two loses and repeats nothing (ticks and catch-ups cut windows
anywhere); and the latest/next slot agree with the slots listed. Each example checks every zone.
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, available_timezones

from hypothesis import given, settings
from hypothesis import strategies as st

from saas.core.settings import DEFAULT_SCHEDULES
from saas.core.slots import latest_slot, next_slot, slots_between

ZONES = sorted(available_timezones())
CRONS = [*DEFAULT_SCHEDULES.values(), "30 2 * * *", "15 1 8-14 * tue", "0 0 29 2 *"]
instants = st.datetimes(min_value=datetime(1995, 1, 1), max_value=datetime(2037, 12, 31), timezones=st.just(UTC))


@settings(max_examples=15, deadline=None)
@given(start=instants, hours=st.integers(1, 24 * 5), cut=st.floats(0, 1), cron=st.sampled_from(CRONS))
def test_every_zone_lists_each_slot_once_and_in_order(start, hours, cut, cron):
    end = start + timedelta(hours=hours)
    middle = start + (end - start) * cut
    for name in ZONES:
        tz = ZoneInfo(name)
        slots = slots_between(cron, tz, start, end)
        assert slots == sorted(set(slots)), name
        assert all(start < s <= end and s.tzinfo is not None for s in slots), name
        assert slots_between(cron, tz, start, middle) + slots_between(cron, tz, middle, end) == slots, name


@settings(max_examples=10, deadline=None)
@given(at=instants, cron=st.sampled_from(CRONS[:3]))
def test_every_zone_agrees_on_latest_and_next_slot(at, cron):
    for name in ZONES:
        tz = ZoneInfo(name)
        latest, upcoming = latest_slot(cron, tz, at), next_slot(cron, tz, at)
        assert latest is not None and upcoming is not None, name
        assert latest <= at < upcoming, name
        assert slots_between(cron, tz, latest, upcoming) == [upcoming], name  # nothing in between
        assert slots_between(cron, tz, latest - timedelta(seconds=1), latest) == [latest], name


RARE_CRONS = ["0 0 29 2 *", "30 2 29 2 *", "0 0 29 2 mon", "0 12 31 12 sun", "15 1 1 1 *"]
zones = st.sampled_from(ZONES)


@settings(max_examples=12, deadline=None)
@given(at=instants, cron=st.sampled_from(RARE_CRONS), zone=zones)
def test_slots_years_apart_are_found(at, cron, zone):
    """A leap day (every 4 years; on a Monday, up to 28): no horizon where the search gives up."""
    tz = ZoneInfo(zone)
    latest, upcoming = latest_slot(cron, tz, at), next_slot(cron, tz, at)
    assert latest is not None and upcoming is not None
    assert latest <= at < upcoming
    assert slots_between(cron, tz, latest - timedelta(seconds=1), latest) == [latest]
    assert slots_between(cron, tz, latest, upcoming) == [upcoming]  # nothing in between, however long


def _field(draw, low: int, high: int) -> str:
    kind = draw(st.sampled_from(["*", "n", "range", "list"]))
    if kind == "*":
        return "*"
    a, b = sorted(draw(st.lists(st.integers(low, high), min_size=2, max_size=2)))
    return {"n": str(a), "range": f"{a}-{b}", "list": f"{a},{b}"}[kind]


@st.composite
def crons(draw) -> str:
    """Any cron Celery accepts: Feb 30 alone is refused at parse (and by the settings)."""
    while True:
        expr = " ".join([str(draw(st.integers(0, 59))), str(draw(st.integers(0, 23))), _field(draw, 1, 31),
                         _field(draw, 1, 12), _field(draw, 0, 6)])
        try:
            slots_between(expr, "UTC", datetime(2000, 1, 1, tzinfo=UTC), datetime(2000, 1, 2, tzinfo=UTC))
        except ValueError:
            continue
        return expr


@settings(max_examples=25, deadline=None)
@given(at=instants, cron=crons(), zone=zones)
def test_latest_and_next_slot_are_the_nearest_listed_slots(at, cron, zone):
    """Against a plain listing of every slot within six years either side (every cron Celery
    accepts names a day that exists, so both are found)."""
    tz = ZoneInfo(zone)
    span = timedelta(days=6 * 366)
    latest, upcoming = latest_slot(cron, tz, at), next_slot(cron, tz, at)
    assert latest is not None and upcoming is not None
    before, after = slots_between(cron, tz, at - span, at), slots_between(cron, tz, at, at + span)
    if before:
        assert latest == before[-1]
    if after:
        assert upcoming == after[0]
