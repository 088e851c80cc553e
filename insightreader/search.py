"""Full-text search over a user's library, in English and Chinese alike.

The index is two SQLite FTS5 tables (migration 0007), one row per article: ``search``
holds title, text, analysis (summary, key points, topics), tags and notes as written
(phrases, prefixes, snippets, the BM25 rank with the title weighing most), and
``search_stems`` only which articles hold which word stems (Porter: *cities* finds
*city*). One table cannot do both: FTS5 stems a prefix too, so with stemming a reader
typing ``analys`` or ``runn`` found nothing. A word typed matches as the start of a
word in ``search`` or as a stem in ``search_stems``.

FTS5's ``unicode61`` tokenizer splits English into words but keeps a run of Chinese
characters as one token, so a word inside a sentence could never be found. Before indexing, every CJK character is therefore
set apart with an invisible separator (U+2063, which the tokenizer treats as a word
break and which is removed again from snippets), and a query's run of CJK characters
becomes a phrase of single characters: 城市 matches those two characters side by
side, wherever they stand, for words of one, two or four characters alike.

Keeping it in step: triggers mark an article whose indexed fields change (its row in
``search_dirty``), and the store's writer reindexes the marked articles just before
each commit (:func:`reindex_dirty`), so a search sees exactly what was committed.
Migration 0007 queues every existing article in ``search_backlog``, which the server
indexes at start, a few hundred per write.
"""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass
from typing import Any

from .errors import ValidationFailed

#: The invisible separator set around CJK characters in the index.
SEPARATOR = "\u2063"
#: Han, kana, hangul, CJK punctuation and full-width forms: written without spaces.
_CJK = (
    "\u2e80-\u2fdf\u3000-\u303f\u3040-\u30ff\u3100-\u312f\u3130-\u318f\u3190-\u31ff"
    "\u3200-\u32ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef"
    "\U00020000-\U0002fa1f"
)
_CJK_CHAR = re.compile(f"([{_CJK}])")
_SET_APART = rf"{SEPARATOR}\1{SEPARATOR}"
#: Characters set apart per regular-expression call.
SLICE = 32_768
#: A query: "a phrase in quotes", or a run of CJK characters, or a word.
_QUERY_PART = re.compile(rf'"([^"]*)"|([{_CJK}]+)|([^\s"{_CJK}]+)')
#: Letters and digits: what FTS5's unicode61 takes as one token.
_WORD = re.compile(r"[^\W_]+")
#: Weights of the columns for BM25: user_id (not indexed), title, text, analysis, tags, notes.
_WEIGHTS = (0.0, 10.0, 1.0, 3.0, 5.0, 2.0)
MAX_QUERY_CHARS = 500
#: Words a snippet shows around a match.
SNIPPET_TOKENS = 24
#: Characters of text shown for an article found only by a word's stem.
FALLBACK_SNIPPET_CHARS = 200


def index_text(text: str) -> str:
    """``text`` as the index stores it: every CJK character set apart. Done in slices:
    one regular-expression call holds the GIL throughout, and 2 MiB of Chinese in one
    call would hold the event loop's thread back for tens of milliseconds."""
    return "".join(_CJK_CHAR.sub(_SET_APART, text[i : i + SLICE]) for i in range(0, len(text), SLICE))


def shown_text(indexed: str) -> str:
    return indexed.replace(SEPARATOR, "")


def _phrase(text: str) -> str | None:
    """``text`` as one FTS5 phrase (FTS5 splits it with the index's tokenizer), or None
    when it holds no word at all."""
    if not _WORD.search(text):
        return None
    return '"' + index_text(text).replace('"', '""') + '"'


def _lexeme(token: str) -> str:
    return "'" + token.replace("\\", "\\\\").replace("'", "''") + "'"


@dataclass(frozen=True)
class Term:
    """One part of what a reader typed: a quoted phrase, a run of CJK characters, or a
    word (``prefix``: it matches as the start of a word)."""

    text: str
    prefix: bool
    #: A word of one token: also matched by its stem.
    stem: str | None

    @property
    def fts5(self) -> str:
        phrase = _phrase(self.text)
        assert phrase is not None
        return phrase + "*" if self.prefix else phrase

    @property
    def tsquery(self) -> str:
        """The term for PostgreSQL's ``to_tsquery('simple', …)``: its tokens side by side."""
        tokens = _WORD.findall(index_text(self.text))
        return " <-> ".join(_lexeme(t) for t in tokens) + (":*" if self.prefix else "")


@dataclass(frozen=True)
class Query:
    """What a reader typed: every term must match, in the text as written or, for a
    single word, by its stem."""

    terms: tuple[Term, ...]

    @property
    def any_part(self) -> str:
        """The FTS5 expression ranking and snippets come from."""
        return " OR ".join(term.fts5 for term in self.terms)

    def matched_sql(self) -> tuple[str, list[str]]:
        """A compound SELECT of the rowids matching every part (FTS5), and its parameters."""
        selects, params = [], []
        for term in self.terms:
            sql = "SELECT rowid FROM search WHERE search MATCH ?"
            params.append(term.fts5)
            if term.stem is not None:
                sql += " UNION SELECT rowid FROM search_stems WHERE search_stems MATCH ?"
                params.append(f'"{term.stem}"')
            selects.append(f"SELECT rowid FROM ({sql})")
        return " INTERSECT ".join(selects), params


def parse_query(query: str) -> Query | None:
    """A quoted phrase matches as a phrase, a CJK run as its characters side by side,
    a word as the start of a word or by its stem (``analy`` finds *analysis*,
    ``cities`` finds *city*). Nothing the reader types is query syntax, so no query is
    an error. None when it holds no letter or digit: that finds nothing."""
    if len(query) > MAX_QUERY_CHARS:
        raise ValidationFailed(f"q: at most {MAX_QUERY_CHARS} characters")
    terms: list[Term] = []
    # SQLite ends a string at a NUL: FTS5 would see an unterminated phrase.
    for quoted, cjk, word in _QUERY_PART.findall(query.replace("\x00", " ")):
        text = quoted or cjk or word
        if not _WORD.search(text):
            continue
        tokens = _WORD.findall(word)
        # One token: also by its stem (search_stems keeps no positions, so no phrases).
        terms.append(Term(text, bool(word), tokens[0] if len(tokens) == 1 else None))
    return Query(tuple(terms)) if terms else None


# -- the index (on the writer's thread, inside the write transaction) -----------------


def _analysis_text(raw: str | None) -> str:
    if not raw:
        return ""
    try:
        analysis = json.loads(raw)
    except ValueError:
        return ""
    if not isinstance(analysis, dict):
        return ""
    parts = [analysis.get("summary"), *(analysis.get("key_points") or ()), *(analysis.get("topics") or ())]
    return "\n".join(p for p in parts if isinstance(p, str))


def document(row: sqlite3.Row | tuple[Any, ...]) -> tuple[Any, ...]:
    """(seq, user_id, title, text, analysis, tags, notes) of an article as indexed, from
    its (seq, user_id, title, content, analysis JSON, notes, tag names)."""
    seq, user_id, title, content, analysis, notes, tags = row[:7]
    return (
        seq, user_id, index_text(title), index_text(content), index_text(_analysis_text(analysis)),
        index_text(tags or ""), index_text(notes or ""),
    )


#: The one text of an article in search_stems, from its row in search (deleting a row
#: of a contentless table takes the very values it was indexed with).
_STEMS_TEXT = "title || ' ' || body || ' ' || analysis || ' ' || tags || ' ' || notes"


def reindex(conn: sqlite3.Connection, seqs: list[int]) -> None:
    """Replace the index rows of these articles with what they hold now (none for an
    article that was deleted)."""
    if not seqs:
        return
    marks = ",".join("?" * len(seqs))
    conn.execute(
        f"INSERT INTO search_stems (search_stems, rowid, text)"
        f" SELECT 'delete', rowid, {_STEMS_TEXT} FROM search WHERE rowid IN ({marks})",
        seqs,
    )
    conn.execute(f"DELETE FROM search WHERE rowid IN ({marks})", seqs)
    rows = conn.execute(
        "SELECT seq, user_id, title, content, analysis,"
        " (SELECT group_concat(quote || char(10) || note, char(10)) FROM highlights h WHERE h.article_id = articles.id),"
        " (SELECT group_concat(t.name, char(10)) FROM article_tags at JOIN tags t ON t.id = at.tag_id"
        " WHERE at.article_seq = articles.seq)"
        f" FROM articles WHERE seq IN ({marks})",
        seqs,
    ).fetchall()
    conn.executemany(
        "INSERT INTO search (rowid, user_id, title, body, analysis, tags, notes) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [document(row) for row in rows],
    )
    conn.execute(
        f"INSERT INTO search_stems (rowid, text) SELECT rowid, {_STEMS_TEXT} FROM search WHERE rowid IN ({marks})",
        seqs,
    )


def reindex_dirty(conn: sqlite3.Connection) -> None:
    """Reindex what this transaction changed (called just before its commit)."""
    seqs = [row[0] for row in conn.execute("SELECT seq FROM search_dirty")]
    if seqs:
        reindex(conn, seqs)
        conn.execute("DELETE FROM search_dirty")


#: At start: marks left by writes that did not go through the server's writer (a
#: script, the benchmark's seeding) join the backlog instead of weighing on the first
#: write's transaction.
DEFER_DIRTY = (
    "INSERT OR IGNORE INTO search_backlog (seq) SELECT seq FROM search_dirty",
    "DELETE FROM search_dirty",
)


def index_backlog(conn: sqlite3.Connection, limit: int) -> int:
    """Index up to ``limit`` articles a migration queued; how many are left."""
    seqs = [row[0] for row in conn.execute("SELECT seq FROM search_backlog ORDER BY seq LIMIT ?", (limit,))]
    if seqs:
        reindex(conn, seqs)
        conn.execute(f"DELETE FROM search_backlog WHERE seq IN ({','.join('?' * len(seqs))})", seqs)
    row = conn.execute("SELECT count(*) FROM search_backlog").fetchone()
    return int(row[0])


# -- results ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Hit:
    article_id: str
    title: str
    snippet: str
    score: float

    def public(self) -> dict[str, Any]:
        return {"article_id": self.article_id, "title": self.title, "snippet": self.snippet, "score": self.score}


def page_sql(query: Query, user_id: str, limit: int, offset: int) -> tuple[str, list[Any]]:
    """The statement for the rowids and ranks of one page of ``query``'s hits among the
    user's articles, and its parameters. It reads no text: a common word matches
    thousands of articles, and only a page of them is shown. Both sides are
    materialised and met through ``IN`` (an index SQLite builds once): a join of the
    two took seconds over 10,000 articles, and so did any constraint on ``rowid`` next to
    a ``MATCH`` (FTS5 then looks each rowid up alone). An article found only by a stem
    has no rank in ``search``: it comes after the ranked ones."""
    matched, params = query.matched_sql()
    sql = (
        f"WITH found AS MATERIALIZED ({matched}),"
        " matched AS MATERIALIZED (SELECT rowid FROM found"
        " WHERE rowid IN (SELECT seq FROM articles WHERE user_id = ?)),"
        f" ranked AS MATERIALIZED (SELECT rowid, bm25(search, {', '.join(str(w) for w in _WEIGHTS)}) AS rank"
        " FROM search WHERE search MATCH ?)"
        " SELECT rowid, rank FROM (SELECT rowid, rank FROM ranked WHERE rowid IN (SELECT rowid FROM matched)"
        " UNION ALL SELECT rowid, NULL AS rank FROM matched WHERE rowid NOT IN (SELECT rowid FROM ranked))"
        " ORDER BY rank IS NULL, rank, rowid DESC LIMIT ? OFFSET ?"
    )
    return sql, [*params, user_id, query.any_part, limit, offset]


def shown_sql(query: Query, seqs: list[int]) -> tuple[str, list[Any]]:
    """Seq, id, title, snippet (or the start of the text) of these articles, and the
    statement's parameters."""
    marks = ",".join("?" * len(seqs))
    sql = (
        "SELECT a.seq, a.id, a.title, coalesce(s.snippet, substr(a.content, 1, ?)) FROM articles a"
        " LEFT JOIN (SELECT rowid, snippet(search, -1, '', '', '…', ?) AS snippet FROM search"
        f" WHERE search MATCH ? AND rowid IN ({marks})) s ON s.rowid = a.seq"
        f" WHERE a.seq IN ({marks})"
    )
    return sql, [FALLBACK_SNIPPET_CHARS, SNIPPET_TOKENS, query.any_part, *seqs, *seqs]


def hits(page: list[tuple[int, float | None]], shown: dict[int, tuple[str, str, str]]) -> list[Hit]:
    """The page's hits in rank order (``shown``: rowid -> id, title, snippet)."""
    found = []
    for rowid, rank in page:
        if rowid not in shown:  # deleted between the two reads
            continue
        article_id, title, snippet = shown[rowid]
        # Ranks are negative, better matches lower (FTS5's BM25; PostgreSQL's ts_rank
        # negated): shown as a positive score.
        score = 0.0 if rank is None else float(f"{-float(rank):.6g}")
        found.append(Hit(article_id, title, " ".join(shown_text(snippet).split()), score))
    return found
