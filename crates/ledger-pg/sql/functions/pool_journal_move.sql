-- The journal moves its stripe: one conditional update per journal row, before the row is
-- inserted.
-- - A debit its stripe cannot cover inserts nothing and moves nothing (the caller sees zero
--   rows), so the one-stripe fast path of a debit is told "short" without an error (outside
--   a shared batch it still runs in a subtransaction, for the row lock a failed re-check of
--   the condition leaves behind: see `ledger_pool_debit`). Any other row that would drive a
--   stripe negative is an error, as a CHECK on the stripe would make it.
-- - The journal's row checks live here (it runs for every row, and the journal is
--   append-only): a payment exactly for `credit`, a request for every kind but `genesis`,
--   `credit` and `rebalance`.

CREATE FUNCTION pool_journal_move() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.kind = 'credit') <> (NEW.payment_id IS NOT NULL)
       OR (NEW.kind IN ('genesis', 'credit', 'rebalance')) <> (NEW.request_id IS NULL) THEN
        RAISE EXCEPTION 'pool_journal: a % row with request % and payment % (check constraint)', NEW.kind,
            NEW.request_id, NEW.payment_id USING ERRCODE = 'check_violation';
    END IF;
    UPDATE pool_stripes SET
        balance_sats  = balance_sats  + NEW.amount_sats,
        reserved_sats = reserved_sats + NEW.d_reserved_sats,
        absorbed_sats = absorbed_sats + NEW.d_absorbed_sats,
        credited_sats = credited_sats + NEW.d_credited_sats,
        overrun_sats  = overrun_sats  + NEW.d_overrun_sats,
        n_grants      = n_grants      + NEW.d_grants
    WHERE stripe = NEW.stripe AND balance_sats + NEW.amount_sats >= 0;
    IF FOUND THEN
        RETURN NEW;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pool_stripes WHERE stripe = NEW.stripe) THEN
        RAISE EXCEPTION 'pool stripe % missing: run ledger_genesis first', NEW.stripe
            USING ERRCODE = 'P0001';
    END IF;
    IF NEW.kind = 'debit' THEN
        -- Short: nothing is debited, nothing is journalled.
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'pool stripe %: balance_sats would go below zero (check constraint)', NEW.stripe
        USING ERRCODE = 'check_violation';
END $$;

CREATE TRIGGER pool_journal_move BEFORE INSERT ON pool_journal
    FOR EACH ROW EXECUTE FUNCTION pool_journal_move();
