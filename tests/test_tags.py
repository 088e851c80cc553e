"""Tags and reading states of articles (issue 15): over HTTP against a real server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from insightreader.tagnames import loose_key, prefer_existing
from tests.fake_upstream import FakeUpstream
from tests.support.client import Api, register
from tests.support.process import ServerProcess

#: Every server test here runs on SQLite and on PostgreSQL (tests/conftest.py).
BOTH_DATABASES = True

DATA = Path(__file__).parent / "data"
ARTICLE_EN = (DATA / "article_en.txt").read_text()


async def save(api: Api, content: str, title: str = "A title") -> str:
    response = await api.post("/api/v1/articles/save-with-analysis", {"title": title, "content": content})
    assert response.status_code == 202, response.text
    return str(response.json()["article_id"])


async def put_tags(api: Api, article_id: str, tags: list[Any]) -> httpx.Response:
    return await api.put(f"/api/v1/articles/{article_id}/tags", {"tags": tags})


async def tag_counts(api: Api) -> dict[str, int]:
    response = await api.get("/api/v1/tags")
    assert response.status_code == 200, response.text
    return {item["name"]: item["count"] for item in response.json()["items"]}


async def listed(api: Api, **params: Any) -> list[str]:
    """Article ids of every page of ``GET /articles`` with ``params`` (pages of 2)."""
    ids: list[str] = []
    cursor = None
    for _ in range(100):
        query = {"limit": 2, **params, **({"cursor": cursor} if cursor else {})}
        response = await api.get("/api/v1/articles", params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        ids += [item["article_id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return ids
    raise AssertionError("GET /articles never reached the last page")


async def test_tags_are_case_insensitively_unique_and_keep_the_first_spelling(api: Api) -> None:
    first, second = await save(api, "One text about trees."), await save(api, "Another text about rivers.")
    response = await put_tags(api, first, ["  Climate  Change ", "cities", "CITIES"])
    assert response.status_code == 200, response.text
    assert response.json() == {"tags": ["cities", "Climate Change"]}
    response = await put_tags(api, second, ["climate change", "Rivers"])
    assert response.json() == {"tags": ["Climate Change", "Rivers"]}  # the first spelling wins
    assert await tag_counts(api) == {"cities": 1, "Climate Change": 2, "Rivers": 1}
    article = (await api.get(f"/api/v1/articles/{second}")).json()
    assert article["tags"] == ["Climate Change", "Rivers"]
    assert (article["archived"], article["favorite"]) == (False, False)


async def test_replacing_and_deleting_keep_the_counts(api: Api) -> None:
    first, second = await save(api, "Text number one."), await save(api, "Text number two.")
    await put_tags(api, first, ["a", "b"])
    await put_tags(api, second, ["b", "c"])
    assert await tag_counts(api) == {"a": 1, "b": 2, "c": 1}
    response = await put_tags(api, first, ["B", "d"])  # a goes, b stays as spelt first
    assert response.json() == {"tags": ["b", "d"]}
    assert await tag_counts(api) == {"b": 2, "c": 1, "d": 1}
    assert (await api.delete(f"/api/v1/articles/{second}")).status_code == 204
    assert await tag_counts(api) == {"b": 1, "d": 1}
    assert (await put_tags(api, first, [])).json() == {"tags": []}
    assert await tag_counts(api) == {}


@pytest.mark.parametrize(
    ("tags", "fragment"),
    [
        ([f"t{i}" for i in range(51)], "at most 50"),
        (["   "], "tags.0"),
        (["x" * 65], "64"),
        (["bad\x07bell"], "tags.0"),
        (["zero\u200bwidth"], "tags.0"),
        ([3], None),
        ("cities", None),
    ],
)
async def test_bad_tags_are_422(api: Api, tags: Any, fragment: str | None) -> None:
    article_id = await save(api, "A text to tag.")
    response = await put_tags(api, article_id, tags)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"
    if fragment:
        assert fragment in response.json()["error"]["message"]
    assert (await api.get(f"/api/v1/articles/{article_id}")).json()["tags"] == []


async def test_fifty_tags_are_allowed(api: Api) -> None:
    article_id = await save(api, "A text with many tags.")
    names = [f"tag {i:02d}" for i in range(48)]
    response = await put_tags(api, article_id, names + ["TAG 00", "line\nbreak"])
    assert response.status_code == 200, response.text
    # A repeat in another case is dropped; a line break is white space, made one space.
    assert response.json()["tags"] == sorted(names + ["line break"])


async def test_other_users_tags_and_articles_are_invisible(api: Api, http: httpx.AsyncClient) -> None:
    mine = await save(api, "My own text.")
    await put_tags(api, mine, ["private"])
    other = await register(http)
    assert await tag_counts(other) == {}
    assert await listed(other, tag="private") == []
    theirs = await save(other, "My own text.")  # the same content: their own article
    assert (await put_tags(other, mine, ["stolen"])).status_code == 404
    assert (await other.patch(f"/api/v1/articles/{mine}", {"archived": True})).status_code == 404
    assert (await put_tags(other, theirs, ["Private"])).json() == {"tags": ["Private"]}
    assert await tag_counts(api) == {"private": 1}
    assert await listed(api, tag="private") == [mine]
    assert (await api.get(f"/api/v1/articles/{mine}")).json()["archived"] is False


async def test_patch_states_and_title(api: Api) -> None:
    article_id = await save(api, "A text with states.", title="Old title")
    response = await api.patch(f"/api/v1/articles/{article_id}", {"archived": True})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["archived"], body["favorite"], body["title"]) == (True, False, "Old title")
    body = (await api.patch(f"/api/v1/articles/{article_id}", {"favorite": True, "title": " New title "})).json()
    assert (body["archived"], body["favorite"], body["title"]) == (True, True, "New title")
    body = (await api.patch(f"/api/v1/articles/{article_id}", {"archived": False, "favorite": None})).json()
    assert (body["archived"], body["favorite"]) == (False, True)
    for bad in ({"archived": "yes"}, {"title": ""}, {"pinned": True}):
        response = await api.patch(f"/api/v1/articles/{article_id}", bad)
        assert response.status_code == 422, (bad, response.text)
    assert (await api.patch("/api/v1/articles/no-such-id", {"archived": True})).status_code == 404


async def test_filters_combine_and_page(api: Api) -> None:
    ids = [await save(api, f"Article number {n} of the filter test.") for n in range(7)]
    for n, article_id in enumerate(ids):
        await put_tags(api, article_id, ["even" if n % 2 == 0 else "odd", "all"])
        await api.patch(f"/api/v1/articles/{article_id}", {"archived": n % 3 == 0, "favorite": n >= 4})
    newest_first = ids[::-1]

    def expect(keep: Callable[[int], bool]) -> list[str]:
        return [a for a in newest_first if keep(ids.index(a))]

    assert await listed(api) == newest_first
    assert await listed(api, tag="ALL") == newest_first
    assert await listed(api, tag="even") == expect(lambda n: n % 2 == 0)
    assert await listed(api, archived="true") == expect(lambda n: n % 3 == 0)
    assert await listed(api, archived="false") == expect(lambda n: n % 3 != 0)
    assert await listed(api, favorite="true") == expect(lambda n: n >= 4)
    assert await listed(api, favorite="false", archived="false") == expect(lambda n: n < 4 and n % 3 != 0)
    assert await listed(api, tag="odd", archived="false", favorite="true") == expect(
        lambda n: n % 2 == 1 and n % 3 != 0 and n >= 4
    )
    assert await listed(api, tag="none such") == []
    page = (await api.get("/api/v1/articles", params={"tag": "even", "limit": 1})).json()
    assert page["items"][0]["tags"] == ["all", "even"]
    for bad in ({"tag": " "}, {"archived": "maybe"}):
        response = await api.get("/api/v1/articles", params=bad)
        assert response.status_code == 422, (bad, response.text)


def test_near_duplicates_meet_under_one_loose_key() -> None:
    for a, b in [("Machine-Learning", "machine learnings"), ("Café", "cafes"), ("city", "Cities"),
                 ("data_base", "Data Bases"), ("box", "boxes")]:
        assert loose_key(a) == loose_key(b), (a, b)
    for a, b in [("glass", "glas"), ("art", "arts and crafts"), ("status", "statu")]:
        assert loose_key(a) != loose_key(b), (a, b)
    assert prefer_existing(["Urban-Heat", "cafés", "New", "new", "\x00"], ["urban heat", "Café"], 5) == [
        "urban heat", "Café", "New"
    ]


@pytest.fixture
async def fake() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream() as upstream:
        yield upstream


async def wait_analysis(api: Api, task_id: str) -> dict[str, Any]:
    task = await api.wait_status(task_id, "completed", "failed")
    assert task["status"] == "completed", task
    return dict(task["result"]["analysis"])


async def test_suggestions_map_to_existing_tags(start_server: Callable[..., ServerProcess], fake: FakeUpstream) -> None:
    answer = {
        "summary": "Trees cool streets.", "key_points": ["Shade works."], "topics": ["trees"],
        "reading_time_minutes": 3, "language": "en", "questions": [],
        "suggested_tags": ["Urban-Heats", "street trees", "Budgets", "urban heat"],
    }
    fake.reply = lambda body: json.dumps(answer)
    server = start_server(llm={"base_url": fake.base_url, "api_key": "sk-test-key-0123456789", "model": fake.model})
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        api = await register(http)
        first = await save(api, "An earlier article about heat in towns.")
        await put_tags(api, first, ["urban heat", "Budget", "unrelated"])
        response = await api.post("/api/v1/articles/save-with-analysis", {"title": "Street trees", "content": ARTICLE_EN})
        analysis = await wait_analysis(api, response.json()["task_id"])
    assert analysis["suggested_tags"] == ["urban heat", "street trees", "Budget"]
    # The earlier article's analysis runs meanwhile: its request may come last.
    [prompt] = [r.messages[-1]["content"] for r in fake.chat_requests() if ARTICLE_EN[:60] in r.messages[-1]["content"]]
    tags_line = prompt.split("<tags>\n", 1)[1].split("\n</tags>", 1)[0]
    assert sorted(json.loads(tags_line)) == ["Budget", "unrelated", "urban heat"]


async def test_existing_tags_are_part_of_the_dedup_key(api: Api) -> None:
    content = "The same text, saved twice, with the reader's tags changed in between."
    first = await api.post("/api/v1/articles/save-with-analysis", {"title": "Twice", "content": content})
    await api.wait_status(first.json()["task_id"], "completed")
    again = await api.post("/api/v1/articles/save-with-analysis", {"title": "Twice", "content": content})
    assert again.json()["task_id"] == first.json()["task_id"]  # nothing changed: deduplicated
    await put_tags(api, first.json()["article_id"], ["tagged"])
    third = await api.post("/api/v1/articles/save-with-analysis", {"title": "Twice", "content": content})
    assert third.json()["task_id"] != first.json()["task_id"]


async def test_offline_suggestions_prefer_existing_tags_in_the_text(api: Api) -> None:
    earlier = await save(api, "Some older article.")
    await put_tags(api, earlier, ["Cooking", "shade", "Urban Heat"])
    response = await api.post("/api/v1/articles/save-with-analysis", {"title": "Street trees", "content": ARTICLE_EN})
    analysis = await wait_analysis(api, response.json()["task_id"])
    suggested = analysis["suggested_tags"]
    assert 3 <= len(suggested) <= 5
    assert "Cooking" not in suggested  # not in the text
    assert suggested[:2] == ["shade", "Urban Heat"] or suggested[:2] == ["Urban Heat", "shade"]
    assert "street trees" in suggested
