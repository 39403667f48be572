-- Operations the daemon has run: the in-flight registry survives restarts through this table.
CREATE TABLE operations (
    id       TEXT PRIMARY KEY NOT NULL,
    kind     TEXT NOT NULL,
    stage    TEXT NOT NULL,
    started  INTEGER NOT NULL,
    finished INTEGER
);
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
