"""Highlights and notes: saved with their context, found again in the text, searched,
exported, and kept with the insights asked about them."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable

import httpx

from insightreader.highlights import locate
from tests.support.client import Api, register
from tests.support.process import ServerProcess

#: Every server test here runs on SQLite and on PostgreSQL (tests/conftest.py).
BOTH_DATABASES = True

TEXT = (
    "Trees cool the street. In the morning the shade is thin.\n\n"
    "By the afternoon, trees cool the street by three degrees, and people stay longer."
)


async def save(api: Api) -> str:
    saved = await api.post("/api/v1/articles/save-with-analysis", {"title": "Shade", "content": TEXT})
    assert saved.status_code == 202, saved.text
    await api.wait_status(saved.json()["task_id"], "completed")
    return str(saved.json()["article_id"])


async def test_highlights_find_their_place_survive_a_restart_and_belong_to_their_reader(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        api, stranger = await register(http), await register(http)
        article = await save(api)
        # "trees cool the street" occurs twice: the context picks the second
        second = await api.post(f"/api/v1/articles/{article}/highlights", {
            "quote": "trees cool the street", "prefix": "By the afternoon, ", "suffix": " by three", "note": "measured?",
        })
        assert second.status_code == 201, second.text
        assert second.json()["position"] == TEXT.index("By the afternoon, trees") + len("By the afternoon, ")
        first = await api.post(f"/api/v1/articles/{article}/highlights", {"quote": "Trees cool the street"})
        assert first.status_code == 201 and first.json()["position"] == 0 and first.json()["note"] == ""
        missing = await api.post(f"/api/v1/articles/{article}/highlights", {"quote": "not in the text"})
        assert missing.status_code == 422 and missing.json()["error"]["code"] == "quote_not_found"
        for body in ({"quote": ""}, {"quote": "x", "extra": 1}, {"quote": "Trees", "note": 5}):
            assert (await api.post(f"/api/v1/articles/{article}/highlights", body)).status_code == 422, body
        assert (await stranger.post(f"/api/v1/articles/{article}/highlights", {"quote": "Trees"})).status_code == 404
        assert (await stranger.get(f"/api/v1/articles/{article}/highlights")).status_code == 404
        hid = second.json()["highlight_id"]
        assert (await stranger.patch(f"/api/v1/highlights/{hid}", {"note": "mine now"})).status_code == 404
        assert (await stranger.delete(f"/api/v1/highlights/{hid}")).status_code == 404

        changed = await api.patch(f"/api/v1/highlights/{hid}", {"note": "Measured at 3 pm."})
        assert changed.status_code == 200 and changed.json()["note"] == "Measured at 3 pm."

    server.kill()
    server.start()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        api = api.on(http)
        items = (await api.get(f"/api/v1/articles/{article}/highlights")).json()["items"]
        assert [h["quote"] for h in items] == ["Trees cool the street", "trees cool the street"]  # in text order
        for h in items:
            assert TEXT[h["position"] : h["position"] + len(h["quote"])] == h["quote"]
            assert locate(TEXT, h["quote"], h["prefix"], h["suffix"]) == (h["position"], h["quote"])
        assert items[1]["note"] == "Measured at 3 pm."
        assert (await api.delete(f"/api/v1/highlights/{items[0]['highlight_id']}")).status_code == 204
        assert (await api.delete(f"/api/v1/highlights/{items[0]['highlight_id']}")).status_code == 404
        assert len((await api.get(f"/api/v1/articles/{article}/highlights")).json()["items"]) == 1


async def test_notes_are_searched_exported_and_insights_keep_their_highlight(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        api = await register(http)
        article = await save(api)
        made = await api.post(f"/api/v1/articles/{article}/highlights", {
            "quote": "people stay longer", "note": "Ask the shopkeepers about footfall.",
        })
        hid = made.json()["highlight_id"]
        across = await api.post(f"/api/v1/articles/{article}/highlights", {"quote": "is thin. By the afternoon"})
        assert across.status_code == 201  # as a selection across paragraphs gives it
        assert across.json()["quote"] == "is thin.\n\nBy the afternoon"
        assert (await api.delete(f"/api/v1/highlights/{across.json()['highlight_id']}")).status_code == 204
        found = (await api.get("/api/v1/search", params={"q": "footfall"})).json()["items"]
        assert [f["article_id"] for f in found] == [article]

        asked = await api.post("/api/v1/insights/generate", {"selected_text": "people stay longer", "highlight_id": hid})
        assert asked.status_code == 202, asked.text
        task = await api.wait_status(asked.json()["task_id"], "completed")
        assert task["article_id"] == article
        wrong = await api.post("/api/v1/insights/generate", {"selected_text": "x", "highlight_id": "nope"})
        assert wrong.status_code == 404

        document = (await api.get("/api/v1/export", params={"format": "json"})).json()
        [exported] = document["articles"]
        assert [(h["quote"], h["note"]) for h in exported["highlights"]] == [("people stay longer", "Ask the shopkeepers about footfall.")]
        assert [i["highlight_id"] for i in exported["insights"]] == [hid]
        vault = zipfile.ZipFile(io.BytesIO((await api.get("/api/v1/export")).content))
        note = vault.read(vault.namelist()[0]).decode()
        assert "## Highlights\n\n> people stay longer\n\nAsk the shopkeepers about footfall." in note

        assert (await api.delete(f"/api/v1/highlights/{hid}")).status_code == 204
        assert (await api.get("/api/v1/search", params={"q": "footfall"})).json()["items"] == []


def test_locate_prefers_the_context_tolerates_white_space_and_stays_linear() -> None:
    text = "ab ab ab"
    assert locate(text, "ab") == (0, "ab")
    assert locate(text, "ab", prefix="ab ab ") == (6, "ab")
    assert locate(text, "ab", suffix=" ab ab") == (0, "ab")
    assert locate(text, "ab", prefix="b ", suffix=" ab") == (3, "ab")
    assert locate(text, "zz") is None
    # as a browser's selection gives it: line breaks and indents collapsed
    assert locate("one\n\n  two three", "one two three") == (0, "one\n\n  two three")
    assert locate("x  y", "x y z") is None
    huge = "a" * 400_000
    assert locate(huge, "a", prefix="a" * 200, suffix="a" * 200) == (200, "a")  # stops at the first full agreement
