-- Tags and reading states of articles (issue 15; docs/design.md, "Tags and states").

-- A user's tags. ``key`` is the name NFKC-normalised and case-folded: it makes a tag
-- case-insensitively unique per user, while ``name`` keeps the spelling of first use.
-- ``articles`` counts the articles carrying the tag, kept by the triggers below, so
-- GET /tags reads one row per tag; a tag whose last article lets go of it is deleted.
CREATE TABLE tags (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    key        TEXT NOT NULL,
    articles   INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);
CREATE UNIQUE INDEX tags_user_key ON tags(user_id, key);

-- Which article carries which tag. Keyed by the article's seq, so a list filtered by
-- a tag pages newest first through the primary key alone.
CREATE TABLE article_tags (
    tag_id      INTEGER NOT NULL REFERENCES tags(id) ON DELETE CASCADE,
    article_seq INTEGER NOT NULL REFERENCES articles(seq) ON DELETE CASCADE,
    PRIMARY KEY (tag_id, article_seq)
) WITHOUT ROWID;
CREATE INDEX article_tags_article ON article_tags(article_seq, tag_id);

CREATE TRIGGER tags_count_insert AFTER INSERT ON article_tags BEGIN
    UPDATE tags SET articles = articles + 1 WHERE id = NEW.tag_id;
END;

-- Also fired by the cascade when an article is deleted.
CREATE TRIGGER tags_count_delete AFTER DELETE ON article_tags BEGIN
    UPDATE tags SET articles = articles - 1 WHERE id = OLD.tag_id;
    DELETE FROM tags WHERE id = OLD.tag_id AND articles <= 0;
END;

-- Reading states. Existing articles are neither archived nor favourites.
ALTER TABLE articles ADD COLUMN archived INTEGER NOT NULL DEFAULT 0;
ALTER TABLE articles ADD COLUMN favorite INTEGER NOT NULL DEFAULT 0;
-- GET /articles?archived= pages through this; ?favorite=true through the partial one.
CREATE INDEX articles_user_archived ON articles(user_id, archived, seq);
CREATE INDEX articles_user_favorite ON articles(user_id, seq) WHERE favorite = 1;

-- An article's tags are searched (migration 0007's index, column "tags").
CREATE TRIGGER article_tags_search_insert AFTER INSERT ON article_tags BEGIN
    INSERT OR IGNORE INTO search_dirty (seq) VALUES (NEW.article_seq);
END;
CREATE TRIGGER article_tags_search_delete AFTER DELETE ON article_tags BEGIN
    INSERT OR IGNORE INTO search_dirty (seq) VALUES (OLD.article_seq);
END;
