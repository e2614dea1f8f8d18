-- The global resourceVersion counter: one row; its row lock serializes writers, so writes become
-- visible in resourceVersion order.
CREATE TABLE counter (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    rv BIGINT NOT NULL
);
INSERT INTO counter (id, rv) VALUES (1, 0);

-- Current objects; `data` is the full object JSON as served (TEXT, not JSONB, to keep key order).
CREATE TABLE objects (
    grp TEXT NOT NULL,
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    rv BIGINT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (grp, kind, namespace, name)
);

-- One row per resourceVersion, for watch; compacted to the newest N.
CREATE TABLE changes (
    rv BIGINT PRIMARY KEY,
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
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    time TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    grp TEXT NOT NULL,
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    rv BIGINT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX audit_by_key ON audit (grp, kind, namespace, name);
