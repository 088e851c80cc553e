"""The import card of the account page, in Chromium: pick a format and a file, import
it, and watch the progress bar reach the end as the stream's import events arrive; the
articles are in the library afterwards."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

pytest.importorskip("playwright")

from tests.support.browser import api_client, needs_chromium, open_page, register_in_page, screenshot  # noqa: E402
from tests.support.pages import serve_site  # noqa: E402
from tests.support.process import ServerProcess  # noqa: E402

pytestmark = needs_chromium


async def test_a_file_is_imported_with_a_progress_bar(start_server: Callable[..., ServerProcess], browser: Any) -> None:
    server = start_server(library={"fetch_allow_private": True})
    async with serve_site() as site:
        rows = "title,url,time_added,tags,status\n" + "".join(
            f"Saved link {i},{site.url(f'/articles/{i}')},1700000000,reading|later,{'archive' if i % 2 else 'unread'}\n"
            for i in range(12)
        ) + f"Again,{site.url('/articles/0')},1700000000,,unread\n"
        context, page, watch = await open_page(browser, server.url.rstrip("/") + "/")
        await register_in_page(page, "importer")
        await page.click("#who")
        await page.select_option("#import-format", "pocket_csv")
        await page.set_input_files("#import-file", files=[{"name": "pocket.csv", "mimeType": "text/csv", "buffer": rows.encode()}])
        await page.click("#import-form button[type=submit]")
        await page.wait_for_selector("#import-status:has-text('Finished')")
        assert await page.evaluate("[document.querySelector('#import-progress').value, document.querySelector('#import-progress').max]") == [13, 13]
        status = await page.inner_text("#import-status")
        assert "13 of 13" in status and "1 already in your library" in status, status
        await page.locator("#import").scroll_into_view_if_needed()
        await screenshot(page, "import.png")

        async with await api_client(page, server.url) as http:
            items = (await http.get("/api/v1/articles", params={"limit": 100})).json()["items"]
        assert len(items) == 12
        assert sum(a["archived"] for a in items) == 6
        assert all(sorted(a["tags"]) == ["later", "reading"] for a in items)
        watch.assert_clean()
        await context.close()
