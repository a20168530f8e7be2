"""Playwright on Debian's Chromium; every test here skips with a reason when it is not installed."""
from __future__ import annotations

import os

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def pytest_collection_modifyitems(config, items):
    if os.path.exists(CHROMIUM):
        return
    skip = pytest.mark.skip(reason=f"Chromium not found at {CHROMIUM}: install Debian's `chromium` package "
                                   "(apt-get install chromium) to run the browser tests")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


def chromium_env() -> dict[str, str] | None:
    """Under a moved clock (TEST_CLOCK, see ./run), Chromium starts at this process's current
    faked instant with its monotonic clock faked too: with only the wall clock moved it spends a
    minute of CPU on every start (seen with libfaketime 0.9.x)."""
    if "FAKETIME" not in os.environ:
        return None
    import time

    env = {k: v for k, v in os.environ.items() if k != "FAKETIME_DONT_FAKE_MONOTONIC"}
    env["FAKETIME"] = "@" + time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    return env


# Playwright's assertions wait 5 s unless told otherwise (a context's default timeout covers actions, not
# `expect`): a page waiting for a worker's payment on a loaded CI machine took longer (the no-login
# link's "Thank you" in CI). The same 30 s as the actions', so no assertion depends on the machine's load.
ASSERTION_TIMEOUT_MS = 30_000


@pytest.fixture(scope="session")
def browser_instance():
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=ASSERTION_TIMEOUT_MS)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
                                             env=chromium_env())
        yield browser
        browser.close()


@pytest.fixture
def page(browser_instance, live_server):
    context = browser_instance.new_context(base_url=live_server, accept_downloads=True,
                                           viewport={"width": 1200, "height": 900})
    context.set_default_timeout(30_000)
    page = context.new_page()
    yield page
    context.close()


def sign_in(page, email: str) -> None:
    """Through the real sign-in form (CSRF on)."""
    from tests.helpers import PASSWORD

    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: not url.split("?")[0].endswith("/login"))  # the role's home: dashboard, /admin, /finance
