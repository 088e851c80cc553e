"""The reading page (``GET /``) in a real browser against real server processes.

Debian's chromium is driven by Playwright's async API (so the fake OpenAI upstream
can share the test's event loop). The offline model answers unless a test points the
server at the fake upstream, which can hang a request or pace a stream. Each test
watches the page for uncaught errors, console errors (CSP violations included) and
5xx answers. Every wait is bounded; nothing sleeps a fixed time to wait for
something. Screenshots of the main states go to docs/screenshots/ (see the README).
"""

from __future__ import annotations

import asyncio
import json
import re
import zipfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("playwright")

from tests.fake_upstream import FakeUpstream, Hang, Reply, default_reply, insufficient_quota  # noqa: E402
from tests.support.browser import (  # noqa: E402
    PHONE,
    SESSION_KEY,
    access_token,
    api_client,
    needs_chromium,
    open_page,
    record_text_growth,
    register_in_page,
    screenshot,
    sign_in_page,
    text_growth,
)
from tests.support.process import ServerProcess, free_port  # noqa: E402

pytestmark = needs_chromium

ARTICLE = (Path(__file__).parent / "data" / "article_en.txt").read_text()
TITLE = "Shade is infrastructure"
#: A long insight for the paced fake stream (8 characters a chunk).
LONG_INSIGHT = (
    "This passage turns a comfort into a matter of public health. By putting numbers on "
    "the difference shade makes, the author moves trees out of the decorative budget and "
    "into the same conversation as drains and street lights. Notice how the argument rests "
    "on night-time temperatures rather than daytime highs: that is where the deaths were. "
    "A question worth asking is who measures the streets, and whose streets are measured first."
)
#: Network noise the browser logs as console errors while a test makes it happen.
REFUSED = ("net::ERR_CONNECTION_REFUSED", "net::ERR_FAILED", "net::ERR_EMPTY_RESPONSE", "ERR_INCOMPLETE_CHUNKED_ENCODING")


@pytest.fixture
async def fake() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream() as upstream:
        yield upstream


def upstream(fake: FakeUpstream) -> dict[str, Any]:
    return {"base_url": fake.base_url, "api_key": "sk-test-key-0123456789", "model": fake.model, "max_retries": 0}


def page_url(server: ServerProcess) -> str:
    return server.url + "/"


async def save_article(page: Any, *, title: str = TITLE, url: str | None = "https://example.org/shade") -> None:
    """Fill the "Add an article" form and save (the form opens by itself on an empty library)."""
    if not await page.is_visible("#new-article"):
        await page.get_by_role("button", name="Add an article").click()
    await page.fill("#new-title", title)
    if url:
        await page.fill("#new-url", url)
    await page.fill("#new-content", ARTICLE)
    await page.press("#new-content", "Control+Enter")


async def open_first_article(page: Any) -> None:
    await page.click(".article-card .card-link")
    await page.wait_for_selector(".article-text p")


async def ask_about_paragraph(page: Any, index: int = 2) -> None:
    """Select a paragraph of the article (triple click) and ask about it."""
    await page.locator(".article-text p").nth(index).click(click_count=3)
    await page.locator(".selection-popover button.primary").click()
    await page.wait_for_selector(".thread .turn")


async def stored_task(client: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/v1/tasks/{task_id}")
    assert response.status_code == 200, response.text
    return response.json()


async def wait_task(client: httpx.AsyncClient, task_id: str, *statuses: str, timeout: float = 20) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            task = await stored_task(client, task_id)
            if task["status"] in statuses:
                return task
            await asyncio.sleep(0.05)


# -- the page is served well ----------------------------------------------------------------


async def test_the_page_and_its_assets_are_served_with_a_strict_policy_and_cache_headers(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server()
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        page = await http.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["cache-control"] == "no-cache"
        csp = page.headers["content-security-policy"]
        for directive in ("default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'",
                          "frame-ancestors 'none'", "require-trusted-types-for 'script'"):
            assert directive in csp
        assert "unsafe-inline" not in csp and "http" not in csp  # nothing from elsewhere, no inline code
        assert page.headers["x-content-type-options"] == "nosniff"
        assert (await http.get("/", headers={"If-None-Match": page.headers["etag"]})).status_code == 304

        assets = re.findall(r'(?:src|href)="(/assets/[^"]+)"', page.text)
        assert {a.rsplit("/", 1)[-1] for a in assets} == {"icon.svg", "app.css", "app.js"}
        for path in assets:
            asset = await http.get(path)
            assert asset.status_code == 200, path
            assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
        script = next(a for a in assets if a.endswith("app.js"))
        assert (await http.get(script)).headers["content-type"].startswith("text/javascript")
        stale = await http.get(re.sub(r"/assets/[^/]+/", "/assets/0ld/", script))
        assert stale.status_code == 200 and stale.headers["cache-control"] == "no-cache"
        missing = await http.get(re.sub(r"app\.js$", "nope.js", script))
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        assert "/assets/{version}/{name}" not in (await http.get("/openapi.json")).text


# -- reading, on the offline model ----------------------------------------------------------


async def test_sign_up_save_analyse_lens_insight_and_follow_up(
    start_server: Callable[..., ServerProcess], browser: Any
) -> None:
    server = start_server()
    context, page, watch = await open_page(browser, page_url(server), tolerate=("status of 401",))
    await page.wait_for_selector("#username")

    # A wrong password is said plainly.
    await page.fill("#username", "nobody")
    await page.fill("#password", "not the password")
    await page.press("#password", "Enter")
    await page.wait_for_selector(".form-error:has-text('Wrong username or password.')")
    await page.fill("#password", "")
    await screenshot(page, "sign-in.png")

    await register_in_page(page, "reader1")
    assert await page.get_by_role("button", name="Sign out").is_visible()

    # Save: the card appears at once as "analysing", then the analysis fills it in
    # without a reload.
    await page.evaluate("""() => {
        window.__notReloaded = true;
        window.__cardStates = [];
        new MutationObserver(() => {
            const card = document.querySelector('.article-card');
            const state = card && card.dataset.state;
            if (state && window.__cardStates.at(-1) !== state) window.__cardStates.push(state);
        }).observe(document.body, {subtree: true, childList: true, attributes: true});
    }""")
    await save_article(page)
    await page.wait_for_selector(".article-card[data-state=ready] .topics .topic")
    states = await page.evaluate("window.__cardStates")
    assert states[0] == "analysing" and states[-1] == "ready", states
    assert await page.evaluate("window.__notReloaded === true")
    assert "3 min read" in await page.inner_text(".article-card-meta")
    await screenshot(page, "library.png")

    # The article: its analysis at a glance; a lens and the meta perspective.
    await open_first_article(page)
    await page.wait_for_selector(".glance .key-points li")
    await page.wait_for_selector(".perspective[data-key=steelman]")
    await screenshot(page, "reader.png")
    lenses = await page.locator(".perspective").count()
    assert lenses == 7  # the meta perspective and six thinking lenses
    await page.click(".perspective[data-key=steelman]")
    await page.wait_for_selector("#perspective-steelman .points dt")
    await page.click(".perspective[data-key=meta]")
    await page.wait_for_selector("#perspective-meta .field")
    assert await page.get_attribute(".perspective[data-key=steelman]", "data-state") == "done"
    await page.click("#perspective-meta .p-toggle")  # results fold away
    assert await page.is_hidden("#perspective-meta .field")
    await page.evaluate("window.scrollTo(0, document.querySelector('.perspectives').offsetTop - 70)")
    await screenshot(page, "reader-lens.png")

    # Select a passage: the insight streams in several steps, then follow-up buttons;
    # the passage is marked in the text.
    await record_text_growth(page, ".thread .turn .insight-text")
    await ask_about_paragraph(page, 2)
    await page.wait_for_selector(".thread .followup")
    assert await page.locator(".article-text p").nth(2).locator("mark.passage").count() == 1
    task_id = await page.get_attribute(".thread .turn", "data-task-id")
    shown = await page.inner_text(".thread .turn .insight-text")
    growth = await text_growth(page)
    assert len(growth) >= 3 and growth == sorted(growth), growth  # it grew, step by step
    client = await api_client(page, server.url)
    async with client:
        stored = await stored_task(client, task_id)
        assert stored["status"] == "completed"
        assert shown == stored["result"]["insight"] == await page.text_content(".thread .turn .insight-text")
        await page.evaluate("window.scrollTo(0, document.querySelector('mark.passage').getBoundingClientRect().top + scrollY - 200)")
        await screenshot(page, "insight.png")

        # A follow-up button asks the next insight in the same thread.
        label = await page.locator(".thread .followup").first.inner_text()
        await page.locator(".thread .followup").first.click()
        await page.wait_for_selector(".thread .turn:nth-child(2)[data-status=completed][data-shown=all]")
        assert await page.inner_text(".thread .turn:nth-child(2) .turn-question") == label
        second_id = await page.get_attribute(".thread .turn:nth-child(2)", "data-task-id")
        second = await stored_task(client, second_id)
        assert second_id != task_id and second["status"] == "completed"
        assert await page.text_content(".thread .turn:nth-child(2) .insight-text") == second["result"]["insight"]
        await page.wait_for_selector(".thread .followup")  # buttons for the new turn

        # The task panel lists every task, done; Escape closes it and gives focus back.
        await page.click("#tasks-toggle")
        await page.wait_for_selector("#task-panel .task-row[data-status=completed]")
        all_tasks = (await client.get("/api/v1/tasks", params={"limit": 100})).json()["items"]
        assert await page.locator("#task-panel .task-row").count() == len(all_tasks) >= 7
        assert await page.locator("#task-panel .task-row[data-status=completed]").count() == len(all_tasks)
        await page.keyboard.press("Escape")
        await page.wait_for_selector("#task-panel", state="hidden")
        assert await page.evaluate("document.activeElement.id") == "tasks-toggle"

    # A reload keeps the session, the thread and its text (this tab's sessionStorage).
    await page.reload()
    await page.wait_for_selector(f".thread .turn[data-task-id='{task_id}'][data-status=completed][data-shown=all]")
    assert await page.text_content(f".turn[data-task-id='{task_id}'] .insight-text") == shown
    await page.wait_for_selector("#perspective-steelman .points dt")  # stored results show at once

    # Dark mode follows the system.
    await page.emulate_media(color_scheme="dark")
    background = await page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(21, 23, 26)", background
    await page.evaluate("window.scrollTo(0, document.querySelector('.article-body').offsetTop - 80)")
    await screenshot(page, "dark.png")
    watch.assert_clean()
    await context.close()

    # A phone: the same account in a new tab; notes open as a sheet over the text.
    context, phone, watch = await open_page(
        browser, page_url(server), viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True
    )
    await sign_in_page(phone, "reader1")
    await open_first_article(phone)
    await phone.wait_for_selector(".glance .summary")
    await phone.wait_for_selector(".perspective[data-key=steelman][data-state=done]")
    assert await phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # no sideways scroll
    await screenshot(phone, "phone.png")
    await ask_about_paragraph(phone, 4)
    await phone.wait_for_selector(".notes.open .turn[data-status=completed] .insight-text")
    await phone.wait_for_selector(".notes.open .followup")
    assert await phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    await screenshot(phone, "phone-notes.png")
    await phone.keyboard.press("Escape")
    await phone.wait_for_selector(".notes:not(.open)", state="attached")
    watch.assert_clean()
    await context.close()


# -- the fake upstream: cancel, retry, errors, reload, restart --------------------------------


async def test_cancel_and_retry_from_the_task_panel_with_errors_in_plain_words(
    start_server: Callable[..., ServerProcess], browser: Any, fake: FakeUpstream
) -> None:
    fake.default = Hang()  # every request hangs: the analysis stays running
    server = start_server(llm=upstream(fake))
    context, page, watch = await open_page(browser, page_url(server))
    await register_in_page(page, "reader2")
    await save_article(page, url=None)
    await page.wait_for_selector(".article-card[data-state=analysing]")
    await fake.wait_for_requests(1, timeout=10)

    await page.click("#tasks-toggle")
    row = page.locator("#task-panel .task-row").first
    await page.wait_for_selector("#task-panel .task-row[data-status=running] [data-action=cancel]")
    assert await page.inner_text("#tasks-badge") == "1"
    elapsed = await row.locator(".task-meta").inner_text()
    await page.wait_for_function(  # the elapsed time is live
        "(before) => document.querySelector('#task-panel .task-row .task-meta').textContent !== before", arg=elapsed
    )

    # Cancel: the task ends cancelled; the card says so and offers a retry.
    await row.locator("[data-action=cancel]").click()
    await page.wait_for_selector("#task-panel .task-row[data-status=cancelled] [data-action=retry]")
    await page.wait_for_selector(".article-card[data-state=cancelled]")
    assert await page.is_hidden("#tasks-badge")

    # Retry while the provider's account is out of quota: a failure in plain words.
    fake.default = insufficient_quota()
    await row.locator("[data-action=retry]").click()
    await page.wait_for_selector("#task-panel .task-row[data-status=failed]")
    message = await row.locator(".task-error").inner_text()
    assert message == "The AI provider account has run out of quota."
    card = await page.inner_text(".article-card")
    assert "Analysis failed: The AI provider account has run out of quota." in card
    assert "Traceback" not in card and "insufficient_quota" not in card

    # Retry once more with a working provider: the analysis arrives.
    fake.default = Reply()
    await row.locator("[data-action=retry]").click()
    await page.wait_for_selector("#task-panel .task-row[data-status=completed]")
    assert "attempt" in await row.locator(".task-meta").inner_text()
    await page.keyboard.press("Escape")
    await page.wait_for_selector(".article-card[data-state=ready]")

    # In the article: a lens that fails, and an insight still being written.
    await open_first_article(page)
    fake.script(insufficient_quota())
    await page.click(".perspective[data-key=argument_map]")
    await page.wait_for_selector("#perspective-argument_map[data-state=failed] .error-text")
    fake.default = Hang()
    await ask_about_paragraph(page, 1)
    await page.wait_for_selector(".thread .turn[data-status=running]")
    await page.click("#tasks-toggle")
    await page.wait_for_selector("#task-panel .task-row[data-status=running] [data-action=cancel]")
    assert await page.locator("#task-panel .task-row[data-status=failed] [data-action=retry]").count() == 1
    await screenshot(page, "tasks.png")
    watch.assert_clean()
    await context.close()


async def test_a_reload_mid_insight_shows_the_text_so_far_and_continues(
    start_server: Callable[..., ServerProcess], browser: Any, fake: FakeUpstream
) -> None:
    fake.reply = lambda body: LONG_INSIGHT if body.get("stream") else default_reply(body)
    fake.default = Reply(chunk_delay=0.05)  # about 4 s for the whole insight
    # A stream ends when the access token it was opened with expires: with 10 s
    # tokens the page also has to resume by itself (quietly) after `closed`.
    server = start_server(llm=upstream(fake), auth={"access_token_lifetime": 10})
    context, page, watch = await open_page(browser, page_url(server), tolerate=(*REFUSED, "status of 401"))
    await register_in_page(page, "reader3")
    await save_article(page)
    await page.wait_for_selector(".article-card[data-state=ready]")
    await open_first_article(page)

    await ask_about_paragraph(page, 3)
    task_id = await page.get_attribute(".thread .turn", "data-task-id")
    text = f".turn[data-task-id='{task_id}'] .insight-text"
    await page.wait_for_function("(selector) => document.querySelector(selector).textContent.length >= 60", arg=text)

    # An expired access token on the way: the page refreshes it by itself.
    await page.evaluate(f"""() => {{
        const session = JSON.parse(sessionStorage.getItem('{SESSION_KEY}'));
        session.access_token = 'expired';
        sessionStorage.setItem('{SESSION_KEY}', JSON.stringify(session));
    }}""")
    await page.reload()
    # After the reload the text written so far is back while the insight is still running…
    await page.wait_for_function(
        """(taskId) => {
            const turn = document.querySelector(`.turn[data-task-id='${taskId}']`);
            return turn && turn.dataset.status === 'running'
                && turn.querySelector('.insight-text').textContent.length >= 60;
        }""",
        arg=task_id,
    )
    # …and goes on to the end.
    await page.wait_for_selector(f".turn[data-task-id='{task_id}'][data-status=completed][data-shown=all]")
    assert await page.text_content(text) == LONG_INSIGHT
    await page.wait_for_function("() => window.insightReader.connections() >= 2")  # after `closed`
    assert await page.evaluate("window.insightReader.connection()") == "connected"
    assert await access_token(page) != "expired"
    async with await api_client(page, server.url) as client:
        assert (await stored_task(client, task_id))["result"]["insight"] == LONG_INSIGHT
    watch.assert_clean()
    await context.close()


async def test_after_a_kill_and_restart_the_page_reconnects_and_shows_what_finished_meanwhile(
    start_server: Callable[..., ServerProcess], browser: Any, fake: FakeUpstream
) -> None:
    port = free_port()  # the same origin before and after the restart
    fake.reply = lambda body: LONG_INSIGHT if body.get("stream") else default_reply(body)
    server = start_server(server={"bind": f"127.0.0.1:{port}"}, llm=upstream(fake))
    context, page, watch = await open_page(browser, page_url(server), tolerate=REFUSED)
    await register_in_page(page, "reader4")
    await save_article(page)
    await page.wait_for_selector(".article-card[data-state=ready]")
    await open_first_article(page)

    fake.script(Hang())  # the insight's request hangs: the task is running at the kill
    await ask_about_paragraph(page, 1)
    task_id = await page.get_attribute(".thread .turn", "data-task-id")
    await page.wait_for_selector(f".turn[data-task-id='{task_id}'][data-status=running]")
    before = await page.evaluate("window.insightReader.lastEventId()")
    assert isinstance(before, int)

    # The page cannot get a ticket until the task has finished on the restarted server.
    await page.route("**/api/v1/sse/ticket", lambda route: route.abort())
    server.kill()
    await page.wait_for_function("() => ['reconnecting', 'offline'].includes(window.insightReader.connection())")
    server.start()
    assert server.url == f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=server.url, timeout=30,
                                 headers={"Authorization": f"Bearer {await access_token(page)}"}) as client:
        done = await wait_task(client, task_id, "completed", "failed", timeout=30)
    assert done["status"] == "completed" and done["attempts"] == 2, done
    assert await page.get_attribute(f".turn[data-task-id='{task_id}']", "data-status") == "running"

    await page.unroute("**/api/v1/sse/ticket")
    await page.wait_for_selector("#connection[data-state=connected]", timeout=30_000)  # by itself
    await page.wait_for_selector(f".turn[data-task-id='{task_id}'][data-status=completed][data-shown=all]")
    assert await page.text_content(f".turn[data-task-id='{task_id}'] .insight-text") == LONG_INSIGHT
    assert await page.evaluate("window.insightReader.lastEventId()") > before
    await page.click("#tasks-toggle")
    await page.wait_for_selector(f"#task-panel .task-row[data-task-id='{task_id}'][data-status=completed]")
    watch.assert_clean()
    await context.close()


# -- the account: signed-in devices, password, sign out -------------------------------------


async def test_signed_in_devices_can_be_signed_out_and_sign_out_ends_the_session(
    start_server: Callable[..., ServerProcess], browser: Any
) -> None:
    server = start_server()
    context, page, watch = await open_page(browser, page_url(server), tolerate=("status of 401",))
    await register_in_page(page, "device_owner")
    other_context, other, other_watch = await open_page(browser, page_url(server), user_agent="Other Device/1.0")
    await sign_in_page(other, "device_owner")
    other_token = await access_token(other)

    # the account page lists both devices; this one is marked
    await page.click("#who")
    await page.wait_for_selector("#session-list .session-row >> nth=1")
    assert await page.locator("#session-list .session-row").count() == 2
    assert await page.locator("#session-list .session-row[data-current=true]").count() == 1
    assert "Other Device" in await page.inner_text("#session-list .session-row[data-current=false]")
    await screenshot(page, "account.png")

    # "sign out this device": the other device's token stops working at once
    await page.click("#session-list .session-row[data-current=false] button")
    await page.wait_for_selector("#session-list .session-row[data-current=false]", state="detached")
    await page.wait_for_selector("#session-list .session-row[data-current=true]")  # the list is loaded again
    assert await page.locator("#session-list .session-row").count() == 1
    async with httpx.AsyncClient(base_url=server.url, timeout=10, headers={"Authorization": f"Bearer {other_token}"}) as http:
        assert (await http.get("/api/v1/auth/me")).status_code == 401

    # change the password from the page
    await page.fill("#current-password", "correct horse battery")
    await page.fill("#new-password", "a new and longer passphrase")
    await page.press("#new-password", "Enter")
    await page.wait_for_selector(".toast:has-text('Password changed')")

    # "Sign out" in the header ends the session on the server, not only in the tab
    token = await access_token(page)
    await page.get_by_role("button", name="Sign out").first.click()
    await page.wait_for_selector("#username")
    async with httpx.AsyncClient(base_url=server.url, timeout=10, headers={"Authorization": f"Bearer {token}"}) as http:
        async with asyncio.timeout(10):
            while (await http.get("/api/v1/auth/me")).status_code != 401:  # the logout call is not awaited
                await asyncio.sleep(0.05)
    await sign_in_page(page, "device_owner", "a new and longer passphrase")
    watch.assert_clean()
    await context.close()
    await other_context.close()


async def test_the_search_box_finds_articles_as_one_types(
    start_server: Callable[..., ServerProcess], browser: Any
) -> None:
    server = start_server()
    context, page, watch = await open_page(browser, page_url(server))
    await register_in_page(page, "searcher")
    token = await access_token(page)
    async with httpx.AsyncClient(base_url=server.url, timeout=10, headers={"Authorization": f"Bearer {token}"}) as http:
        for title, content in (
            (TITLE, ARTICLE),
            ("城市的树", "城市里的街道树让夏天的空气凉快。"),
            ("Harbour notes", "Boats, ropes and a lighthouse."),
        ):
            saved = await http.post("/api/v1/articles/save-with-analysis", json={"title": title, "content": content})
            assert saved.status_code == 202, saved.text
            await wait_task(http, saved.json()["task_id"], "completed")
    await page.fill("#search-input", "sha")  # the start of a word, as it is typed
    await page.wait_for_selector(f".search-hit >> text={TITLE}")
    assert await page.locator(".search-hit").count() == 1
    assert "#/search?q=sha" in page.url
    await page.fill("#search-input", "城市")
    await page.wait_for_selector(".search-hit >> text=城市的树")
    assert "城市里的街道树" in await page.inner_text(".search-hit .search-snippet")
    await page.fill("#search-input", "lighthouse")
    await page.wait_for_selector(".search-hit >> text=Harbour notes")
    await screenshot(page, "search.png")
    await page.fill("#search-input", "zyzzyva")
    await page.wait_for_selector(".search-status:has-text('Nothing found')")
    await page.click("#search-input")
    await page.fill("#search-input", "lighthouse")
    await page.click(".search-hit .card-link")
    await page.wait_for_selector(".article-text p")
    assert await page.input_value("#search-input") == ""
    watch.assert_clean()
    await context.close()


async def test_the_library_downloads_as_markdown_and_as_json_from_the_account_page(
    start_server: Callable[..., ServerProcess], browser: Any
) -> None:
    server = start_server()
    context, page, watch = await open_page(browser, page_url(server))
    await register_in_page(page, "exporter")
    token = await access_token(page)
    async with httpx.AsyncClient(base_url=server.url, timeout=10, headers={"Authorization": f"Bearer {token}"}) as http:
        saved = await http.post("/api/v1/articles/save-with-analysis", json={"title": TITLE, "content": ARTICLE})
        await wait_task(http, saved.json()["task_id"], "completed")
    await page.click("#who")
    await page.wait_for_selector("#export button[data-format=json]")
    await page.locator("#export").scroll_into_view_if_needed()
    await screenshot(page, "export.png")
    async with page.expect_download() as downloading:
        await page.click("#export button[data-format=json]")
    download = await downloading.value
    assert download.suggested_filename.endswith(".json")
    document = json.loads(Path(await download.path()).read_text())
    assert [a["title"] for a in document["articles"]] == [TITLE]
    async with page.expect_download() as downloading:
        await page.click("#export button[data-format=markdown]")
    download = await downloading.value
    with zipfile.ZipFile(await download.path()) as vault:
        assert vault.namelist() == [f"{TITLE}.md"]
    watch.assert_clean()
    await context.close()


async def test_highlight_a_passage_write_a_note_and_find_it_after_a_reload(
    start_server: Callable[..., ServerProcess], browser: Any
) -> None:
    server = start_server()
    context, page, watch = await open_page(browser, page_url(server))
    await register_in_page(page, "highlighter")
    await save_article(page)
    await page.wait_for_selector(".article-card[data-state=ready]")
    await open_first_article(page)
    paragraph = page.locator(".article-text p").nth(1)
    await paragraph.click(click_count=3)
    await page.locator(".selection-popover button[data-action=highlight]").click()
    await page.wait_for_selector("#highlight-list .highlight")
    await page.wait_for_selector(".article-text mark.highlight")
    note = page.locator("#highlight-list .highlight textarea")
    await note.fill("Check this against the council's own figures.")
    async with page.expect_response(lambda r: "/api/v1/highlights/" in r.url and r.request.method == "PATCH") as saving:
        await note.press("Tab")  # leaving the field saves the note
    assert (await saving.value).status == 200
    token = await access_token(page)
    article_id = page.url.rsplit("/", 1)[1]
    async with httpx.AsyncClient(base_url=server.url, timeout=10, headers={"Authorization": f"Bearer {token}"}) as http:
        items = (await http.get(f"/api/v1/articles/{article_id}/highlights")).json()["items"]
    assert items[0]["note"] == "Check this against the council's own figures."
    paragraph_text = " ".join((await paragraph.inner_text()).split())
    assert " ".join(items[0]["quote"].split()) == paragraph_text
    await screenshot(page, "highlight.png")

    await page.reload()
    await page.wait_for_selector(".article-text mark.highlight")
    assert await page.input_value("#highlight-list .highlight textarea") == "Check this against the council's own figures."
    await page.locator("#highlight-list [data-action=delete-highlight]").click()
    await page.wait_for_selector(".article-text mark.highlight", state="detached")
    watch.assert_clean()
    await context.close()


async def test_asking_about_a_highlighted_passage_keeps_the_insight_with_the_highlight(
    start_server: Callable[..., ServerProcess], browser: Any
) -> None:
    server = start_server()
    context, page, watch = await open_page(browser, page_url(server))
    await register_in_page(page, "asker")
    await save_article(page)
    await page.wait_for_selector(".article-card[data-state=ready]")
    await open_first_article(page)
    paragraph = page.locator(".article-text p").nth(2)
    await paragraph.click(click_count=3)
    await page.locator(".selection-popover button[data-action=highlight]").click()
    await page.wait_for_selector(".article-text mark.highlight")
    await ask_about_paragraph(page, 2)
    token = await access_token(page)
    async with httpx.AsyncClient(base_url=server.url, timeout=10, headers={"Authorization": f"Bearer {token}"}) as http:
        [insight] = (await http.get("/api/v1/tasks", params={"task_type": "insight_generation"})).json()["items"]
        task = await wait_task(http, insight["task_id"], "completed")
        article_id = task["article_id"]
        [highlight] = (await http.get(f"/api/v1/articles/{article_id}/highlights")).json()["items"]
        [exported] = (await http.get("/api/v1/export", params={"format": "json"})).json()["articles"]
    assert [i["highlight_id"] for i in exported["insights"]] == [highlight["highlight_id"]]
    watch.assert_clean()
    await context.close()
