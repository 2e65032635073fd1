-- What the reservation's foreign keys would check, as a read-only audit: every reservation's
-- request exists and is of the same pubkey, and its identity exists.

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
