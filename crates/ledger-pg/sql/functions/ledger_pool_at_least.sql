-- A lower bound of the pool balance, read without a lock: the home stripe's balance.

CREATE FUNCTION ledger_pool_at_least(p_home smallint, p_amount bigint) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT balance_sats >= p_amount FROM pool_stripes WHERE stripe = p_home), false)
$$;
