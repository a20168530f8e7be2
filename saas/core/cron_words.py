"""Schedules in words, beside their cron strings ("Every day at 00:00; and at 06:00, on day 1 of the month").

The words come from cron-descriptor, with two corrections so they say what Celery's crontab
(which computes the slots) does:
- Celery ANDs day-of-month and day-of-week (`0 1 8-14 * tue` is the second Tuesday), while
  cron-descriptor describes POSIX cron, which ORs them ("..., or on Tuesday"); when both are
  restricted the day-of-week part is described on its own and joined with "and".
- A field Celery reads differently from POSIX cron (`mon#2` is every Monday to Celery) is
  described from the values Celery parsed.
"""
from __future__ import annotations

import re

from cron_descriptor import CasingTypeEnum, DescriptionTypeEnum, ExpressionDescriptor, FormatError, Options

from saas.core.slots import parse_cron

_OPTIONS = Options(casing_type=CasingTypeEnum.Sentence, use_24hour_time_format=True, locale_code="en_US")
_PLAIN_FIELD = re.compile(r"^(\*|\d+(-\d+)?|[a-z]{3}(-[a-z]{3})?)(/\d+)?(,(\d+(-\d+)?|[a-z]{3}(-[a-z]{3})?)(/\d+)?)*$")


def _as_celery_reads_it(expr: str) -> list[str]:
    """The five fields, each one that is not plain cron replaced by the values Celery parsed."""
    parsed = parse_cron(expr)
    values = (parsed.minute, parsed.hour, parsed.day_of_month, parsed.month_of_year, parsed.day_of_week)
    return [field if _PLAIN_FIELD.match(field.lower()) else ",".join(str(v) for v in sorted(parsed_values))
            for field, parsed_values in zip(expr.split(), values, strict=True)]


def _describe_one(expr: str) -> str:
    minute, hour, dom, month, dow = _as_celery_reads_it(expr)
    if dom != "*" and dow != "*":
        without_dow = ExpressionDescriptor(f"{minute} {hour} {dom} {month} *", _OPTIONS).get_description()
        dow_words = ExpressionDescriptor(f"{minute} {hour} * * {dow}", _OPTIONS).get_description(
            DescriptionTypeEnum.DAYOFWEEK)
        words = f"{without_dow}, and{dow_words.removeprefix(',')}"
    else:
        words = ExpressionDescriptor(f"{minute} {hour} {dom} {month} {dow}", _OPTIONS).get_description()
    if (dom, month, dow) == ("*", "*", "*") and minute.isdigit() and hour.isdigit():
        words = "Every day at " + words.removeprefix("At ")
    return words


def describe_schedule(expr: str) -> str:
    """The job's crons (joined by ';') in words; the cron itself if the words cannot be made."""
    parts = [p.strip() for p in expr.split(";") if p.strip()]
    try:
        described = [_describe_one(p) for p in parts]
    except (FormatError, ValueError):
        return expr
    return "; and ".join(d if i == 0 else d[:1].lower() + d[1:] for i, d in enumerate(described))
