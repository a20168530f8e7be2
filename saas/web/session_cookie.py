"""Flask's signed-cookie sessions, the same cookie, built once instead of on every request.

Flask's SecureCookieSessionInterface builds a new itsdangerous serializer for every request
(to read the cookie) and again to write one, and signs with `_lazy_sha1`, a Python function
that defers the SHA-1 lookup for FIPS builds. Python's hmac only takes OpenSSL's fast path
for OpenSSL's own constructors, so every signature and key derivation went through the
pure-Python HMAC. Reading the cookie cost about 26 µs of CPU a request, 16 µs with the
serializer kept and hashlib.sha1 (docs/benchmarks.md, issue 18). The cookie's bytes, salt,
key derivation and key rotation (SECRET_KEY_FALLBACKS) are Flask's: a cookie signed by either
interface opens with the other.
"""
from __future__ import annotations

import hashlib

from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import URLSafeTimedSerializer


class SignedCookieSessions(SecureCookieSessionInterface):
    digest_method = staticmethod(hashlib.sha1)

    def __init__(self) -> None:
        self._serializer: tuple[tuple, URLSafeTimedSerializer | None] | None = None

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        keys = (app.secret_key, tuple(app.config["SECRET_KEY_FALLBACKS"] or ()))
        kept = self._serializer  # one read: another thread may replace it, never half-way
        if kept is None or kept[0] != keys:
            kept = self._serializer = (keys, super().get_signing_serializer(app))
        return kept[1]


def init_app(app: Flask) -> None:
    app.session_interface = SignedCookieSessions()
