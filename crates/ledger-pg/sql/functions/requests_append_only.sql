-- A decision never changes: requests are never updated, deleted or truncated (a reservation
-- refers to its request without a foreign key).

CREATE FUNCTION requests_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'requests are append-only: a decision never changes' USING ERRCODE = 'P0001';
END $$;

CREATE TRIGGER requests_append_only BEFORE UPDATE OR DELETE ON requests
    FOR EACH ROW EXECUTE FUNCTION requests_append_only();
CREATE TRIGGER requests_no_truncate BEFORE TRUNCATE ON requests
    FOR EACH STATEMENT EXECUTE FUNCTION requests_append_only();
