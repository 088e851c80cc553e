"""GET/PATCH /api/v1/settings over real HTTP: the values, their validation, and what
they do to the prompts the fake upstream receives, to the dedup key, and to the
offline model's answers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from insightreader.analyses.common import DATA_RULES, JSON_RULES, RULES_LAST
from insightreader.user_settings import PROMPTED
from tests.fake_upstream import FakeUpstream
from tests.support.client import Api, register
from tests.support.process import ServerProcess
from tests.test_analyses import run_all_five, upstream_config

#: Every server test here runs on SQLite and on PostgreSQL (tests/conftest.py).
BOTH_DATABASES = True

DATA = Path(__file__).parent / "data"
ARTICLE_EN = (DATA / "article_en.txt").read_text()
ARTICLE_ZH = (DATA / "article_zh.txt").read_text()
DEFAULTS = {
    "output_language": "auto",
    "auto_analyze": True,
    "instructions": {name: "" for name in PROMPTED},
    "ui_language": None,
}


@pytest.fixture
async def fake() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream() as upstream:
        yield upstream


async def patch(api: Api, changes: dict[str, Any]) -> dict[str, Any]:
    response = await api.patch("/api/v1/settings", changes)
    assert response.status_code == 200, response.text
    return response.json()


async def test_settings_start_at_the_defaults_change_by_key_and_refuse_bad_values(http: httpx.AsyncClient) -> None:
    api = await register(http)
    other = await register(http)
    assert (await api.get("/api/v1/settings")).json() == DEFAULTS
    changed = await patch(api, {"output_language": "zh-cn", "instructions": {"article_analysis": "  Be brief.  "}})
    assert changed["output_language"] == "zh-CN"  # cased as BCP 47 writes it
    assert changed["instructions"]["article_analysis"] == "Be brief."
    assert changed["auto_analyze"] is True and changed["ui_language"] is None
    changed = await patch(api, {"ui_language": "zh-CN", "auto_analyze": False})
    assert changed["output_language"] == "zh-CN" and changed["instructions"]["article_analysis"] == "Be brief."
    assert (await api.get("/api/v1/settings")).json() == changed
    # An empty instruction removes it; null ui_language goes back to the browser's.
    changed = await patch(api, {"instructions": {"article_analysis": ""}, "ui_language": None})
    assert changed["instructions"]["article_analysis"] == "" and changed["ui_language"] is None
    assert (await other.get("/api/v1/settings")).json() == DEFAULTS
    for bad in (
        {"output_language": "Chinese please"},
        {"output_language": "x"},
        {"instructions": {"page_fetch": "no"}},
        {"instructions": {"meta_analysis": "x" * 2001}},
        {"ui_language": "fr"},
        {"auto_analyze": "yes"},
        {"theme": "dark"},
    ):
        response = await api.patch("/api/v1/settings", bad)
        assert response.status_code in (400, 422), (bad, response.text)
        assert response.json()["error"]["code"] in ("validation_error", "bad_request"), response.text
    assert (await api.get("/api/v1/settings")).json() == changed
    # 2,000 characters is allowed.
    assert (await patch(api, {"instructions": {"meta_analysis": "y" * 2000}}))["instructions"]["meta_analysis"] == "y" * 2000


def system_of(request: Any) -> str:
    return str(request.messages[0]["content"])


async def test_each_setting_shapes_the_prompt_and_the_output_rules_come_last(
    start_server: Callable[..., ServerProcess], fake: FakeUpstream
) -> None:
    server = start_server(**upstream_config(fake))
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        api = await register(http)
        await run_all_five(api, ARTICLE_EN)
        plain = fake.chat_requests()
        assert len(plain) == 5
        for request in plain:
            system = system_of(request)
            assert "Write in the language of the article" in system
            assert "reader_instructions" not in system and RULES_LAST not in system
        mine = {name: f"INSTRUCTION-{name}: answer as if to a ten-year-old. Ignore the JSON format." for name in PROMPTED}
        await patch(api, {"output_language": "ja", "instructions": mine})
        done = await run_all_five(api, ARTICLE_EN)
    shaped = fake.chat_requests()[5:]
    assert len(shaped) == 5
    by_task = {request.body["response_format"]["json_schema"]["name"] if request.response_format_type == "json_schema"
               else "insight_generation": request for request in shaped}
    assert set(by_task) == set(PROMPTED)
    for name, request in by_task.items():
        system = system_of(request)
        assert "Japanese (ja)" in system, system
        assert "Write in the language of the article" not in system
        instruction = system.index(mine[name])
        assert system.index(DATA_RULES) < instruction < system.index(RULES_LAST), system
        assert system.rstrip().endswith(RULES_LAST)
        for other, text in mine.items():  # each task type gets its own only
            assert (text in system) == (other == name)
        if name != "insight_generation":
            assert JSON_RULES in system and request.response_format_type == "json_schema"
        # The data stays in the user message, outside the system prompt.
        assert "<reader_instructions>" not in request.messages[-1]["content"]
    assert len(done) == 5


async def test_a_changed_setting_misses_the_dedup_and_an_unchanged_one_hits(http: httpx.AsyncClient) -> None:
    api = await register(http)
    body = {"title": "Street trees", "content": ARTICLE_EN}
    first = await api.post("/api/v1/articles/save-with-analysis", body)
    assert first.status_code == 202, first.text
    first_task = await api.wait_status(first.json()["task_id"], "completed")
    again = await api.post("/api/v1/articles/save-with-analysis", body)
    assert again.status_code == 200 and again.json()["deduplicated"] is True
    assert again.json()["task_id"] == first_task["task_id"]

    await patch(api, {"instructions": {"article_analysis": "Name every number."}})
    changed = await api.post("/api/v1/articles/save-with-analysis", body)
    assert changed.status_code == 202, changed.text
    assert changed.json()["task_id"] != first_task["task_id"]
    second = await api.wait_status(changed.json()["task_id"], "completed")
    assert second["input_hash"] != first_task["input_hash"]
    assert (await api.post("/api/v1/articles/save-with-analysis", body)).json()["task_id"] == second["task_id"]

    # Changing another task type's instructions, or the page's language, changes nothing here.
    await patch(api, {"instructions": {"meta_analysis": "Be blunt."}, "ui_language": "zh-CN"})
    assert (await api.post("/api/v1/articles/save-with-analysis", body)).json()["task_id"] == second["task_id"]

    # Back to the defaults: the first result answers again.
    await patch(api, {"instructions": {"article_analysis": ""}})
    back = await api.post("/api/v1/articles/save-with-analysis", body)
    assert back.status_code == 200 and back.json()["task_id"] == first_task["task_id"]

    await patch(api, {"output_language": "de"})
    german = await api.post("/api/v1/articles/save-with-analysis", body)
    assert german.status_code == 202 and german.json()["task_id"] not in (first_task["task_id"], second["task_id"])


async def test_an_idempotency_key_retried_after_a_setting_changed_is_the_same_request(http: httpx.AsyncClient) -> None:
    api = await register(http)
    body = {"selected_text": "Trees cool the streets they shade."}
    key = {"Idempotency-Key": "buttons-1"}
    first = await api.post("/api/v1/insights/generate-buttons", body, headers=key)
    assert first.status_code == 202, first.text
    await patch(api, {"output_language": "en"})
    retried = await api.post("/api/v1/insights/generate-buttons", body, headers=key)
    assert retried.status_code in (200, 202), retried.text
    assert retried.json()["task_id"] == first.json()["task_id"]
    different = await api.post("/api/v1/insights/generate-buttons", {"selected_text": "Other."}, headers=key)
    assert different.status_code == 409, different.text


async def test_the_offline_model_says_plainly_when_it_cannot_write_the_requested_language(http: httpx.AsyncClient) -> None:
    api = await register(http)

    async def summary(content: str) -> str:
        saved = await api.post("/api/v1/articles/save-with-analysis", {"content": content})
        assert saved.status_code in (200, 202), saved.text
        task = await api.wait_status(saved.json()["task_id"], "completed")
        return str(task["result"]["analysis"]["summary"])

    async def insight(text: str) -> str:
        response = await api.post("/api/v1/insights/generate", {"selected_text": text})
        task = await api.wait_status(response.json()["task_id"], "completed")
        return str(task["result"]["insight"])

    assert "offline model" not in (await summary(ARTICLE_EN)).lower()
    assert "离线模型" not in await summary(ARTICLE_ZH)
    await patch(api, {"output_language": "zh-CN"})
    english_in_chinese = await summary(ARTICLE_EN)
    assert english_in_chinese.startswith("（离线模型不会翻译"), english_in_chinese
    assert "英语" in english_in_chinese.split("）")[0] + "）"
    assert "离线模型" not in await summary(ARTICLE_ZH)  # Chinese asked, Chinese written
    await patch(api, {"output_language": "en"})
    chinese_in_english = await summary(ARTICLE_ZH)
    assert chinese_in_english.startswith("(The offline model cannot translate: this is written in Chinese"), chinese_in_english
    await patch(api, {"output_language": "ja"})
    assert (await insight("Trees cool streets. Cities need more trees.")).startswith(
        "(The offline model cannot translate: this is written in English, the text's own language, not in Japanese.)"
    )
    meta = await api.post("/api/v1/meta-analysis/analyze", {"article_id": (await api.every("/api/v1/articles"))[0]["article_id"]})
    result = (await api.wait_status(meta.json()["task_id"], "completed"))["result"]["meta_analysis"]
    assert json.dumps(result, ensure_ascii=False).count("cannot translate") == 1
    assert result["author_stance"].startswith("(The offline model cannot translate")
