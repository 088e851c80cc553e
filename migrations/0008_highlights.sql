-- Highlights and their notes (insightreader/highlights.py): a quote of an article's
-- text with a little context before and after, so it is found again in the text.
CREATE TABLE highlights (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    article_id TEXT NOT NULL REFERENCES articles(id) ON DELETE CASCADE,
    quote      TEXT NOT NULL,
    prefix     TEXT NOT NULL DEFAULT '',
    suffix     TEXT NOT NULL DEFAULT '',
    -- Where the quote starts in the article's text (characters), as found when saved.
    position   INTEGER NOT NULL,
    note       TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX highlights_article ON highlights(article_id, position);

-- Quotes and notes are searched as the article's "notes" (migration 0007's index).
CREATE TRIGGER highlights_search_insert AFTER INSERT ON highlights BEGIN
    INSERT OR IGNORE INTO search_dirty (seq) SELECT seq FROM articles WHERE id = new.article_id;
END;
CREATE TRIGGER highlights_search_update AFTER UPDATE OF quote, note ON highlights BEGIN
    INSERT OR IGNORE INTO search_dirty (seq) SELECT seq FROM articles WHERE id = new.article_id;
END;
CREATE TRIGGER highlights_search_delete AFTER DELETE ON highlights BEGIN
    INSERT OR IGNORE INTO search_dirty (seq) SELECT seq FROM articles WHERE id = old.article_id;
END;
