"""gunicorn's own log lines in LOG_FORMAT, the master's included (it logs before any app exists):
`gunicorn --logger-class saas.web.gunicorn_logger.Logger "saas.web.app:create_app()"`."""
from __future__ import annotations

from gunicorn.glogging import Logger as GunicornLogger

from saas.core import logs
from saas.core.settings import Settings


class Logger(GunicornLogger):
    """gunicorn's error and access logs, formatted by saas.core.logs (JSON lines or gunicorn's text)."""

    def setup(self, cfg) -> None:
        super().setup(cfg)  # runs again on a reload (HUP): the new handlers get the format too
        log_format = Settings.from_env(needs=frozenset()).log_format
        logs.apply(log_format, [*self.error_log.handlers, *self.access_log.handlers])
