-- deskgate schema, version 2: agents answer from their mail client.

-- Who owns a ticket (an agent's primary address), how urgent it is, and when a customer first
-- got an agent's answer.
ALTER TABLE tickets ADD COLUMN assigned_agent TEXT;
ALTER TABLE tickets ADD COLUMN priority TEXT NOT NULL DEFAULT 'normal';
ALTER TABLE tickets ADD COLUMN first_response_at INTEGER;
CREATE INDEX tickets_customer ON tickets (customer_address, id);

-- internal = 1: only agents see it (notifications, notes, errors). Its Message-ID is never a
-- threading key for anyone else's mail.
ALTER TABLE messages ADD COLUMN internal INTEGER NOT NULL DEFAULT 0;
-- The agent who wrote an inbound message, or to whom an internal message went.
ALTER TABLE messages ADD COLUMN agent TEXT;
