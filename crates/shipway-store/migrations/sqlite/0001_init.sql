-- The global resourceVersion counter: one row, bumped inside every write transaction.
CREATE TABLE counter (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    rv INTEGER NOT NULL
);
INSERT INTO counter (id, rv) VALUES (1, 0);

-- Current objects; `data` is the full object JSON as served (key order preserved).
CREATE TABLE objects (
    grp TEXT NOT NULL,
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    rv INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (grp, kind, namespace, name)
) WITHOUT ROWID;

-- One row per resourceVersion, for watch; compacted to the newest N.
CREATE TABLE changes (
    rv INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    grp TEXT NOT NULL,
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    object TEXT NOT NULL,
    prev_labels TEXT
);

-- Who did what, for humans; never compacted.
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    grp TEXT NOT NULL,
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    rv INTEGER NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX audit_by_key ON audit (grp, kind, namespace, name);
