"""The command line's settings: read from the environment once per command, or one Error line."""
from __future__ import annotations

import sys

import click

from saas.core import runtime
from saas.core.settings import Settings, SettingsError


def load_settings() -> Settings:
    """The environment's settings, made the process's; a malformed one prints `Error: …` and exits 2."""
    try:
        return runtime.configure(Settings.from_env())
    except SettingsError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
