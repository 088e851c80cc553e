"""GET /api/v1/export: a zip of Markdown notes (compared with an expected file) and
one JSON document, streamed a page of articles at a time."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from insightreader import export
from tests.fake_upstream import FakeUpstream
from tests.support.client import Api, register
from tests.support.process import ServerProcess

#: Every server test here runs on SQLite and on PostgreSQL (tests/conftest.py).
BOTH_DATABASES = True

EXPECTED = Path(__file__).parent / "data" / "export" / "street-trees.md"
CONTENT = (
    "Street trees cool the pavement by several degrees on a summer afternoon.\n\n"
    "They cost little next to the drains and lights a city already budgets for."
)
ANALYSIS = {
    "summary": "Street trees are infrastructure, not decoration.",
    "key_points": ["Shade lowers pavement temperature.", "Trees are cheap next to drains."],
    "topics": ["urban heat", "budgets"],
    "reading_time_minutes": 1,
    "language": "en",
    "questions": [],
}
META = {
    "author_stance": "For more street trees.",
    "tone": "Plain",
    "assumptions": ["Cities can afford upkeep."],
    "rhetorical_devices": ["Comparison with drains."],
    "missing_perspectives": ["Residents who dislike leaves."],
    "questions_to_ask": ["Who waters them?"],
}
LENS = {
    "title": "Shade as a service",
    "summary": "The claim rests on the cost comparison.",
    "points": [{"heading": "Claim", "detail": "Trees belong in the budget."}],
    "questions": ["What would change the budget?"],
}
INSIGHT = "The comparison with drains moves trees into the infrastructure budget."


def answer(body: Mapping[str, Any]) -> str:
    schema = ((body.get("response_format") or {}).get("json_schema") or {}).get("schema") or {}
    fields = set(schema.get("properties", {}))
    if "author_stance" in fields:
        return json.dumps(META)
    if "points" in fields:
        return json.dumps(LENS)
    if "key_points" in fields:
        return json.dumps(ANALYSIS)
    return INSIGHT


@pytest.fixture
async def live(start_server: Callable[..., ServerProcess]) -> AsyncIterator[tuple[httpx.AsyncClient, FakeUpstream]]:
    async with FakeUpstream() as fake:
        fake.reply = answer
        server = start_server(llm={"base_url": fake.base_url, "api_key": "sk-test-key-0123456789", "model": fake.model})
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            yield http, fake


async def save(api: Api, title: str, content: str) -> str:
    saved = await api.post("/api/v1/articles/save-with-analysis", {"title": title, "content": content})
    assert saved.status_code == 202, saved.text
    await api.wait_status(saved.json()["task_id"], "completed")
    return str(saved.json()["article_id"])


async def submit_and_wait(api: Api, path: str, body: dict[str, Any] | None = None) -> None:
    response = await api.post(path, body)
    assert response.status_code == 202, response.text
    await api.wait_status(response.json()["task_id"], "completed")


async def test_markdown_notes_hold_everything_and_match_the_expected_file(
    live: tuple[httpx.AsyncClient, FakeUpstream],
) -> None:
    http, _ = live
    api = await register(http)
    article_id = await save(api, "Street trees: cheap / cool?", CONTENT)
    await submit_and_wait(api, "/api/v1/meta-analysis/analyze", {"article_id": article_id})
    await submit_and_wait(api, f"/api/v1/articles/{article_id}/thinking-lens/argument_map")
    await submit_and_wait(api, "/api/v1/insights/generate", {"selected_text": "They cost little", "article_id": article_id})
    await save(api, "Street trees: cheap / cool?", "Another article with the same title.")

    response = await api.get("/api/v1/export", params={"format": "markdown"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["content-disposition"].startswith('attachment; filename="insightreader-')
    vault = zipfile.ZipFile(io.BytesIO(response.content))
    names = vault.namelist()
    assert names[0] == "Street trees cheap cool.md"  # no ":" "/" "?" in a file name
    assert names[1].startswith("Street trees cheap cool (") and len(names) == 2  # titles alike, names not
    note = vault.read(names[0]).decode()
    saved = (await api.get(f"/api/v1/articles/{article_id}")).json()["created_at"]
    assert note == EXPECTED.read_text().replace("{saved}", saved)


async def test_the_json_document_holds_everything_for_every_page_and_nothing_of_others(
    live: tuple[httpx.AsyncClient, FakeUpstream],
) -> None:
    http, _ = live
    api, stranger = await register(http), await register(http)
    await save(stranger, "Not yours", "A stranger's article.")
    first = await save(api, "First", CONTENT)
    await submit_and_wait(api, "/api/v1/insights/generate", {"selected_text": "They cost little", "article_id": first})
    ids = [first]
    for n in range(export.PAGE + 2):  # more than one page
        saved = await api.post("/api/v1/articles/save-with-analysis", {"title": f"Note {n}", "content": f"Short note {n}."})
        assert saved.status_code == 202
        ids.append(saved.json()["article_id"])

    response = await api.get("/api/v1/export", params={"format": "json"})
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    document = response.json()
    assert (document["format"], document["version"], document["username"]) == ("insightreader", 1, api.username)
    assert [a["article_id"] for a in document["articles"]] == ids  # oldest first, each once
    head = document["articles"][0]
    assert (head["title"], head["content"], head["analysis"]) == ("First", CONTENT, {**ANALYSIS, "suggested_tags": []})
    assert [(i["selected_text"], i["insight"]) for i in head["insights"]] == [("They cost little", INSIGHT)]
    assert {"url", "tags", "archived", "favorite", "saved_at", "highlights"} <= set(head)
    markdown = zipfile.ZipFile(io.BytesIO((await api.get("/api/v1/export")).content))
    assert len(markdown.namelist()) == len(ids)  # markdown is the default


async def test_an_empty_library_and_a_bad_format(live: tuple[httpx.AsyncClient, FakeUpstream]) -> None:
    http, _ = live
    api = await register(http)
    assert (await api.get("/api/v1/export", params={"format": "json"})).json()["articles"] == []
    assert zipfile.ZipFile(io.BytesIO((await api.get("/api/v1/export")).content)).namelist() == []
    bad = await api.get("/api/v1/export", params={"format": "pdf"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "validation_error"
    assert (await http.get("/api/v1/export")).status_code == 401


def test_note_names_are_safe_and_unique() -> None:
    taken: set[str] = set()
    assert export.note_name('a/b\\c:d*e?f"g<h>i|j#k^l[m]n', "0123456789", taken) == "a b c d e f g h i j k l m n.md"
    assert export.note_name("Notes.", "0123456789", taken) == "Notes.md"
    assert export.note_name("notes", "abcdefgh99", taken) == "notes (abcdefgh).md"  # names differing in case only clash on some systems
    assert export.note_name("\x00\x01", "0123456789", taken) == "Untitled.md"
    assert len(export.note_name("x" * 500, "0123456789", taken)) == export.NAME_CHARS + 3
