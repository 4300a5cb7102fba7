-- deskgate schema, version 8: several addresses routed to one mailbox (issue 9).
-- The [[mailbox.address]] the ticket's customer wrote to (lower case); NULL: the support
-- address. Acknowledgements, answers and follow-ups go out from it, in its templates, and its
-- team hears of the ticket.
ALTER TABLE tickets ADD COLUMN address TEXT;
