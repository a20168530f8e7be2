"""The contact form: validation, outbox row, honeypot, one message per 10 s per client."""
import pytest
from sqlalchemy import select

from saas.core.db import session_scope
from saas.core.outbox import OutboxMessage

GOOD = {"name": "Vera Visitor", "email": "vera@example.org", "subject": "Invoices",
        "message": "Can I get my invoices as PDF, please?", "submission": "tok-1"}


def outbox_rows() -> list[OutboxMessage]:
    with session_scope() as s:
        rows = list(s.scalars(select(OutboxMessage)))
        s.expunge_all()
        return rows


def test_get_renders_form_with_labels_and_honeypot(client):
    page = client.get("/contact").get_data(as_text=True)
    assert '<label for="email">' in page and '<label for="message">' in page
    assert 'name="website"' in page and 'tabindex="-1"' in page


def test_post_writes_outbox_row_and_redirects_to_the_thanks(client):
    response = client.post("/contact", data=GOOD)
    assert response.status_code == 302 and response.location.endswith("/contact/sent")
    assert "Set-Cookie" not in response.headers  # nothing for the session to keep
    [row] = outbox_rows()
    assert row.kind == "contact" and row.reply_to == "vera@example.org" and row.to_addr == "admin@example.com"
    assert row.subject == "Contact form: Invoices" and "Can I get my invoices as PDF" in row.render().text
    assert row.status == "pending"
    assert "your message is on its way" in client.get(response.location).get_data(as_text=True)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("email", "", "This field is required"),
    ("email", "not-an-email", "Invalid email"),
    ("subject", "", "This field is required"),
    ("subject", "x" * 201, "Field cannot be longer than 200 characters"),
    ("message", "", "This field is required"),
    ("message", "too short", "Field must be between 10 and 5000 characters"),
    ("message", "x" * 5001, "Field must be between 10 and 5000 characters"),
    ("name", "n" * 201, "Field cannot be longer than 200 characters"),
])
def test_bad_input_rerenders_with_message_and_writes_nothing(client, field, value, message):
    response = client.post("/contact", data={**GOOD, field: value})
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert outbox_rows() == []


def test_invalid_posts_do_not_use_up_the_limit(client):
    client.post("/contact", data={**GOOD, "email": ""})
    assert client.post("/contact", data=GOOD).status_code == 302


def test_honeypot_pretends_success_and_writes_nothing(client):
    response = client.post("/contact", data={**GOOD, "website": "http://spam.example"})
    assert response.status_code == 302
    assert "on its way" in client.get(response.location).get_data(as_text=True)
    assert outbox_rows() == []


def test_second_quick_post_gets_429_page_saying_when_and_keeping_what_was_typed(client):
    assert client.post("/contact", data=GOOD).status_code == 302
    response = client.post("/contact", data={**GOOD, "subject": "Second <one>", "submission": "tok-2"})
    assert response.status_code == 429
    page = response.get_data(as_text=True)
    assert "That was too quick" in page and "send it again" in page and "second" in page
    assert "Can I get my invoices as PDF, please?</textarea>" in page and 'value="Second &lt;one&gt;"' in page
    assert 'value="vera@example.org"' in page and 'value="Vera Visitor"' in page
    assert 1 <= int(response.headers["Retry-After"]) <= 11
    assert 'href="/static/app.css"' in page  # the app's own layout
    assert len(outbox_rows()) == 1


def test_429_as_json_carries_retry_after(client):
    assert client.post("/contact", data=GOOD).status_code == 302
    response = client.post("/contact", data={**GOOD, "submission": "tok-2"}, headers={"Accept": "application/json"})
    assert response.status_code == 429 and response.json["retry_after"] >= 1
    assert 1 <= int(response.headers["Retry-After"]) <= 11


def test_a_post_costs_the_limiter_one_redis_command_and_no_headers(client, sent, monkeypatch):
    """The limit is counted and checked by one atomic INCR script (once Redis has the script); no
    X-RateLimit-* headers, which would cost two more (GET and TTL of the window) on every request."""
    import redis

    assert client.post("/contact", data={**GOOD, "submission": "warm"},
                       environ_base={"REMOTE_ADDR": "192.0.2.50"}).status_code == 302  # loads the script
    commands = []
    real = redis.Redis.execute_command
    monkeypatch.setattr(redis.Redis, "execute_command",
                        lambda self, *args, **kw: commands.append(args[0]) or real(self, *args, **kw))
    response = client.post("/contact", data=GOOD)
    assert response.status_code == 302 and len(sent) == 2
    assert commands == ["EVALSHA"]
    assert not [name for name in response.headers.keys() if name.lower().startswith("x-ratelimit")]


def test_limit_is_per_ip_for_visitors(app):
    one, two = app.test_client(), app.test_client()
    assert one.post("/contact", data=GOOD, environ_base={"REMOTE_ADDR": "10.0.0.1"}).status_code == 302
    assert two.post("/contact", data={**GOOD, "submission": "b"}, environ_base={"REMOTE_ADDR": "10.0.0.2"}).status_code == 302
    assert two.post("/contact", data={**GOOD, "submission": "c"}, environ_base={"REMOTE_ADDR": "10.0.0.2"}).status_code == 429


def test_limit_is_per_user_when_signed_in(app, make_user):
    from tests.conftest import AuthActions

    make_user(email="u1@example.com")
    make_user(email="u2@example.com")
    first, second = app.test_client(), app.test_client()
    AuthActions(first).login("u1@example.com")
    AuthActions(second).login("u2@example.com")
    # Same IP (the test client's), different users: each may send one.
    assert first.post("/contact", data=GOOD).status_code == 302
    assert second.post("/contact", data={**GOOD, "submission": "x"}).status_code == 302
    assert first.post("/contact", data={**GOOD, "submission": "y"}).status_code == 429
    assert [r.user_id is not None for r in outbox_rows()] == [True, True]


def test_resubmitting_the_same_form_queues_one_email(app):
    one, two = app.test_client(), app.test_client()
    one.post("/contact", data=GOOD, environ_base={"REMOTE_ADDR": "10.0.0.3"})
    two.post("/contact", data=GOOD, environ_base={"REMOTE_ADDR": "10.0.0.4"})
    assert len(outbox_rows()) == 1


def test_signed_in_form_is_prefilled(client, make_user, auth):
    make_user(email="ana@example.com", name="Ana")
    auth.login("ana@example.com")
    assert 'value="ana@example.com"' in client.get("/contact").get_data(as_text=True)


def test_csrf_is_enforced(csrf_app):
    response = csrf_app.test_client().post("/contact", data=GOOD)
    assert response.status_code == 400 and b"The form expired" in response.data
    assert outbox_rows() == []


def test_an_international_address_is_refused_clearly_or_sent_in_ascii(client, sent, mail):
    """Non-ASCII before the @ cannot go into Reply-To everywhere: the form says so and keeps the
    text; an international domain is kept in punycode, a Reply-To any server carries."""
    refused = client.post("/contact", data={**GOOD, "email": "josé@example.com"})
    page = refused.get_data(as_text=True)
    assert refused.status_code == 400 and "plain letters" in page and GOOD["message"] in page
    assert client.post("/contact", data={**GOOD, "email": "ana@bücher.example"}).status_code == 302
    with session_scope() as s:
        assert s.scalar(select(OutboxMessage.reply_to)) == "ana@xn--bcher-kva.example"
