-- The end of each migration: record every object under `public` (`under_public.sql`, which
-- comes just before this) that this migration made. An object was made by this transaction
-- when one of its pg_depend rows was (a catalog row's xmin is the transaction that wrote it),
-- so what was there before the migration is never taken for ledger-pg's. sqlx's own table,
-- `_sqlx_migrations`, is made by sqlx just before the first migration, outside its
-- transaction: it is recorded, with its parts, when it holds no migration yet (sqlx records
-- this one after its SQL has run), that is when it was made for ledger-pg's migrations and for
-- no one else's.
INSERT INTO ledger_pg_objects (classid, objid, objsubid)
SELECT DISTINCT u.classid, u.objid, u.objsubid
FROM under_public u
WHERE EXISTS (
        SELECT 1 FROM pg_depend d
        WHERE d.classid = u.classid AND d.objid = u.objid AND d.objsubid = u.objsubid
          AND d.xmin::text = (txid_current() % 4294967296)::text)
   OR (NOT EXISTS (SELECT 1 FROM _sqlx_migrations)
       AND (u.classid, u.objid) IN (
           WITH RECURSIVE parts (classid, objid) AS (
               SELECT 'pg_class'::regclass::oid, to_regclass('_sqlx_migrations')::oid
               UNION
               SELECT d.classid, d.objid FROM pg_depend d
               JOIN parts p ON d.refclassid = p.classid AND d.refobjid = p.objid
           )
           SELECT classid, objid FROM parts))
ON CONFLICT DO NOTHING;
