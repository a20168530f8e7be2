"""Schedules in words: the defaults and Celery's AND of the day fields read right, and every cron
the settings accept gets words (never POSIX's "or")."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from saas.core.cron_words import describe_schedule
from saas.core.settings import DEFAULT_SCHEDULES
from saas.core.slots import parse_cron


@pytest.mark.parametrize(("cron", "words"), [
    ("0 0 * * *", "Every day at 00:00"),
    ("0 6 * * *;0 6 1 * *", "Every day at 06:00; and at 06:00, on day 1 of the month"),
    ("0 1 8-14 * tue", "At 01:00, between day 8 and 14 of the month, and only on Tuesday"),  # Celery ANDs
    ("0 0 1 * mon-fri", "At 00:00, on day 1 of the month, and Monday through Friday"),
    ("30 2 * * 1-5", "At 02:30, Monday through Friday"),
    ("0 */6 * * *", "Every 6 hours"),
    ("*/15 * * * *", "Every 15 minutes"),
    ("0 0 29 2 *", "At 00:00, on day 29 of the month, only in February"),
    ("0 9 1,15 jan,jul *", "At 09:00, on day 1 and 15 of the month, only in January and July"),
    ("0 0 * * mon#2", "At 00:00, only on Monday"),  # Celery reads mon#2 as every Monday: say so
])
def test_crons_in_words(cron, words):
    assert describe_schedule(cron) == words


def test_every_default_schedule_has_words():
    for cron in DEFAULT_SCHEDULES.values():
        assert describe_schedule(cron) != cron


def _field(low: int, high: int, names: list[str] | None = None):
    number = st.integers(low, high).map(str)
    value = number | st.sampled_from(names) if names else number
    span = st.tuples(st.integers(low, high), st.integers(low, high)).filter(lambda t: t[0] <= t[1]).map(
        lambda t: f"{t[0]}-{t[1]}")
    step = st.tuples(st.sampled_from(["*", f"{low}-{high}"]), st.integers(1, max(2, high - low))).map(
        lambda t: f"{t[0]}/{t[1]}")
    item = value | span | step
    return st.just("*") | item | st.lists(value | span, min_size=2, max_size=4).map(",".join)


DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
CRONS = st.tuples(_field(0, 59), _field(0, 23), _field(1, 31), _field(1, 12, MONTHS), _field(0, 6, DAYS)).map(" ".join)


@settings(max_examples=300, derandomize=True, database=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(CRONS)
def test_every_cron_the_settings_accept_gets_words(cron):
    try:
        parse_cron(cron)  # what the settings check (saas.core.settings._cron)
    except ValueError:
        assume(False)
    words = describe_schedule(cron)
    assert words != cron and words[:1].isupper()
    assert " or on " not in words  # Celery ANDs day-of-month and day-of-week
