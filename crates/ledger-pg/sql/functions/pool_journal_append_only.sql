-- The journal is append-only: no row is updated or deleted, and the table is never truncated.

CREATE FUNCTION pool_journal_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'pool_journal is append-only' USING ERRCODE = 'P0001';
END $$;

CREATE TRIGGER pool_journal_append_only BEFORE UPDATE OR DELETE ON pool_journal
    FOR EACH ROW EXECUTE FUNCTION pool_journal_append_only();
CREATE TRIGGER pool_journal_no_truncate BEFORE TRUNCATE ON pool_journal
    FOR EACH STATEMENT EXECUTE FUNCTION pool_journal_append_only();
