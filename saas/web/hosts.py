"""Requests for a host other than APP_URL's answer 400, before Flask sees them; health probes and
/metrics (which has its own guard) answer any host.

Links are built from APP_URL, never from the Host header; refusing other hosts as well keeps a
forged header from reaching any code at all. Flask's TRUSTED_HOSTS would do the same but also
refuse the probes, which orchestrators send to the container's own address.
"""
from __future__ import annotations

from werkzeug.sansio.utils import host_is_trusted
from werkzeug.wrappers import Response
from werkzeug.wsgi import get_host

PROBES = frozenset({"/healthz", "/readyz", "/metrics"})


class TrustedHosts:
    """WSGI middleware: `hosts` (ports ignored) or 400 with the reason."""

    def __init__(self, app, hosts: list[str]):
        self.app, self.hosts = app, hosts

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") in PROBES or host_is_trusted(get_host(environ), self.hosts):
            return self.app(environ, start_response)
        refusal = Response("400 Bad Request: this host is not served here.\n", 400, mimetype="text/plain")
        return refusal(environ, start_response)
