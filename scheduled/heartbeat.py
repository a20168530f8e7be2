"""Dead-man's-switch pings: each real run of a job tells an outside monitor it started, succeeded or failed.

HEARTBEAT_URL holds `{job}` (the job's name, e.g. `flag-expiring-cards`) and `{event}`; the event's
word is `start`, `success` or `fail` unless HEARTBEAT_EVENTS renames it (Sentry Crons wants
in_progress, ok and error). The monitor raises the alarm when a ping does not come, so it hears
even when every worker and beat is down. A ping is one GET with a short timeout (HEARTBEAT_TIMEOUT);
a monitor that is down or slow costs a logged warning, never the job. docs/operations.md shows
the healthchecks.io and Sentry Crons shapes.
"""
from __future__ import annotations

import http.client
import logging
import urllib.request
from urllib.parse import quote

from saas.core.settings import Settings

log = logging.getLogger(__name__)


def ping_url(settings: Settings, job: str, event: str) -> str:
    """The URL one event of one job pings."""
    word = settings.heartbeat_events.get(event, event)
    return settings.heartbeat_url.format(job=quote(job, safe=""), event=word)


def ping(settings: Settings, job: str, event: str) -> None:
    """Ping the monitor for `event` (start, success, fail) of `job`; nothing when HEARTBEAT_URL is unset."""
    if not settings.heartbeat_url:
        return
    url = ping_url(settings, job, event)
    request = urllib.request.Request(url, headers={"User-Agent": "saas-billing-heartbeat"})
    try:
        with urllib.request.urlopen(request, timeout=settings.heartbeat_timeout) as response:
            response.read(4096)
    except (OSError, ValueError, http.client.HTTPException) as exc:  # HTTPError and timeouts are OSErrors
        log.warning("heartbeat %s for job %s not delivered (%s): %s", event, job, _redacted(url), exc)


def _redacted(url: str) -> str:
    """The URL without its path and query, which hold the monitor's secret (ping key, public key)."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}/…"
