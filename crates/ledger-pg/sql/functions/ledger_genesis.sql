-- Writes the rules and the pool's initial balance (spread evenly over the stripes), once.
-- Repeating it with the same rules does nothing; with other rules it fails.

CREATE FUNCTION ledger_genesis(
    p_budget_new bigint, p_budget_established bigint, p_budget_trusted bigint,
    p_budget_elite bigint, p_pool_initial_sats bigint, p_credit_bps integer,
    p_reservation_ttl_ms bigint, p_now bigint
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    cfg ledger_config%ROWTYPE;
BEGIN
    INSERT INTO ledger_config VALUES (1, p_budget_new, p_budget_established, p_budget_trusted,
        p_budget_elite, p_pool_initial_sats, p_credit_bps, p_reservation_ttl_ms)
    ON CONFLICT (id) DO NOTHING;
    IF NOT FOUND THEN
        SELECT * INTO cfg FROM ledger_config WHERE id = 1;
        IF cfg <> ROW(1::smallint, p_budget_new, p_budget_established, p_budget_trusted,
                p_budget_elite, p_pool_initial_sats, p_credit_bps, p_reservation_ttl_ms)::ledger_config THEN
            RAISE EXCEPTION 'ledger already has a different genesis' USING ERRCODE = 'P0001';
        END IF;
        RETURN;
    END IF;
    INSERT INTO pool_stripes (stripe) SELECT s FROM generate_series(0, ledger_n_stripes() - 1) s;
    -- The initial balance, spread evenly over the stripes.
    INSERT INTO pool_journal (kind, stripe, amount_sats, at_ms)
    SELECT 'genesis', s, p_pool_initial_sats / ledger_n_stripes()
        + CASE WHEN s < p_pool_initial_sats % ledger_n_stripes() THEN 1 ELSE 0 END, p_now
    FROM generate_series(0, ledger_n_stripes() - 1) s;
END $$;
