-- A read-only check of I1, I2 and I5 on the reference schema: one row per violation.

CREATE FUNCTION ledger_audit() RETURNS TABLE (invariant text, detail text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    p pool%ROWTYPE;
    cfg ledger_config%ROWTYPE;
    v numeric;
    w numeric;
BEGIN
    SELECT * INTO p FROM pool WHERE id = 1;
    SELECT * INTO cfg FROM ledger_config WHERE id = 1;
    IF NOT FOUND OR p.id IS NULL THEN
        invariant := 'genesis'; detail := 'no genesis'; RETURN NEXT; RETURN;
    END IF;
    IF p.balance_sats < 0 THEN
        invariant := 'I1'; detail := format('pool balance %s < 0', p.balance_sats); RETURN NEXT;
    END IF;
    SELECT coalesce(sum(amount_sats), 0) INTO v FROM pool_journal;
    IF v <> p.balance_sats THEN
        invariant := 'I2'; detail := format('journal sums to %s, pool holds %s', v, p.balance_sats);
        RETURN NEXT;
    END IF;
    v := cfg.pool_initial_sats::numeric + p.credited_sats;
    w := p.balance_sats::numeric + p.reserved_sats + p.absorbed_sats;
    IF v <> w THEN
        invariant := 'I2';
        detail := format('initial + credits = %s, pool + reserved + absorbed = %s', v, w);
        RETURN NEXT;
    END IF;
    SELECT coalesce(sum(amount_sats), 0) INTO v FROM reservations WHERE state = 'reserved';
    IF v <> p.reserved_sats THEN
        invariant := 'I2';
        detail := format('outstanding reservations sum to %s, books say %s', v, p.reserved_sats);
        RETURN NEXT;
    END IF;
    SELECT coalesce(sum(reserved_sats), 0) INTO v FROM identities;
    IF v <> p.reserved_sats THEN
        invariant := 'I2';
        detail := format('identities hold %s reserved, books say %s', v, p.reserved_sats);
        RETURN NEXT;
    END IF;
    SELECT coalesce(sum(credited_sats), 0) INTO v FROM processed_payments;
    IF v <> p.credited_sats THEN
        invariant := 'I2'; detail := format('payments credited %s, books say %s', v, p.credited_sats);
        RETURN NEXT;
    END IF;
    SELECT coalesce(sum(absorbed_sats), 0), count(*) INTO v, w FROM grants;
    IF v <> p.absorbed_sats OR w <> p.n_grants THEN
        invariant := 'I5';
        detail := format('%s grants absorb %s, books say %s grants absorbing %s',
            w, v, p.n_grants, p.absorbed_sats);
        RETURN NEXT;
    END IF;
    SELECT count(*) INTO v FROM reservations r
    WHERE (r.state = 'recorded') <> EXISTS (SELECT 1 FROM grants g WHERE g.request_id = r.request_id);
    IF v <> 0 THEN
        invariant := 'I5'; detail := format('%s reservations disagree with the grants', v);
        RETURN NEXT;
    END IF;
END $$;
