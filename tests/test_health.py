"""Health and readiness probes."""


def test_healthz(client):
    assert client.get("/healthz").json == {"status": "ok"}


def test_readyz_when_everything_answers(client):
    response = client.get("/readyz")
    assert response.status_code == 200 and response.json["checks"] == {"database": "ok", "redis": "ok"}


def test_readyz_is_503_when_redis_is_down(client, monkeypatch):
    from saas.settings import get_settings

    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    get_settings.cache_clear()
    try:
        response = client.get("/readyz")
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert response.status_code == 503 and response.json["checks"]["redis"].startswith("error")
