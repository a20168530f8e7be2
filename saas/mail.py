"""Email rendering from templates/email/, usable with or without a Flask app."""
from __future__ import annotations

from functools import lru_cache
from typing import Any, NamedTuple

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from saas.settings import ROOT, get_settings


@lru_cache(maxsize=1)
def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(ROOT / "templates"),
        auto_reload=get_settings().env == "dev",  # elsewhere no stat() of template files per render
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


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
    return {"app_url": get_settings().app_url, **context}
