"""The command line's settings: read from the environment once per command, or one Error line.

Each command asks only for the services it uses (`needs`, a subset of SERVICE_SETTINGS); a
setting that is set is always checked. docs/operations.md lists what each command needs.
"""
from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

import click

from saas.core import logs, runtime
from saas.core.settings import SERVICE_SETTINGS, Settings, SettingsError

NO_SERVICES: frozenset[str] = frozenset()
DATABASE_ONLY = frozenset({"DATABASE_URL"})  # the ledger and the audit log: history, pause, resume
RUNS_JOBS = frozenset({"DATABASE_URL", "REDIS_URL", "APP_URL"})  # the ledger, queued deliveries, links in emails


def load_settings(needs: Iterable[str] = SERVICE_SETTINGS) -> Settings:
    """The environment's settings, made the process's; a malformed one prints `Error: …` and exits 2."""
    try:
        settings = Settings.from_env(needs=frozenset(needs))
    except SettingsError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    # A command's answer is its output; its log says only what went wrong (warnings and errors).
    logs.configure(settings.log_format, logging.WARNING)
    return runtime.configure(settings)
