"""The session cookie: Flask's own format and keys, its serializer built once (saas.web.session_cookie)."""
from __future__ import annotations

import hashlib

from flask.sessions import SecureCookieSessionInterface
from freezegun import freeze_time

from saas.web.session_cookie import SignedCookieSessions

SESSION = {"_user_id": "token-of-ana", "_fresh": True, "csrf_token": "c" * 40}


def test_the_app_signs_the_same_cookie_as_flask(app):
    ours, flasks = app.session_interface, SecureCookieSessionInterface()
    assert isinstance(ours, SignedCookieSessions)
    with freeze_time("2026-12-04 12:00:00"):
        cookie = flasks.get_signing_serializer(app).dumps(SESSION)
        assert ours.get_signing_serializer(app).dumps(SESSION) == cookie
    assert ours.get_signing_serializer(app).loads(cookie) == SESSION
    signer = ours.get_signing_serializer(app).make_signer()
    assert signer.digest_method is hashlib.sha1  # OpenSSL's constructor: hmac's fast path


def test_one_serializer_until_the_keys_change(app):
    ours = app.session_interface
    first = ours.get_signing_serializer(app)
    assert ours.get_signing_serializer(app) is first
    old_cookie = first.dumps(SESSION)
    app.config["SECRET_KEY_FALLBACKS"] = [app.secret_key]
    app.secret_key = app.config["SECRET_KEY"] = "a-new-secret-key-for-the-rotation-test"
    rotated = ours.get_signing_serializer(app)
    assert rotated is not first
    assert rotated.loads(old_cookie) == SESSION  # signed with the key now in the fallbacks
    assert first.dumps(SESSION) != rotated.dumps(SESSION)


def test_a_signed_in_session_survives_requests(client, make_user, auth):
    make_user(email="ana@example.com")
    auth.login("ana@example.com")
    for _ in range(3):
        assert client.get("/dashboard").status_code == 200
    client.set_cookie("session", "tampered." + "x" * 40)
    assert client.get("/dashboard").status_code == 302  # a cookie that fails its signature is no session
