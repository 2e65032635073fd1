-- The journal's first trigger function, which `pool_journal_move` replaced: no trigger runs it.
-- It is left in the schema only because the migrations this schema was squashed from left it
-- there; dropping it is a change of its own.

CREATE FUNCTION pool_journal_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE pool_stripes SET
        balance_sats  = balance_sats  + NEW.amount_sats,
        reserved_sats = reserved_sats + NEW.d_reserved_sats,
        absorbed_sats = absorbed_sats + NEW.d_absorbed_sats,
        credited_sats = credited_sats + NEW.d_credited_sats,
        overrun_sats  = overrun_sats  + NEW.d_overrun_sats,
        n_grants      = n_grants      + NEW.d_grants
    WHERE stripe = NEW.stripe;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pool stripe % missing: run ledger_genesis first', NEW.stripe
            USING ERRCODE = 'P0001';
    END IF;
    RETURN NULL;
END $$;
