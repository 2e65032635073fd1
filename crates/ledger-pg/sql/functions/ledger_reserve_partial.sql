-- ok: code 'reserved', with reserved_sats. Refusals: unknown_request,
-- exists_with_different_pubkey, reservation_exists (reserved_sats: the existing reservation's),
-- zero_amount, amount_above_estimate (estimated_sats), unknown_identity, insufficient_funds
-- (available_sats; a repeat of a refused amount is refused again with the first answer, from
-- `refused_reservations`).

CREATE FUNCTION ledger_reserve_partial(p_request_id bigint, p_pubkey text, p_amount bigint, p_now bigint)
RETURNS ledger_result LANGUAGE plpgsql AS $$
DECLARE
    req requests%ROWTYPE;
    res reservations%ROWTYPE;
    idn identities%ROWTYPE;
    dr record;
    v_home smallint := (p_request_id % ledger_n_stripes())::smallint;
    v_remaining bigint;
    v_pool bigint;
    v_available bigint;
    v_ttl bigint;
BEGIN
    -- The request row's lock serialises duplicates of this command.
    SELECT * INTO req FROM requests WHERE request_id = p_request_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN ledger_refuse('unknown_request');
    END IF;
    IF req.pubkey <> p_pubkey THEN
        RETURN ledger_refuse('exists_with_different_pubkey');
    END IF;
    SELECT * INTO res FROM reservations WHERE request_id = p_request_id;
    IF FOUND THEN
        IF NOT res.by_decide AND res.amount_sats = p_amount THEN
            RETURN ledger_ok('reserved', false, reserved_sats => p_amount);
        END IF;
        RETURN ledger_refuse('reservation_exists', reserved_sats => res.amount_sats);
    END IF;
    IF p_amount = 0 THEN
        RETURN ledger_refuse('zero_amount');
    END IF;
    IF p_amount > req.estimated_sats THEN
        RETURN ledger_refuse('amount_above_estimate', estimated_sats => req.estimated_sats);
    END IF;
    SELECT available_sats INTO v_available FROM refused_reservations
    WHERE request_id = p_request_id AND amount_sats = p_amount;
    IF FOUND THEN
        RETURN ledger_refuse('insufficient_funds', available_sats => v_available);
    END IF;
    SELECT * INTO idn FROM identities WHERE pubkey = p_pubkey FOR UPDATE;
    IF NOT FOUND THEN
        RETURN ledger_refuse('unknown_identity');
    END IF;
    v_remaining := ledger_daily_remaining(idn, p_now);
    IF p_amount <= v_remaining THEN
        SELECT * INTO dr FROM ledger_pool_debit(v_home, p_request_id, p_amount, p_now);
        IF NOT dr.ok THEN
            v_pool := dr.total;
        END IF;
    ELSIF ledger_pool_at_least(v_home, v_remaining) THEN
        v_pool := v_remaining;
    ELSE
        v_pool := ledger_pool_lock_all(p_now);
    END IF;
    IF v_pool IS NOT NULL THEN
        v_available := least(v_remaining, v_pool);
        INSERT INTO refused_reservations VALUES (p_request_id, p_amount, v_available);
        RETURN ledger_refuse('insufficient_funds', available_sats => v_available);
    END IF;
    SELECT reservation_ttl_ms INTO v_ttl FROM ledger_config WHERE id = 1;
    INSERT INTO reservations (request_id, pubkey, amount_sats, by_decide, deadline_ms, stripe)
    VALUES (p_request_id, p_pubkey, p_amount, false,
        CASE WHEN p_now > 9223372036854775807 - v_ttl THEN 9223372036854775807
             ELSE p_now + v_ttl END, v_home);
    UPDATE identities SET reserved_sats = reserved_sats + p_amount WHERE pubkey = p_pubkey;
    RETURN ledger_ok('reserved', true, reserved_sats => p_amount);
END $$;
