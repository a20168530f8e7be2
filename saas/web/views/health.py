"""Liveness and readiness probes."""
from flask import Blueprint, jsonify
from sqlalchemy import text

from saas.core import redis_client
from saas.core.db import web_session

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """The process is alive and serving requests."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    """Ready when PostgreSQL and Redis both answer; 503 naming what is down otherwise."""
    checks: dict[str, str] = {}
    try:
        web_session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # any driver error means not ready
        web_session.rollback()
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        redis_client.get().ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"error: {type(exc).__name__}"
    ready = all(value == "ok" for value in checks.values())
    return jsonify(status="ready" if ready else "unavailable", checks=checks), 200 if ready else 503
