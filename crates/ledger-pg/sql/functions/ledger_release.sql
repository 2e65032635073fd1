-- ok: code 'released', with returned_sats. Refusals: unknown_request, not_reserved,
-- already_recorded, reservation_expired.

CREATE FUNCTION ledger_release(p_request_id bigint, p_now bigint)
RETURNS ledger_result LANGUAGE plpgsql AS $$
DECLARE
    res reservations%ROWTYPE;
BEGIN
    SELECT * INTO res FROM reservations WHERE request_id = p_request_id FOR UPDATE;
    IF NOT FOUND THEN
        -- No reservation in this statement's snapshot. Each statement has a newer one (READ
        -- COMMITTED), and a decide may commit the request with its reservation in between, so
        -- the request is read, then the reservation again. A request commits with or before its
        -- reservation, and neither is ever deleted: no request means no reservation either, the
        -- state at that read answers `unknown_request`; a request and then still no
        -- reservation is `not_reserved` in the state at the second read (the request is still
        -- there). Either answer is the serial one at an instant within this call.
        IF NOT EXISTS (SELECT 1 FROM requests WHERE request_id = p_request_id) THEN
            RETURN ledger_refuse('unknown_request');
        END IF;
        SELECT * INTO res FROM reservations WHERE request_id = p_request_id FOR UPDATE;
        IF NOT FOUND THEN
            RETURN ledger_refuse('not_reserved');
        END IF;
    END IF;
    CASE res.state
        WHEN 'released' THEN
            RETURN ledger_ok('released', false, returned_sats => res.amount_sats);
        WHEN 'recorded' THEN
            RETURN ledger_refuse('already_recorded');
        WHEN 'expired' THEN
            RETURN ledger_refuse('reservation_expired');
        ELSE
            NULL;
    END CASE;
    UPDATE identities SET reserved_sats = reserved_sats - res.amount_sats WHERE pubkey = res.pubkey;
    UPDATE reservations SET state = 'released', closed_at_ms = p_now WHERE request_id = p_request_id;
    INSERT INTO pool_journal (kind, stripe, request_id, amount_sats, d_reserved_sats, at_ms)
    VALUES ('release', res.stripe, p_request_id, res.amount_sats, -res.amount_sats, p_now);
    RETURN ledger_ok('released', true, returned_sats => res.amount_sats);
END $$;
