-- Full-text search over each user's library (insightreader/search.py): one row per
-- article, rowid = articles.seq. The text is indexed as search.index_text() writes it
-- (CJK characters set apart), so the store's writer fills both tables, not SQL.

-- Words as written: phrases, prefixes (what a reader is still typing), Chinese, and
-- the text snippets are cut from.
CREATE VIRTUAL TABLE search USING fts5(
    user_id UNINDEXED,
    title,
    body,
    analysis,
    tags,
    notes,
    tokenize = 'unicode61 remove_diacritics 2'
);

-- The same text by word stems (cities = city, running = run). Only which articles hold
-- a stem is kept, not the text nor positions: search holds those.
CREATE VIRTUAL TABLE search_stems USING fts5(
    text,
    content = '',
    detail = none,
    tokenize = 'porter unicode61 remove_diacritics 2'
);

-- Articles whose indexed fields changed, or that were deleted, in the open
-- transaction: the writer reindexes them just before it commits, and empties this.
CREATE TABLE search_dirty (seq INTEGER PRIMARY KEY);

-- Articles saved before this migration, indexed by the server after it starts.
CREATE TABLE search_backlog (seq INTEGER PRIMARY KEY);
INSERT INTO search_backlog (seq) SELECT seq FROM articles;

CREATE TRIGGER articles_search_insert AFTER INSERT ON articles BEGIN
    INSERT OR IGNORE INTO search_dirty (seq) VALUES (new.seq);
END;
CREATE TRIGGER articles_search_update AFTER UPDATE OF title, content, analysis ON articles BEGIN
    INSERT OR IGNORE INTO search_dirty (seq) VALUES (new.seq);
END;
CREATE TRIGGER articles_search_delete AFTER DELETE ON articles BEGIN
    INSERT OR IGNORE INTO search_dirty (seq) VALUES (old.seq);
    DELETE FROM search_backlog WHERE seq = old.seq;
END;
