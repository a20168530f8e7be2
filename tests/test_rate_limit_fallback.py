"""With Redis down, sign-in and the contact form still answer (limits fall back to memory)."""
import pytest


@pytest.fixture
def app_without_redis(settings, with_settings):
    from saas.web.app import create_app

    app = create_app(with_settings(redis_url="redis://127.0.0.1:1/0"))
    app.config.update(WTF_CSRF_ENABLED=False)
    yield app
    create_app(settings)  # the limiter is one object for every app: point it back at the suite's Redis


def test_login_answers_without_redis_and_still_limits(app_without_redis, make_user):
    make_user(email="ana@example.com")
    client = app_without_redis.test_client()
    codes = [client.post("/login", data={"email": "ana@example.com", "password": "wrong-pass-1"}).status_code
             for _ in range(7)]
    assert 500 not in codes
    assert codes[0] == 400 and codes[-1] == 429
