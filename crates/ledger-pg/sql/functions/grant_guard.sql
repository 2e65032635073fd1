-- A grant only for an open reservation of its pubkey and of absorbed + returned, which the
-- grant's insert closes as `recorded`; grants are append-only. It also holds the grant's row
-- check: absorbed + overrun = actual.

CREATE FUNCTION grant_guard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_pubkey text;
    v_amount bigint;
BEGIN
    IF TG_OP <> 'INSERT' THEN
        RAISE EXCEPTION 'grants are append-only' USING ERRCODE = 'P0001';
    END IF;
    IF NEW.absorbed_sats + NEW.overrun_sats <> NEW.actual_sats THEN
        RAISE EXCEPTION 'grant %: absorbed + overrun <> actual', NEW.request_id USING ERRCODE = 'check_violation';
    END IF;
    -- The grant closes its reservation, which must be open (the reservation's guard says so),
    -- of the same pubkey, and of absorbed + returned. (By its key alone: a condition on the
    -- state would let the planner pick the partial index of outstanding reservations.)
    UPDATE reservations SET state = 'recorded', closed_at_ms = NEW.at_ms
    WHERE request_id = NEW.request_id
    RETURNING pubkey, amount_sats INTO v_pubkey, v_amount;
    IF NOT FOUND OR v_pubkey <> NEW.pubkey OR v_amount <> NEW.absorbed_sats + NEW.returned_sats THEN
        RAISE EXCEPTION 'grant % does not match an open reservation', NEW.request_id
            USING ERRCODE = 'P0001';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER grant_guard BEFORE INSERT OR UPDATE OR DELETE ON grants
    FOR EACH ROW EXECUTE FUNCTION grant_guard();
