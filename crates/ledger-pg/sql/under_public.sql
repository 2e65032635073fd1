-- Every object of the schema `public`, and every object anywhere that depends on one of them,
-- however deep (pg_depend): what `DROP SCHEMA public CASCADE` would drop. An object's own
-- parts come with it (a table's row type, indexes, constraints, triggers, defaults, TOAST
-- table), and so do what others built on it: a view in another schema that reads a table of
-- `public`, a foreign key that references one, a column typed with one of its domains. A
-- column (objsubid > 0) brings only what depends on that column.
WITH RECURSIVE under_public (classid, objid, objsubid) AS (
    SELECT classid, objid, objsubid FROM pg_depend
    WHERE refclassid = 'pg_namespace'::regclass AND refobjid = to_regnamespace('public')
    UNION
    SELECT d.classid, d.objid, d.objsubid
    FROM pg_depend d
    JOIN under_public u ON d.refclassid = u.classid AND d.refobjid = u.objid
        AND (u.objsubid = 0 OR d.refobjsubid = u.objsubid)
)
