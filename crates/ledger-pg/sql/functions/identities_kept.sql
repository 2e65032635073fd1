-- Identities are never deleted or truncated (a reservation refers to its identity without a
-- foreign key).

CREATE FUNCTION identities_kept() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'identities are never deleted' USING ERRCODE = 'P0001';
END $$;

CREATE TRIGGER identities_kept BEFORE DELETE ON identities
    FOR EACH ROW EXECUTE FUNCTION identities_kept();
CREATE TRIGGER identities_no_truncate BEFORE TRUNCATE ON identities
    FOR EACH STATEMENT EXECUTE FUNCTION identities_kept();
