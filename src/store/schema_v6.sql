-- deskgate schema, version 6: structured event data, the source of the KPIs.
-- A JSON object per event (NULL for events recorded before this version, and for those whose
-- detail text says all there is). The kinds and their fields are listed in ARCHITECTURE.md
-- ("Events"); `deskgate stats`, `report` and /metrics read them, never the mutable tables, so a
-- figure is the same whenever it is asked for.
ALTER TABLE events ADD COLUMN data TEXT;
