"""Email rendering from templates/email/, usable with or without a Flask app."""
from __future__ import annotations

from email.utils import parseaddr
from functools import lru_cache
from typing import Any, NamedTuple

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from saas.core.formatting import FILTERS
from saas.core.settings import ROOT

_options = {"app_url": "", "auto_reload": False, "mail_from": "localhost"}


def bind(app_url: str, auto_reload: bool, mail_from: str) -> None:
    """Set APP_URL (every template gets it), MAIL_FROM (its domain names Message-IDs) and whether
    templates are re-read when they change (dev only: elsewhere no stat() of files per render)."""
    _options.update(app_url=app_url, auto_reload=auto_reload, mail_from=mail_from)
    _environment.cache_clear()


@lru_cache(maxsize=1)
def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(ROOT / "templates"),
        auto_reload=bool(_options["auto_reload"]),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(FILTERS)
    return env


class RenderedEmail(NamedTuple):
    subject: str
    text: str
    html: str


def render_email(template: str, context: dict[str, Any]) -> RenderedEmail:
    """Render email/<template>.{subject.txt,txt,html} with `context` (and app_url)."""
    env, ctx = _environment(), _with_defaults(context)
    text = env.get_template(f"email/{template}.txt").render(ctx)
    html = env.get_template(f"email/{template}.html").render(ctx)
    return RenderedEmail(render_subject(template, context), text, html)


def render_subject(template: str, context: dict[str, Any]) -> str:
    """Only the subject line of email/<template>, on one line."""
    subject = _environment().get_template(f"email/{template}.subject.txt").render(_with_defaults(context))
    return " ".join(subject.split())


def _with_defaults(context: dict[str, Any]) -> dict[str, Any]:
    return {"app_url": _options["app_url"], **context}


def message_domain() -> str:
    """The domain of MAIL_FROM, which Message-IDs use."""
    return parseaddr(str(_options["mail_from"]))[1].rpartition("@")[2] or "localhost"
