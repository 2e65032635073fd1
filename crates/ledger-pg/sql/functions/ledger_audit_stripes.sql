-- The per-stripe check the single pool row did not need: each stripe's journal sums to its
-- balance.

CREATE FUNCTION ledger_audit_stripes() RETURNS TABLE (invariant text, detail text)
LANGUAGE sql STABLE AS $$
    SELECT 'I2', format('stripe %s: journal sums to %s, stripe holds %s', s.stripe,
        coalesce(j.total, 0), s.balance_sats)
    FROM pool_stripes s
    LEFT JOIN (SELECT stripe, sum(amount_sats) AS total FROM pool_journal GROUP BY stripe) j
        ON j.stripe = s.stripe
    WHERE coalesce(j.total, 0) <> s.balance_sats
    ORDER BY s.stripe
$$;
