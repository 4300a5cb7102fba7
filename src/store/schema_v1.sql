-- deskgate schema, version 1. Timestamps are INTEGER milliseconds since the Unix epoch, UTC.

-- Where each mailbox's ingest stands: no UID is ever stored without its UIDVALIDITY.
CREATE TABLE mailbox_state (
    mailbox     TEXT PRIMARY KEY,
    uidvalidity INTEGER NOT NULL,
    last_uid    INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE tickets (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    mailbox          TEXT NOT NULL,
    subject          TEXT NOT NULL,
    customer_address TEXT,
    customer_name    TEXT,
    status           TEXT NOT NULL CHECK (status IN ('open', 'pending', 'resolved', 'closed')),
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX tickets_status ON tickets (status, id);

-- Everyone who took part in a ticket; a subject tag is honoured only for them.
CREATE TABLE participants (
    ticket_id INTEGER NOT NULL REFERENCES tickets (id),
    address   TEXT NOT NULL,
    name      TEXT,
    role      TEXT NOT NULL,
    PRIMARY KEY (ticket_id, address)
);

-- Every message in and out, raw bytes kept so parsed fields can be re-derived.
-- dedupe_key is "mid:<Message-ID>", or "sha256:<hex of raw>" for mail without one.
CREATE TABLE messages (
    id           INTEGER PRIMARY KEY,
    ticket_id    INTEGER REFERENCES tickets (id),
    direction    TEXT NOT NULL CHECK (direction IN ('in', 'out')),
    dedupe_key   TEXT NOT NULL UNIQUE,
    message_id   TEXT,
    mailbox      TEXT,
    uidvalidity  INTEGER,
    uid          INTEGER,
    from_address TEXT,
    from_name    TEXT,
    subject      TEXT NOT NULL,
    sent_date    INTEGER,
    received_at  INTEGER NOT NULL,
    in_reply_to  TEXT NOT NULL,
    refs         TEXT NOT NULL,
    class        TEXT NOT NULL,
    defects      TEXT NOT NULL,
    body_text    TEXT NOT NULL,
    raw_sha256   TEXT NOT NULL,
    raw          BLOB NOT NULL,
    UNIQUE (mailbox, uidvalidity, uid)
);
CREATE INDEX messages_message_id ON messages (message_id);
CREATE INDEX messages_ticket ON messages (ticket_id, id);

-- An answer owed to the customer; the scheduler sleeps until the earliest unmet one.
CREATE TABLE deadlines (
    id             INTEGER PRIMARY KEY,
    ticket_id      INTEGER NOT NULL REFERENCES tickets (id),
    message_row_id INTEGER NOT NULL REFERENCES messages (id),
    kind           TEXT NOT NULL,
    due_at         INTEGER NOT NULL,
    met_at         INTEGER
);
CREATE INDEX deadlines_due ON deadlines (due_at, id) WHERE met_at IS NULL;

-- Outbound mail, rendered and committed before any SMTP connection is made.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    ticket_id       INTEGER REFERENCES tickets (id),
    message_row_id  INTEGER NOT NULL UNIQUE REFERENCES messages (id),
    kind            TEXT NOT NULL,
    envelope_from   TEXT NOT NULL,
    recipients      TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('queued', 'sent', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    sent_at         INTEGER
);
CREATE INDEX outbox_due ON outbox (next_attempt_at, id) WHERE status = 'queued';

-- Append-only history; KPIs are computed from it.
CREATE TABLE events (
    id             INTEGER PRIMARY KEY,
    at             INTEGER NOT NULL,
    kind           TEXT NOT NULL,
    mailbox        TEXT,
    ticket_id      INTEGER,
    message_row_id INTEGER,
    outbox_id      INTEGER,
    detail         TEXT NOT NULL DEFAULT ''
);
CREATE INDEX events_ticket ON events (ticket_id, id);
CREATE INDEX events_kind_at ON events (kind, at);
