-- `pool` is a view of the stripes' sums: it is never written.

CREATE FUNCTION pool_view_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the pool moves only through pool_journal' USING ERRCODE = 'P0001';
END $$;

CREATE TRIGGER pool_view_guard INSTEAD OF INSERT OR UPDATE OR DELETE ON pool
    FOR EACH ROW EXECUTE FUNCTION pool_view_guard();
