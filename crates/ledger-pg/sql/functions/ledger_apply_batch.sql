-- Runs many commands in one transaction and one round trip, each with the same function and
-- the same answer as when it is called alone. A client (`src/batch.rs`) queues its callers'
-- commands and sends them in batches on a few lanes; the server's per-statement and
-- per-commit costs are paid once per batch instead of once per command. Several batches run
-- at once without deadlocks:
-- - a lane carries the commands of the requests (and payments) whose home stripe is its own,
--   `id % n_lanes` with `n_lanes` dividing `ledger_n_stripes()`: lanes' stripes are disjoint;
-- - identities are the rows lanes share: a batch locks all of its identities first, in one
--   order, before any command runs;
-- - taking every stripe (the exact-total paths) would wait on the other lanes' stripes, so a
--   batch may do it only when it holds the batch lock alone: every batch holds the advisory
--   batch lock shared, and a command that needs every stripe in a shared batch raises
--   `LDB01` (`ledger_before_lock_all`); the client runs that batch again holding the batch
--   lock exclusively.
-- Calls outside batches (no batch lock) keep their one-command protocol. The batch lock's
-- (int4, int4) key never meets the bigint keys of requests.
--
-- Command i (1-based) of the batch is: kind, id (request, or payment for `credit`), pubkey,
-- tier (for `set_tier`), amount and time. Answers one `ledger_result` per command, in order.
-- `expire` is not batched.

CREATE FUNCTION ledger_apply_batch(p_kinds text[], p_ids bigint[], p_pubkeys text[], p_tiers text[],
    p_amounts bigint[], p_nows bigint[], p_exclusive boolean)
RETURNS SETOF ledger_result LANGUAGE plpgsql AS $$
DECLARE
    n integer := coalesce(array_length(p_kinds, 1), 0);
    v_ids bigint[] := '{}';
    v_decides bigint[] := '{}';
    v_pubkeys text[] := '{}';
    cfg ledger_config%ROWTYPE;
BEGIN
    IF p_exclusive THEN
        PERFORM pg_advisory_xact_lock(1279607111, 1);
        PERFORM set_config('ledger.batch', 'exclusive', true);
    ELSE
        PERFORM pg_advisory_xact_lock_shared(1279607111, 1);
        PERFORM set_config('ledger.batch', 'shared', true);
    END IF;
    -- The locks in the order every command takes them: the decides' request locks, then
    -- every identity the batch will lock, each set in one order. A record's or release's
    -- identity is its reservation's (immutable: read without a lock).
    FOR i IN 1 .. n LOOP
        IF p_kinds[i] IN ('record', 'release') THEN
            v_ids := v_ids || p_ids[i];
        ELSE
            v_pubkeys := v_pubkeys || p_pubkeys[i];
            IF p_kinds[i] = 'decide' THEN
                v_decides := v_decides || p_ids[i];
            END IF;
        END IF;
    END LOOP;
    IF cardinality(v_decides) > 0 THEN
        -- A volatile function in the target list runs after the sort.
        PERFORM pg_advisory_xact_lock(d) FROM unnest(v_decides) d ORDER BY d;
        SELECT * INTO cfg FROM ledger_config WHERE id = 1;
    END IF;
    PERFORM ledger_batch_lock_identities(v_ids, v_pubkeys);
    FOR i IN 1 .. n LOOP
        CASE p_kinds[i]
            WHEN 'decide' THEN
                RETURN NEXT ledger_decide_locked(p_ids[i], p_pubkeys[i], p_amounts[i], p_nows[i], cfg);
            WHEN 'record' THEN
                RETURN NEXT ledger_record(p_ids[i], p_amounts[i], p_nows[i]);
            WHEN 'release' THEN
                RETURN NEXT ledger_release(p_ids[i], p_nows[i]);
            WHEN 'reserve_partial' THEN
                RETURN NEXT ledger_reserve_partial(p_ids[i], p_pubkeys[i], p_amounts[i], p_nows[i]);
            WHEN 'credit' THEN
                RETURN NEXT ledger_credit(p_ids[i], p_amounts[i], p_nows[i]);
            WHEN 'set_tier' THEN
                RETURN NEXT ledger_set_tier(p_pubkeys[i], p_tiers[i], p_nows[i]);
            ELSE
                RAISE EXCEPTION 'batch command %: unknown kind %', i, p_kinds[i] USING ERRCODE = '22023';
        END CASE;
    END LOOP;
    PERFORM set_config('ledger.batch', '', true);
END $$;
