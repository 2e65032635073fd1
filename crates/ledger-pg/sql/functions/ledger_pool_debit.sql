-- Debits exactly p_amount (> 0) for a reservation homed on p_home, or nothing. `ok` says
-- which; when nothing was debited, `total` is the exact pool balance (all stripes locked).
--
-- The fast path debits the home stripe alone: the journal row's trigger (`pool_journal_move`)
-- updates the stripe only if it covers the amount. It runs in a subtransaction (the
-- `BEGIN .. EXCEPTION` block), rolled back when the stripe is short, because a short stripe
-- can leave a lock behind: when the conditional UPDATE waits for a concurrent writer of the
-- stripe, PostgreSQL locks the newest version and only then re-checks the condition
-- (EvalPlanQual); when the re-check fails, nothing is updated but the row stays locked. Kept,
-- that lock would have this transaction hold stripe k while `ledger_pool_lock_all` waits for
-- stripes 0 .. k-1, against the order every other transaction takes them: with a second slow
-- path holding stripe 0 and waiting for k, a deadlock (40P01). A row lock taken in a
-- subtransaction is the subtransaction's (its own xid), so the rollback releases it and wakes
-- whoever waits for it. The slow path therefore starts holding no stripe, and every
-- transaction takes stripes either one (with no other held) or all in stripe order.
--
-- A batch holding the batch lock shared (`ledger_apply_batch`) needs no subtransaction: there
-- the slow path's first step, `ledger_before_lock_all`, raises `LDB01` before any wait, and
-- the batch rolls back, so a stripe kept by a failed re-check is never held while waiting.
-- Skipping it there keeps a batch of many debits from piling up subtransaction ids (a
-- backend caches 64; past that every snapshot taken on the server pays). Elsewhere a debit
-- that succeeds commits its subtransaction into the caller's: one id per debit.

CREATE FUNCTION ledger_pool_debit(p_home smallint, p_request_id bigint, p_amount bigint,
    p_now bigint, OUT ok boolean, OUT total bigint)
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    v_left bigint := p_amount;
    v_take bigint;
BEGIN
    IF current_setting('ledger.batch', true) = 'shared' THEN
        INSERT INTO pool_journal (kind, stripe, request_id, amount_sats, d_reserved_sats, at_ms)
        VALUES ('debit', p_home, p_request_id, -p_amount, p_amount, p_now);
        IF FOUND THEN
            ok := true;
            RETURN;
        END IF;
    ELSE
        BEGIN
            INSERT INTO pool_journal (kind, stripe, request_id, amount_sats, d_reserved_sats, at_ms)
            VALUES ('debit', p_home, p_request_id, -p_amount, p_amount, p_now);
            IF NOT FOUND THEN
                RAISE EXCEPTION 'stripe % is short of %', p_home, p_amount USING ERRCODE = 'LDB02';
            END IF;
            ok := true;
            RETURN;
        EXCEPTION WHEN SQLSTATE 'LDB02' THEN
            -- Rolled back: no lock on the home stripe is left.
            NULL;
        END;
    END IF;
    -- The home stripe is short: the exact total, every stripe locked.
    total := ledger_pool_lock_all(p_now);
    IF total < p_amount THEN
        ok := false;
        RETURN;
    END IF;
    FOR r IN SELECT stripe, balance_sats FROM pool_stripes ORDER BY (stripe <> p_home), stripe LOOP
        v_take := least(r.balance_sats, v_left);
        IF v_take > 0 OR r.stripe = p_home THEN
            INSERT INTO pool_journal (kind, stripe, request_id, amount_sats, d_reserved_sats, at_ms)
            VALUES ('debit', r.stripe, p_request_id, -v_take,
                CASE WHEN r.stripe = p_home THEN p_amount ELSE 0 END, p_now);
            IF NOT FOUND THEN
                RAISE EXCEPTION 'stripe % moved under its lock', r.stripe USING ERRCODE = 'P0001';
            END IF;
        END IF;
        v_left := v_left - v_take;
        EXIT WHEN v_left = 0;
    END LOOP;
    ok := true;
    total := NULL;
END $$;
