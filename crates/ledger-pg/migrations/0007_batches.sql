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
--    checks across columns stay table checks, or move into a trigger that runs anyway. The
--    reservation's two foreign keys give way to guards that cost nothing on insert and to an
--    audit (see below).
-- 3. A grant's insert closes its reservation (no deferred check at commit), and `decide`
--    debits its home stripe itself and calls `ledger_pool_debit` only when it is short.

-- ── 2. domains ──────────────────────────────────────────────────────────────────────────────

CREATE DOMAIN sats AS bigint CHECK (VALUE >= 0);
CREATE DOMAIN positive_sats AS bigint CHECK (VALUE > 0);
CREATE DOMAIN stripe_no AS smallint CHECK (VALUE >= 0);
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
-- The reservation's foreign keys (to its request and its identity) cost a sixth of a batched
-- request's server time (two referential checks, each a query, per reservation). They guard
-- none of I1, I5 or idempotency, which stay with keys, domains and guards; what they did guard
-- is kept otherwise: a reservation is only ever written by `decide` and `reserve_partial`, under
-- the locks of its request and identity; requests become append-only and identities
-- undeletable (guards below, which cost nothing on insert), so what a reservation refers to
-- cannot go away; and `ledger_audit_links()` reports any reservation whose request or identity
-- is missing or disagrees.
ALTER TABLE reservations
    DROP CONSTRAINT reservations_pubkey_fkey,
    DROP CONSTRAINT reservations_request_id_fkey;
ALTER TABLE reservations
    DROP CONSTRAINT reservations_amount_sats_check,
    DROP CONSTRAINT reservations_state_check,
    ALTER COLUMN amount_sats TYPE positive_sats,
    ALTER COLUMN state TYPE reservation_state;

-- A reservation becomes `recorded` only by the insert of its grant (the grant's guard closes
-- it, in the same statement), so a recorded reservation has its grant without the deferred
-- check at commit that `reservation_recorded_has_grant` was.
DROP FUNCTION reservation_recorded_has_grant();

CREATE OR REPLACE FUNCTION reservation_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'reservations are never deleted' USING ERRCODE = 'P0001';
    END IF;
    IF OLD.state <> 'reserved'
       OR NEW.request_id <> OLD.request_id OR NEW.pubkey <> OLD.pubkey
       OR NEW.amount_sats <> OLD.amount_sats OR NEW.by_decide <> OLD.by_decide
       OR NEW.deadline_ms <> OLD.deadline_ms THEN
        RAISE EXCEPTION 'reservation % is closed or immutable', OLD.request_id
            USING ERRCODE = 'P0001';
    END IF;
    -- Depth 2: from the grant's guard.
    IF NEW.state = 'recorded' AND pg_trigger_depth() < 2 THEN
        RAISE EXCEPTION 'reservation % is recorded only by inserting its grant', OLD.request_id
            USING ERRCODE = 'P0001';
    END IF;
    RETURN NEW;
END $$;

ALTER TABLE grants
    DROP CONSTRAINT grants_request_id_fkey,
    DROP CONSTRAINT grants_check,
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

-- The journal's row checks move into its BEFORE INSERT trigger (it runs for every row, and
-- the journal is append-only), the grant's into its guard (likewise); the grant's foreign key
-- is the guard's own check (a recorded reservation of the same pubkey and amount; reservations
-- are never deleted), so it goes too.
ALTER TABLE pool_journal
    DROP CONSTRAINT pool_journal_kind_check,
    DROP CONSTRAINT pool_journal_check,
    DROP CONSTRAINT pool_journal_request_check,
    ALTER COLUMN kind TYPE journal_kind;

CREATE OR REPLACE FUNCTION pool_journal_move() RETURNS trigger LANGUAGE plpgsql AS $$
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
CREATE OR REPLACE FUNCTION grant_guard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_pubkey text;
    v_amount bigint;
BEGIN
    IF TG_OP <> 'INSERT' THEN
        RAISE EXCEPTION 'grants are append-only' USING ERRCODE = 'P0001';
    END IF;
    IF NEW.absorbed_sats + NEW.overrun_sats <> NEW.actual_sats THEN
        RAISE EXCEPTION 'grant %: absorbed + overrun <> actual', NEW.request_id USING ERRCODE = 'check_violation';
    END IF;
    -- The grant closes its reservation, which must be open (the reservation's guard says so),
    -- of the same pubkey, and of absorbed + returned. (By its key alone: a condition on the
    -- state would let the planner pick the partial index of outstanding reservations.)
    UPDATE reservations SET state = 'recorded', closed_at_ms = NEW.at_ms
    WHERE request_id = NEW.request_id
    RETURNING pubkey, amount_sats INTO v_pubkey, v_amount;
    IF NOT FOUND OR v_pubkey <> NEW.pubkey OR v_amount <> NEW.absorbed_sats + NEW.returned_sats THEN
        RAISE EXCEPTION 'grant % does not match an open reservation', NEW.request_id
            USING ERRCODE = 'P0001';
    END IF;
    RETURN NEW;
END $$;


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
    ALTER COLUMN stripe TYPE stripe_no;

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

CREATE FUNCTION requests_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'requests are append-only: a decision never changes' USING ERRCODE = 'P0001';
END $$;
CREATE TRIGGER requests_append_only BEFORE UPDATE OR DELETE ON requests
    FOR EACH ROW EXECUTE FUNCTION requests_append_only();
CREATE TRIGGER requests_no_truncate BEFORE TRUNCATE ON requests
    FOR EACH STATEMENT EXECUTE FUNCTION requests_append_only();

CREATE FUNCTION identities_kept() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'identities are never deleted' USING ERRCODE = 'P0001';
END $$;
CREATE TRIGGER identities_kept BEFORE DELETE ON identities
    FOR EACH ROW EXECUTE FUNCTION identities_kept();
CREATE TRIGGER identities_no_truncate BEFORE TRUNCATE ON identities
    FOR EACH STATEMENT EXECUTE FUNCTION identities_kept();

-- What the reservation's foreign keys checked, as a read-only audit.
CREATE FUNCTION ledger_audit_links() RETURNS TABLE (invariant text, detail text)
LANGUAGE sql STABLE AS $$
    SELECT 'I2', format('reservation %s of %s: %s', r.request_id, r.pubkey,
        CASE WHEN q.request_id IS NULL THEN 'no request'
             WHEN q.pubkey <> r.pubkey THEN format('its request is of %s', q.pubkey)
             ELSE 'no identity' END)
    FROM reservations r
    LEFT JOIN requests q ON q.request_id = r.request_id
    LEFT JOIN identities i ON i.pubkey = r.pubkey
    WHERE q.request_id IS NULL OR q.pubkey <> r.pubkey OR i.pubkey IS NULL
    ORDER BY r.request_id
$$;

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
    -- The grant's guard closes the reservation.
    INSERT INTO grants VALUES (p_request_id, res.pubkey, p_actual, v_absorbed, v_returned,
        v_overrun, p_now);
    INSERT INTO pool_journal (kind, stripe, request_id, amount_sats, d_reserved_sats, d_absorbed_sats,
        d_overrun_sats, d_grants, at_ms)
    VALUES ('record', res.stripe, p_request_id, v_returned, -res.amount_sats, v_absorbed, v_overrun, 1, p_now);
    RETURN ROW(true, 'recorded', true, v_absorbed, v_returned, v_overrun, res.pubkey)::ledger_result;
END $$;

-- ── decide: the one-stripe debit inline ───────────────────────────────────────────────────

-- `decide` under the request's advisory lock, with the rules `cfg`: a batch takes the locks of
-- all its decides in one statement and reads the rules once.
CREATE FUNCTION ledger_decide_locked(p_request_id bigint, p_pubkey text, p_estimated bigint, p_now bigint,
    cfg ledger_config)
RETURNS ledger_result LANGUAGE plpgsql AS $$
DECLARE
    req requests%ROWTYPE;
    idn identities%ROWTYPE;
    dr record;
    v_debited boolean;
    v_home smallint := (p_request_id % ledger_n_stripes())::smallint;
    v_budget bigint;
    v_pool bigint;
    v_remaining bigint;
    v_can bigint;
    v_decision text := 'gate';
    v_offer bigint := 0;
    v_charge bigint := p_estimated;
    v_reason text;
BEGIN
    SELECT * INTO req FROM requests WHERE request_id = p_request_id;
    IF NOT FOUND THEN
        IF p_estimated = 0 THEN
            v_reason := 'zero_estimate';
        ELSE
            SELECT * INTO idn FROM identities WHERE pubkey = p_pubkey FOR UPDATE;
            IF NOT FOUND THEN
                v_reason := 'unknown_identity';
            ELSE
                v_budget := CASE idn.tier
                    WHEN 'new' THEN cfg.budget_new
                    WHEN 'established' THEN cfg.budget_established
                    WHEN 'trusted' THEN cfg.budget_trusted
                    WHEN 'elite' THEN cfg.budget_elite END;
                IF v_budget = 0 THEN
                    v_reason := 'zero_budget';
                ELSE
                    -- `ledger_daily_remaining`, inline (numeric: no sum can overflow).
                    v_remaining := greatest(v_budget::numeric
                        - (CASE WHEN p_now - idn.absorbed_reset_at_ms >= 86400000 THEN 0
                                ELSE idn.sats_absorbed_today END)::numeric
                        - idn.reserved_sats::numeric, 0)::bigint;
                    IF v_remaining = 0 THEN
                        v_reason := 'daily_budget_exhausted';
                    ELSIF v_remaining >= p_estimated THEN
                        -- Free if the pool covers it: debit the home stripe (the journal's
                        -- trigger inserts nothing when it is short), or go through every stripe.
                        INSERT INTO pool_journal (kind, stripe, request_id, amount_sats, d_reserved_sats, at_ms)
                        VALUES ('debit', v_home, p_request_id, -p_estimated, p_estimated, p_now);
                        v_debited := FOUND;
                        IF NOT v_debited THEN
                            SELECT * INTO dr FROM ledger_pool_debit(v_home, p_request_id, p_estimated, p_now);
                            v_debited := dr.ok;
                        END IF;
                        IF v_debited THEN
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
        END IF;
        INSERT INTO requests VALUES (p_request_id, p_pubkey, p_estimated, v_decision, v_offer,
            v_charge, v_reason);
        IF v_decision = 'free' THEN
            INSERT INTO reservations (request_id, pubkey, amount_sats, by_decide, deadline_ms, stripe)
            VALUES (p_request_id, p_pubkey, p_estimated, true,
                CASE WHEN p_now > 9223372036854775807 - cfg.reservation_ttl_ms THEN 9223372036854775807
                     ELSE p_now + cfg.reservation_ttl_ms END, v_home);
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

CREATE OR REPLACE FUNCTION ledger_decide(p_request_id bigint, p_pubkey text, p_estimated bigint, p_now bigint)
RETURNS ledger_result LANGUAGE plpgsql AS $$
BEGIN
    -- Duplicates of this decide wait here, then see the first one's answer.
    PERFORM pg_advisory_xact_lock(p_request_id);
    RETURN ledger_decide_locked(p_request_id, p_pubkey, p_estimated, p_now,
        (SELECT c FROM ledger_config c WHERE id = 1));
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
-- Locks, in pubkey order, the identities of `p_pubkeys` and of the reservations of `p_ids`.
-- Both are key lookups: the cached generic plan of `= ANY (array)` can come out as a sequential
-- scan, which costs more the more rows a table has, so scans are off here (only here: the
-- commands' own sums over the stripes want them).
CREATE FUNCTION ledger_batch_lock_identities(p_ids bigint[], p_pubkeys text[]) RETURNS void
LANGUAGE plpgsql SET enable_seqscan = off AS $$
BEGIN
    IF cardinality(p_ids) > 0 THEN
        p_pubkeys := p_pubkeys || ARRAY(SELECT pubkey FROM reservations WHERE request_id = ANY (p_ids));
    END IF;
    PERFORM 1 FROM identities WHERE pubkey = ANY (p_pubkeys) ORDER BY pubkey FOR UPDATE;
END $$;

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
