"""Error pages in the app's own style; JSON for API callers."""
from flask import jsonify, render_template, request
from flask_wtf.csrf import CSRFError

MESSAGES = {
    400: ("Bad request", "Something in that request was not right."),
    403: ("Not allowed", "Your account does not have access to this page."),
    404: ("Not found", "There is no page at this address."),
    405: ("Not allowed", "That method is not allowed here."),
    413: ("Too large", "That request was too large."),
    429: ("Too many requests", "You are going a little fast."),
    500: ("Something went wrong", "We could not complete that. It has been logged; please try again."),
}


def _wants_json() -> bool:
    return request.path.startswith("/billing/webhooks") or (
        request.accept_mimetypes.best == "application/json")


def render_error(code: int, detail: str | None = None, retry_after: int | None = None):
    title, message = MESSAGES.get(code, MESSAGES[500])
    if _wants_json():
        body = jsonify(error=title, detail=detail or message)
    else:
        body = render_template("error.html", code=code, title=title, message=detail or message,
                               retry_after=retry_after)
    response = (body, code)
    return response


def init_app(app) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(exc):
        return render_error(400, "The form expired or was not sent from this site. Reload the page and try again.")

    @app.errorhandler(429)
    def too_many(exc):
        retry_after = None
        limit = getattr(exc, "limit", None)
        if limit is not None:
            retry_after = int(limit.limit.get_expiry())
        response = render_error(429, f"Too many requests: {exc.description}. Try again in a few seconds.", retry_after)
        return response

    for code in (400, 403, 404, 405, 413, 500):
        app.register_error_handler(code, lambda exc, code=code: render_error(code))
