-- Releases every outstanding reservation with deadline < now, in (deadline, request) order,
-- and returns them in that order.

CREATE FUNCTION ledger_expire(p_now bigint)
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
