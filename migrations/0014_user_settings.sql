-- A reader's settings (GET/PATCH /settings, insightreader/user_settings.py): output
-- language, auto_analyze, instructions per task type, the page's language. One JSON
-- object of the values set; a user without a row has every default.
CREATE TABLE user_settings (
    user_id    TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    settings   TEXT NOT NULL,
    updated_at TEXT NOT NULL
) WITHOUT ROWID;
