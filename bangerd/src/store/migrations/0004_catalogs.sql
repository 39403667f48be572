-- Image catalogs: the newest issue time (Unix seconds) of a signed index verified from each
-- catalog URL, so that an older index replayed from the same URL is refused.
CREATE TABLE catalog_seen (
    url TEXT PRIMARY KEY NOT NULL,
    issued_at INTEGER NOT NULL
);
