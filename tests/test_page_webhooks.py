"""The webhooks card of the account page, in Chromium: add one (its secret shown once),
send a test and see it delivered to a local receiver in the delivery log, delete it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

pytest.importorskip("playwright")

from tests.support.browser import access_token, api_client, needs_chromium, open_page, register_in_page, screenshot  # noqa: E402
from tests.support.client import Api  # noqa: E402
from tests.support.process import ServerProcess  # noqa: E402
from tests.support.receiver import receiving  # noqa: E402
from tests.test_webhooks import wait_delivery  # noqa: E402

pytestmark = needs_chromium


async def test_a_webhook_is_added_tested_and_deleted(start_server: Callable[..., ServerProcess], browser: Any) -> None:
    server = start_server(library={"fetch_allow_private": True}, webhooks={"retry_initial": 0.05})
    async with receiving() as receiver:
        context, page, watch = await open_page(browser, server.url.rstrip("/") + "/")
        await register_in_page(page, "hook_owner")
        await page.click("#who")
        await page.wait_for_selector("#webhook-list li:has-text('No webhooks yet')")
        await page.fill("#webhook-url", receiver.url)
        await page.check("#webhook-event-article_saved")
        await page.click("#webhook-form button[type=submit]")
        await page.wait_for_selector("#webhook-secret:not([hidden]) #webhook-secret-value")
        secret = await page.input_value("#webhook-secret-value")
        assert secret.startswith("whsec_")
        row = page.locator("#webhook-list .webhook-row")
        await row.wait_for()
        text = await row.inner_text()
        assert receiver.url in text and "task_completed, article_saved" in text and "active" in text and secret not in text

        await row.locator("button[data-action=test-webhook]").click()
        await receiver.wait_for(1)
        assert receiver.events("webhook_test")
        async with await api_client(page, server.url) as http:  # the answer recorded
            api = Api(http, await access_token(page), "hook_owner")
            hook_id = (await http.get("/api/v1/webhooks")).json()["items"][0]["webhook_id"]
            await wait_delivery(api, hook_id, "succeeded")
        await row.locator("button[data-action=show-deliveries]").click()
        await row.locator(".delivery[data-status=succeeded]").wait_for()
        assert "webhook_test · succeeded · 1 attempt · HTTP 200" in await row.locator(".delivery-log").inner_text()
        await page.click(".toast button[aria-label=Dismiss]")
        await page.evaluate("document.querySelector('#webhooks').scrollIntoView({block: 'end'})")
        await screenshot(page, "webhooks.png")

        await row.locator("button[data-action=delete-webhook]").click()
        await page.wait_for_selector("#webhook-list li:has-text('No webhooks yet')")
        watch.assert_clean()
        await context.close()
