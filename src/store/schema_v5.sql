-- deskgate schema, version 5: a safe first start and OAuth 2.0 grants (issue 9).
-- Messages with a UID below backlog_uid_next (in uidvalidity) were already in the folder when
-- deskgate first started on it (or when the server reset UIDVALIDITY): they are imported per
-- the mailbox's initial_import, and quietly unless recent (policy.acknowledge_backlog_within).
-- NULL for mailboxes whose first start predates this version.
ALTER TABLE mailbox_state ADD COLUMN backlog_uid_next INTEGER;
ALTER TABLE mailbox_state ADD COLUMN backlog_started_at INTEGER;
-- 'first-start', or 'reread' after a UIDVALIDITY reset (backlog_started_at is then the last
-- sync before it: mail that arrived later is new to us).
ALTER TABLE mailbox_state ADD COLUMN backlog_kind TEXT;
-- How many backlog messages initial_import left in the folder, untouched.
ALTER TABLE mailbox_state ADD COLUMN backlog_skipped INTEGER NOT NULL DEFAULT 0;
ALTER TABLE mailbox_state ADD COLUMN backlog_done_at INTEGER;

-- OAuth 2.0 refresh tokens, one per login ("mailbox NAME" or "smtp"): written by
-- `deskgate oauth login`, replaced when the provider rotates them. Secrets: never logged; the
-- database lives in the daemon's private state directory.
CREATE TABLE oauth_grants (
    account       TEXT PRIMARY KEY,
    refresh_token TEXT NOT NULL,
    updated_at    INTEGER NOT NULL
);
