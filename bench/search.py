"""The search scenario (issue 11): search over 10,000 saved articles (about 50 MB of
text) answers in under 50 ms median, and indexing slows saves by at most 20 %.

One run: a server saves ``SAVES`` articles through the API with the search index as
shipped, and again on a copy of the same database whose indexing triggers are dropped
(the same code with nothing to index): ``save_slowdown`` is the ratio of their median
save latencies. Then ``ARTICLES`` generated articles are written into the database by
SQL while no server runs (the server indexes them at start, ``backlog_index_s``), and
each query of ``QUERIES`` is asked ``REPEAT`` times, one at a time: the median and p99
of all answers, and each query's median.
"""

from __future__ import annotations

import random
import shutil
import sqlite3
import statistics
import time
import uuid
from pathlib import Path

import httpx

from .loadgen import percentile
from .procs import free_port, insightreader_config, login, start_server, start_upstream, stop_all

Metrics = dict[str, float]

ARTICLES = 10_000
SAVES = 200
REPEAT = 20
#: Words of every frequency, a prefix being typed, a stem, a phrase, Chinese, no hit.
QUERIES = ("city", "harbour", "temperature shade", "analy", "cities", '"street trees"', "城市", "自行车", "zyzzyva")
_WORDS = (
    "the of and to in is that for it as was with be by on not he this are or his from at which but have an they"
    " you were her she there been one all we their has would when if so no will more can out its said what up"
    " city street trees shade temperature harbour river bridge market school garden council budget transport"
    " housing climate summer winter energy water analysis research report policy history future library reader"
).split()
_CHINESE = ("城市规划决定了街道的宽度。", "我每天骑自行车上班。", "夏天的树荫让空气凉快。", "图书馆里的读者很安静。")


def article_text(rng: random.Random, chars: int) -> str:
    """About ``chars`` characters of Zipf-like English with a little Chinese."""
    weights = [1 / (rank + 1) for rank in range(len(_WORDS))]
    parts: list[str] = []
    size = 0
    while size < chars:
        sentence = " ".join(rng.choices(_WORDS, weights, k=rng.randint(8, 20))).capitalize() + "."
        if rng.random() < 0.05:
            sentence += rng.choice(_CHINESE)
        parts.append(sentence)
        size += len(sentence) + 1
    return " ".join(parts)


def seed_articles(database: Path, user_id: str, count: int, chars: int) -> None:
    rng = random.Random(11)
    now = "2026-12-01T00:00:00.000Z"
    db = sqlite3.connect(database)
    try:
        with db:
            db.executemany(
                "INSERT INTO articles (id, user_id, title, content, content_hash, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    (str(uuid.uuid4()), user_id, article_text(rng, 60), article_text(rng, chars), f"sha256:seed-{n}", now, now)
                    for n in range(count)
                ),
            )
    finally:
        db.close()


def drop_index_triggers(database: Path) -> None:
    db = sqlite3.connect(database)
    try:
        with db:
            for name in ("articles_search_insert", "articles_search_update", "articles_search_delete"):
                db.execute(f"DROP TRIGGER {name}")
    finally:
        db.close()


def save_latencies(url: str, token: str, count: int, chars: int) -> list[float]:
    rng = random.Random(7)
    latencies = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
        for n in range(count):
            body = {"title": f"Saved {n}", "content": article_text(rng, chars)}
            started = time.perf_counter()
            http.post("/api/v1/articles/save-with-analysis", json=body).raise_for_status()
            latencies.append(time.perf_counter() - started)
    return latencies


def wait_for_backlog(database: Path, timeout: float) -> float:
    started = time.monotonic()
    db = sqlite3.connect(database)
    try:
        while time.monotonic() - started < timeout:
            if db.execute("SELECT count(*) FROM search_backlog").fetchone()[0] == 0:
                return time.monotonic() - started
            time.sleep(0.05)
    finally:
        db.close()
    raise RuntimeError(f"the search backlog was not indexed within {timeout}s")


def user_id_of(database: Path, username: str) -> str:
    db = sqlite3.connect(database)
    try:
        return str(db.execute("SELECT id FROM users WHERE username = ?", (username,)).fetchone()[0])
    finally:
        db.close()


def search(target: str, quick: bool, workdir: Path) -> Metrics:
    articles, saves, repeat, chars = (300, 20, 3, 2000) if quick else (ARTICLES, SAVES, REPEAT, 5000)
    upstream = start_upstream(workdir, 0.05)
    server = None
    database = workdir / "bench.db"
    try:
        config = insightreader_config(workdir, free_port(), upstream)
        server = start_server(target, workdir, upstream, config=config)
        token = login(server.url)
        server.proc.stop()
        plain = workdir / "plain"
        plain.mkdir()
        shutil.copy(database, plain / "bench.db")
        drop_index_triggers(plain / "bench.db")
        server = start_server(target, workdir, upstream, config=config)
        indexed = save_latencies(server.url, token, saves, chars)
        server.proc.stop()
        plain_config = insightreader_config(plain, free_port(), upstream, database=plain / "bench.db")
        server = start_server(target, plain, upstream, config=plain_config)
        unindexed = save_latencies(server.url, login(server.url), saves, chars)
        server.proc.stop()

        seed_articles(database, user_id_of(database, "bench"), articles, chars)
        server = start_server(target, workdir, upstream, config=config)
        backlog_s = wait_for_backlog(database, 600)
        answers: list[float] = []
        per_query: dict[str, float] = {}
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
            for query in QUERIES:
                times = []
                for _ in range(repeat):
                    started = time.perf_counter()
                    http.get("/api/v1/search", params={"q": query}).raise_for_status()
                    times.append(time.perf_counter() - started)
                per_query[query] = statistics.median(times) * 1000
                answers += times
        return {
            "search_p50_ms": round(statistics.median(answers) * 1000, 2),
            "search_p99_ms": round((percentile(answers, 99) or 0.0) * 1000, 2),
            **{f"query_ms:{q}": round(ms, 2) for q, ms in per_query.items()},
            "save_p50_ms": round(statistics.median(indexed) * 1000, 2),
            "save_unindexed_p50_ms": round(statistics.median(unindexed) * 1000, 2),
            "save_slowdown": round(statistics.median(indexed) / statistics.median(unindexed), 3),
            "backlog_index_s": round(backlog_s, 2),
            "articles": articles,
        }
    finally:
        stop_all(server, upstream)
