"""Playwright (async API) driving Debian's chromium, for the reading page's tests.

Playwright cannot download its own browsers here: ``.ci/run`` installs Debian's
``chromium`` and it is launched with ``executable_path``. Every wait is bounded.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Page, async_playwright

from .process import REPO

CHROMIUM = Path("/usr/bin/chromium")
#: The mark of a test that drives the browser; .ci/run installs it, so CI runs them all.
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (.ci/run installs it)"
)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = REPO / "docs" / "screenshots"
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}
SESSION_KEY = "insightreader.session"
WAIT_MS = 15_000


@asynccontextmanager
async def chromium(*extra_args: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, *extra_args])
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class Watch:
    """What the page complained about: uncaught errors, console errors (CSP violations
    included) and server errors (5xx)."""

    problems: list[str] = field(default_factory=list)
    #: Console errors that are expected (e.g. the failed stream while the server is down).
    tolerated: tuple[str, ...] = ()

    def console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and not any(t in message.text for t in self.tolerated):
            self.problems.append(f"console: {message.text}")

    def assert_clean(self) -> None:
        assert not self.problems, "the page reported problems:\n" + "\n".join(self.problems)


async def open_page(
    browser: Browser,
    url: str,
    *,
    viewport: dict[str, int] | None = None,
    color_scheme: str = "light",
    tolerate: tuple[str, ...] = (),
    **options: Any,
) -> tuple[BrowserContext, Page, Watch]:
    context = await browser.new_context(viewport=viewport or DESKTOP, color_scheme=color_scheme, **options)  # type: ignore[arg-type]
    context.set_default_timeout(WAIT_MS)
    page = await context.new_page()
    watch = Watch(tolerated=tolerate)
    page.on("console", watch.console)
    page.on("pageerror", lambda error: watch.problems.append(f"uncaught: {error}"))
    page.on(
        "response",
        lambda response: watch.problems.append(f"HTTP {response.status} {response.url}")
        if response.status >= 500
        else None,
    )
    await page.goto(url)
    return context, page, watch


async def register_in_page(page: Page, username: str, password: str = "correct horse battery") -> None:
    """Create an account through the sign-in form; wait until the stream is live."""
    await page.get_by_role("button", name="Create account").click()
    await page.fill("#username", username)
    await page.fill("#password", password)
    await page.press("#password", "Enter")
    await page.wait_for_selector("#connection[data-state=connected]")


async def sign_in_page(page: Page, username: str, password: str = "correct horse battery") -> None:
    await page.fill("#username", username)
    await page.fill("#password", password)
    await page.press("#password", "Enter")
    await page.wait_for_selector("#connection[data-state=connected]")


async def access_token(page: Page) -> str:
    session = await page.evaluate(f"sessionStorage.getItem({json.dumps(SESSION_KEY)})")
    assert session, "the page holds no session"
    return str(json.loads(session)["access_token"])


async def api_client(page: Page, base_url: str) -> httpx.AsyncClient:
    """An HTTP client acting as the page's user (its current access token)."""
    token = await access_token(page)
    return httpx.AsyncClient(base_url=base_url, timeout=30, headers={"Authorization": f"Bearer {token}"})


async def screenshot(page: Page, name: str, **options: Any) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    await page.screenshot(path=str(path), animations="disabled", caret="hide", **options)
    return path


async def record_text_growth(page: Page, selector: str) -> None:
    """Record, in ``window.__growth``, the text length of the first element matching
    ``selector`` after every DOM change (a MutationObserver on the whole body)."""
    await page.evaluate(
        """(selector) => {
            window.__growth = [];
            const observer = new MutationObserver(() => {
                const el = document.querySelector(selector);
                if (!el) return;
                const length = el.textContent.length;
                const last = window.__growth[window.__growth.length - 1];
                if (length !== last) window.__growth.push(length);
            });
            observer.observe(document.body, {subtree: true, childList: true, characterData: true});
        }""",
        selector,
    )


async def text_growth(page: Page) -> list[int]:
    return list(await page.evaluate("window.__growth || []"))

