-- Batches, and cheaper checks.
--
-- 1. `ledger_apply_batch` runs many commands in one transaction and one round trip, each with
--    the same function and the same answer as when it is called alone. A client (the `batch`
--    module) queues its callers' commands and sends them in batches on a few lanes; the server's
--    per-statement and per-commit costs are paid once per batch instead of once per command.
--    Several batches run at once without deadlocks:
--    - a lane carries the commands of the requests (and payments) whose home stripe is its own,
--      `id % n_lanes` with `n_lanes` dividing `ledger_n_stripes()`: lanes' stripes are disjoint;
--    - identities are the rows lanes share: a batch locks all of its identities first, in one
--      order, before any command runs;
--    - taking every stripe (the exact-total paths) would wait on the other lanes' stripes, so a
--      batch may do it only when it holds the batch lock alone: every batch holds the advisory
--      batch lock shared, and a command that needs every stripe in a shared batch raises
--      `LDB01`; the client runs that batch again holding the batch lock exclusively.
--    Calls outside batches (no batch lock) keep their one-command protocol.
-- 2. Column checks become domains. A domain's CHECK is compiled once per session (the type
--    cache), where a table's CHECK constraints are read back from their stored text and planned
--    again by every statement that writes the table: a third of a command's server time went
--    there. The rules are the same (amounts are BIGINT >= 0; states and kinds from their lists);
--    checks across columns stay table checks.

-- ── 2. domains ──────────────────────────────────────────────────────────────────────────────

CREATE DOMAIN sats AS bigint CHECK (VALUE >= 0);
CREATE DOMAIN positive_sats AS bigint CHECK (VALUE > 0);
CREATE DOMAIN ledger_id AS bigint CHECK (VALUE >= 0);
CREATE DOMAIN tier_name AS text CHECK (VALUE IN ('new', 'established', 'trusted', 'elite'));
CREATE DOMAIN decision_kind AS text CHECK (VALUE IN ('free', 'partial', 'gate'));
CREATE DOMAIN reservation_state AS text CHECK (VALUE IN ('reserved', 'recorded', 'released', 'expired'));
CREATE DOMAIN journal_kind AS text
    CHECK (VALUE IN ('genesis', 'debit', 'release', 'expire', 'record', 'credit', 'rebalance'));

DROP VIEW pool;

ALTER TABLE identities
    DROP CONSTRAINT identities_reserved_sats_check,
    DROP CONSTRAINT identities_sats_absorbed_today_check,
    DROP CONSTRAINT identities_tier_check,
    ALTER COLUMN tier TYPE tier_name,
    ALTER COLUMN sats_absorbed_today TYPE sats,
    ALTER COLUMN reserved_sats TYPE sats;

ALTER TABLE requests
    DROP CONSTRAINT requests_charge_sats_check,
    DROP CONSTRAINT requests_offer_sats_check,
    DROP CONSTRAINT requests_estimated_sats_check,
    DROP CONSTRAINT requests_request_id_check,
    DROP CONSTRAINT requests_decision_check,
    ALTER COLUMN request_id TYPE ledger_id,
    ALTER COLUMN estimated_sats TYPE sats,
    ALTER COLUMN decision TYPE decision_kind,
    ALTER COLUMN offer_sats TYPE sats,
    ALTER COLUMN charge_sats TYPE sats;

DROP TRIGGER reservation_recorded_has_grant ON reservations;
ALTER TABLE reservations
    DROP CONSTRAINT reservations_amount_sats_check,
    DROP CONSTRAINT reservations_state_check,
    ALTER COLUMN amount_sats TYPE positive_sats,
    ALTER COLUMN state TYPE reservation_state;
CREATE CONSTRAINT TRIGGER reservation_recorded_has_grant
    AFTER UPDATE ON reservations DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.state = 'recorded')
    EXECUTE FUNCTION reservation_recorded_has_grant();

ALTER TABLE grants
    DROP CONSTRAINT grants_absorbed_sats_check,
    DROP CONSTRAINT grants_actual_sats_check,
    DROP CONSTRAINT grants_overrun_sats_check,
    DROP CONSTRAINT grants_returned_sats_check,
    ALTER COLUMN actual_sats TYPE sats,
    ALTER COLUMN absorbed_sats TYPE sats,
    ALTER COLUMN returned_sats TYPE sats,
    ALTER COLUMN overrun_sats TYPE sats;

ALTER TABLE processed_payments
    DROP CONSTRAINT processed_payments_credited_sats_check,
    DROP CONSTRAINT processed_payments_paid_sats_check,
    DROP CONSTRAINT processed_payments_payment_id_check,
    ALTER COLUMN payment_id TYPE ledger_id,
    ALTER COLUMN paid_sats TYPE sats,
    ALTER COLUMN credited_sats TYPE sats;

ALTER TABLE refused_reservations
    DROP CONSTRAINT refused_reservations_amount_sats_check,
    ALTER COLUMN amount_sats TYPE positive_sats;

ALTER TABLE pool_journal
    DROP CONSTRAINT pool_journal_kind_check,
    ALTER COLUMN kind TYPE journal_kind;

ALTER TABLE pool_stripes
    DROP CONSTRAINT pool_stripes_absorbed_sats_check,
    DROP CONSTRAINT pool_stripes_balance_sats_check,
    DROP CONSTRAINT pool_stripes_credited_sats_check,
    DROP CONSTRAINT pool_stripes_n_grants_check,
    DROP CONSTRAINT pool_stripes_overrun_sats_check,
    DROP CONSTRAINT pool_stripes_reserved_sats_check,
    DROP CONSTRAINT pool_stripes_stripe_check,
    ALTER COLUMN balance_sats TYPE sats,
    ALTER COLUMN reserved_sats TYPE sats,
    ALTER COLUMN absorbed_sats TYPE sats,
    ALTER COLUMN credited_sats TYPE sats,
    ALTER COLUMN overrun_sats TYPE sats,
    ALTER COLUMN n_grants TYPE sats,
    ADD CHECK (stripe >= 0);

CREATE VIEW pool AS
SELECT 1::smallint AS id,
       sum(balance_sats)::bigint  AS balance_sats,
       sum(reserved_sats)::bigint AS reserved_sats,
       sum(absorbed_sats)::bigint AS absorbed_sats,
       sum(credited_sats)::bigint AS credited_sats,
       sum(overrun_sats)::bigint  AS overrun_sats,
       sum(n_grants)::bigint      AS n_grants
FROM pool_stripes
HAVING count(*) > 0;

CREATE TRIGGER pool_view_guard INSTEAD OF INSERT OR UPDATE OR DELETE ON pool
    FOR EACH ROW EXECUTE FUNCTION pool_view_guard();

-- ── 1. batches ──────────────────────────────────────────────────────────────────────────────

-- The batch lock: (int4, int4) keys never meet the bigint keys of requests.
CREATE FUNCTION ledger_before_lock_all() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('ledger.batch', true) = 'shared' THEN
        RAISE EXCEPTION 'this batch needs every pool stripe: run it again holding the batch lock exclusively'
            USING ERRCODE = 'LDB01';
    END IF;
END $$;

CREATE OR REPLACE FUNCTION ledger_pool_lock_all(p_now bigint) RETURNS bigint LANGUAGE plpgsql AS $$
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

CREATE OR REPLACE FUNCTION ledger_record(p_request_id bigint, p_actual bigint, p_now bigint)
RETURNS ledger_result LANGUAGE plpgsql AS $$
DECLARE
    res reservations%ROWTYPE;
    g grants%ROWTYPE;
    v_overrun_total numeric;
    v_absorbed bigint;
    v_returned bigint;
    v_overrun bigint;
BEGIN
    SELECT * INTO res FROM reservations WHERE request_id = p_request_id FOR UPDATE;
    IF NOT FOUND THEN
        IF EXISTS (SELECT 1 FROM requests WHERE request_id = p_request_id) THEN
            RETURN ledger_refuse('not_reserved');
        END IF;
        RETURN ledger_refuse('unknown_request');
    END IF;
    CASE res.state
        WHEN 'recorded' THEN
            SELECT * INTO g FROM grants WHERE request_id = p_request_id;
            IF g.actual_sats = p_actual THEN
                RETURN ROW(true, 'recorded', false, g.absorbed_sats, g.returned_sats,
                    g.overrun_sats, g.pubkey)::ledger_result;
            END IF;
            RETURN ledger_refuse('recorded_with_different_amount', g.actual_sats);
        WHEN 'released' THEN
            RETURN ledger_refuse('already_released');
        WHEN 'expired' THEN
            RETURN ledger_refuse('reservation_expired');
        ELSE
            NULL;
    END CASE;
    v_absorbed := least(p_actual, res.amount_sats);
    v_returned := res.amount_sats - v_absorbed;
    v_overrun := p_actual - v_absorbed;
    IF v_overrun > 0 THEN
        SELECT sum(overrun_sats) INTO v_overrun_total FROM pool_stripes;
        IF v_overrun > 1099511627776 OR v_overrun_total > 2305843009213693952 THEN
            -- Near the limit: the exact total, every stripe locked (the identity first, as
            -- every command locks identities before stripes).
            PERFORM ledger_before_lock_all();
            PERFORM 1 FROM identities WHERE pubkey = res.pubkey FOR UPDATE;
            SELECT sum(overrun_sats) INTO v_overrun_total
            FROM (SELECT overrun_sats FROM pool_stripes ORDER BY stripe FOR UPDATE) s;
            IF v_overrun > 9223372036854775807 - v_overrun_total THEN
                RETURN ledger_refuse('overflow');
            END IF;
        END IF;
    END IF;
    -- The seed's CASE: the first absorption after the window ran out starts a new one.
    UPDATE identities SET
        reserved_sats = reserved_sats - res.amount_sats,
        sats_absorbed_today = CASE
            WHEN v_absorbed = 0 THEN sats_absorbed_today
            WHEN p_now - absorbed_reset_at_ms >= 86400000 THEN v_absorbed
            ELSE sats_absorbed_today + v_absorbed END,
        absorbed_reset_at_ms = CASE
            WHEN v_absorbed > 0 AND p_now - absorbed_reset_at_ms >= 86400000 THEN p_now
            ELSE absorbed_reset_at_ms END
    WHERE pubkey = res.pubkey;
    UPDATE reservations SET state = 'recorded', closed_at_ms = p_now WHERE request_id = p_request_id;
    INSERT INTO grants VALUES (p_request_id, res.pubkey, p_actual, v_absorbed, v_returned,
        v_overrun, p_now);
    INSERT INTO pool_journal (kind, stripe, request_id, amount_sats, d_reserved_sats, d_absorbed_sats,
        d_overrun_sats, d_grants, at_ms)
    VALUES ('record', res.stripe, p_request_id, v_returned, -res.amount_sats, v_absorbed, v_overrun, 1, p_now);
    RETURN ROW(true, 'recorded', true, v_absorbed, v_returned, v_overrun, res.pubkey)::ledger_result;
END $$;

-- ── credit ──────────────────────────────────────────────────────────────────────────────────

CREATE OR REPLACE FUNCTION ledger_credit(p_payment_id bigint, p_paid bigint, p_now bigint)
RETURNS ledger_result LANGUAGE plpgsql AS $$
DECLARE
    pay processed_payments%ROWTYPE;
    v_bps bigint;
    v_credited bigint;
    v_balance numeric;
    v_credited_total numeric;
BEGIN
    SELECT * INTO pay FROM processed_payments WHERE payment_id = p_payment_id;
    IF NOT FOUND THEN
        SELECT credit_bps INTO v_bps FROM ledger_config WHERE id = 1;
        -- floor(paid * bps / 10000) without overflowing bigint.
        v_credited := (p_paid / 10000) * v_bps + (p_paid % 10000) * v_bps / 10000;
        SELECT sum(balance_sats), sum(credited_sats) INTO v_balance, v_credited_total FROM pool_stripes;
        IF v_credited > 1099511627776 OR v_balance > 2305843009213693952
           OR v_credited_total > 2305843009213693952 THEN
            -- Near the limit: the exact totals, every stripe locked.
            PERFORM ledger_before_lock_all();
            SELECT sum(balance_sats), sum(credited_sats) INTO v_balance, v_credited_total
            FROM (SELECT balance_sats, credited_sats FROM pool_stripes ORDER BY stripe FOR UPDATE) s;
            IF v_credited > 9223372036854775807 - v_balance
               OR v_credited > 9223372036854775807 - v_credited_total THEN
                RETURN ledger_refuse('overflow');
            END IF;
        END IF;
        INSERT INTO processed_payments VALUES (p_payment_id, p_paid, v_credited, p_now)
        ON CONFLICT (payment_id) DO NOTHING;
        IF FOUND THEN
            INSERT INTO pool_journal (kind, stripe, payment_id, amount_sats, d_credited_sats, at_ms)
            VALUES ('credit', (p_payment_id % ledger_n_stripes())::smallint, p_payment_id,
                v_credited, v_credited, p_now);
            RETURN ROW(true, 'credited', true, v_credited, NULL, NULL, NULL)::ledger_result;
        END IF;
        SELECT * INTO pay FROM processed_payments WHERE payment_id = p_payment_id;
    END IF;
    IF pay.paid_sats <> p_paid THEN
        RETURN ledger_refuse('payment_with_different_amount', pay.paid_sats);
    END IF;
    RETURN ROW(true, 'credited', false, pay.credited_sats, NULL, NULL, NULL)::ledger_result;
END $$;

-- ── batch ───────────────────────────────────────────────────────────────────────────────────

-- Runs command i (1-based) of the batch: kind, id (request, or payment for `credit`), text
-- (pubkey, or the tier for `set_tier` whose pubkey is then in p_pubkeys), amount and time.
-- Answers one `ledger_result` per command, in order. `expire` is not batched.
CREATE FUNCTION ledger_apply_batch(p_kinds text[], p_ids bigint[], p_pubkeys text[], p_tiers text[],
    p_amounts bigint[], p_nows bigint[], p_exclusive boolean)
RETURNS SETOF ledger_result LANGUAGE plpgsql AS $$
DECLARE
    n integer := coalesce(array_length(p_kinds, 1), 0);
BEGIN
    IF p_exclusive THEN
        PERFORM pg_advisory_xact_lock(1279607111, 1);
        PERFORM set_config('ledger.batch', 'exclusive', true);
    ELSE
        PERFORM pg_advisory_xact_lock_shared(1279607111, 1);
        PERFORM set_config('ledger.batch', 'shared', true);
    END IF;
    -- Every identity the batch will lock, in one order, first. A record's or release's
    -- identity is its reservation's (immutable: read without a lock).
    PERFORM 1 FROM identities
    WHERE pubkey IN (
        SELECT p_pubkeys[k] FROM generate_subscripts(p_kinds, 1) k
        WHERE p_kinds[k] IN ('decide', 'reserve_partial', 'set_tier')
        UNION
        SELECT r.pubkey FROM reservations r
        WHERE r.request_id IN (
            SELECT p_ids[k] FROM generate_subscripts(p_kinds, 1) k WHERE p_kinds[k] IN ('record', 'release')))
    ORDER BY pubkey FOR UPDATE;
    FOR i IN 1 .. n LOOP
        CASE p_kinds[i]
            WHEN 'decide' THEN
                RETURN NEXT ledger_decide(p_ids[i], p_pubkeys[i], p_amounts[i], p_nows[i]);
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
