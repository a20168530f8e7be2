"""`GET /metrics`: the Prometheus scrape, for the addresses in METRICS_ALLOW or a METRICS_TOKEN bearer.

With neither set it answers 404, as an unknown page; a request that is neither from an allowed
address nor carries the token gets 403. The counters of every gunicorn worker (multi-process
mode) and the database gauges (saas.web.state_metrics) are in one answer.
"""
from __future__ import annotations

from flask import Blueprint, Response, abort, request

from saas.core import metrics
from saas.web.extensions import app_settings
from saas.web.state_metrics import StateCollector

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def scrape():
    verdict = metrics.scrape_verdict(app_settings(), request.remote_addr, request.headers.get("Authorization"))
    if verdict == "off":
        abort(404)
    if verdict == "refused":
        return Response("403 Forbidden: /metrics answers the addresses in METRICS_ALLOW or a bearer METRICS_TOKEN.\n",
                        403, mimetype="text/plain")
    body, content_type = metrics.exposition([StateCollector()])
    return Response(body, 200, content_type=content_type, headers={"Cache-Control": "no-store"})
