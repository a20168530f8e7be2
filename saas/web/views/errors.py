"""Error pages in the app's own style; JSON for API callers."""
from __future__ import annotations

from flask import jsonify, render_template, request
from flask_wtf.csrf import CSRFError

from saas.web.limits import LimitReached

MESSAGES = {
    400: ("Bad request", "Something in that request was not right."),
    403: ("Not allowed", "Your account does not have access to this page."),
    404: ("Not found", "There is no page at this address."),
    405: ("Method not allowed", "That method is not allowed here."),
    413: ("Too large", "That request was too large."),
    429: ("Too many requests", "You are going a little fast."),
    500: ("Something went wrong", "We could not complete that. It has been logged; please try again."),
}


def _wants_json() -> bool:
    return request.path.startswith("/billing/webhooks") or (
        request.accept_mimetypes.best == "application/json")


def render_error(code: int, detail: str | None = None, retry_after: int | None = None):
    """The error page (or JSON body) for `code`, with an optional reason and wait time."""
    title, message = MESSAGES.get(code, MESSAGES[500])
    if _wants_json():
        body = jsonify(error=title, detail=detail or message, retry_after=retry_after)
    else:
        body = render_template("error.html", code=code, title=title, message=detail or message,
                               retry_after=retry_after)
    headers = {"Retry-After": str(retry_after)} if retry_after else {}
    return body, code, headers


def init_app(app) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(exc):
        return render_error(400, "The form expired or was not sent from this site. Reload the page and try again.")

    @app.errorhandler(429)
    def too_many(exc):
        """Every limit is counted by saas.web.limits, whose refusal says why and when to come back."""
        if isinstance(exc, LimitReached):
            return render_error(429, exc.description, retry_after=exc.retry_after)
        return render_error(429)

    for code in (400, 403, 404, 405, 413, 500):
        app.register_error_handler(code, lambda exc, code=code: render_error(code, _detail(exc, code)))


def _detail(exc, code: int) -> str | None:
    """A 400 raised with a specific reason (abort(400, "...")) shows that reason."""
    description = getattr(exc, "description", None)
    if code == 400 and description and "browser (or proxy) sent a request" not in description:
        return description
    return None
