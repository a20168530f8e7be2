"""Health and readiness probes."""


def test_healthz(client):
    assert client.get("/healthz").json == {"status": "ok"}


def test_readyz_when_everything_answers(client):
    response = client.get("/readyz")
    assert response.status_code == 200 and response.json["checks"] == {"database": "ok", "redis": "ok"}


def test_readyz_is_503_when_redis_is_down(settings, with_settings):
    from saas.web.app import create_app

    try:
        response = create_app(with_settings(redis_url="redis://127.0.0.1:1/0")).test_client().get("/readyz")
    finally:
        create_app(settings)  # the process's Redis client back on the suite's Redis
    assert response.status_code == 503 and response.json["checks"]["redis"].startswith("error")
