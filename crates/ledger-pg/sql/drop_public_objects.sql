-- Drops every object of the schema `public` (and, by CASCADE, whatever depends on one, here or
-- in another schema), one at a time, and keeps the schema: its owner, privileges, default
-- privileges and comment stay as they were. Extensions go first: they take their members with
-- them, and a member cannot be dropped alone. Each drop may take others with it, so the next
-- object is looked up again each time. The object's kind, as `pg_identify_object` names it,
-- is the keyword of its DROP; its identity is quoted and schema-qualified.
DO $drop$
DECLARE
    o record;
BEGIN
    IF to_regnamespace('public') IS NULL THEN
        RETURN;
    END IF;
    LOOP
        SELECT i.type, i.identity INTO o
        FROM pg_depend d, LATERAL pg_identify_object(d.classid, d.objid, d.objsubid) i
        WHERE d.refclassid = 'pg_namespace'::regclass AND d.refobjid = to_regnamespace('public')
          AND d.deptype = 'n' AND d.classid <> 'pg_default_acl'::regclass
        ORDER BY d.classid = 'pg_extension'::regclass DESC, d.classid, d.objid
        LIMIT 1;
        EXIT WHEN NOT FOUND;
        EXECUTE format('DROP %s %s CASCADE',
            CASE o.type WHEN 'composite type' THEN 'TYPE' WHEN 'statistics object' THEN 'STATISTICS'
                ELSE upper(o.type) END,
            o.identity);
    END LOOP;
END
$drop$;
