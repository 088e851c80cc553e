"""The API tokens card of the account page, in Chromium: create (name, scope, expiry),
the secret shown once with a copy button, the list, revoke."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

pytest.importorskip("playwright")

from tests.support.browser import needs_chromium, open_page, register_in_page, screenshot  # noqa: E402
from tests.support.process import ServerProcess  # noqa: E402

pytestmark = needs_chromium


async def test_tokens_are_created_shown_once_copied_listed_and_revoked(
    start_server: Callable[..., ServerProcess], browser: Any
) -> None:
    server = start_server()
    origin = server.url.rstrip("/")
    context, page, watch = await open_page(browser, origin + "/", permissions=["clipboard-read", "clipboard-write"])
    await register_in_page(page, "token_owner")
    await page.click("#who")
    await page.wait_for_selector("#token-list li:has-text('No tokens yet')")

    await page.fill("#token-name", "nightly import")
    await page.select_option("#token-scope", "write")
    await page.select_option("#token-expiry", "30")
    await page.click("#token-form button[type=submit]")
    await page.wait_for_selector("#token-secret:not([hidden]) #token-value")
    secret = await page.input_value("#token-value")
    assert secret.startswith("irt_")
    await page.wait_for_selector("#token-list .token-row[data-scope=write]")
    row = await page.inner_text("#token-list .token-row")
    assert "nightly import" in row and "never used" in row and "expires" in row and secret not in row

    await page.click("#token-copy")
    await page.wait_for_selector("#token-copy:has-text('Copied')")
    assert await page.evaluate("navigator.clipboard.readText()") == secret

    # A read token that never expires, beside it; then the screenshot.
    await page.fill("#token-name", "dashboard")
    await page.select_option("#token-expiry", "")
    await page.click("#token-form button[type=submit]")
    await page.wait_for_selector("#token-list .token-row[data-scope=read]")
    second = await page.input_value("#token-value")
    assert second != secret and "never expires" in await page.inner_text("#token-list .token-row[data-scope=read]")
    await page.locator("#tokens").scroll_into_view_if_needed()
    await page.evaluate("document.querySelector('#tokens').scrollIntoView({block: 'end'})")
    await screenshot(page, "tokens.png")

    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        bearer = {"Authorization": f"Bearer {secret}"}
        assert (await http.get("/api/v1/auth/me", headers=bearer)).status_code == 200
        await page.click("#token-list .token-row[data-scope=write] button")
        # The list is emptied and drawn again: wait for the redrawn one, the read token alone.
        await page.wait_for_function(
            "() => [...document.querySelectorAll('#token-list .token-row')].map(r => r.dataset.scope).join() === 'read'",
            timeout=10_000,
        )
        assert (await http.get("/api/v1/auth/me", headers=bearer)).status_code == 401

    # Leaving the page forgets the secret shown.
    await page.click("text=Back to your reading")
    await page.click("#who")
    await page.wait_for_selector("#token-list .token-row")
    assert await page.locator("#token-value").count() == 0
    watch.assert_clean()
    await context.close()
