"""Security headers on every response: a CSP the pages meet without inline script, and no caching of signed-in pages.

A small after_request hook rather than Flask-Talisman: the header set is fixed, HTTPS redirects are
the proxy's job, and the hook is the whole policy in one screen.
"""
from __future__ import annotations

import re

from flask import request
from flask_login import current_user

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "object-src 'none'; base-uri 'self'; frame-ancestors 'none'")
# The pages that show an email's own HTML (inline styles, as mail clients need) in a sandboxed
# srcdoc frame, which inherits this policy: the dev mail reader and the admin's outbox message.
# Scripts stay refused; the frame's sandbox also blocks scripts, forms and this page's origin.
MAIL_PREVIEW_CSP = CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")
MAIL_PREVIEW = re.compile(r"^/(dev/mail|admin/outbox/\d+$)")


def init_app(app) -> None:
    production = app.config["SETTINGS"].is_production

    @app.after_request
    def add_security_headers(response):
        headers = response.headers
        headers.setdefault("Content-Security-Policy", MAIL_PREVIEW_CSP if MAIL_PREVIEW.match(request.path) else CSP)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
        if production:
            headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        if current_user.is_authenticated:
            headers["Cache-Control"] = "no-store"
        return response
