-- Log lines of runs (a WorkflowRun's steps), one row per line, kept until the owner is deleted.
-- `seq` orders every line of the store; a reader follows one owner from the last seq it saw.
CREATE TABLE logs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    grp TEXT NOT NULL,
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    time TEXT NOT NULL,
    job TEXT NOT NULL,
    step INTEGER,
    stream TEXT NOT NULL,
    line TEXT NOT NULL
);
CREATE INDEX logs_by_owner ON logs (grp, kind, namespace, name, seq);
