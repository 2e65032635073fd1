-- Only the journal's trigger (depth >= 2) may change a pool stripe after genesis.

CREATE FUNCTION pool_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF pg_trigger_depth() < 2 THEN
        RAISE EXCEPTION 'the pool moves only through pool_journal' USING ERRCODE = 'P0001';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END $$;

CREATE TRIGGER pool_stripes_guard BEFORE UPDATE OR DELETE ON pool_stripes
    FOR EACH ROW EXECUTE FUNCTION pool_guard();
