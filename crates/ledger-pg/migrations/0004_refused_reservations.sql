-- A refused `reserve_partial` stays refused on repeat: a duplicate delivered late must never
-- succeed after the caller has re-quoted and moved on (ledger-core's `Request::refused`).
-- The refusal changes no balance; it only remembers its answer.

CREATE TABLE refused_reservations (
    request_id     bigint NOT NULL REFERENCES requests (request_id),
    amount_sats    bigint NOT NULL CHECK (amount_sats > 0),
    available_sats bigint NOT NULL CHECK (available_sats >= 0 AND available_sats < amount_sats),
    PRIMARY KEY (request_id, amount_sats)
);

-- ── reserve_partial ─────────────────────────────────────────────────────────────────────────

-- ok: code 'reserved', a = amount. Refusals: unknown_request, exists_with_different_pubkey,
-- reservation_exists (a), zero_amount, amount_above_estimate (a), unknown_identity,
-- insufficient_funds (a = available; a repeat of a refused amount is refused again with the
-- first answer).
CREATE OR REPLACE FUNCTION ledger_reserve_partial(p_request_id bigint, p_pubkey text, p_amount bigint, p_now bigint)
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
    SELECT available_sats INTO v_available FROM refused_reservations
    WHERE request_id = p_request_id AND amount_sats = p_amount;
    IF FOUND THEN
        RETURN ledger_refuse('insufficient_funds', v_available);
    END IF;
    SELECT * INTO idn FROM identities WHERE pubkey = p_pubkey FOR UPDATE;
    IF NOT FOUND THEN
        RETURN ledger_refuse('unknown_identity');
    END IF;
    SELECT balance_sats INTO v_pool FROM pool WHERE id = 1 FOR UPDATE;
    v_available := least(ledger_daily_remaining(idn, p_now), v_pool);
    IF p_amount > v_available THEN
        INSERT INTO refused_reservations VALUES (p_request_id, p_amount, v_available);
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

