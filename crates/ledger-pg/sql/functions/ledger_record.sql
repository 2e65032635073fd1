-- ok: code 'recorded', with absorbed_sats, returned_sats, overrun_sats and the reservation's
-- pubkey (the caller journals the movement under it). Refusals: unknown_request, not_reserved,
-- recorded_with_different_amount (actual_sats: the first call's), already_released,
-- reservation_expired, overflow.

CREATE FUNCTION ledger_record(p_request_id bigint, p_actual bigint, p_now bigint)
RETURNS ledger_result LANGUAGE plpgsql AS $$
DECLARE
    res reservations%ROWTYPE;
    g grants%ROWTYPE;
    v_overrun_total numeric;
    v_absorbed bigint;
    v_returned bigint;
    v_overrun bigint;
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
        WHEN 'recorded' THEN
            SELECT * INTO g FROM grants WHERE request_id = p_request_id;
            IF g.actual_sats = p_actual THEN
                RETURN ledger_ok('recorded', false, absorbed_sats => g.absorbed_sats,
                    returned_sats => g.returned_sats, overrun_sats => g.overrun_sats, pubkey => g.pubkey);
            END IF;
            RETURN ledger_refuse('recorded_with_different_amount', actual_sats => g.actual_sats);
        WHEN 'released' THEN
            RETURN ledger_refuse('already_released');
        WHEN 'expired' THEN
            RETURN ledger_refuse('reservation_expired');
        ELSE
            NULL;
    END CASE;
    v_absorbed := least(p_actual, res.amount_sats);
    v_returned := res.amount_sats - v_absorbed;
    v_overrun := p_actual - v_absorbed;
    IF v_overrun > 0 THEN
        SELECT sum(overrun_sats) INTO v_overrun_total FROM pool_stripes;
        IF v_overrun > 1099511627776 OR v_overrun_total > 2305843009213693952 THEN
            -- Near the limit: the exact total, every stripe locked (the identity first, as
            -- every command locks identities before stripes).
            PERFORM ledger_before_lock_all();
            PERFORM 1 FROM identities WHERE pubkey = res.pubkey FOR UPDATE;
            SELECT sum(overrun_sats) INTO v_overrun_total
            FROM (SELECT overrun_sats FROM pool_stripes ORDER BY stripe FOR UPDATE) s;
            IF v_overrun > 9223372036854775807 - v_overrun_total THEN
                RETURN ledger_refuse('overflow');
            END IF;
        END IF;
    END IF;
    -- The seed's CASE: the first absorption after the window ran out starts a new one.
    UPDATE identities SET
        reserved_sats = reserved_sats - res.amount_sats,
        sats_absorbed_today = CASE
            WHEN v_absorbed = 0 THEN sats_absorbed_today
            WHEN p_now - absorbed_reset_at_ms >= 86400000 THEN v_absorbed
            ELSE sats_absorbed_today + v_absorbed END,
        absorbed_reset_at_ms = CASE
            WHEN v_absorbed > 0 AND p_now - absorbed_reset_at_ms >= 86400000 THEN p_now
            ELSE absorbed_reset_at_ms END
    WHERE pubkey = res.pubkey;
    -- The grant's guard closes the reservation.
    INSERT INTO grants VALUES (p_request_id, res.pubkey, p_actual, v_absorbed, v_returned,
        v_overrun, p_now);
    INSERT INTO pool_journal (kind, stripe, request_id, amount_sats, d_reserved_sats, d_absorbed_sats,
        d_overrun_sats, d_grants, at_ms)
    VALUES ('record', res.stripe, p_request_id, v_returned, -res.amount_sats, v_absorbed, v_overrun, 1, p_now);
    RETURN ledger_ok('recorded', true, absorbed_sats => v_absorbed, returned_sats => v_returned,
        overrun_sats => v_overrun, pubkey => res.pubkey);
END $$;
