-- The reference semantics (DESIGN §3) as server-side functions: the client sends one
-- statement per command, the command runs as one transaction, and a repeat by id changes
-- nothing and answers as the first time. `crates/ledger-core/src/reference.rs` is the oracle;
-- each function follows its Rust counterpart check for check, in the same order.
--
-- Locks are always taken in the order request -> reservation(s) -> identity(ies) by pubkey ->
-- pool, so commands cannot deadlock one another (the adapter retries deadlocks and
-- serialization failures anyway).

-- What every command answers. `ok` false is a refusal (nothing changed). `fresh` is true when
-- this call made the change, false for an idempotent repeat (the caller journals movements of
-- fresh calls only). `a`, `b`, `c`, `t` are the outcome's fields, per command below.
CREATE TYPE ledger_result AS (
    ok    boolean,
    code  text,
    fresh boolean,
    a     bigint,
    b     bigint,
    c     bigint,
    t     text
);

CREATE FUNCTION ledger_refuse(p_code text, p_a bigint DEFAULT NULL) RETURNS ledger_result
LANGUAGE sql IMMUTABLE AS $$
    SELECT ROW(false, p_code, false, p_a, NULL, NULL, NULL)::ledger_result
$$;

CREATE FUNCTION ledger_budget(p_tier text) RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT CASE p_tier
        WHEN 'new' THEN budget_new
        WHEN 'established' THEN budget_established
        WHEN 'trusted' THEN budget_trusted
        WHEN 'elite' THEN budget_elite
    END
    FROM ledger_config WHERE id = 1
$$;

-- `Identity::daily_remaining`: budget minus the window's absorption and the outstanding
-- reservations, never below zero. Computed in numeric so that no sum can overflow.
CREATE FUNCTION ledger_daily_remaining(idn identities, p_now bigint) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT greatest(
        ledger_budget(idn.tier)::numeric
          - (CASE WHEN p_now - idn.absorbed_reset_at_ms >= 86400000 THEN 0
                  ELSE idn.sats_absorbed_today END)::numeric
          - idn.reserved_sats::numeric,
        0)::bigint
$$;

-- ── genesis ─────────────────────────────────────────────────────────────────────────────────

-- Writes the rules and the pool's initial balance, once. Repeating it with the same rules does
-- nothing; with other rules it fails.
CREATE FUNCTION ledger_genesis(
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
    INSERT INTO pool (id) VALUES (1);
    INSERT INTO pool_journal (kind, amount_sats, at_ms) VALUES ('genesis', p_pool_initial_sats, p_now);
END $$;

-- ── set_tier ────────────────────────────────────────────────────────────────────────────────

-- ok: code 'tier_set', t = the previous tier (NULL when the identity was created).
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
            RETURN ROW(true, 'tier_set', true, NULL, NULL, NULL, NULL)::ledger_result;
        END IF;
        -- Created concurrently: it exists now.
        SELECT tier INTO v_prev FROM identities WHERE pubkey = p_pubkey FOR UPDATE;
    END IF;
    UPDATE identities SET tier = p_tier WHERE pubkey = p_pubkey;
    RETURN ROW(true, 'tier_set', true, NULL, NULL, NULL, v_prev)::ledger_result;
END $$;

-- ── decide ──────────────────────────────────────────────────────────────────────────────────

-- ok: code 'free' | 'partial' | 'gate'; a = offer (free: the reservation), b = charge,
-- t = gate reason. Refusals: exists_with_different_pubkey, exists_with_different_estimate (a).
CREATE FUNCTION ledger_decide(p_request_id bigint, p_pubkey text, p_estimated bigint, p_now bigint)
RETURNS ledger_result LANGUAGE plpgsql AS $$
DECLARE
    req requests%ROWTYPE;
    idn identities%ROWTYPE;
    v_pool bigint;
    v_remaining bigint;
    v_can bigint;
    v_decision text := 'gate';
    v_offer bigint := 0;
    v_charge bigint := p_estimated;
    v_reason text;
    v_ttl bigint;
BEGIN
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
                ELSE
                    SELECT balance_sats INTO v_pool FROM pool WHERE id = 1 FOR UPDATE;
                    IF v_pool = 0 THEN
                        v_reason := 'pool_empty';
                    ELSE
                        v_can := least(v_remaining, v_pool, p_estimated);
                        v_offer := v_can;
                        v_charge := p_estimated - v_can;
                        v_decision := CASE WHEN v_can = p_estimated THEN 'free' ELSE 'partial' END;
                    END IF;
                END IF;
            END IF;
        END IF;
        INSERT INTO requests VALUES (p_request_id, p_pubkey, p_estimated, v_decision, v_offer,
            v_charge, v_reason)
        ON CONFLICT (request_id) DO NOTHING;
        IF FOUND THEN
            IF v_decision = 'free' THEN
                SELECT reservation_ttl_ms INTO v_ttl FROM ledger_config WHERE id = 1;
                INSERT INTO reservations (request_id, pubkey, amount_sats, by_decide, deadline_ms)
                VALUES (p_request_id, p_pubkey, p_estimated, true,
                    CASE WHEN p_now > 9223372036854775807 - v_ttl THEN 9223372036854775807
                         ELSE p_now + v_ttl END);
                UPDATE identities SET reserved_sats = reserved_sats + p_estimated
                WHERE pubkey = p_pubkey;
                INSERT INTO pool_journal (kind, request_id, amount_sats, d_reserved_sats, at_ms)
                VALUES ('debit', p_request_id, -p_estimated, p_estimated, p_now);
            END IF;
            RETURN ROW(true, v_decision, true, v_offer, v_charge, NULL, v_reason)::ledger_result;
        END IF;
        -- Decided concurrently by a duplicate: answer as it did.
        SELECT * INTO req FROM requests WHERE request_id = p_request_id;
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

-- ok: code 'reserved', a = amount. Refusals: unknown_request, exists_with_different_pubkey,
-- reservation_exists (a), zero_amount, amount_above_estimate (a), unknown_identity,
-- insufficient_funds (a = available).
CREATE FUNCTION ledger_reserve_partial(p_request_id bigint, p_pubkey text, p_amount bigint, p_now bigint)
RETURNS ledger_result LANGUAGE plpgsql AS $$
DECLARE
    req requests%ROWTYPE;
    res reservations%ROWTYPE;
    idn identities%ROWTYPE;
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
    SELECT * INTO idn FROM identities WHERE pubkey = p_pubkey FOR UPDATE;
    IF NOT FOUND THEN
        RETURN ledger_refuse('unknown_identity');
    END IF;
    SELECT balance_sats INTO v_pool FROM pool WHERE id = 1 FOR UPDATE;
    v_available := least(ledger_daily_remaining(idn, p_now), v_pool);
    IF p_amount > v_available THEN
        RETURN ledger_refuse('insufficient_funds', v_available);
    END IF;
    SELECT reservation_ttl_ms INTO v_ttl FROM ledger_config WHERE id = 1;
    INSERT INTO reservations (request_id, pubkey, amount_sats, by_decide, deadline_ms)
    VALUES (p_request_id, p_pubkey, p_amount, false,
        CASE WHEN p_now > 9223372036854775807 - v_ttl THEN 9223372036854775807
             ELSE p_now + v_ttl END);
    UPDATE identities SET reserved_sats = reserved_sats + p_amount WHERE pubkey = p_pubkey;
    INSERT INTO pool_journal (kind, request_id, amount_sats, d_reserved_sats, at_ms)
    VALUES ('debit', p_request_id, -p_amount, p_amount, p_now);
    RETURN ROW(true, 'reserved', true, p_amount, NULL, NULL, NULL)::ledger_result;
END $$;

-- ── release ─────────────────────────────────────────────────────────────────────────────────

-- ok: code 'released', a = returned. Refusals: unknown_request, not_reserved,
-- already_recorded, reservation_expired.
CREATE FUNCTION ledger_release(p_request_id bigint, p_now bigint)
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
    INSERT INTO pool_journal (kind, request_id, amount_sats, d_reserved_sats, at_ms)
    VALUES ('release', p_request_id, res.amount_sats, -res.amount_sats, p_now);
    RETURN ROW(true, 'released', true, res.amount_sats, NULL, NULL, NULL)::ledger_result;
END $$;

-- ── record ──────────────────────────────────────────────────────────────────────────────────

-- ok: code 'recorded', a = absorbed, b = returned, c = overrun, t = pubkey. Refusals:
-- unknown_request, not_reserved, recorded_with_different_amount (a), already_released,
-- reservation_expired, overflow.
CREATE FUNCTION ledger_record(p_request_id bigint, p_actual bigint, p_now bigint)
RETURNS ledger_result LANGUAGE plpgsql AS $$
DECLARE
    res reservations%ROWTYPE;
    g grants%ROWTYPE;
    v_overrun_total bigint;
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
    SELECT overrun_sats INTO v_overrun_total FROM pool WHERE id = 1 FOR UPDATE;
    IF v_overrun > 9223372036854775807 - v_overrun_total THEN
        RETURN ledger_refuse('overflow');
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
    INSERT INTO pool_journal (kind, request_id, amount_sats, d_reserved_sats, d_absorbed_sats,
        d_overrun_sats, d_grants, at_ms)
    VALUES ('record', p_request_id, v_returned, -res.amount_sats, v_absorbed, v_overrun, 1, p_now);
    RETURN ROW(true, 'recorded', true, v_absorbed, v_returned, v_overrun, res.pubkey)::ledger_result;
END $$;

-- ── credit ──────────────────────────────────────────────────────────────────────────────────

-- ok: code 'credited', a = credited. Refusals: payment_with_different_amount (a), overflow.
CREATE FUNCTION ledger_credit(p_payment_id bigint, p_paid bigint, p_now bigint)
RETURNS ledger_result LANGUAGE plpgsql AS $$
DECLARE
    pay processed_payments%ROWTYPE;
    v_bps bigint;
    v_credited bigint;
    v_balance bigint;
    v_credited_total bigint;
BEGIN
    SELECT * INTO pay FROM processed_payments WHERE payment_id = p_payment_id;
    IF NOT FOUND THEN
        SELECT credit_bps INTO v_bps FROM ledger_config WHERE id = 1;
        -- floor(paid * bps / 10000) without overflowing bigint.
        v_credited := (p_paid / 10000) * v_bps + (p_paid % 10000) * v_bps / 10000;
        SELECT balance_sats, credited_sats INTO v_balance, v_credited_total
        FROM pool WHERE id = 1 FOR UPDATE;
        IF v_credited > 9223372036854775807 - v_balance
           OR v_credited > 9223372036854775807 - v_credited_total THEN
            RETURN ledger_refuse('overflow');
        END IF;
        INSERT INTO processed_payments VALUES (p_payment_id, p_paid, v_credited, p_now)
        ON CONFLICT (payment_id) DO NOTHING;
        IF FOUND THEN
            INSERT INTO pool_journal (kind, payment_id, amount_sats, d_credited_sats, at_ms)
            VALUES ('credit', p_payment_id, v_credited, v_credited, p_now);
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

-- Releases every outstanding reservation with deadline < now, in (deadline, request) order,
-- and returns them in that order.
CREATE FUNCTION ledger_expire(p_now bigint)
RETURNS TABLE (request_id bigint, amount_sats bigint) LANGUAGE plpgsql AS $$
DECLARE
    v_ids bigint[];
    v_pubkeys text[];
    v_amounts bigint[];
    i integer;
BEGIN
    -- Lock the reservations first, then their identities in pubkey order, as every command does.
    SELECT array_agg(s.request_id ORDER BY s.deadline_ms, s.request_id),
           array_agg(s.pubkey ORDER BY s.deadline_ms, s.request_id),
           array_agg(s.amount_sats ORDER BY s.deadline_ms, s.request_id)
    INTO v_ids, v_pubkeys, v_amounts
    FROM (SELECT r.request_id, r.pubkey, r.amount_sats, r.deadline_ms FROM reservations r
          WHERE r.state = 'reserved' AND r.deadline_ms < p_now
          ORDER BY r.deadline_ms, r.request_id FOR UPDATE) s;
    IF v_ids IS NULL THEN
        RETURN;
    END IF;
    PERFORM 1 FROM identities WHERE pubkey = ANY (v_pubkeys) ORDER BY pubkey FOR UPDATE;
    FOR i IN 1 .. array_length(v_ids, 1) LOOP
        UPDATE identities SET reserved_sats = reserved_sats - v_amounts[i] WHERE pubkey = v_pubkeys[i];
        UPDATE reservations r SET state = 'expired', closed_at_ms = p_now WHERE r.request_id = v_ids[i];
        INSERT INTO pool_journal (kind, request_id, amount_sats, d_reserved_sats, at_ms)
        VALUES ('expire', v_ids[i], v_amounts[i], -v_amounts[i], p_now);
        request_id := v_ids[i];
        amount_sats := v_amounts[i];
        RETURN NEXT;
    END LOOP;
END $$;

-- ── audit ───────────────────────────────────────────────────────────────────────────────────

-- A read-only check of I1, I2 and I5 on the reference schema: one row per violation.
CREATE FUNCTION ledger_audit() RETURNS TABLE (invariant text, detail text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    p pool%ROWTYPE;
    cfg ledger_config%ROWTYPE;
    v numeric;
    w numeric;
BEGIN
    SELECT * INTO p FROM pool WHERE id = 1;
    SELECT * INTO cfg FROM ledger_config WHERE id = 1;
    IF NOT FOUND OR p.id IS NULL THEN
        invariant := 'genesis'; detail := 'no genesis'; RETURN NEXT; RETURN;
    END IF;
    IF p.balance_sats < 0 THEN
        invariant := 'I1'; detail := format('pool balance %s < 0', p.balance_sats); RETURN NEXT;
    END IF;
    SELECT coalesce(sum(amount_sats), 0) INTO v FROM pool_journal;
    IF v <> p.balance_sats THEN
        invariant := 'I2'; detail := format('journal sums to %s, pool holds %s', v, p.balance_sats);
        RETURN NEXT;
    END IF;
    v := cfg.pool_initial_sats::numeric + p.credited_sats;
    w := p.balance_sats::numeric + p.reserved_sats + p.absorbed_sats;
    IF v <> w THEN
        invariant := 'I2';
        detail := format('initial + credits = %s, pool + reserved + absorbed = %s', v, w);
        RETURN NEXT;
    END IF;
    SELECT coalesce(sum(amount_sats), 0) INTO v FROM reservations WHERE state = 'reserved';
    IF v <> p.reserved_sats THEN
        invariant := 'I2';
        detail := format('outstanding reservations sum to %s, books say %s', v, p.reserved_sats);
        RETURN NEXT;
    END IF;
    SELECT coalesce(sum(reserved_sats), 0) INTO v FROM identities;
    IF v <> p.reserved_sats THEN
        invariant := 'I2';
        detail := format('identities hold %s reserved, books say %s', v, p.reserved_sats);
        RETURN NEXT;
    END IF;
    SELECT coalesce(sum(credited_sats), 0) INTO v FROM processed_payments;
    IF v <> p.credited_sats THEN
        invariant := 'I2'; detail := format('payments credited %s, books say %s', v, p.credited_sats);
        RETURN NEXT;
    END IF;
    SELECT coalesce(sum(absorbed_sats), 0), count(*) INTO v, w FROM grants;
    IF v <> p.absorbed_sats OR w <> p.n_grants THEN
        invariant := 'I5';
        detail := format('%s grants absorb %s, books say %s grants absorbing %s',
            w, v, p.n_grants, p.absorbed_sats);
        RETURN NEXT;
    END IF;
    SELECT count(*) INTO v FROM reservations r
    WHERE (r.state = 'recorded') <> EXISTS (SELECT 1 FROM grants g WHERE g.request_id = r.request_id);
    IF v <> 0 THEN
        invariant := 'I5'; detail := format('%s reservations disagree with the grants', v);
        RETURN NEXT;
    END IF;
END $$;
