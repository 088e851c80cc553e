"""Saving from a URL: the address guard, the fetch limits, extraction, and the
``page_fetch`` task end to end. Every page comes from ``tests.support.pages`` on the
loopback interface; the private, link-local, multicast and reserved ranges are checked
by calling the guard on their addresses, never by sending them a packet."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import httpcore
import pytest

from insightreader import extraction, fetching, urls
from insightreader.errors import TaskError
from insightreader.fetching import FetchRules, forbidden_reason
from tests.support.browser import needs_chromium, open_page, register_in_page, screenshot
from tests.support.client import Api, register
from tests.support.pages import ARTICLE_SENTENCES, ARTICLE_TITLE, CHROME, Site, serve_site
from tests.support.process import ServerProcess

OPEN = FetchRules(allow_private=True, timeout=5.0, max_bytes=1024 * 1024)
GUARDED = FetchRules(allow_private=False, timeout=5.0, max_bytes=1024 * 1024)


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    async with serve_site() as served:
        yield served


async def _failure(url: str, rules: FetchRules, **kw: Any) -> TaskError:
    with pytest.raises(TaskError) as caught:
        await fetching.fetch(url, rules, **kw)
    return caught.value


# --- the guard, on addresses ------------------------------------------------------------------

REFUSED = [
    "127.0.0.1", "127.255.255.254", "::1",  # loopback
    "10.0.0.1", "172.16.5.4", "192.168.1.1", "fc00::1", "fd12:3456::1",  # private
    "169.254.169.254", "169.254.0.1", "fe80::1",  # link-local, cloud metadata
    "224.0.0.1", "239.255.255.250", "ff02::1", "ff0e::1",  # multicast
    "240.0.0.1", "255.255.255.255",  # reserved, broadcast
    "0.0.0.0", "::", "0.1.2.3",  # unspecified, "this network"
    "100.64.0.1",  # shared address space (carrier-grade NAT)
    "192.0.2.1", "198.51.100.7", "2001:db8::1",  # documentation
    "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:10.0.0.1",  # IPv4-mapped
    "2002:7f00:1::", "2002:a9fe:a9fe::1",  # 6to4 around loopback, metadata
    "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe",  # NAT64 around loopback, metadata
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo whose client is 127.0.0.1
]
ALLOWED = ["93.184.215.14", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450:4001:80b::200e", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("address", REFUSED)
def test_the_guard_refuses_what_is_not_public(address: str) -> None:
    assert forbidden_reason(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ALLOWED)
def test_the_guard_allows_public_addresses(address: str) -> None:
    assert forbidden_reason(ipaddress.ip_address(address)) is None


def test_the_reason_names_the_cloud_metadata_range() -> None:
    reason = forbidden_reason(ipaddress.ip_address("169.254.169.254"))
    assert reason is not None and "link-local" in reason


# --- live, against the local site -------------------------------------------------------------


async def test_an_article_page_is_fetched_and_its_text_is_the_article_not_the_chrome(site: Site) -> None:
    page = await fetching.fetch(site.url("/article"), OPEN)
    found = extraction.extract(page)
    assert found.title == ARTICLE_TITLE
    for sentence in ARTICLE_SENTENCES:
        assert sentence in found.text
    for chrome in CHROME:
        assert chrome not in found.text
    assert found.metadata() == {
        "author": "Ana Ruiz", "site_name": "The City Paper", "published": "2026-03-04", "language": "en",
    }


async def test_fetches_share_one_tls_context_made_once(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    # making one loads the CA certificates: 25 ms of the loop, once per fetch before
    made: list[ssl.SSLContext] = []
    make = ssl.create_default_context

    def counted() -> ssl.SSLContext:
        made.append(make())
        return made[-1]

    monkeypatch.setattr(ssl, "create_default_context", counted)
    fetching._tls.cache_clear()
    try:
        for _ in range(3):
            assert (await fetching.fetch(site.url("/article"), OPEN)).body
    finally:
        fetching._tls.cache_clear()
    assert len(made) == 1


async def test_a_redirect_chain_is_followed_to_the_page(site: Site) -> None:
    page = await fetching.fetch(site.url("/redirect/4"), OPEN)
    assert page.url == site.url("/article")
    assert site.hits == ["/redirect/4", "/redirect/3", "/redirect/2", "/redirect/1", "/redirect/0", "/article"]


async def test_more_than_five_redirects_fail(site: Site) -> None:
    error = await _failure(site.url("/redirect/5"), OPEN)
    assert (error.code, error.retryable) == ("fetch_http_error", False)
    assert "redirects" in error.message
    assert "/article" not in site.hits


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]", "localhost"])
async def test_loopback_is_refused_with_fetch_allow_private_off(host: str) -> None:
    async with serve_site("::1" if host == "[::1]" else "127.0.0.1") as site:
        error = await _failure(site.url("/article", host=host), GUARDED)
        assert (error.code, error.retryable) == ("fetch_forbidden_address", False)
        assert site.hits == []  # never contacted
        page = await fetching.fetch(site.url("/article", host=host), OPEN)
        assert page.body.startswith(b"<!doctype html>")


def _only(allowed: str) -> fetching.Guard:
    """The real guard, but for one loopback address standing in for a public server."""

    def guard(ip: fetching.IPAddress) -> str | None:
        return None if str(ip) == allowed else forbidden_reason(ip)

    return guard


@pytest.mark.parametrize("target", ["localhost", "127.0.0.1", "[::1]", "169.254.169.254", "[::ffff:127.0.0.1]"])
async def test_a_redirect_to_a_refused_address_is_refused(target: str) -> None:
    # The site on 127.0.0.3 stands in for a public server: the guard lets that one
    # address through, and the redirect it answers must still be checked.
    async with serve_site("127.0.0.3") as site:
        error = await _failure(site.url(f"/to/{target}/article"), GUARDED, guard=_only("127.0.0.3"))
        assert error.code == "fetch_forbidden_address"
        assert site.hits == [f"/to/{target}/article"]
        assert (await fetching.fetch(site.url("/to/127.0.0.3/article"), GUARDED, guard=_only("127.0.0.3"))).body


async def test_a_redirect_to_another_scheme_is_refused(site: Site) -> None:
    error = await _failure(site.url("/to-file"), OPEN)
    assert error.code == "fetch_unsupported_type" and "file:///etc/passwd" in error.message
    assert (await _failure("file:///etc/passwd", OPEN)).code == "fetch_unsupported_type"
    assert (await _failure("ftp://127.0.0.1/x", OPEN)).code == "fetch_unsupported_type"


class _Recording(httpcore.AsyncNetworkBackend):
    """Records where the fetch connects; refuses (sends nothing) unless it is loopback."""

    def __init__(self) -> None:
        self.connects: list[str] = []
        self._real = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None) -> httpcore.AsyncNetworkStream:
        self.connects.append(host)
        if not ipaddress.ip_address(host).is_loopback:
            raise httpcore.ConnectError(f"the test sends nothing to {host}")
        return await self._real.connect_tcp(host, port, timeout=timeout)


def _rebinding(answers: list[list[str]]) -> tuple[fetching.Resolver, list[str]]:
    asked: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        return answers[min(len(asked), len(answers)) - 1]

    return resolve, asked


async def test_dns_rebinding_cannot_reach_loopback(site: Site) -> None:
    # A public address when checked, loopback on every later lookup: the connection
    # goes to the checked address, so it never reaches the loopback site.
    resolver, asked = _rebinding([["93.184.215.14"], ["127.0.0.1"]])
    network = _Recording()
    error = await _failure(f"http://rebind.test:{site.port}/article", GUARDED, resolver=resolver, network=network)
    assert error.code == "fetch_http_error" and error.retryable
    assert network.connects == ["93.184.215.14"]
    assert asked == ["rebind.test"]
    assert site.hits == []


async def test_a_name_with_any_refused_address_is_refused(site: Site) -> None:
    resolver, _ = _rebinding([["93.184.215.14", "127.0.0.1"]])
    network = _Recording()
    error = await _failure(f"http://mixed.test:{site.port}/article", GUARDED, resolver=resolver, network=network)
    assert error.code == "fetch_forbidden_address"
    assert network.connects == [] and site.hits == []


async def test_the_connection_goes_to_the_checked_address_with_the_host_name(site: Site) -> None:
    resolver, asked = _rebinding([["127.0.0.1"]])
    page = await fetching.fetch(f"http://news.test:{site.port}/article", OPEN, resolver=resolver)
    assert page.url == f"http://news.test:{site.port}/article" and asked == ["news.test"]


async def _unknown(host: str, port: int) -> list[str]:
    raise OSError(f"no such host {host} (the tests resolve nothing)")


@pytest.mark.parametrize(
    "url",
    ["http://[::1", "http://a:99999/", "http://" + "a" * 300 + "/", "http://a..b/", "http://ä%/x",
     "http://exa\u200bmple.com/", "http:///x", "http://", "http://é.example/ü", "http://[zz]/"],
)
async def test_a_url_that_cannot_be_fetched_fails_with_a_code_not_a_crash(url: str) -> None:
    error = await _failure(urls.normalise(url), GUARDED, resolver=_unknown)
    assert error.code == "fetch_http_error" and not error.retryable


async def test_a_slow_page_times_out_retryably(site: Site) -> None:
    error = await _failure(site.url("/slow"), FetchRules(allow_private=True, timeout=0.5, max_bytes=1024 * 1024))
    assert (error.code, error.retryable) == ("fetch_timeout", True)


@pytest.mark.parametrize("path", ["/huge", "/huge-declared"])
async def test_a_huge_page_is_too_large(site: Site, path: str) -> None:
    error = await _failure(site.url(path), OPEN)
    assert (error.code, error.retryable) == ("fetch_too_large", False)


async def test_a_pdf_is_an_unsupported_type(site: Site) -> None:
    error = await _failure(site.url("/paper.pdf"), OPEN)
    assert error.code == "fetch_unsupported_type" and "application/pdf" in error.message


@pytest.mark.parametrize(("status", "retryable"), [(404, False), (410, False), (429, True), (500, True), (503, True)])
async def test_http_errors_are_retryable_for_429_and_5xx(site: Site, status: int, retryable: bool) -> None:
    error = await _failure(site.url(f"/status/{status}"), OPEN)
    assert (error.code, error.retryable) == ("fetch_http_error", retryable)


async def test_a_page_without_text_has_no_content(site: Site) -> None:
    page = await fetching.fetch(site.url("/empty"), OPEN)
    with pytest.raises(TaskError) as caught:
        extraction.extract(page)
    assert caught.value.code == "fetch_no_content"


async def test_plain_text_is_kept_as_it_is(site: Site) -> None:
    found = extraction.extract(await fetching.fetch(site.url("/notes.txt"), OPEN))
    assert found.title == "Notes on street trees"
    assert "Shade keeps the evening cool." in found.text


@pytest.mark.parametrize(
    ("given", "normal"),
    [
        ("HTTPS://Example.COM:443/a?utm_source=x&b=1&fbclid=2&gclid=3#part", "https://example.com/a?b=1"),
        ("http://example.com", "http://example.com/"),
        ("http://example.com:8080/x?UTM_Medium=m", "http://example.com:8080/x"),
        ("https://user:secret@example.com/p", "https://example.com/p"),
        ("http://[::1]:80/", "http://[::1]/"),
    ],
)
def test_urls_are_normalised(given: str, normal: str) -> None:
    assert urls.normalise(given) == normal


# --- end to end: the page_fetch task ----------------------------------------------------------


@pytest.fixture
def fetching_server(start_server: Callable[..., ServerProcess]) -> ServerProcess:
    return start_server(library={"fetch_allow_private": True, "fetch_timeout": 1})


async def _save(api: Api, url: str) -> dict[str, Any]:
    response = await api.post("/api/v1/articles/save-with-analysis", json={"url": url})
    assert response.status_code in (200, 202), response.text
    return response.json()


async def test_saving_a_url_fetches_fills_and_analyses_the_article(site: Site, fetching_server: ServerProcess, connect: Callable[[ServerProcess], Any]) -> None:
    api = await register(connect(fetching_server))
    saved = await _save(api, site.url("/redirect/1") + "?utm_source=feed#top")
    assert saved["status"] == "pending" and saved["article_id"] and saved["task_id"]
    fetching_article = (await api.get(f"/api/v1/articles/{saved['article_id']}")).json()
    assert fetching_article["fetch_status"] in ("fetching", "fetched")
    assert fetching_article["url"] == site.url("/redirect/1")

    task = await api.wait_status(saved["task_id"], "completed", "failed")
    assert task["status"] == "completed", task
    assert task["task_type"] == "page_fetch"
    article = (await api.get(f"/api/v1/articles/{saved['article_id']}")).json()
    assert article["fetch_status"] == "fetched"
    assert article["title"] == ARTICLE_TITLE
    assert ARTICLE_SENTENCES[1] in article["content"]
    assert not any(chrome in article["content"] for chrome in CHROME)
    assert article["page"]["author"] == "Ana Ruiz"

    analyses = [t for t in await api.all_tasks() if t["task_type"] == "article_analysis"]
    assert len(analyses) == 1 and analyses[0]["article_id"] == saved["article_id"]
    await api.wait_status(analyses[0]["task_id"], "completed")
    assert (await api.get(f"/api/v1/articles/{saved['article_id']}")).json()["analysis"]["summary"]

    again = await _save(api, site.url("/redirect/1") + "?fbclid=abc&utm_campaign=x#comments")
    assert again["article_id"] == saved["article_id"]
    assert again["task_id"] == saved["task_id"]
    listed = (await api.get("/api/v1/articles")).json()["items"]
    assert [a["article_id"] for a in listed] == [saved["article_id"]]


async def test_the_same_url_saved_twice_at_once_is_one_article(site: Site, fetching_server: ServerProcess, connect: Callable[[ServerProcess], Any]) -> None:
    api = await register(connect(fetching_server))
    first, second = await asyncio.gather(_save(api, site.url("/article")), _save(api, site.url("/article#comments")))
    assert (second["article_id"], second["task_id"]) == (first["article_id"], first["task_id"])
    await api.wait_status(first["task_id"], "completed")
    assert site.hits.count("/article") == 1


async def test_a_failed_fetch_marks_the_article_and_saving_again_fetches_again(site: Site, fetching_server: ServerProcess, connect: Callable[[ServerProcess], Any]) -> None:
    api = await register(connect(fetching_server))
    saved = await _save(api, site.url("/paper.pdf"))
    task = await api.wait_status(saved["task_id"], "failed")
    assert task["error"]["code"] == "fetch_unsupported_type" and task["error"]["retryable"] is False
    article = (await api.get(f"/api/v1/articles/{saved['article_id']}")).json()
    assert article["fetch_status"] == "failed" and article["content"] == ""
    assert not [t for t in await api.all_tasks() if t["task_type"] == "article_analysis"]

    again = await _save(api, site.url("/paper.pdf"))
    assert again["article_id"] == saved["article_id"] and again["task_id"] != saved["task_id"]
    assert (await api.wait_status(again["task_id"], "failed"))["error"]["code"] == "fetch_unsupported_type"


async def test_a_cancelled_fetch_leaves_its_article_failed_not_fetching(site: Site, fetching_server: ServerProcess, connect: Callable[[ServerProcess], Any]) -> None:
    api = await register(connect(fetching_server))
    saved = await _save(api, site.url("/slow"))
    await api.wait_status(saved["task_id"], "running")
    cancelled = await api.post(f"/api/v1/tasks/{saved['task_id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert (await api.get(f"/api/v1/articles/{saved['article_id']}")).json()["fetch_status"] == "failed"
    site.release.set()
    again = await _save(api, site.url("/slow"))  # saving it again fetches it again
    assert again["article_id"] == saved["article_id"] and again["task_id"] != saved["task_id"]
    assert (await api.get(f"/api/v1/articles/{saved['article_id']}")).json()["fetch_status"] == "fetching"


async def test_a_retryable_failure_is_fetched_again_with_backoff(site: Site, fetching_server: ServerProcess, connect: Callable[[ServerProcess], Any]) -> None:
    api = await register(connect(fetching_server))
    saved = await _save(api, site.url("/flaky/2"))
    task = await api.wait_status(saved["task_id"], "completed", "failed")
    assert task["status"] == "completed" and task["attempts"] == 1, task
    assert site.hits == ["/flaky/2"] * 3
    assert (await api.get(f"/api/v1/articles/{saved['article_id']}")).json()["title"] == ARTICLE_TITLE


async def test_when_the_retries_run_out_the_user_can_retry(site: Site, fetching_server: ServerProcess, connect: Callable[[ServerProcess], Any]) -> None:
    api = await register(connect(fetching_server))
    saved = await _save(api, site.url("/flaky/4"))
    failed = await api.wait_status(saved["task_id"], "failed")
    assert (failed["error"]["code"], failed["error"]["retryable"]) == ("fetch_http_error", True)
    assert site.hits == ["/flaky/4"] * 3
    assert (await api.get(f"/api/v1/articles/{saved['article_id']}")).json()["fetch_status"] == "failed"
    assert (await api.post(f"/api/v1/tasks/{saved['task_id']}/retry")).status_code == 202
    await api.wait_status(saved["task_id"], "completed")
    article = (await api.get(f"/api/v1/articles/{saved['article_id']}")).json()
    assert (article["fetch_status"], article["title"]) == ("fetched", ARTICLE_TITLE)
    assert site.hits == ["/flaky/4"] * 5


@pytest.mark.parametrize(("path", "code", "retryable"), [("/slow", "fetch_timeout", True), ("/status/503", "fetch_http_error", True), ("/empty", "fetch_no_content", False)])
async def test_failure_codes_reach_the_task(site: Site, fetching_server: ServerProcess, connect: Callable[[ServerProcess], Any], path: str, code: str, retryable: bool) -> None:
    api = await register(connect(fetching_server))
    task = await api.wait_status((await _save(api, site.url(path)))["task_id"], "failed")
    assert (task["error"]["code"], task["error"]["retryable"]) == (code, retryable)


async def test_with_the_default_settings_loopback_is_refused(site: Site, api: Api) -> None:
    saved = await _save(api, site.url("/article"))
    task = await api.wait_status(saved["task_id"], "failed")
    assert task["error"]["code"] == "fetch_forbidden_address"
    assert site.hits == []


@pytest.mark.parametrize("body", [{}, {"title": "only a title"}, {"url": "ftp://example.com/x"}])
async def test_a_save_needs_content_or_an_http_url(api: Api, body: dict[str, Any]) -> None:
    response = await api.post("/api/v1/articles/save-with-analysis", json=body)
    assert response.status_code in (400, 422), response.text
    assert set(response.json()["error"]) == {"code", "message"}


async def test_content_saves_keep_working(api: Api) -> None:
    response = await api.post("/api/v1/articles/save-with-analysis", json={"title": "T", "content": "Some text.", "url": "https://example.com/t"})
    assert response.status_code == 202, response.text
    article = (await api.get(f"/api/v1/articles/{response.json()['article_id']}")).json()
    assert article["fetch_status"] is None and article["content"] == "Some text."


# --- the page: saving a link, the bookmarklet, the share target ------------------------------


@needs_chromium
async def test_the_page_saves_a_link_shows_it_fetching_and_fills_it_in_live(
    site: Site, fetching_server: ServerProcess, browser: Any
) -> None:
    context, page, watch = await open_page(browser, fetching_server.url + "/")
    await page.wait_for_selector("#username")
    await register_in_page(page, "linksaver")
    await page.evaluate("""() => {
        window.__notReloaded = true;
        window.__cardStates = [];
        new MutationObserver(() => {
            const card = document.querySelector('.article-card');
            const state = card && card.dataset.state;
            if (state && window.__cardStates.at(-1) !== state) window.__cardStates.push(state);
        }).observe(document.body, {subtree: true, childList: true, attributes: true});
    }""")
    await page.wait_for_selector("#new-article:not([hidden])")
    # The bookmarklet opens this page's #/save with the tab's link and title.
    code = await page.get_attribute("#bookmarklet", "href")
    assert code is not None and code.startswith("javascript:") and "#/save?url=" in code

    await page.fill("#new-url", site.url("/article"))
    await page.get_by_role("button", name="Save and analyse").click()
    card = page.locator(".article-card")
    await page.wait_for_selector(".article-card[data-state=ready] .topics .topic")
    assert await card.locator(".article-card-title").inner_text() == ARTICLE_TITLE
    states = await page.evaluate("window.__cardStates")
    assert states[0] == "fetching" and states[-1] == "ready", states
    assert await page.evaluate("window.__notReloaded === true")
    await screenshot(page, "save-from-link.png")

    # The share target (GET /?url=&title=&text=, as the manifest says) saves a link
    # Android put in `text`; then the address no longer carries it.
    shared = site.url("/notes.txt")
    await page.goto(fetching_server.url + "/?title=Notes&text=" + f"Look%20at%20this%20{shared}")
    await page.wait_for_selector(".article-card:has-text('Notes on street trees')")
    assert "?" not in page.url
    # The bookmarklet's address: the same URL again is the same article.
    await page.goto(fetching_server.url + "/#/save?url=" + site.url("/article") + "&title=Again")
    await page.wait_for_selector(".toast:has-text('Saved')")
    await page.wait_for_selector(".article-card >> nth=1")
    assert await page.locator(".article-card").count() == 2

    # A page that does not come: "Fetching the page…", then why it failed.
    await page.get_by_role("button", name="Add an article").click()
    await page.fill("#new-url", site.url("/slow"))
    await page.get_by_role("button", name="Save and analyse").click()
    await page.wait_for_selector(".article-card[data-state=fetching]:has-text('Fetching the page')")
    await page.get_by_role("button", name="Add an article").click()
    await page.evaluate("document.querySelectorAll('.toast .icon-button').forEach((b) => b.click())")
    await screenshot(page, "save-fetching.png", full_page=True)
    await page.wait_for_selector(".article-card[data-state=fetch-failed]:has-text('took too long')")
    # The reader says so too, with a way to try again.
    await page.click(".article-card[data-state=fetch-failed] .card-link")
    await page.wait_for_selector(".glance [data-state=fetch-failed] button:has-text('Try again')")
    watch.assert_clean()
    await context.close()


async def test_the_manifest_makes_the_page_an_installable_share_target(http: Any) -> None:
    response = await http.get("/manifest.webmanifest")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/manifest+json")
    manifest = response.json()
    assert manifest["share_target"] == {"action": "/", "method": "GET", "params": {"title": "title", "text": "text", "url": "url"}}
    assert manifest["icons"][0]["src"].startswith("/assets/")
    assert (await http.get(manifest["icons"][0]["src"])).status_code == 200
    page = await http.get("/")
    assert '<link rel="manifest" href="/manifest.webmanifest">' in page.text
