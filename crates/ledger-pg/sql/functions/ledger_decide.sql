-- ok: code 'free' | 'partial' | 'gate', with offer_sats (free: the reservation; gate: 0),
-- charge_sats and, for a gate, gate_reason. Refusals: exists_with_different_pubkey,
-- exists_with_different_estimate (estimated_sats: the first call's estimate).
--
-- Duplicates of one decide are serialised by a transaction-scoped advisory lock on the request
-- id; the rest is `ledger_decide_locked`, which a batch calls directly.

CREATE FUNCTION ledger_decide(p_request_id bigint, p_pubkey text, p_estimated bigint, p_now bigint)
RETURNS ledger_result LANGUAGE plpgsql AS $$
BEGIN
    -- Duplicates of this decide wait here, then see the first one's answer.
    PERFORM pg_advisory_xact_lock(p_request_id);
    RETURN ledger_decide_locked(p_request_id, p_pubkey, p_estimated, p_now,
        (SELECT c FROM ledger_config c WHERE id = 1));
END $$;
