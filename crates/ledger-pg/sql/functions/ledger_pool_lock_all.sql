-- Locks every stripe, in stripe order, and returns the exact pool balance. While it holds
-- them all, it evens the stripes out (journalled as `rebalance`), so that the next debits find
-- their home stripe covered and take the one-stripe path again.

CREATE FUNCTION ledger_pool_lock_all(p_now bigint) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_total bigint;
    v_n integer := ledger_n_stripes();
    v_target bigint;
    r record;
BEGIN
    PERFORM ledger_before_lock_all();
    SELECT coalesce(sum(balance_sats), 0)::bigint INTO v_total
    FROM (SELECT balance_sats FROM pool_stripes ORDER BY stripe FOR UPDATE) s;
    FOR r IN SELECT stripe, balance_sats FROM pool_stripes ORDER BY stripe LOOP
        v_target := v_total / v_n + CASE WHEN r.stripe < v_total % v_n THEN 1 ELSE 0 END;
        IF v_target <> r.balance_sats THEN
            INSERT INTO pool_journal (kind, stripe, amount_sats, at_ms)
            VALUES ('rebalance', r.stripe, v_target - r.balance_sats, p_now);
        END IF;
    END LOOP;
    RETURN v_total;
END $$;
