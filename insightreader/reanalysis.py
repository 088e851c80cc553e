"""Re-analysis: running the analyses of a user's library again, as a batch of bulk
tasks (``POST /articles/reanalyze``, ``insightreader admin reanalyze``; docs/settings.md).

Scopes, for each kind asked (``article_analysis``, ``meta_analysis``, ``thinking_lens``):

* ``stale``: the results made with another model, prompt version or prompt settings
  than a submit would use now. A result is its article's last completed run of that
  kind (a lens: of that lens); it is stale when the dedup key of its own input,
  with the prompt settings of today, under today's model and prompt version, is not
  the key it ran under — the key covers exactly those (:func:`insightreader.engine.input_hash`).
* ``failed``: the article's last run of that kind failed.
* ``all``: every article with text, for the analysis and the meta analysis; every
  lens an article has.

Each item is submitted with the batch's id in its input, so it runs again even when an
identical earlier result exists (a dedup hit would leave the article's result as it
was), and the run it makes is current from then on.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import batches, user_settings
from .analyses import article, lens, meta
from .batches import PRIORITY
from .engine import Engine, Submission, TaskType, input_hash
from .ids import new_id
from .records import AnalysisRun, Batch, utcnow
from .store import Store, Tx

KIND = "reanalysis"
#: The task types a re-analysis runs, in the order it runs them for an article.
KINDS = (article.NAME, meta.NAME, lens.NAME)
DEFAULT_KINDS = (article.NAME,)

Key = tuple[str, str, str | None]


def _key(run: AnalysisRun) -> Key:
    return run.article_id, run.task_type, run.input.get("lens_type") if run.task_type == lens.NAME else None


@dataclass(frozen=True)
class Recipe:
    """What makes a result current besides the reader's settings: the task types (with
    their prompt versions) and the model the server runs."""

    task_types: Mapping[str, TaskType]
    model: str


def _current_hash(recipe: Recipe, settings: user_settings.UserSettings, run: AnalysisRun) -> str:
    """The dedup key ``run``'s input would have if submitted now."""
    return input_hash(recipe.task_types[run.task_type], recipe.model, settings.shaped(run.task_type, run.input))


def select(
    recipe: Recipe,
    settings: user_settings.UserSettings,
    scope: str,
    kinds: Sequence[str],
    history: list[AnalysisRun],
    articles: list[str],
) -> list[Key]:
    """The (article, task type, lens) to run again, in library order."""
    last: dict[Key, AnalysisRun] = {}
    last_completed: dict[Key, AnalysisRun] = {}
    for run in history:  # oldest first: the later run wins
        last[_key(run)] = run
        if run.status == "completed":
            last_completed[_key(run)] = run
    chosen: set[Key]
    if scope == "stale":
        chosen = {key for key, run in last_completed.items() if run.input_hash != _current_hash(recipe, settings, run)}
    elif scope == "failed":
        chosen = {key for key, run in last.items() if run.status == "failed"}
    else:
        chosen = {key for key in last_completed if key[1] == lens.NAME}
        chosen |= {(a, kind, None) for a in articles for kind in kinds if kind != lens.NAME}
    order = {article_id: n for n, article_id in enumerate(articles)}
    wanted = [key for key in chosen if key[1] in kinds and key[0] in order]
    return sorted(wanted, key=lambda k: (order[k[0]], KINDS.index(k[1]), k[2] or ""))


async def start(
    store: Store,
    recipe: Recipe,
    user_id: str,
    scope: str,
    kinds: Sequence[str] = DEFAULT_KINDS,
    *,
    wake: Callable[[], None] | None,
) -> Batch:
    """Stage a re-analysis of the user's library (``wake``: the runner's, see
    :func:`insightreader.batches.stage`); the batch as the request answers it
    (``finished`` at once when nothing is to be done)."""
    settings = await user_settings.get(store, user_id)
    history = await store.read.analysis_history(user_id, list(kinds))
    articles = await store.read.analysable_articles(user_id)
    keys = await asyncio.to_thread(select, recipe, settings, scope, kinds, history, articles)
    now = utcnow()
    batch = Batch(
        id=new_id(), user_id=user_id, kind=KIND, format=None,
        status="staging" if keys else "finished", total=len(keys), done=0, failed=0, duplicates=0,
        last_error=None, created_at=now, finished_at=None if keys else now,
        options={"scope": scope, "kinds": list(kinds)},
    )
    items = [
        (n, json.dumps({"article_id": a, "task_type": t} | ({"lens_type": lt} if lt else {})))
        for n, (a, t, lt) in enumerate(keys)
    ]
    return await batches.stage(store, batch, items, wake=wake)


class ReanalysisItems:
    """The items of a re-analysis (a :class:`~insightreader.batches.BatchKind`)."""

    kind = KIND
    progress_event = "batch_progress"
    finished_event = "batch_finished"

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def prepare(self, raw: str) -> dict[str, Any]:
        item: dict[str, Any] = json.loads(raw)
        return item

    def do(self, tx: Tx, batch: Batch, item: dict[str, Any]) -> tuple[str, str | None]:
        found = tx.article_to_analyse(item["article_id"], batch.user_id)
        if found is None:
            return "failed", "the article was deleted, or has no text"
        content_hash, title = found
        payload: dict[str, Any] = {"article_id": item["article_id"], "content_hash": content_hash}
        if item["task_type"] == article.NAME:
            payload["existing_tags"] = tx.tag_names(batch.user_id, article.EXISTING_TAGS)
        if item.get("lens_type"):
            payload["lens_type"] = item["lens_type"]
        payload["batch"] = batch.id
        spec = Submission(payload, title, item["article_id"])
        self._engine.submit_in(tx, batch.user_id, item["task_type"], spec, priority=PRIORITY, batch_id=batch.id)
        return "done", None
