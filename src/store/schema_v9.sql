-- deskgate schema, version 9: per-recipient delivery (issue 17).
-- Recipients the SMTP server accepted so far (space-separated; a retry sends only to the
-- others) and those it refused for good at RCPT, MAIL or DATA, one `address: reply` a line.
ALTER TABLE outbox ADD COLUMN delivered TEXT NOT NULL DEFAULT '';
ALTER TABLE outbox ADD COLUMN refused TEXT NOT NULL DEFAULT '';
