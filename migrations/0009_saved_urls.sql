-- Articles saved from a URL (POST /articles/save-with-analysis {url}, a page_fetch task).
-- Existing rows were saved with their text: url_key and fetch_status stay NULL and they
-- behave as before; page_meta stays '{}'.

-- The normalised URL (insightreader/urls.py) of an article saved from its URL: saving
-- the same URL again finds it through the unique index, race-free.
ALTER TABLE articles ADD COLUMN url_key TEXT;
-- NULL (saved with its text), 'fetching', 'fetched' or 'failed'.
ALTER TABLE articles ADD COLUMN fetch_status TEXT;
-- JSON: what the page said of itself (author, site_name, published, language).
ALTER TABLE articles ADD COLUMN page_meta TEXT NOT NULL DEFAULT '{}';

CREATE UNIQUE INDEX articles_user_url ON articles(user_id, url_key) WHERE url_key IS NOT NULL;
