"""The reading page in Simplified Chinese, in Chromium: a browser that asks for Chinese
gets every view in Chinese (no English text node left but names), the switch changes
the language both ways, is remembered and follows the reader to another browser once
signed in; and the settings and re-analysis cards of the account page."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("playwright")

from playwright.async_api import expect  # noqa: E402

from tests.support.browser import (  # noqa: E402
    access_token,
    api_client,
    chromium,
    needs_chromium,
    open_page,
    register_in_page,
    screenshot,
    sign_in_page,
)
from tests.support.client import Api  # noqa: E402
from tests.support.process import ServerProcess  # noqa: E402

pytestmark = needs_chromium

DATA = Path(__file__).parent / "data"
ARTICLE_ZH = (DATA / "article_zh.txt").read_text()
#: Latin text allowed on the Chinese page: names (of the product, formats, services,
#: the offline model, the browser), protocol words and the English language's own name.
ALLOWED = re.compile(
    r"InsightReader|insightreader-offline-\d+|insightreader|INSIGHTREADER_TOKEN|Markdown|Obsidian|JSON|HTML|CSV|zip|"
    r"Standard Webhooks|Webhooks?|Authorization: Bearer irt_|API|GET|POST|HTTP|Pocket|Instapaper|Readwise Reader|Omnivore|"
    r"wallabag|Karakeep|Linkwarden|docs/import-export\.md|Ctrl\+Enter|https?://\S*|English|HeadlessChrome|Chrome|Linux|UTC|AI"
)
#: Every visible text node of the page, except what readers wrote or named (their
#: username, an address) and the options of closed selects.
VISIBLE_TEXT = """() => {
  const skip = (el) => !el || el.closest('option, #who, .session-meta') || el.closest('[hidden]')
    || el.closest('[aria-hidden=true]') || getComputedStyle(el).visibility === 'hidden'
    || !el.getClientRects().length;
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const found = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const text = node.textContent.trim();
    if (text && !skip(node.parentElement)) found.push(text);
  }
  for (const el of document.querySelectorAll('[placeholder], [title], [aria-label]')) {
    if (skip(el)) continue;
    for (const name of ['placeholder', 'title', 'aria-label']) {
      const value = el.getAttribute(name);
      if (value) found.push(value);
    }
  }
  return found;
}"""


@pytest.fixture
async def chinese_browser() -> AsyncIterator[Any]:
    async with chromium("--lang=zh-CN") as launched:
        yield launched


async def english_left(page: Any) -> list[str]:
    """The visible texts that still hold English words."""
    texts = await page.evaluate(VISIBLE_TEXT)
    return [text for text in texts if re.search(r"[A-Za-z]{2,}", ALLOWED.sub("", text))]


async def test_a_chinese_browser_gets_every_view_in_chinese(
    start_server: Callable[..., ServerProcess], chinese_browser: Any
) -> None:
    server = start_server()
    context, page, watch = await open_page(chinese_browser, server.url.rstrip("/") + "/", locale="zh-CN")
    assert await page.evaluate("document.documentElement.lang") == "zh-CN"
    await page.get_by_role("button", name="注册").wait_for()
    assert not await english_left(page), await english_left(page)
    await page.get_by_role("button", name="注册").click()
    assert not await english_left(page), await english_left(page)  # the hints of the form
    await register_in_page_zh(page, "reader_zh")

    async with await api_client(page, server.url) as http:
        saved = await http.post("/api/v1/articles/save-with-analysis", json={"title": "城市的树", "content": ARTICLE_ZH})
        assert saved.status_code == 202, saved.text
        article_id = saved.json()["article_id"]
        api = Api(http, await access_token(page), "reader_zh")
        await api.wait_status(saved.json()["task_id"], "completed")
    await page.reload()  # the list as loaded from the server
    await page.wait_for_selector(".article-card[data-state=ready] .topics .topic")
    await page.get_by_role("button", name="添加文章").click()  # the form, its hints and the bookmarklet
    views: dict[str, list[str]] = {"library": await english_left(page)}
    await screenshot(page, "library-zh.png")

    await page.click("#tasks-toggle")
    await page.locator("#task-list li").first.wait_for()
    views["tasks"] = await english_left(page)
    await page.click("#task-panel-close")

    await page.goto(server.url.rstrip("/") + f"/#/article/{article_id}")
    await page.wait_for_selector(".glance .key-points li")
    await page.click(".perspective[data-key=meta]")  # the meta perspective, run and shown
    await page.wait_for_selector("#perspective-meta .field")
    await page.click(".perspective[data-key=steelman]")  # a lens (its name comes from the server)
    await page.wait_for_selector("#perspective-steelman .points dt")
    views["reader"] = await english_left(page)
    await page.evaluate("window.scrollTo(0, 0)")
    await screenshot(page, "reader-zh.png")

    await page.goto(server.url.rstrip("/") + "/#/search?q=" + "树")
    await page.locator(".search-hit").first.wait_for()
    views["search"] = await english_left(page)

    await page.goto(server.url.rstrip("/") + "/#/account")
    await page.locator("#session-list li").first.wait_for()
    await page.locator("#token-list li").first.wait_for()
    await page.locator("#webhook-list li").first.wait_for()
    views["account"] = await english_left(page)
    await screenshot(page, "account-zh.png", full_page=True)

    assert not {name: left for name, left in views.items() if left}, views
    assert await page.evaluate("document.documentElement.lang") == "zh-CN"
    watch.assert_clean()
    await context.close()


async def register_in_page_zh(page: Any, username: str, password: str = "correct horse battery") -> None:
    await page.fill("#username", username)
    await page.fill("#password", password)
    await page.press("#password", "Enter")
    await page.wait_for_selector("#connection[data-state=connected]")


async def test_the_switch_works_both_ways_and_follows_the_reader(start_server: Callable[..., ServerProcess], browser: Any) -> None:
    server = start_server()
    url = server.url.rstrip("/") + "/"
    context, page, watch = await open_page(browser, url)
    assert await page.evaluate("document.documentElement.lang") == "en"
    await register_in_page(page, "switcher")
    heading = page.locator("main h1")
    assert await heading.inner_text() == "Your reading"

    await page.select_option("#language-switch select", "zh-CN")  # reloads into Chinese
    await page.wait_for_selector("html[lang=zh-CN]")
    await page.wait_for_selector("#connection[data-state=connected]")
    assert await heading.inner_text() == "你的阅读"
    assert await page.locator("#sign-out").inner_text() == "退出登录"
    async with await api_client(page, server.url) as http:
        assert (await http.get("/api/v1/settings")).json()["ui_language"] == "zh-CN"
    await page.reload()
    await page.wait_for_selector("html[lang=zh-CN]")
    assert await page.locator("main h1").inner_text() == "你的阅读"

    await page.select_option("#language-switch select", "en")
    await page.wait_for_selector("html[lang=en]")
    await page.wait_for_selector("#connection[data-state=connected]")
    assert await page.locator("main h1").inner_text() == "Your reading"
    async with await api_client(page, server.url) as http:
        assert (await http.get("/api/v1/settings")).json()["ui_language"] == "en"
        assert (await http.patch("/api/v1/settings", json={"ui_language": "zh-CN"})).status_code == 200
    watch.assert_clean()
    await context.close()

    # Another browser (English, nothing remembered): signing in brings the reader's language.
    context, page, watch = await open_page(browser, url)
    assert await page.evaluate("document.documentElement.lang") == "en"
    await sign_in_page(page, "switcher")
    await page.wait_for_selector("html[lang=zh-CN]")
    await page.wait_for_selector("#connection[data-state=connected]")
    assert await page.locator("main h1").inner_text() == "你的阅读"
    watch.assert_clean()
    await context.close()


async def test_the_settings_and_reanalysis_cards(start_server: Callable[..., ServerProcess], browser: Any) -> None:
    server = start_server()
    context, page, watch = await open_page(browser, server.url.rstrip("/") + "/", tolerate=("422",))
    await register_in_page(page, "setter")
    async with await api_client(page, server.url) as http:
        saved = await http.post("/api/v1/articles/save-with-analysis", json={"title": "Trees", "content": "Street trees cool the city. They cost little."})
        await Api(http, await access_token(page), "setter").wait_status(saved.json()["task_id"], "completed")
    await page.goto(server.url.rstrip("/") + "/#/account")
    await page.wait_for_selector("#settings-form")
    await page.wait_for_selector("#instructions-article_analysis-count:has-text('0 / 2000')")
    await page.select_option("#output-language", "zh-CN")
    await page.uncheck("#auto-analyze")
    await page.fill("#instructions-article_analysis", "Name every number.")
    assert await page.inner_text("#instructions-article_analysis-count") == "18 / 2000"
    await page.click("#settings-save")
    await page.locator(".toast-info").wait_for()
    async with await api_client(page, server.url) as http:
        stored = (await http.get("/api/v1/settings")).json()
    assert (stored["output_language"], stored["auto_analyze"]) == ("zh-CN", False)
    assert stored["instructions"]["article_analysis"] == "Name every number."
    await page.reload()
    await expect(page.locator("#instructions-article_analysis")).to_have_value("Name every number.")
    assert await page.input_value("#output-language") == "zh-CN"
    assert not await page.is_checked("#auto-analyze")
    await page.evaluate("window.scrollTo(0, document.querySelector('#settings').getBoundingClientRect().top + window.scrollY - 72)")
    await screenshot(page, "settings.png")

    # Too long for the server (the page's own limit lifted): its error in words, nothing stored.
    await page.evaluate("document.querySelector('#instructions-meta_analysis').removeAttribute('maxlength')")
    await page.fill("#instructions-meta_analysis", "x" * 2001)
    await page.click("#settings-save")
    await page.wait_for_selector("#settings-error:has-text('Meta perspective is too long.')")
    async with await api_client(page, server.url) as http:
        assert (await http.get("/api/v1/settings")).json()["instructions"]["meta_analysis"] == ""

    # The changed output language made the analysis stale: run it again from the page.
    await page.click("#reanalyze-start")
    await page.wait_for_selector("#reanalyze-status:has-text('1 of 1 done')")
    await page.click("#reanalyze-start")
    await page.wait_for_selector("#reanalyze-status:has-text('Nothing to do')")
    watch.assert_clean()
    await context.close()
