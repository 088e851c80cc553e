"""Tags and reading states on the reading page, in Chromium against a real server
(offline model): accepting a suggested tag, adding and removing tags, favourite and
archive, and the library's filters. Screenshots go to docs/screenshots/."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("playwright")

from tests.support.browser import api_client, needs_chromium, open_page, register_in_page, screenshot  # noqa: E402
from tests.support.process import ServerProcess  # noqa: E402

pytestmark = needs_chromium

ARTICLE = (Path(__file__).parent / "data" / "article_en.txt").read_text()


async def test_tags_suggestions_states_and_filters(start_server: Callable[..., ServerProcess], browser: Any) -> None:
    server = start_server()
    context, page, watch = await open_page(browser, server.url + "/")
    await register_in_page(page, "tagger")
    client = await api_client(page, server.url)
    other = await client.post(
        "/api/v1/articles/save-with-analysis", json={"title": "Rivers", "content": "Rivers carry silt to the sea."}
    )
    assert other.status_code == 202, other.text
    await page.reload()  # the list shows what was saved elsewhere
    await page.locator(".article-card", has_text="Rivers").wait_for()

    await page.get_by_role("button", name="Add an article").click()
    await page.fill("#new-title", "Shade is infrastructure")
    await page.fill("#new-content", ARTICLE)
    await page.press("#new-content", "Control+Enter")
    card = page.locator(".article-card", has_text="Shade is infrastructure")
    await card.locator(".suggested-tag").first.wait_for()
    article_id = await card.get_attribute("data-article-id")
    analysis = (await client.get(f"/api/v1/articles/{article_id}")).json()["analysis"]
    suggested = analysis["suggested_tags"]
    assert 3 <= len(suggested) <= 5
    assert await card.locator(".suggested-tag").all_inner_texts() == [f"+ {name}" for name in suggested]

    # One click accepts a suggestion: it becomes a tag and leaves the suggestions.
    await card.get_by_role("button", name=f"+ {suggested[0]}").click()
    await card.locator(".tag", has_text=suggested[0]).wait_for()
    assert await card.locator(".suggested-tag").count() == len(suggested) - 1
    # Typing adds a tag; × removes one.
    await card.get_by_label("Add a tag").fill("Climate")
    await card.get_by_label("Add a tag").press("Enter")
    await card.locator(".tag", has_text="Climate").wait_for()
    await card.get_by_label("Add a tag").fill("Later")
    await card.get_by_label("Add a tag").press("Enter")
    await card.get_by_role("button", name="Remove tag Later").wait_for()
    await card.get_by_role("button", name="Remove tag Later").click()
    await card.get_by_role("button", name="Remove tag Later").wait_for(state="detached")
    stored = (await client.get(f"/api/v1/articles/{article_id}")).json()
    assert sorted(stored["tags"], key=str.casefold) == sorted(["Climate", suggested[0]], key=str.casefold)

    await card.get_by_role("button", name="☆ Favourite").click()
    await card.locator(".toggle[aria-pressed=true]", has_text="Favourite").wait_for()
    assert (await client.get(f"/api/v1/articles/{article_id}")).json()["favorite"] is True
    await screenshot(page, "tags.png")

    # Filters: by tag (the select lists the tags with their counts), by state.
    assert await page.locator(".article-card").count() == 2
    await page.select_option("#filter-tag", "Climate")
    await page.locator(".article-card").nth(1).wait_for(state="detached")
    assert await page.locator(".article-card .card-link").all_inner_texts() == ["Shade is infrastructure"]
    assert "Climate (1)" in await page.locator("#filter-tag").inner_text()
    await page.select_option("#filter-tag", "")
    await page.locator(".article-card", has_text="Rivers").wait_for()  # the whole list is back
    await page.select_option("#filter-state", "favorite=true")
    await page.locator(".article-card", has_text="Rivers").wait_for(state="detached")
    assert await page.locator(".article-card").count() == 1
    await screenshot(page, "tags-filter.png")

    # Archiving under "Not archived" takes the card out of the list.
    await page.select_option("#filter-state", "archived=false")
    await page.locator(".article-card", has_text="Rivers").wait_for()
    await card.get_by_role("button", name="Archive").click()
    await card.wait_for(state="detached")
    assert (await client.get(f"/api/v1/articles/{article_id}")).json()["archived"] is True
    await page.select_option("#filter-state", "archived=true")
    await card.wait_for()
    assert await card.get_by_role("button", name="Archived").get_attribute("aria-pressed") == "true"

    await client.aclose()
    watch.assert_clean()
    await context.close()
