"""The real `saas` command with a minimal environment: each mistake is one `Error: …` line naming
the setting, service or option, and a non-zero exit; help needs no configuration at all."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from saas.dev.embedded import free_port

SAAS = str(Path(sys.executable).with_name("saas"))  # the console script pyproject.toml installs
NOWHERE = f"127.0.0.1:{free_port()}"  # nothing listens there
BASE = {"PATH": "/usr/bin:/bin", "SAAS_ENV": "test", "DATABASE_URL": f"postgresql://u@{NOWHERE}/db",
        "REDIS_URL": f"redis://{NOWHERE}/0", "SMTP_URL": f"smtp://{NOWHERE}"}


def saas(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([SAAS, *args], env=env, capture_output=True, text=True, timeout=120)


def without(*names: str) -> dict[str, str]:
    return {k: v for k, v in BASE.items() if k not in names}


@pytest.mark.parametrize(("args", "env", "named", "code"), [
    (["jobs", "list"], {**BASE, "SAAS_ENV": ""}, "SAAS_ENV", 2),
    (["jobs", "history"], without("DATABASE_URL"), "DATABASE_URL is required", 2),
    (["jobs", "history"], BASE, "the database cannot be used (DATABASE_URL)", 1),
    (["jobs", "run", "purge-dormant-accounts", "--at", "2025-05-10"], BASE, "(DATABASE_URL)", 1),
    (["db", "upgrade"], BASE, "(DATABASE_URL)", 1),
    (["jobs", "list"], {**BASE, "SCHEDULE_PURGE_DORMANT_ACCOUNTS": "0 0 * *"}, "SCHEDULE_PURGE_DORMANT_ACCOUNTS", 2),
    (["jobs", "list"], {**BASE, "SCHEDULE_FINANCE_SUMMARY": "0 6 31 2 *"}, "SCHEDULE_FINANCE_SUMMARY", 2),
    (["jobs", "list"], {**BASE, "APP_TIMEZONE": "Mars/Olympus"}, "APP_TIMEZONE", 2),
    (["jobs", "list"], {**BASE, "CATCHUP_WINDOW": "1 week"}, "CATCHUP_WINDOW", 2),
    (["jobs", "list"], {**BASE, "CATCHUP_WINDOW": "5s"}, "CATCHUP_WINDOW must be between 10s", 2),
    (["jobs", "list"], {**BASE, "CATCHUP_WINDOW": "400d"}, "CATCHUP_WINDOW must be between", 2),
    (["jobs", "list"], {**BASE, "CATCHUP_WINDOW": "99999999999d"}, "CATCHUP_WINDOW", 2),
    (["jobs", "list"], {**BASE, "LOG_FORMAT": "xml"}, "LOG_FORMAT", 2),
    (["jobs", "history", "--limit", "-1"], BASE, "'--limit'", 2),
    (["jobs", "run", "flag-cards"], BASE, "unknown job 'flag-cards'", 2),
    (["jobs", "run", "finance-summary", "--at", "yesterday"], BASE, "--at", 2),
    (["jobs", "run", "purge-dormant-accounts", "--at", "2999-01-02T00:00"], BASE, "add --force", 2),
    (["jobs", "nope"], BASE, "No such command 'nope'", 2),
    (["routes"], {**BASE, "SAAS_ENV": "production"}, "SECRET_KEY", 2),
])
def test_a_mistake_is_one_error_line_and_a_non_zero_exit(args, env, named, code):
    result = saas(*args, env=env)
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1, result.stderr
    assert named in result.stderr
    assert result.returncode == code, result.stderr


@pytest.mark.parametrize("args", [["--help"], ["jobs", "--help"], ["jobs", "run", "--help"], ["db", "--help"]])
def test_help_needs_no_configuration(args):
    result = saas(*args, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert "Usage: saas" in result.stdout


def test_jobs_list_needs_no_service_settings():
    """Not SMTP_URL, nor the database, nor SECRET_KEY and APP_URL in production: it reads the schedules."""
    result = saas("jobs", "list", env={"PATH": "/usr/bin:/bin", "SAAS_ENV": "production",
                                      "SCHEDULE_PURGE_DORMANT_ACCOUNTS": "0 0 29 2 *"})
    assert result.returncode == 0 and result.stderr == "", result.stderr
    purge = next(line for line in result.stdout.splitlines() if line.startswith("purge-dormant-accounts"))
    assert "-02-29T00:00:00+00:00" in purge  # a leap day however far away, not "never"
