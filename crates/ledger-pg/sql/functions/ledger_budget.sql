-- The daily budget of a tier, from the rules.

CREATE FUNCTION ledger_budget(p_tier text) RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT CASE p_tier
        WHEN 'new' THEN budget_new
        WHEN 'established' THEN budget_established
        WHEN 'trusted' THEN budget_trusted
        WHEN 'elite' THEN budget_elite
    END
    FROM ledger_config WHERE id = 1
$$;
