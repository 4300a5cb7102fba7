-- deskgate schema, version 10: several instances over one database (issue 19).
-- Who fetches which mailbox: the owner renews expires_at; another instance takes the mailbox
-- once it has passed. The ingest transaction checks it still owns the mailbox.
CREATE TABLE mailbox_owners (
    mailbox    TEXT PRIMARY KEY,
    instance   TEXT NOT NULL,
    since      INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
-- The instances running on this database, each renewing seen_at.
CREATE TABLE instances (
    id         TEXT PRIMARY KEY,
    host       TEXT NOT NULL,
    pid        INTEGER NOT NULL,
    version    TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    seen_at    INTEGER NOT NULL
);
-- An outbox row being sent: no other instance sends it until claimed_until has passed.
ALTER TABLE outbox ADD COLUMN claimed_by TEXT;
ALTER TABLE outbox ADD COLUMN claimed_until INTEGER;
