-- ok: code 'tier_set', with previous_tier (NULL when the identity was created).

CREATE FUNCTION ledger_set_tier(p_pubkey text, p_tier text, p_now bigint) RETURNS ledger_result
LANGUAGE plpgsql AS $$
DECLARE
    v_prev text;
BEGIN
    SELECT tier INTO v_prev FROM identities WHERE pubkey = p_pubkey FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO identities (pubkey, tier, absorbed_reset_at_ms) VALUES (p_pubkey, p_tier, p_now)
        ON CONFLICT (pubkey) DO NOTHING;
        IF FOUND THEN
            RETURN ledger_ok('tier_set', true);
        END IF;
        -- Created concurrently: it exists now.
        SELECT tier INTO v_prev FROM identities WHERE pubkey = p_pubkey FOR UPDATE;
    END IF;
    UPDATE identities SET tier = p_tier WHERE pubkey = p_pubkey;
    RETURN ledger_ok('tier_set', true, previous_tier => v_prev);
END $$;
