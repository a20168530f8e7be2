"""Sign-in attempts are limited per account and per IP address; only failures count."""
from __future__ import annotations

from saas.web.views.auth import LOGIN_LIMIT_PER_ACCOUNT, LOGIN_LIMIT_PER_IP
from tests.helpers import PASSWORD

PER_ACCOUNT = int(LOGIN_LIMIT_PER_ACCOUNT.split()[0])
PER_IP = int(LOGIN_LIMIT_PER_IP.split()[0])


def attempt(client, email: str, password: str = "wrong-password-1", ip: str = "203.0.113.7"):
    return client.post("/login", data={"email": email, "password": password}, environ_base={"REMOTE_ADDR": ip})


def test_the_limits_are_as_documented():
    assert (LOGIN_LIMIT_PER_ACCOUNT, LOGIN_LIMIT_PER_IP) == ("5 per minute", "10 per minute")


def test_a_correct_sign_in_after_a_few_failures_still_works(client, make_user):
    make_user(email="ana@example.com")
    for _ in range(PER_ACCOUNT - 1):
        assert attempt(client, "ana@example.com").status_code == 400
    assert attempt(client, "ana@example.com", PASSWORD).status_code == 302


def test_past_the_account_limit_even_the_right_password_waits(client, make_user):
    make_user(email="ana@example.com")
    for n in range(PER_ACCOUNT):  # from different addresses: the account's own limit
        assert attempt(client, "ana@example.com", ip=f"198.51.100.{n}").status_code == 400
    blocked = attempt(client, " ANA@example.com", PASSWORD, ip="198.51.100.99")
    assert blocked.status_code == 429
    assert b"Too many failed sign-ins for this account" in blocked.data
    assert int(blocked.headers["Retry-After"]) >= 1
    # Another account from the same address is not affected.
    make_user(email="bruno@example.com")
    assert attempt(client, "bruno@example.com", PASSWORD, ip="198.51.100.99").status_code == 302


def test_past_the_ip_limit_every_account_waits_but_other_addresses_do_not(client, make_user):
    make_user(email="ana@example.com")
    for n in range(PER_IP):  # a different account each time: the address's limit
        assert attempt(client, f"guess{n}@example.com").status_code == 400
    blocked = attempt(client, "ana@example.com", PASSWORD)
    assert blocked.status_code == 429 and b"Too many failed sign-ins from your network" in blocked.data
    assert attempt(client, "ana@example.com", PASSWORD, ip="192.0.2.1").status_code == 302


def test_successes_and_the_sign_in_page_do_not_count(client, make_user):
    make_user(email="ana@example.com")
    for _ in range(PER_IP + 2):
        assert attempt(client, "ana@example.com", PASSWORD).status_code == 302
        client.post("/logout")
        assert client.get("/login", environ_base={"REMOTE_ADDR": "203.0.113.7"}).status_code == 200
    assert attempt(client, "ana@example.com", PASSWORD).status_code == 302
