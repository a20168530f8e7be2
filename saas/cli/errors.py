"""The `saas` group: help without configuration, and one `Error: …` line for every mistake."""
from __future__ import annotations

import sys
from typing import Any

import click
import redis
from flask.cli import FlaskGroup
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy.exc import InterfaceError, OperationalError, ProgrammingError


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


def _first_line(error: BaseException) -> str:
    """A driver's message without its hints ("Is the server running…" follows on its own line)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def service_error(exc: Exception) -> str | None:
    """What to tell the operator when a service the command uses fails; None for anything else
    (a bug keeps its traceback)."""
    if isinstance(exc, OperationalError | InterfaceError):
        return f"the database cannot be used (DATABASE_URL): {_first_line(exc.orig)}"
    if isinstance(exc, ProgrammingError) and "does not exist" in str(exc.orig):
        return f"the database schema is missing or old (run `saas db upgrade`): {_first_line(exc.orig)}"
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError | BrokerError):
        return f"Redis cannot be reached (REDIS_URL): {_first_line(exc)}"
    return None


class SaasGroup(FlaskGroup):
    """Flask's group, except that listing and finding commands never builds the app (so `saas
    --help` needs no settings), and a usage, settings or connection mistake prints one line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load_plugin_commands()
        return sorted(self.commands)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        self._load_plugin_commands()
        return self.commands.get(name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            message = service_error(exc)
            if message is None:
                raise
            raise click.ClickException(message) from None

    def main(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("standalone_mode", True) is False:  # a caller that handles errors itself
            return super().main(*args, **kwargs)
        try:
            code = super().main(*args, **{**kwargs, "standalone_mode": False})
        except click.exceptions.NoArgsIsHelpError as exc:  # bare `saas`: the help, as click prints it
            exc.show()
            sys.exit(exc.exit_code)
        except click.ClickException as exc:  # usage errors too: no usage block, just the reason
            click.echo(f"Error: {_one_line(exc.format_message())}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Error: aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)
