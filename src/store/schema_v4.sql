-- deskgate schema, version 4: quarantine, bounces, per-sender limits.

-- Mail that could not be handled (no usable sender, not a message, too large, beyond what a
-- person sends, a failure while storing it), kept raw with the reason until an admin
-- releases it (it then takes the normal path) or deletes it (the bytes are dropped, the
-- row stays as a record). The same message arriving again (same dedupe key as in
-- `messages`) is recognised and not quarantined twice. `complete` is 0 when only the headers were kept (oversize mail,
-- whose body was never fetched).
CREATE TABLE quarantine (
    id           INTEGER PRIMARY KEY,
    mailbox      TEXT,
    uidvalidity  INTEGER,
    uid          INTEGER,
    reason       TEXT NOT NULL,
    dedupe_key   TEXT NOT NULL,
    message_id   TEXT,
    from_address TEXT,
    subject      TEXT NOT NULL,
    size         INTEGER NOT NULL,
    complete     INTEGER NOT NULL CHECK (complete IN (0, 1)),
    raw          BLOB NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('held', 'released', 'deleted')),
    created_at   INTEGER NOT NULL,
    resolved_at  INTEGER,
    UNIQUE (mailbox, uidvalidity, uid)
);
CREATE INDEX quarantine_status ON quarantine (status, id);
CREATE INDEX quarantine_dedupe ON quarantine (dedupe_key);

-- A delivery report said this outbound mail did not reach (some of) its recipients.
ALTER TABLE outbox ADD COLUMN bounced_at INTEGER;
ALTER TABLE outbox ADD COLUMN bounce TEXT;

-- Per-sender limits count a sender's last hour of tickets and acknowledgements.
CREATE INDEX tickets_customer_created ON tickets (customer_address, created_at);
CREATE INDEX outbox_recipients ON outbox (recipients, kind, created_at);

-- Decoded attachment file names of a message, one per line (the bytes stay in `raw`).
ALTER TABLE messages ADD COLUMN attachments TEXT NOT NULL DEFAULT '';
