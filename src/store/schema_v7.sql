-- deskgate schema, version 7: the deadline scheduler and what follows an answer (issue 5).
-- The scheduler sleeps until the smallest next_step_at of deadlines and tickets (both indexed,
-- partial) and records every step it takes in `steps`, in the transaction that queues its mail.

-- When the assigned agent or the team is warned (NULL: no warning).
ALTER TABLE deadlines ADD COLUMN warn_at INTEGER;
-- Set while the ticket waits on the customer and the policy pauses the clock.
ALTER TABLE deadlines ADD COLUMN paused_at INTEGER;
-- The ticket was resolved or closed without an answer to this message.
ALTER TABLE deadlines ADD COLUMN cancelled_at INTEGER;
-- When the scheduler must look at this deadline next; NULL once nothing is left to do.
ALTER TABLE deadlines ADD COLUMN next_step_at INTEGER;
UPDATE deadlines SET next_step_at = due_at WHERE met_at IS NULL;
CREATE INDEX deadlines_next_step ON deadlines (next_step_at) WHERE next_step_at IS NOT NULL;
CREATE INDEX deadlines_open ON deadlines (ticket_id) WHERE met_at IS NULL AND cancelled_at IS NULL;

-- When the ticket's status last changed: pending reminders, auto-resolve, survey and
-- auto-close count from it.
ALTER TABLE tickets ADD COLUMN status_at INTEGER;
UPDATE tickets SET status_at = updated_at;
ALTER TABLE tickets ADD COLUMN next_step_at INTEGER;
CREATE INDEX tickets_next_step ON tickets (next_step_at) WHERE next_step_at IS NOT NULL;
ALTER TABLE tickets ADD COLUMN survey_sent_at INTEGER;
ALTER TABLE tickets ADD COLUMN survey_score INTEGER;
ALTER TABLE tickets ADD COLUMN survey_answered_at INTEGER;

-- Every step the scheduler took, once: warning, breach, escalation-N and update for a
-- deadline; reminder-N, resolve, survey and close for a ticket (episode: the status_at of the
-- pending or resolved spell it belongs to; 0 for steps that happen once per ticket).
CREATE TABLE steps (
    id          INTEGER PRIMARY KEY,
    ticket_id   INTEGER NOT NULL REFERENCES tickets (id),
    deadline_id INTEGER REFERENCES deadlines (id),
    name        TEXT NOT NULL,
    episode     INTEGER NOT NULL DEFAULT 0,
    at          INTEGER NOT NULL,
    -- Who was told (addresses, space-separated); empty when nobody was.
    recipients  TEXT NOT NULL DEFAULT '',
    detail      TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX steps_once ON steps (ticket_id, coalesce(deadline_id, 0), name, episode);
