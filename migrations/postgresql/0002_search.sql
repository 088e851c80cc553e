-- The search index (insightreader/store/postgresql.py, FullText): one row per article.
-- ``document`` holds every indexed field's words as written (the 'simple'
-- configuration: no stemming, so prefixes and phrases match what was typed), weighted
-- title A, tags B, analysis C, text and notes D; ``stems`` the English stems of them all
-- (*cities* finds *city*). The fields are kept as indexed for snippets. Texts are indexed
-- with every CJK character set apart (insightreader.search.index_text), so a word
-- inside a Chinese sentence is found as its characters side by side.
CREATE TABLE search_documents (
    seq      BIGINT PRIMARY KEY,
    user_id  TEXT NOT NULL,
    title    TEXT NOT NULL,
    body     TEXT NOT NULL,
    analysis TEXT NOT NULL,
    tags     TEXT NOT NULL,
    notes    TEXT NOT NULL,
    document tsvector NOT NULL,
    stems    tsvector NOT NULL
);
CREATE INDEX search_documents_user ON search_documents (user_id);
CREATE INDEX search_documents_words ON search_documents USING gin (document);
CREATE INDEX search_documents_stems ON search_documents USING gin (stems);

-- As on SQLite: triggers mark the articles whose indexed fields changed, and the
-- writer reindexes them just before the transaction commits.
CREATE TABLE search_dirty (seq BIGINT PRIMARY KEY);

CREATE FUNCTION search_mark() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'articles' THEN
        INSERT INTO search_dirty (seq)
            VALUES (CASE WHEN TG_OP = 'DELETE' THEN OLD.seq ELSE NEW.seq END) ON CONFLICT DO NOTHING;
    ELSIF TG_TABLE_NAME = 'article_tags' THEN
        INSERT INTO search_dirty (seq)
            VALUES (CASE WHEN TG_OP = 'DELETE' THEN OLD.article_seq ELSE NEW.article_seq END) ON CONFLICT DO NOTHING;
    ELSE
        INSERT INTO search_dirty (seq)
            SELECT seq FROM articles
            WHERE id = CASE WHEN TG_OP = 'DELETE' THEN OLD.article_id ELSE NEW.article_id END
            ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER articles_search_insert AFTER INSERT ON articles FOR EACH ROW EXECUTE FUNCTION search_mark();
CREATE TRIGGER articles_search_update AFTER UPDATE OF title, content, analysis ON articles
    FOR EACH ROW EXECUTE FUNCTION search_mark();
CREATE TRIGGER articles_search_delete AFTER DELETE ON articles FOR EACH ROW EXECUTE FUNCTION search_mark();
CREATE TRIGGER highlights_search_insert AFTER INSERT ON highlights FOR EACH ROW EXECUTE FUNCTION search_mark();
CREATE TRIGGER highlights_search_update AFTER UPDATE OF quote, note ON highlights
    FOR EACH ROW EXECUTE FUNCTION search_mark();
CREATE TRIGGER highlights_search_delete AFTER DELETE ON highlights FOR EACH ROW EXECUTE FUNCTION search_mark();
CREATE TRIGGER article_tags_search_insert AFTER INSERT ON article_tags FOR EACH ROW EXECUTE FUNCTION search_mark();
CREATE TRIGGER article_tags_search_delete AFTER DELETE ON article_tags FOR EACH ROW EXECUTE FUNCTION search_mark();
