"""Fixtures of the security tests, and the count of fuzz cases printed at the end of the session."""
from __future__ import annotations

import pytest

from tests.security.fuzzing import CASES


def pytest_terminal_summary(terminalreporter):
    if CASES:
        terminalreporter.section("fuzz cases tried")
        for target, count in sorted(CASES.items()):
            terminalreporter.write_line(f"{target}: {count}")


@pytest.fixture
def reset_limits(app):
    """Clear every rate-limit counter (login, contact) so each generated case meets the view itself."""
    from saas.web.extensions import limiter

    def reset() -> None:
        with app.app_context():
            limiter.reset()

    return reset
