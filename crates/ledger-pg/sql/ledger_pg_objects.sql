-- ledger-pg's record of what its migrations created, by catalog identity (the object's
-- catalog, oid and sub-id, as in pg_depend): a run given a database (`--database-url`) drops
-- those objects without asking, and refuses a database where anything else is in `public` or
-- depends on it. An object of the same name made by someone else has another oid, so a user's
-- own `requests` table is never taken for ledger-pg's. Each migration ends by recording the
-- objects it made (`ledger_pg_objects_record.sql`); this table is made first, and records
-- itself.
CREATE TABLE ledger_pg_objects (
    classid  oid NOT NULL,
    objid    oid NOT NULL,
    objsubid integer NOT NULL,
    PRIMARY KEY (classid, objid, objsubid)
);
