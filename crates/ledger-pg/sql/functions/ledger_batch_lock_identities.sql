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
