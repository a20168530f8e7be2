"""One settings object, read from the environment, shared by web, worker and beat."""
from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from saas.core.redis_url import SENTINEL_SCHEME, RedisUrlError, parse_sentinel
from saas.core.slots import fires, parse_cron

ROOT = Path(__file__).resolve().parents[2]  # the checkout: templates/, migrations/
JOB_NAMES = ("flag-expiring-cards", "remind-inactive-users", "purge-dormant-accounts", "finance-summary",
             "reconcile-stripe", "advance-dunning")
DEFAULT_SCHEDULES = {
    "flag-expiring-cards": "0 0 * * *",
    "remind-inactive-users": "0 0 * * *",
    "purge-dormant-accounts": "0 0 * * *",
    # Daily at 06:00 and monthly on day 1; ';' separates the crons of one job.
    "finance-summary": "0 6 * * *;0 6 1 * *",
    # After the midnight jobs, before the morning's finance summary (which reports the day before's run).
    "reconcile-stripe": "30 3 * * *",
    "advance-dunning": "0 * * * *",  # hourly: a step is sent within the hour it falls due
}
DUNNING_FINAL_ACTIONS = ("cancel", "mark_unpaid", "keep")
ENVIRONMENTS = ("dev", "test", "production")
DEV_SECRET = "dev-only-secret-key-never-use-in-production"
HEARTBEAT_EVENTS = ("start", "success", "fail")
LOG_FORMATS = ("text", "json")
# How often the leading beat looks for due slots (scheduled.beat); the catch-up window must cover it.
DISPATCH_INTERVAL = timedelta(seconds=10)
MAX_CATCHUP_WINDOW = timedelta(days=365)
REDIS_SCHEMES = ("redis://", "rediss://", "unix://", SENTINEL_SCHEME)
# The settings a command may do without (saas.cli asks each command's own); everything else is
# always read, and a setting that is set is always checked.
SERVICE_SETTINGS = frozenset({"DATABASE_URL", "REDIS_URL", "SMTP_URL", "SECRET_KEY", "APP_URL"})


class SettingsError(Exception):
    """A setting is missing or malformed; the message names it."""


def _scheme(url: str) -> str:
    """What a URL's scheme is, to name in an error without the rest (which may hold a password)."""
    return urlsplit(url).scheme or url[:12]


def _check_sentinel(name: str, url: str) -> None:
    try:
        parse_sentinel(url)
    except RedisUrlError as exc:
        raise SettingsError(f"{name}: the redis+sentinel:// URL {exc}") from None


def _duration(name: str, raw: str) -> timedelta:
    """Parse '36h', '90m', '2d', '45s' or a bare number of seconds."""
    match = re.fullmatch(r"\s*(\d{1,12})\s*([smhd]?)\s*", raw)
    if not match:
        raise SettingsError(f"{name} must be a duration like 36h, 90m, 2d or 45s (got {raw!r})")
    unit = {"": "seconds", "s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match[2]]
    try:
        return timedelta(**{unit: int(match[1])})
    except OverflowError:
        raise SettingsError(f"{name} is too long (got {raw!r})") from None


def _catchup_window(raw: str) -> timedelta:
    """At least one dispatch interval (a shorter window would skip slots between two looks) and
    at most a year (beat lists every slot in the window on each look)."""
    window = _duration("CATCHUP_WINDOW", raw)
    if not DISPATCH_INTERVAL <= window <= MAX_CATCHUP_WINDOW:
        raise SettingsError(f"CATCHUP_WINDOW must be between {int(DISPATCH_INTERVAL.total_seconds())}s (how often "
                            f"beat looks for due slots) and {MAX_CATCHUP_WINDOW.days}d (got {raw.strip()!r})")
    return window


def _int(name: str, raw: str, minimum: int = 0) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number (got {raw!r})") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum} (got {value})")
    return value


def _emails(name: str, raw: str) -> tuple[str, ...]:
    items = tuple(item.strip() for item in raw.split(",") if item.strip())
    for item in items:
        if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", item):
            raise SettingsError(f"{name} has a malformed address: {item!r}")
    return items


def _schedule_days(name: str, raw: str) -> tuple[int, ...]:
    """DUNNING_SCHEDULE: days after the failure, strictly increasing, starting at 0 (the failure's own
    email is the first step); the last step applies DUNNING_FINAL_ACTION."""
    try:
        days = tuple(int(part) for part in raw.split(","))
    except ValueError:
        raise SettingsError(f"{name} must be whole numbers of days separated by commas, like 0,3,7,14 "
                            f"(got {raw!r})") from None
    if days[0] != 0:
        raise SettingsError(f"{name} must start with 0: the first step is the failure's own email (got {raw!r})")
    if any(b <= a for a, b in zip(days, days[1:], strict=False)) or len(days) < 2:
        raise SettingsError(f"{name} must list at least two days, each later than the one before (got {raw!r})")
    if days[-1] > 365:
        raise SettingsError(f"{name} must end within 365 days of the failure (got {raw!r})")
    return days


def _cron(name: str, raw: str) -> str:
    for part in raw.split(";"):
        try:
            parse_cron(part)
        except ValueError as exc:
            raise SettingsError(f"{name} is not a valid cron string ({raw!r}): {exc}") from None
        if not fires(part):
            raise SettingsError(f"{name} names no day that exists, so it would never run ({raw!r})")
    return raw.strip()


@dataclass(frozen=True)
class Settings:
    """Every knob the product has; docs/operations.md lists each setting with its default."""

    env: str
    database_url: str
    redis_url: str
    smtp_url: str
    mail_from: str
    secret_key: str
    app_url: str
    app_timezone: str
    stripe_secret_key: str
    stripe_webhook_secrets: tuple[str, ...]
    stripe_api_base: str
    card_expiring_days: int
    inactive_after_months: int
    purge_grace_days: int
    finance_emails: tuple[str, ...]
    admin_emails: tuple[str, ...]
    schedules: dict[str, str]
    catchup_window: timedelta
    trusted_proxy_hops: int = 0
    dev_maildir: str = ""
    # Operations: who may scrape /metrics, a worker's metrics port, the dead-man's-switch pings.
    metrics_allow: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    metrics_token: str = ""
    metrics_port: int = 0
    heartbeat_url: str = ""
    heartbeat_events: dict[str, str] = field(default_factory=dict)
    heartbeat_timeout: float = 3.0
    log_format: str = "text"
    dunning_schedule: tuple[int, ...] = (0, 3, 7, 14)
    dunning_final_action: str = "cancel"
    # Off behind PgBouncer in transaction mode before 1.21: psycopg prepares a statement run 5 times
    # on one connection, and the next transaction may be given another server connection.
    database_prepared_statements: bool = True
    # The Celery broker when it is not REDIS_URL: RabbitMQ (amqp://) or another Redis.
    celery_broker_url: str = ""

    @property
    def broker_url(self) -> str:
        """Where tasks are queued: CELERY_BROKER_URL, or REDIS_URL when it is not set."""
        return self.celery_broker_url or self.redis_url

    @property
    def broker_is_redis(self) -> bool:
        return self.broker_url.startswith(REDIS_SCHEMES)

    @property
    def app_host(self) -> str:
        """The host name of APP_URL: the one Host header the web app answers (plus loopback in dev)."""
        return urlsplit(self.app_url).hostname or ""

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.app_timezone)

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None,
                 needs: frozenset[str] | set[str] = SERVICE_SETTINGS) -> Settings:
        """Build settings from `environ` (default os.environ), failing with the setting's name.

        Of SERVICE_SETTINGS, only those in `needs` are required: the others, when unset, are left
        empty (their clients stay unbound), so a command asks only for what it uses."""
        env = dict(os.environ if environ is None else environ)
        get = env.get
        mode = get("SAAS_ENV", "production")
        if mode not in ENVIRONMENTS:
            raise SettingsError(f"SAAS_ENV must be one of {', '.join(ENVIRONMENTS)} (got {mode!r})")

        def required(name: str) -> str:
            value = get(name, "").strip()
            if not value and name in needs:
                raise SettingsError(f"{name} is required but not set")
            return value

        secret = get("SECRET_KEY", "").strip()
        if not secret:
            if mode == "production" and "SECRET_KEY" in needs:
                raise SettingsError("SECRET_KEY is required outside dev and test")
            secret = "" if mode == "production" else DEV_SECRET  # never the dev key in production
        elif mode == "production" and len(secret) < 16:
            raise SettingsError("SECRET_KEY is too short: use at least 16 random characters")

        app_url = get("APP_URL", "").strip().rstrip("/")
        if not app_url:
            if mode == "production" and "APP_URL" in needs:
                raise SettingsError("APP_URL is required outside dev and test: every absolute link is built "
                                    "from it and requests for any other host are refused")
            app_url = "http://127.0.0.1:5000"
        if urlsplit(app_url).scheme not in ("http", "https") or not urlsplit(app_url).hostname:
            raise SettingsError(f"APP_URL must be an http:// or https:// URL with a host (got {app_url!r})")

        tz_name = get("APP_TIMEZONE", "UTC").strip()
        try:
            ZoneInfo(tz_name)
        except (ZoneInfoNotFoundError, ValueError):
            raise SettingsError(f"APP_TIMEZONE is not a known IANA time zone (got {tz_name!r})") from None

        database_url = required("DATABASE_URL")
        if database_url and not database_url.startswith(("postgresql://", "postgresql+psycopg://", "postgres://")):
            raise SettingsError("DATABASE_URL must be a postgresql:// URL (PostgreSQL is the one database)")
        redis_url = required("REDIS_URL")
        if redis_url and not redis_url.startswith(REDIS_SCHEMES):
            raise SettingsError("REDIS_URL must be a redis:// or redis+sentinel:// URL "
                                f"(got {_scheme(redis_url)!r}, not shown in full: it may hold a password)")
        _check_sentinel("REDIS_URL", redis_url)
        broker_url = get("CELERY_BROKER_URL", "").strip()
        if broker_url and not broker_url.startswith(("amqp://", "amqps://", *REDIS_SCHEMES)):
            raise SettingsError("CELERY_BROKER_URL must be an amqp:// (RabbitMQ), redis:// or redis+sentinel:// URL "
                                f"(got {_scheme(broker_url)!r}, not shown in full: it may hold a password)")
        _check_sentinel("CELERY_BROKER_URL", broker_url)
        smtp_url = required("SMTP_URL")
        if smtp_url and not smtp_url.startswith(("smtp://", "smtps://")):
            raise SettingsError(f"SMTP_URL must be an smtp:// or smtps:// URL (got {smtp_url!r})")

        schedules = {
            job: _cron(f"SCHEDULE_{job.upper().replace('-', '_')}",
                       get(f"SCHEDULE_{job.upper().replace('-', '_')}", default))
            for job, default in DEFAULT_SCHEDULES.items()
        }
        if mode == "production" and get("SAAS_TEST_CLOCK_FILE", "").strip():
            raise SettingsError("SAAS_TEST_CLOCK_FILE is a test-only clock and is refused in production")
        log_format = get("LOG_FORMAT", "text").strip().lower() or "text"
        if log_format not in LOG_FORMATS:
            raise SettingsError(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)} (got {log_format!r})")
        stripe_key = get("STRIPE_SECRET_KEY", "sk_test_emulator").strip()
        api_base = get("STRIPE_API_BASE", "https://api.stripe.com").rstrip("/")
        if stripe_key.startswith(("sk_live_", "rk_live_")) and not api_base.startswith("https://api.stripe.com"):
            raise SettingsError("STRIPE_API_BASE points away from Stripe while STRIPE_SECRET_KEY is a live key")

        prepared = get("DATABASE_PREPARED_STATEMENTS", "on").strip().lower() or "on"
        if prepared not in ("on", "off"):
            raise SettingsError(f"DATABASE_PREPARED_STATEMENTS must be on or off (got {prepared!r})")

        final_action = get("DUNNING_FINAL_ACTION", "cancel").strip()
        if final_action not in DUNNING_FINAL_ACTIONS:
            raise SettingsError(f"DUNNING_FINAL_ACTION must be one of {', '.join(DUNNING_FINAL_ACTIONS)} "
                                f"(got {final_action!r})")

        return cls(
            env=mode,
            database_url=database_url,
            redis_url=redis_url,
            smtp_url=smtp_url,
            mail_from=get("MAIL_FROM", "Billing <billing@example.com>"),
            secret_key=secret,
            app_url=app_url,
            app_timezone=tz_name,
            stripe_secret_key=stripe_key,
            stripe_webhook_secrets=tuple(s.strip() for s in get("STRIPE_WEBHOOK_SECRET", "").split(",") if s.strip()),
            stripe_api_base=api_base,
            card_expiring_days=_int("CARD_EXPIRING_DAYS", get("CARD_EXPIRING_DAYS", "30"), 1),
            inactive_after_months=_int("INACTIVE_AFTER_MONTHS", get("INACTIVE_AFTER_MONTHS", "6"), 1),
            purge_grace_days=_int("PURGE_GRACE_DAYS", get("PURGE_GRACE_DAYS", "30"), 1),
            finance_emails=_emails("FINANCE_EMAILS", get("FINANCE_EMAILS", "finance@example.com")),
            admin_emails=_emails("ADMIN_EMAILS", get("ADMIN_EMAILS", "admin@example.com")),
            schedules=schedules,
            catchup_window=_catchup_window(get("CATCHUP_WINDOW", "36h")),
            trusted_proxy_hops=_int("TRUSTED_PROXY_HOPS", get("TRUSTED_PROXY_HOPS", "0")),
            dev_maildir=get("DEV_MAILDIR", ""),
            **_observability(get),
            log_format=log_format,
            dunning_schedule=_schedule_days("DUNNING_SCHEDULE", get("DUNNING_SCHEDULE", "0,3,7,14")),
            dunning_final_action=final_action,
            database_prepared_statements=prepared == "on",
            celery_broker_url=broker_url,
        )


def _observability(get) -> dict:
    """METRICS_ALLOW, METRICS_TOKEN, METRICS_PORT and HEARTBEAT_* (docs/operations.md, "Metrics" and "Heartbeats")."""
    allow = []
    for item in (part.strip() for part in get("METRICS_ALLOW", "").split(",")):
        if item:
            try:
                allow.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise SettingsError(f"METRICS_ALLOW has a malformed address or network: {item!r} "
                                    "(use e.g. 127.0.0.1/32,10.0.0.0/8)") from None
    token = get("METRICS_TOKEN", "").strip()
    if token and len(token) < 16:
        raise SettingsError("METRICS_TOKEN is too short: use at least 16 random characters")
    port = _int("METRICS_PORT", get("METRICS_PORT", "").strip() or "0")
    if port > 65535:
        raise SettingsError(f"METRICS_PORT must be a TCP port, 1 to 65535 (got {port})")
    if port and not (allow or token):
        raise SettingsError("METRICS_PORT needs METRICS_ALLOW or METRICS_TOKEN: metrics are never public")
    url = get("HEARTBEAT_URL", "").strip()
    if url:
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
            raise SettingsError("HEARTBEAT_URL must be an http:// or https:// URL with a host "
                                f"(got scheme {urlsplit(url).scheme!r})")  # the rest of it may be a secret
        try:
            url.format(job="job", event="start")
        except (KeyError, IndexError, ValueError) as exc:
            raise SettingsError(f"HEARTBEAT_URL may hold only the placeholders {{job}} and {{event}} ({exc!r})") from None
    events: dict[str, str] = {}
    for pair in (part.strip() for part in get("HEARTBEAT_EVENTS", "").split(",")):
        if not pair:
            continue
        name, sep, word = pair.partition("=")
        if not sep or name.strip() not in HEARTBEAT_EVENTS:
            raise SettingsError(f"HEARTBEAT_EVENTS must be pairs like start=in_progress,success=ok,fail=error "
                                f"(events: {', '.join(HEARTBEAT_EVENTS)}; got {pair!r})")
        events[name.strip()] = word.strip()
    raw_timeout = get("HEARTBEAT_TIMEOUT", "3").strip()
    try:
        timeout = float(raw_timeout)
    except ValueError:
        raise SettingsError(f"HEARTBEAT_TIMEOUT must be a number of seconds (got {raw_timeout!r})") from None
    if not 0 < timeout <= 30:
        raise SettingsError(f"HEARTBEAT_TIMEOUT must be more than 0 and at most 30 seconds (got {raw_timeout!r})")
    return {"metrics_allow": tuple(allow), "metrics_token": token, "metrics_port": port, "heartbeat_url": url,
            "heartbeat_events": events, "heartbeat_timeout": timeout}
