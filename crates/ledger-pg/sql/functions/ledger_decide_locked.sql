-- `decide` under the request's advisory lock, with the rules `cfg`: a batch takes the locks of
-- all its decides in one statement and reads the rules once. In a shared batch it debits the
-- home stripe itself (no subtransaction is needed there: see `ledger_pool_debit`), and calls
-- `ledger_pool_debit` only when that stripe is short; elsewhere it calls it at once.

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
                        -- Free if the pool covers it: the home stripe alone, or every stripe.
                        v_debited := false;
                        IF current_setting('ledger.batch', true) = 'shared' THEN
                            INSERT INTO pool_journal (kind, stripe, request_id, amount_sats, d_reserved_sats,
                                at_ms)
                            VALUES ('debit', v_home, p_request_id, -p_estimated, p_estimated, p_now);
                            v_debited := FOUND;
                        END IF;
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
        RETURN ledger_ok(v_decision, true, offer_sats => v_offer, charge_sats => v_charge,
            gate_reason => v_reason);
    END IF;
    IF req.pubkey <> p_pubkey THEN
        RETURN ledger_refuse('exists_with_different_pubkey');
    END IF;
    IF req.estimated_sats <> p_estimated THEN
        RETURN ledger_refuse('exists_with_different_estimate', estimated_sats => req.estimated_sats);
    END IF;
    RETURN ledger_ok(req.decision, false, offer_sats => req.offer_sats, charge_sats => req.charge_sats,
        gate_reason => req.gate_reason);
END $$;
