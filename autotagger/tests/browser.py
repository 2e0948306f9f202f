"""Browser tests: a headless Chromium, driven by Playwright's sync API, on Django's live server.

`page` is a fresh page (its own cookies) of one Chromium launched once per run; its base URL is the live server's,
so `page.goto("/prompts/playground/")` works. `sign_in` logs a user in through the real login form (django-axes
counts it as any other). Mark the tests `@pytest.mark.browser`.

The browser is Debian's (/usr/bin/chromium, or AUTOTAGGER_CHROMIUM): Playwright never downloads one. Without it,
or without the playwright package, the tests skip and say what is missing (`make install` installs both where
apt-get may run).

Two things to know:
- The live server answers from another thread, so its requests see only committed rows: a test using `page` is
  transactional (pytest-django runs it after the others and empties the database after it, migration rows too;
  recreate what you need, e.g. `prompts.tests.helpers.default_tagging_prompt()`).
- Playwright's sync API runs an asyncio loop in a greenlet of the main thread, and while it is started asyncio
  takes that loop for the thread's running loop. Django would then refuse the test's own ORM calls
  (SynchronousOnlyOperation), and every later test's too. So the loop is marked running only while a browser test
  runs (`_Chromium.in_use`), and that test alone may make sync Django calls (DJANGO_ALLOW_ASYNC_UNSAFE): they run
  in the test's thread, never inside the loop. Meanwhile Django takes the thread for an async one and gives the
  test's body database connections of its own (asgiref's Local): they are closed when the test ends, or they
  would keep the test database from being dropped.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from django.db import connections

try:
    from playwright.sync_api import expect
except ImportError:  # browser tests skip, saying so (_missing)
    expect = None  # type: ignore[assignment]

CHROMIUM = Path(os.environ.get("AUTOTAGGER_CHROMIUM", "/usr/bin/chromium"))
# Generous for a machine running other tests at once, far below pytest's patience.
TIMEOUT_MS = 15_000


@dataclass
class _Chromium:
    playwright: Any
    browser: Any
    loop: asyncio.AbstractEventLoop | None

    @contextmanager
    def in_use(self) -> Iterator[None]:
        """Playwright may be called (its loop marked running) inside this block only; see the module's docstring."""
        asyncio.events._set_running_loop(self.loop)
        try:
            yield
        finally:
            connections.close_all()
            asyncio.events._set_running_loop(None)


def _missing() -> str | None:
    """Why browser tests cannot run here, if they cannot."""
    if expect is None:
        return "Browser tests need the playwright package (requirements-dev.txt): run `make install`."
    if not os.access(CHROMIUM, os.X_OK):
        return (
            f"Browser tests need Chromium at {CHROMIUM} (Debian's chromium package, which `make install` installs "
            "where apt-get may run as root or through sudo without a password; or set AUTOTAGGER_CHROMIUM)."
        )
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Skip the tests marked `browser` before their fixtures make a database for nothing."""
    if reason := _missing():
        for item in items:
            if item.get_closest_marker("browser"):
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def chromium() -> Iterator[_Chromium]:
    if reason := _missing():
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    session = _Chromium(playwright=playwright, browser=None, loop=asyncio.events._get_running_loop())
    try:
        # --disable-dev-shm-usage: a container's small /dev/shm crashes tabs otherwise.
        session.browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--disable-dev-shm-usage"], timeout=TIMEOUT_MS * 2
        )
    except BaseException:
        playwright.stop()
        raise
    asyncio.events._set_running_loop(None)
    yield session
    with session.in_use():
        session.browser.close()
        playwright.stop()


@pytest.fixture
def page(chromium: _Chromium, live_server: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A new page of the headless Chromium, in a context of its own, at the live server."""
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with chromium.in_use():
        context = chromium.browser.new_context(base_url=live_server.url)
        context.set_default_timeout(TIMEOUT_MS)
        try:
            yield context.new_page()
        finally:
            context.close()


def sign_in(page: Any, *, username: str, password: str, next_url: str = "/") -> None:
    """Log in through the login form, as a person would, and land on `next_url`; fails saying why when the
    form refuses."""
    page.goto(f"/accounts/login/?next={quote(next_url)}")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    with page.expect_navigation():
        page.get_by_role("button", name="Log in").click()
    if urlsplit(page.url).path == "/accounts/login/":
        alert = page.locator("[role=alert]")
        pytest.fail(f"Signing in as {username} failed: {alert.inner_text() if alert.count() else page.url}")
