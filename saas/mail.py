"""Email rendering from templates/email/, usable with or without a Flask app."""
from __future__ import annotations

from functools import lru_cache
from typing import Any

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


def render_email(template: str, context: dict[str, Any]) -> tuple[str, str, str]:
    """Render email/<template>.{subject,txt,html} into (subject, text, html)."""
    env = _environment()
    settings = get_settings()
    ctx = {"app_url": settings.app_url, **context}
    subject = env.get_template(f"email/{template}.subject.txt").render(ctx).strip()
    text = env.get_template(f"email/{template}.txt").render(ctx)
    html = env.get_template(f"email/{template}.html").render(ctx)
    return " ".join(subject.split()), text, html
