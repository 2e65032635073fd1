-- The pool in stripes: one hot row was the bottleneck of every command that moves sats.
--
-- The pool's balance and running totals are split over `ledger_n_stripes()` rows of
-- `pool_stripes`. The pool balance is their sum; `pool` becomes a view of the sums, so
-- readers and the audit see one row as before.
--
-- Why the outcomes stay exactly the reference's (`decide` answers from the *whole* pool):
-- - Every request has a home stripe (request id mod N); its reservation, release, record and
--   expiry are booked there, so each stripe's `reserved_sats` stays >= 0.
-- - A debit first tries the home stripe alone, inside a subtransaction: the journal row's
--   trigger moves the stripe, and its CHECK (balance_sats >= 0) fails when the stripe is short,
--   which rolls the subtransaction back (and releases the row lock). Success means the stripe,
--   hence the pool, covered the amount: the reference would have granted it too.
-- - When the home stripe is short, the function locks *all* stripes in stripe order and reads
--   the exact total. If the total covers the amount, the debit is spread over the stripes (home
--   first, one journal row per stripe touched); if not, the answer is computed from that exact
--   total, as the reference computes it from its single balance.
-- - An advisory answer (a partial offer, a refusal's `available`) needs the pool only when it
--   could be the smallest term: if the home stripe alone holds at least the daily remaining,
--   the pool does too, and the answer is the daily remaining without locking anything.
-- - Overflow refusals (sums near 2^63) need exact totals; they are checked without locks only
--   when the amount is at most 2^40 and the totals at most 2^61, which no set of concurrent
--   transactions (at most 2^18 connections) can push past 2^63. Otherwise all stripes are
--   locked and the check is exact.
--
-- Deadlock freedom: a transaction either holds one stripe (its home) and then waits for no
-- other stripe, or takes every stripe it needs in stripe order. Duplicates of one `decide`
-- are serialised by a transaction-scoped advisory lock on the request id, taken first.

CREATE FUNCTION ledger_n_stripes() RETURNS integer LANGUAGE sql IMMUTABLE AS 'SELECT 16';

CREATE TABLE pool_stripes (
    stripe         smallint PRIMARY KEY CHECK (stripe >= 0),
    balance_sats   bigint NOT NULL DEFAULT 0 CHECK (balance_sats >= 0),
    reserved_sats  bigint NOT NULL DEFAULT 0 CHECK (reserved_sats >= 0),
    absorbed_sats  bigint NOT NULL DEFAULT 0 CHECK (absorbed_sats >= 0),
    credited_sats  bigint NOT NULL DEFAULT 0 CHECK (credited_sats >= 0),
    overrun_sats   bigint NOT NULL DEFAULT 0 CHECK (overrun_sats >= 0),
    n_grants       bigint NOT NULL DEFAULT 0 CHECK (n_grants >= 0)
);

ALTER TABLE pool_journal ADD COLUMN stripe smallint NOT NULL DEFAULT 0;
-- `rebalance`: sats moved between stripes (the rows of one rebalance sum to zero).
ALTER TABLE pool_journal DROP CONSTRAINT pool_journal_kind_check;
ALTER TABLE pool_journal DROP CONSTRAINT pool_journal_check1;
ALTER TABLE pool_journal ADD CONSTRAINT pool_journal_kind_check CHECK (kind IN
    ('genesis', 'debit', 'release', 'expire', 'record', 'credit', 'rebalance'));
ALTER TABLE pool_journal ADD CONSTRAINT pool_journal_request_check CHECK
    ((kind IN ('genesis', 'credit', 'rebalance')) = (request_id IS NULL));
ALTER TABLE reservations ADD COLUMN stripe smallint NOT NULL DEFAULT 0;

-- A database migrated with data keeps it: the old row becomes stripe 0.
INSERT INTO pool_stripes (stripe, balance_sats, reserved_sats, absorbed_sats, credited_sats,
    overrun_sats, n_grants)
SELECT 0, balance_sats, reserved_sats, absorbed_sats, credited_sats, overrun_sats, n_grants
FROM pool WHERE id = 1;
INSERT INTO pool_stripes (stripe)
SELECT s FROM generate_series(1, ledger_n_stripes() - 1) s
WHERE EXISTS (SELECT 1 FROM pool_stripes);

DROP TABLE pool;

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

CREATE FUNCTION pool_view_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the pool moves only through pool_journal' USING ERRCODE = 'P0001';
END $$;

CREATE TRIGGER pool_view_guard INSTEAD OF INSERT OR UPDATE OR DELETE ON pool
    FOR EACH ROW EXECUTE FUNCTION pool_view_guard();

-- Only the journal trigger (depth >= 2) may change a stripe after genesis.
CREATE TRIGGER pool_stripes_guard BEFORE UPDATE OR DELETE ON pool_stripes
    FOR EACH ROW EXECUTE FUNCTION pool_guard();

-- The journal moves its stripe: one update per journal row.
CREATE OR REPLACE FUNCTION pool_journal_apply() RETURNS trigger LANGUAGE plpgsql AS $$
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

-- ── genesis ─────────────────────────────────────────────────────────────────────────────────

CREATE OR REPLACE FUNCTION ledger_genesis(
    p_budget_new bigint, p_budget_established bigint, p_budget_trusted bigint,
    p_budget_elite bigint, p_pool_initial_sats bigint, p_credit_bps integer,
    p_reservation_ttl_ms bigint, p_now bigint
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    cfg ledger_config%ROWTYPE;
BEGIN
    INSERT INTO ledger_config VALUES (1, p_budget_new, p_budget_established, p_budget_trusted,
        p_budget_elite, p_pool_initial_sats, p_credit_bps, p_reservation_ttl_ms)
    ON CONFLICT (id) DO NOTHING;
    IF NOT FOUND THEN
        SELECT * INTO cfg FROM ledger_config WHERE id = 1;
        IF cfg <> ROW(1::smallint, p_budget_new, p_budget_established, p_budget_trusted,
                p_budget_elite, p_pool_initial_sats, p_credit_bps, p_reservation_ttl_ms)::ledger_config THEN
            RAISE EXCEPTION 'ledger already has a different genesis' USING ERRCODE = 'P0001';
        END IF;
        RETURN;
    END IF;
    INSERT INTO pool_stripes (stripe) SELECT s FROM generate_series(0, ledger_n_stripes() - 1) s;
    -- The initial balance, spread evenly over the stripes.
    INSERT INTO pool_journal (kind, stripe, amount_sats, at_ms)
    SELECT 'genesis', s, p_pool_initial_sats / ledger_n_stripes()
        + CASE WHEN s < p_pool_initial_sats % ledger_n_stripes() THEN 1 ELSE 0 END, p_now
    FROM generate_series(0, ledger_n_stripes() - 1) s;
END $$;

-- ── pool helpers ────────────────────────────────────────────────────────────────────────────

-- Locks every stripe, in stripe order, and returns the exact pool balance. While it holds
-- them all, it evens the stripes out (journalled as `rebalance`), so that the next debits find
-- their home stripe covered and take the one-stripe path again.
CREATE FUNCTION ledger_pool_lock_all(p_now bigint) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_total bigint;
    v_n integer := ledger_n_stripes();
    v_target bigint;
    r record;
BEGIN
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

-- A lower bound of the pool balance, read without a lock: the home stripe's balance.
CREATE FUNCTION ledger_pool_at_least(p_home smallint, p_amount bigint) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT balance_sats >= p_amount FROM pool_stripes WHERE stripe = p_home), false)
$$;

-- Debits exactly p_amount (> 0) for a reservation homed on p_home, or nothing. `ok` says
-- which; when nothing was debited, `total` is the exact pool balance (all stripes locked).
CREATE FUNCTION ledger_pool_debit(p_home smallint, p_request_id bigint, p_amount bigint,
    p_now bigint, OUT ok boolean, OUT total bigint)
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    v_left bigint := p_amount;
    v_take bigint;
BEGIN
    BEGIN
        INSERT INTO pool_journal (kind, stripe, request_id, amount_sats, d_reserved_sats, at_ms)
        VALUES ('debit', p_home, p_request_id, -p_amount, p_amount, p_now);
        ok := true;
        RETURN;
    EXCEPTION WHEN check_violation THEN
        -- The home stripe is short: the subtransaction's update and lock are gone.
        NULL;
    END;
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
        END IF;
        v_left := v_left - v_take;
        EXIT WHEN v_left = 0;
    END LOOP;
    ok := true;
    total := NULL;
END $$;

-- ── decide ──────────────────────────────────────────────────────────────────────────────────

CREATE OR REPLACE FUNCTION ledger_decide(p_request_id bigint, p_pubkey text, p_estimated bigint, p_now bigint)
RETURNS ledger_result LANGUAGE plpgsql AS $$
DECLARE
    req requests%ROWTYPE;
    idn identities%ROWTYPE;
    dr record;
    v_home smallint := (p_request_id % ledger_n_stripes())::smallint;
    v_pool bigint;
    v_remaining bigint;
    v_can bigint;
    v_decision text := 'gate';
    v_offer bigint := 0;
    v_charge bigint := p_estimated;
    v_reason text;
    v_ttl bigint;
BEGIN
    -- Duplicates of this decide wait here, then see the first one's answer.
    PERFORM pg_advisory_xact_lock(p_request_id);
    SELECT * INTO req FROM requests WHERE request_id = p_request_id;
    IF NOT FOUND THEN
        IF p_estimated = 0 THEN
            v_reason := 'zero_estimate';
        ELSE
            SELECT * INTO idn FROM identities WHERE pubkey = p_pubkey FOR UPDATE;
            IF NOT FOUND THEN
                v_reason := 'unknown_identity';
            ELSIF ledger_budget(idn.tier) = 0 THEN
                v_reason := 'zero_budget';
            ELSE
                v_remaining := ledger_daily_remaining(idn, p_now);
                IF v_remaining = 0 THEN
                    v_reason := 'daily_budget_exhausted';
                ELSIF v_remaining >= p_estimated THEN
                    -- Free if the pool covers it: debit now, or learn the exact balance.
                    SELECT * INTO dr FROM ledger_pool_debit(v_home, p_request_id, p_estimated, p_now);
                    IF dr.ok THEN
                        v_decision := 'free';
                        v_offer := p_estimated;
                        v_charge := 0;
                    ELSE
                        v_pool := dr.total;
                    END IF;
                ELSIF ledger_pool_at_least(v_home, v_remaining) THEN
                    -- The offer is the daily remaining whatever the rest of the pool holds.
                    v_pool := v_remaining;
                ELSE
                    v_pool := ledger_pool_lock_all(p_now);
                END IF;
                IF v_decision <> 'free' AND v_reason IS NULL THEN
                    IF v_pool = 0 THEN
                        v_reason := 'pool_empty';
                    ELSE
                        v_can := least(v_remaining, v_pool, p_estimated);
                        v_offer := v_can;
                        v_charge := p_estimated - v_can;
                        v_decision := 'partial';
                    END IF;
                END IF;
            END IF;
        END IF;
        INSERT INTO requests VALUES (p_request_id, p_pubkey, p_estimated, v_decision, v_offer,
            v_charge, v_reason);
        IF v_decision = 'free' THEN
            SELECT reservation_ttl_ms INTO v_ttl FROM ledger_config WHERE id = 1;
            INSERT INTO reservations (request_id, pubkey, amount_sats, by_decide, deadline_ms, stripe)
            VALUES (p_request_id, p_pubkey, p_estimated, true,
                CASE WHEN p_now > 9223372036854775807 - v_ttl THEN 9223372036854775807
                     ELSE p_now + v_ttl END, v_home);
            UPDATE identities SET reserved_sats = reserved_sats + p_estimated
            WHERE pubkey = p_pubkey;
        END IF;
        RETURN ROW(true, v_decision, true, v_offer, v_charge, NULL, v_reason)::ledger_result;
    END IF;
    IF req.pubkey <> p_pubkey THEN
        RETURN ledger_refuse('exists_with_different_pubkey');
    END IF;
    IF req.estimated_sats <> p_estimated THEN
        RETURN ledger_refuse('exists_with_different_estimate', req.estimated_sats);
    END IF;
    RETURN ROW(true, req.decision, false, req.offer_sats, req.charge_sats, NULL, req.gate_reason)::ledger_result;
END $$;

-- ── reserve_partial ─────────────────────────────────────────────────────────────────────────

CREATE OR REPLACE FUNCTION ledger_reserve_partial(p_request_id bigint, p_pubkey text, p_amount bigint, p_now bigint)
RETURNS ledger_result LANGUAGE plpgsql AS $$
DECLARE
    req requests%ROWTYPE;
    res reservations%ROWTYPE;
    idn identities%ROWTYPE;
    dr record;
    v_home smallint := (p_request_id % ledger_n_stripes())::smallint;
    v_remaining bigint;
    v_pool bigint;
    v_available bigint;
    v_ttl bigint;
BEGIN
    -- The request row's lock serialises duplicates of this command.
    SELECT * INTO req FROM requests WHERE request_id = p_request_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN ledger_refuse('unknown_request');
    END IF;
    IF req.pubkey <> p_pubkey THEN
        RETURN ledger_refuse('exists_with_different_pubkey');
    END IF;
    SELECT * INTO res FROM reservations WHERE request_id = p_request_id;
    IF FOUND THEN
        IF NOT res.by_decide AND res.amount_sats = p_amount THEN
            RETURN ROW(true, 'reserved', false, p_amount, NULL, NULL, NULL)::ledger_result;
        END IF;
        RETURN ledger_refuse('reservation_exists', res.amount_sats);
    END IF;
    IF p_amount = 0 THEN
        RETURN ledger_refuse('zero_amount');
    END IF;
    IF p_amount > req.estimated_sats THEN
        RETURN ledger_refuse('amount_above_estimate', req.estimated_sats);
    END IF;
    SELECT available_sats INTO v_available FROM refused_reservations
    WHERE request_id = p_request_id AND amount_sats = p_amount;
    IF FOUND THEN
        RETURN ledger_refuse('insufficient_funds', v_available);
    END IF;
    SELECT * INTO idn FROM identities WHERE pubkey = p_pubkey FOR UPDATE;
    IF NOT FOUND THEN
        RETURN ledger_refuse('unknown_identity');
    END IF;
    v_remaining := ledger_daily_remaining(idn, p_now);
    IF p_amount <= v_remaining THEN
        SELECT * INTO dr FROM ledger_pool_debit(v_home, p_request_id, p_amount, p_now);
        IF NOT dr.ok THEN
            v_pool := dr.total;
        END IF;
    ELSIF ledger_pool_at_least(v_home, v_remaining) THEN
        v_pool := v_remaining;
    ELSE
        v_pool := ledger_pool_lock_all(p_now);
    END IF;
    IF v_pool IS NOT NULL THEN
        v_available := least(v_remaining, v_pool);
        INSERT INTO refused_reservations VALUES (p_request_id, p_amount, v_available);
        RETURN ledger_refuse('insufficient_funds', v_available);
    END IF;
    SELECT reservation_ttl_ms INTO v_ttl FROM ledger_config WHERE id = 1;
    INSERT INTO reservations (request_id, pubkey, amount_sats, by_decide, deadline_ms, stripe)
    VALUES (p_request_id, p_pubkey, p_amount, false,
        CASE WHEN p_now > 9223372036854775807 - v_ttl THEN 9223372036854775807
             ELSE p_now + v_ttl END, v_home);
    UPDATE identities SET reserved_sats = reserved_sats + p_amount WHERE pubkey = p_pubkey;
    RETURN ROW(true, 'reserved', true, p_amount, NULL, NULL, NULL)::ledger_result;
END $$;

-- ── release ─────────────────────────────────────────────────────────────────────────────────

CREATE OR REPLACE FUNCTION ledger_release(p_request_id bigint, p_now bigint)
RETURNS ledger_result LANGUAGE plpgsql AS $$
DECLARE
    res reservations%ROWTYPE;
BEGIN
    SELECT * INTO res FROM reservations WHERE request_id = p_request_id FOR UPDATE;
    IF NOT FOUND THEN
        IF EXISTS (SELECT 1 FROM requests WHERE request_id = p_request_id) THEN
            RETURN ledger_refuse('not_reserved');
        END IF;
        RETURN ledger_refuse('unknown_request');
    END IF;
    CASE res.state
        WHEN 'released' THEN
            RETURN ROW(true, 'released', false, res.amount_sats, NULL, NULL, NULL)::ledger_result;
        WHEN 'recorded' THEN
            RETURN ledger_refuse('already_recorded');
        WHEN 'expired' THEN
            RETURN ledger_refuse('reservation_expired');
        ELSE
            NULL;
    END CASE;
    UPDATE identities SET reserved_sats = reserved_sats - res.amount_sats WHERE pubkey = res.pubkey;
    UPDATE reservations SET state = 'released', closed_at_ms = p_now WHERE request_id = p_request_id;
    INSERT INTO pool_journal (kind, stripe, request_id, amount_sats, d_reserved_sats, at_ms)
    VALUES ('release', res.stripe, p_request_id, res.amount_sats, -res.amount_sats, p_now);
    RETURN ROW(true, 'released', true, res.amount_sats, NULL, NULL, NULL)::ledger_result;
END $$;

-- ── record ──────────────────────────────────────────────────────────────────────────────────

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
    PERFORM 1 FROM identities WHERE pubkey = res.pubkey FOR UPDATE;
    IF v_overrun > 0 THEN
        SELECT sum(overrun_sats) INTO v_overrun_total FROM pool_stripes;
        IF v_overrun > 1099511627776 OR v_overrun_total > 2305843009213693952 THEN
            -- Near the limit: the exact total, every stripe locked.
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

-- ── expire ──────────────────────────────────────────────────────────────────────────────────

CREATE OR REPLACE FUNCTION ledger_expire(p_now bigint)
RETURNS TABLE (request_id bigint, amount_sats bigint) LANGUAGE plpgsql AS $$
DECLARE
    v_ids bigint[];
    v_pubkeys text[];
    v_amounts bigint[];
    v_stripes smallint[];
    i integer;
BEGIN
    -- Lock the reservations first, then their identities in pubkey order, then their stripes
    -- in stripe order.
    SELECT array_agg(s.request_id ORDER BY s.deadline_ms, s.request_id),
           array_agg(s.pubkey ORDER BY s.deadline_ms, s.request_id),
           array_agg(s.amount_sats ORDER BY s.deadline_ms, s.request_id),
           array_agg(s.stripe ORDER BY s.deadline_ms, s.request_id)
    INTO v_ids, v_pubkeys, v_amounts, v_stripes
    FROM (SELECT r.request_id, r.pubkey, r.amount_sats, r.deadline_ms, r.stripe FROM reservations r
          WHERE r.state = 'reserved' AND r.deadline_ms < p_now
          ORDER BY r.deadline_ms, r.request_id FOR UPDATE) s;
    IF v_ids IS NULL THEN
        RETURN;
    END IF;
    PERFORM 1 FROM identities WHERE pubkey = ANY (v_pubkeys) ORDER BY pubkey FOR UPDATE;
    PERFORM 1 FROM pool_stripes WHERE stripe = ANY (v_stripes) ORDER BY stripe FOR UPDATE;
    FOR i IN 1 .. array_length(v_ids, 1) LOOP
        UPDATE identities SET reserved_sats = reserved_sats - v_amounts[i] WHERE pubkey = v_pubkeys[i];
        UPDATE reservations r SET state = 'expired', closed_at_ms = p_now WHERE r.request_id = v_ids[i];
        INSERT INTO pool_journal (kind, stripe, request_id, amount_sats, d_reserved_sats, at_ms)
        VALUES ('expire', v_stripes[i], v_ids[i], v_amounts[i], -v_amounts[i], p_now);
        request_id := v_ids[i];
        amount_sats := v_amounts[i];
        RETURN NEXT;
    END LOOP;
END $$;

-- ── audit ───────────────────────────────────────────────────────────────────────────────────

-- The per-stripe check the single row did not need: each stripe's journal sums to its balance.
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
