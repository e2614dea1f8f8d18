-- Pipeline secrets and variables (GitHub's model), one row per (kind, scope, name). `repo` and
-- `env` are '' for a scope that does not name one. A secret's `value` is sealed (an envelope of the
-- server's key, which never enters the database); a variable's is plain text.
CREATE TABLE pipeline_settings (
    kind TEXT NOT NULL,
    repo TEXT NOT NULL,
    env TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    PRIMARY KEY (kind, repo, env, name)
);
