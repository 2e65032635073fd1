-- ok: code 'credited', with credited_sats. Refusals: payment_with_different_amount (paid_sats),
-- overflow.

CREATE FUNCTION ledger_credit(p_payment_id bigint, p_paid bigint, p_now bigint)
RETURNS ledger_result LANGUAGE plpgsql AS $$
DECLARE
    pay processed_payments%ROWTYPE;
    v_bps bigint;
    v_initial numeric;
    v_credited bigint;
    v_credited_total numeric;
BEGIN
    SELECT * INTO pay FROM processed_payments WHERE payment_id = p_payment_id;
    IF NOT FOUND THEN
        SELECT credit_bps, pool_initial_sats INTO v_bps, v_initial FROM ledger_config WHERE id = 1;
        -- floor(paid * bps / 10000) without overflowing bigint.
        v_credited := (p_paid / 10000) * v_bps + (p_paid % 10000) * v_bps / 10000;
        SELECT sum(credited_sats) INTO v_credited_total FROM pool_stripes;
        -- R-CREDIT-4: genesis plus every credit must fit, judged on those, not on the pool
        -- (the pool may have room while reserved and absorbed sats would not).
        IF v_credited > 1099511627776 OR v_initial + v_credited_total > 2305843009213693952 THEN
            -- Near the limit: the exact totals, every stripe locked.
            PERFORM ledger_before_lock_all();
            SELECT sum(credited_sats) INTO v_credited_total
            FROM (SELECT credited_sats FROM pool_stripes ORDER BY stripe FOR UPDATE) s;
            IF v_credited > 9223372036854775807 - (v_initial + v_credited_total) THEN
                RETURN ledger_refuse('overflow');
            END IF;
        END IF;
        INSERT INTO processed_payments VALUES (p_payment_id, p_paid, v_credited, p_now)
        ON CONFLICT (payment_id) DO NOTHING;
        IF FOUND THEN
            INSERT INTO pool_journal (kind, stripe, payment_id, amount_sats, d_credited_sats, at_ms)
            VALUES ('credit', (p_payment_id % ledger_n_stripes())::smallint, p_payment_id,
                v_credited, v_credited, p_now);
            RETURN ledger_ok('credited', true, credited_sats => v_credited);
        END IF;
        SELECT * INTO pay FROM processed_payments WHERE payment_id = p_payment_id;
    END IF;
    IF pay.paid_sats <> p_paid THEN
        RETURN ledger_refuse('payment_with_different_amount', paid_sats => pay.paid_sats);
    END IF;
    RETURN ledger_ok('credited', false, credited_sats => pay.credited_sats);
END $$;
