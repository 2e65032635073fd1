-- `Identity::daily_remaining`: budget minus the window's absorption and the outstanding
-- reservations, never below zero. Computed in numeric so that no sum can overflow.
-- (`decide` computes the same inline, with the rules it has already read.)

CREATE FUNCTION ledger_daily_remaining(idn identities, p_now bigint) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT greatest(
        ledger_budget(idn.tier)::numeric
          - (CASE WHEN p_now - idn.absorbed_reset_at_ms >= 86400000 THEN 0
                  ELSE idn.sats_absorbed_today END)::numeric
          - idn.reserved_sats::numeric,
        0)::bigint
$$;
