-- A reservation leaves `reserved` once, and nothing else about it changes. It becomes
-- `recorded` only by the insert of its grant (`grant_guard` closes it, at trigger depth 2), so a
-- recorded reservation has its grant without a deferred check at commit.

CREATE FUNCTION reservation_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'reservations are never deleted' USING ERRCODE = 'P0001';
    END IF;
    IF OLD.state <> 'reserved'
       OR NEW.request_id <> OLD.request_id OR NEW.pubkey <> OLD.pubkey
       OR NEW.amount_sats <> OLD.amount_sats OR NEW.by_decide <> OLD.by_decide
       OR NEW.deadline_ms <> OLD.deadline_ms THEN
        RAISE EXCEPTION 'reservation % is closed or immutable', OLD.request_id
            USING ERRCODE = 'P0001';
    END IF;
    -- Depth 2: from the grant's guard.
    IF NEW.state = 'recorded' AND pg_trigger_depth() < 2 THEN
        RAISE EXCEPTION 'reservation % is recorded only by inserting its grant', OLD.request_id
            USING ERRCODE = 'P0001';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER reservation_guard BEFORE UPDATE OR DELETE ON reservations
    FOR EACH ROW EXECUTE FUNCTION reservation_guard();
