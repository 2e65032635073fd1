-- Fewer statements per call, same answers (the server's CPU is what is left once the pool is
-- striped):
-- - the journal moves its stripe in a BEFORE INSERT trigger whose update is conditional for a
--   debit: a debit its stripe cannot cover inserts nothing and moves nothing (the caller sees
--   zero rows), so the one-stripe fast path needs no subtransaction; any other row that would
--   drive a stripe negative is an error, as the CHECK made it before;
-- - `decide` reads the configuration once and computes the tier budget and the daily remaining
--   inline (`ledger_budget` and `ledger_daily_remaining` did one query each, twice per call);
-- - `record` takes the identity's lock with its update, and locks stripes for the overflow check
--   only when there is an overrun near the limit.

DROP TRIGGER pool_journal_apply ON pool_journal;

CREATE FUNCTION pool_journal_move() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
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

CREATE OR REPLACE FUNCTION ledger_pool_debit(p_home smallint, p_request_id bigint, p_amount bigint,
    p_now bigint, OUT ok boolean, OUT total bigint)
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    v_left bigint := p_amount;
    v_take bigint;
BEGIN
    INSERT INTO pool_journal (kind, stripe, request_id, amount_sats, d_reserved_sats, at_ms)
    VALUES ('debit', p_home, p_request_id, -p_amount, p_amount, p_now);
    IF FOUND THEN
        ok := true;
        RETURN;
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

-- ── decide ──────────────────────────────────────────────────────────────────────────────────

CREATE OR REPLACE FUNCTION ledger_decide(p_request_id bigint, p_pubkey text, p_estimated bigint, p_now bigint)
RETURNS ledger_result LANGUAGE plpgsql AS $$
DECLARE
    req requests%ROWTYPE;
    idn identities%ROWTYPE;
    cfg ledger_config%ROWTYPE;
    dr record;
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
            ELSE
                SELECT * INTO cfg FROM ledger_config WHERE id = 1;
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
    IF v_overrun > 0 THEN
        SELECT sum(overrun_sats) INTO v_overrun_total FROM pool_stripes;
        IF v_overrun > 1099511627776 OR v_overrun_total > 2305843009213693952 THEN
            -- Near the limit: the exact total, every stripe locked (the identity first, as
            -- every command locks identities before stripes).
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
