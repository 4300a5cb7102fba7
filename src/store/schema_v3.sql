-- deskgate schema, version 3: each ticket's language, and the contacts we remember.

-- The language the ticket's customer is written to in, and why (header, detected, contact,
-- default, agent). NULL for tickets from before version 3 and for tickets without a customer.
ALTER TABLE tickets ADD COLUMN language TEXT;
ALTER TABLE tickets ADD COLUMN language_source TEXT;

-- Every customer who has written to us, by lower-case address. `language` is the last one
-- with evidence behind it (a Content-Language header, detection, an agent's #lang), never a
-- mere fallback.
CREATE TABLE contacts (
    address    TEXT PRIMARY KEY,
    name       TEXT,
    language   TEXT,
    first_seen INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    n_tickets  INTEGER NOT NULL DEFAULT 0,
    n_messages INTEGER NOT NULL DEFAULT 0
);

INSERT INTO contacts (address, name, language, first_seen, last_seen, n_tickets, n_messages)
SELECT t.customer_address, max(t.customer_name), NULL, min(t.created_at), max(t.updated_at),
       count(*),
       (SELECT count(*) FROM messages m
        WHERE m.direction = 'in' AND m.from_address = t.customer_address)
FROM tickets t
WHERE t.customer_address IS NOT NULL
GROUP BY t.customer_address;
