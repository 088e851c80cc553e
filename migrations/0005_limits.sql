-- Limits that hold (issue 9): list excerpts, token reservations, storage quotas.

-- Lists show an excerpt, never the text: it is stored at save time so a list reads
-- no content. Rows saved before this migration get the first 300 characters.
ALTER TABLE articles ADD COLUMN excerpt TEXT NOT NULL DEFAULT '';
UPDATE articles SET excerpt = substr(content, 1, 300);

-- The article's estimated size in tokens (for the token reservation of its analyses).
-- Rows saved before this migration get their length in characters: an upper bound,
-- as every token is at least one character.
ALTER TABLE articles ADD COLUMN tokens INTEGER NOT NULL DEFAULT 0;
UPDATE articles SET tokens = length(content);

-- Tokens an unfinished task may still spend (tasks.daily_token_budget): the sum over
-- a user's unfinished tasks is read through tasks_unfinished_by_user.
ALTER TABLE tasks ADD COLUMN reserved_tokens INTEGER NOT NULL DEFAULT 0;

-- Per-user storage counters (library.max_articles_per_user, library.max_bytes_per_user),
-- kept by triggers so a save reads one row instead of summing a user's library.
-- Bytes are the UTF-8 size of title and text.
CREATE TABLE library_usage (
    user_id  TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    articles INTEGER NOT NULL DEFAULT 0,
    bytes    INTEGER NOT NULL DEFAULT 0
);

INSERT INTO library_usage (user_id, articles, bytes)
    SELECT user_id, count(*), sum(length(CAST(title AS BLOB)) + length(CAST(content AS BLOB)))
    FROM articles GROUP BY user_id;

CREATE TRIGGER library_usage_insert AFTER INSERT ON articles BEGIN
    INSERT INTO library_usage (user_id, articles, bytes)
        VALUES (NEW.user_id, 1, length(CAST(NEW.title AS BLOB)) + length(CAST(NEW.content AS BLOB)))
        ON CONFLICT (user_id) DO UPDATE SET
            articles = articles + 1, bytes = bytes + excluded.bytes;
END;

CREATE TRIGGER library_usage_delete AFTER DELETE ON articles BEGIN
    UPDATE library_usage SET
        articles = articles - 1,
        bytes = bytes - length(CAST(OLD.title AS BLOB)) - length(CAST(OLD.content AS BLOB))
        WHERE user_id = OLD.user_id;
END;

CREATE TRIGGER library_usage_update AFTER UPDATE OF title, content ON articles BEGIN
    UPDATE library_usage SET
        bytes = bytes - length(CAST(OLD.title AS BLOB)) - length(CAST(OLD.content AS BLOB))
            + length(CAST(NEW.title AS BLOB)) + length(CAST(NEW.content AS BLOB))
        WHERE user_id = OLD.user_id;
END;
