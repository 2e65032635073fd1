-- Debits exactly p_amount (> 0) for a reservation homed on p_home, or nothing. `ok` says
-- which; when nothing was debited, `total` is the exact pool balance (all stripes locked).

CREATE FUNCTION ledger_pool_debit(p_home smallint, p_request_id bigint, p_amount bigint,
    p_now bigint, OUT ok boolean, OUT total bigint)
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    v_left bigint := p_amount;
    v_take bigint;
BEGIN
    INSERT INTO pool_journal (kind, stripe, request_id, amount_sats, d_reserved_sats, at_ms)
    VALUES ('debit', p_home, p_request_id, -p_amount, p_amount, p_now);
    IF FOUND THEN
        ok := true;
        RETURN;
    END IF;
    -- The home stripe is short: the exact total, every stripe locked.
    total := ledger_pool_lock_all(p_now);
    IF total < p_amount THEN
        ok := false;
        RETURN;
    END IF;
    FOR r IN SELECT stripe, balance_sats FROM pool_stripes ORDER BY (stripe <> p_home), stripe LOOP
        v_take := least(r.balance_sats, v_left);
        IF v_take > 0 OR r.stripe = p_home THEN
            INSERT INTO pool_journal (kind, stripe, request_id, amount_sats, d_reserved_sats, at_ms)
            VALUES ('debit', r.stripe, p_request_id, -v_take,
                CASE WHEN r.stripe = p_home THEN p_amount ELSE 0 END, p_now);
            IF NOT FOUND THEN
                RAISE EXCEPTION 'stripe % moved under its lock', r.stripe USING ERRCODE = 'P0001';
            END IF;
        END IF;
        v_left := v_left - v_take;
        EXIT WHEN v_left = 0;
    END LOOP;
    ok := true;
    total := NULL;
END $$;
