-- The read-only I1/I2/I5 audit of the reference schema: one row per finding, as one statement,
-- so that every check reads the same snapshot of a live database.
--
-- It is run by the binary (`ledger_pg::reference::audit`) and never installed: an audit must not
-- run code that the database it audits could have replaced, so it reads the tables alone (not
-- the `pool` view either, whose sums are cast to bigint), each named with its schema, so that
-- `ledger-sim audit` may run it with `search_path` set to `pg_catalog` alone (where no operator
-- or function of the audited database is seen). Every comparison is NULL-safe (`IS
-- DISTINCT FROM`), and a NULL where a number or a key must be is a finding of its own, naming
-- the table, the column and the row (by its key, or by its ctid when the key is NULL too). Sums
-- are numeric: a total beyond bigint is a number in a finding, never an error.
--
-- `ord` orders the findings; `k` orders those of one check. Without a genesis (no
-- `ledger_config` row 1, or no pool stripe) the only finding is `genesis`.

WITH
cfg AS (
    SELECT count(*) AS n_rows,
           count(*) FILTER (WHERE id = 1) AS n_genesis,
           min(pool_initial_sats::numeric) FILTER (WHERE id = 1) AS initial_sats
    FROM public.ledger_config
),
-- The pool's totals over its stripes. A total is NULL when a NULL in its column makes it
-- unknown (`sum` alone would leave the NULL out and give a wrong number).
pool AS (
    SELECT count(*) AS n_stripes,
           CASE WHEN count(balance_sats) = count(*) THEN sum(balance_sats::numeric) END AS balance,
           CASE WHEN count(reserved_sats) = count(*) THEN sum(reserved_sats::numeric) END AS reserved,
           CASE WHEN count(absorbed_sats) = count(*) THEN sum(absorbed_sats::numeric) END AS absorbed,
           CASE WHEN count(credited_sats) = count(*) THEN sum(credited_sats::numeric) END AS credited,
           CASE WHEN count(n_grants) = count(*) THEN sum(n_grants::numeric) END AS n_grants
    FROM public.pool_stripes
),
made AS (
    SELECT cfg.n_genesis > 0 AND pool.n_stripes > 0 AS ok FROM cfg, pool
),
nulls (invariant, tbl, col, row_name) AS (
    SELECT 'I2', 'ledger_config', 'pool_initial_sats', coalesce('row ' || id, 'the row at ' || ctid)
        FROM public.ledger_config WHERE pool_initial_sats IS NULL
    UNION ALL SELECT 'I2', 'pool_stripes', 'stripe', 'the row at ' || ctid
        FROM public.pool_stripes WHERE stripe IS NULL
    UNION ALL SELECT 'I1', 'pool_stripes', 'balance_sats', coalesce('stripe ' || stripe, 'the row at ' || ctid)
        FROM public.pool_stripes WHERE balance_sats IS NULL
    UNION ALL SELECT 'I2', 'pool_stripes', 'reserved_sats', coalesce('stripe ' || stripe, 'the row at ' || ctid)
        FROM public.pool_stripes WHERE reserved_sats IS NULL
    UNION ALL SELECT 'I5', 'pool_stripes', 'absorbed_sats', coalesce('stripe ' || stripe, 'the row at ' || ctid)
        FROM public.pool_stripes WHERE absorbed_sats IS NULL
    UNION ALL SELECT 'I2', 'pool_stripes', 'credited_sats', coalesce('stripe ' || stripe, 'the row at ' || ctid)
        FROM public.pool_stripes WHERE credited_sats IS NULL
    UNION ALL SELECT 'I5', 'pool_stripes', 'n_grants', coalesce('stripe ' || stripe, 'the row at ' || ctid)
        FROM public.pool_stripes WHERE n_grants IS NULL
    UNION ALL SELECT 'I2', 'pool_journal', 'amount_sats', coalesce('entry ' || seq, 'the row at ' || ctid)
        FROM public.pool_journal WHERE amount_sats IS NULL
    UNION ALL SELECT 'I2', 'pool_journal', 'stripe', coalesce('entry ' || seq, 'the row at ' || ctid)
        FROM public.pool_journal WHERE stripe IS NULL
    UNION ALL SELECT 'I5', 'reservations', 'request_id', 'the row at ' || ctid
        FROM public.reservations WHERE request_id IS NULL
    UNION ALL SELECT 'I2', 'reservations', 'pubkey', coalesce('reservation ' || request_id, 'the row at ' || ctid)
        FROM public.reservations WHERE pubkey IS NULL
    UNION ALL SELECT 'I2', 'reservations', 'amount_sats', coalesce('reservation ' || request_id, 'the row at ' || ctid)
        FROM public.reservations WHERE amount_sats IS NULL
    UNION ALL SELECT 'I2', 'reservations', 'state', coalesce('reservation ' || request_id, 'the row at ' || ctid)
        FROM public.reservations WHERE state IS NULL
    UNION ALL SELECT 'I2', 'identities', 'pubkey', 'the row at ' || ctid
        FROM public.identities WHERE pubkey IS NULL
    UNION ALL SELECT 'I2', 'identities', 'reserved_sats', coalesce('identity ' || pubkey, 'the row at ' || ctid)
        FROM public.identities WHERE reserved_sats IS NULL
    UNION ALL SELECT 'I2', 'processed_payments', 'credited_sats',
            coalesce('payment ' || payment_id, 'the row at ' || ctid)
        FROM public.processed_payments WHERE credited_sats IS NULL
    UNION ALL SELECT 'I5', 'grants', 'request_id', 'the row at ' || ctid
        FROM public.grants WHERE request_id IS NULL
    UNION ALL SELECT 'I5', 'grants', 'absorbed_sats', coalesce('grant ' || request_id, 'the row at ' || ctid)
        FROM public.grants WHERE absorbed_sats IS NULL
    UNION ALL SELECT 'I2', 'requests', 'request_id', 'the row at ' || ctid
        FROM public.requests WHERE request_id IS NULL
    UNION ALL SELECT 'I2', 'requests', 'pubkey', coalesce('request ' || request_id, 'the row at ' || ctid)
        FROM public.requests WHERE pubkey IS NULL
),
-- Totals of the other tables, NULL as the pool's when a NULL makes them unknown.
journal AS (
    SELECT CASE WHEN count(amount_sats) = count(*) THEN coalesce(sum(amount_sats::numeric), 0) END AS total
    FROM public.pool_journal
),
findings (ord, k, invariant, detail) AS (
    SELECT 0, NULL::numeric, 'genesis', 'no genesis' FROM made WHERE NOT ok
    UNION ALL
    SELECT 1, NULL, 'genesis', format('ledger_config holds %s rows, one expected', n_rows)
        FROM cfg WHERE n_rows > 1
    UNION ALL
    SELECT 2, NULL, invariant, format('%s.%s is NULL in %s, where a value must be', tbl, col, row_name)
        FROM nulls
    UNION ALL
    SELECT 3, stripe::numeric, 'I1', format('stripe %s holds %s sats, below 0', stripe, balance_sats)
        FROM public.pool_stripes WHERE balance_sats < 0
    UNION ALL
    SELECT 4, NULL, 'I1', format('pool balance %s < 0', pool.balance) FROM pool WHERE pool.balance < 0
    -- A check below reports a difference or an unknown (`(a = b) IS NOT TRUE`): a NULL never
    -- passes for agreement.
    UNION ALL
    SELECT 5, NULL, 'I2', format('journal sums to %s, pool holds %s',
            coalesce(journal.total::text, 'NULL'), coalesce(pool.balance::text, 'NULL'))
        FROM journal, pool WHERE (journal.total = pool.balance) IS NOT TRUE
    UNION ALL
    SELECT 6, NULL, 'I2', format('initial + credits = %s, pool + reserved + absorbed = %s',
            coalesce((cfg.initial_sats + pool.credited)::text, 'NULL'),
            coalesce((pool.balance + pool.reserved + pool.absorbed)::text, 'NULL'))
        FROM cfg, pool
        WHERE cfg.n_genesis = 1
          AND (cfg.initial_sats + pool.credited = pool.balance + pool.reserved + pool.absorbed) IS NOT TRUE
    UNION ALL
    SELECT 7, NULL, 'I2', format('outstanding reservations sum to %s, books say %s',
            coalesce(r.total::text, 'NULL'), coalesce(pool.reserved::text, 'NULL'))
        FROM (SELECT CASE WHEN count(amount_sats) = count(*) THEN coalesce(sum(amount_sats::numeric), 0) END AS total
              FROM public.reservations WHERE state = 'reserved') r, pool
        WHERE (r.total = pool.reserved) IS NOT TRUE
    UNION ALL
    SELECT 8, NULL, 'I2', format('identities hold %s reserved, books say %s',
            coalesce(i.total::text, 'NULL'), coalesce(pool.reserved::text, 'NULL'))
        FROM (SELECT CASE WHEN count(reserved_sats) = count(*) THEN coalesce(sum(reserved_sats::numeric), 0) END
                  AS total
              FROM public.identities) i, pool
        WHERE (i.total = pool.reserved) IS NOT TRUE
    UNION ALL
    SELECT 9, NULL, 'I2', format('payments credited %s, books say %s',
            coalesce(p.total::text, 'NULL'), coalesce(pool.credited::text, 'NULL'))
        FROM (SELECT CASE WHEN count(credited_sats) = count(*) THEN coalesce(sum(credited_sats::numeric), 0) END
                  AS total
              FROM public.processed_payments) p, pool
        WHERE (p.total = pool.credited) IS NOT TRUE
    UNION ALL
    SELECT 10, NULL, 'I5', format('%s grants absorb %s, books say %s grants absorbing %s',
            g.n, coalesce(g.total::text, 'NULL'), coalesce(pool.n_grants::text, 'NULL'),
            coalesce(pool.absorbed::text, 'NULL'))
        FROM (SELECT count(*)::numeric AS n,
                     CASE WHEN count(absorbed_sats) = count(*) THEN coalesce(sum(absorbed_sats::numeric), 0) END
                         AS total
              FROM public.grants) g, pool
        WHERE (g.n = pool.n_grants AND g.total = pool.absorbed) IS NOT TRUE
    UNION ALL
    -- One grant per request: the primary key says so, and the audit does not take its word.
    SELECT 11, request_id::numeric, 'I5',
            format('request %s recorded %s times, absorbing %s sats', request_id, count(*),
                coalesce((CASE WHEN count(absorbed_sats) = count(*) THEN sum(absorbed_sats::numeric) END)::text,
                    'NULL'))
        FROM public.grants WHERE request_id IS NOT NULL GROUP BY request_id HAVING count(*) > 1
    UNION ALL
    SELECT 12, NULL, 'I5', format('%s reservations disagree with the grants', n)
        FROM (SELECT count(*) AS n FROM public.reservations r
              WHERE r.state IS NOT NULL AND r.request_id IS NOT NULL
                AND (r.state = 'recorded') <> EXISTS (SELECT 1 FROM public.grants g WHERE g.request_id = r.request_id)) d
        WHERE n <> 0
    UNION ALL
    -- Each stripe's journal sums to its balance, and no journal entry is of a stripe that is not.
    SELECT 13, coalesce(s.stripe, j.stripe)::numeric, 'I2',
            CASE WHEN s.stripe IS NULL
                THEN format('stripe %s: journal sums to %s, and there is no such stripe',
                    j.stripe, coalesce(j.total::text, 'NULL'))
                ELSE format('stripe %s: journal sums to %s, stripe holds %s',
                    s.stripe, coalesce(coalesce(j.total, 0)::text, 'NULL'), coalesce(s.balance_sats::text, 'NULL'))
            END
        FROM (SELECT stripe, balance_sats FROM public.pool_stripes WHERE stripe IS NOT NULL) s
        FULL JOIN (SELECT stripe,
                          CASE WHEN count(amount_sats) = count(*) THEN sum(amount_sats::numeric) END AS total
                   FROM public.pool_journal WHERE stripe IS NOT NULL GROUP BY stripe) j ON j.stripe = s.stripe
        WHERE s.stripe IS NULL OR (coalesce(j.total, 0) = s.balance_sats) IS NOT TRUE
    UNION ALL
    -- What the reservation's foreign keys would check: its request exists and is of the same
    -- pubkey, and its identity exists.
    SELECT 14, r.request_id::numeric, 'I2', format('reservation %s of %s: %s', r.request_id, r.pubkey,
            CASE WHEN NOT EXISTS (SELECT 1 FROM public.requests q WHERE q.request_id = r.request_id) THEN 'no request'
                 WHEN NOT EXISTS (SELECT 1 FROM public.requests q WHERE q.request_id = r.request_id
                                  AND q.pubkey IS NOT DISTINCT FROM r.pubkey)
                     THEN format('its request is of %s',
                         (SELECT coalesce(q.pubkey, 'NULL') FROM public.requests q WHERE q.request_id = r.request_id LIMIT 1))
                 ELSE 'no identity' END)
        FROM public.reservations r
        WHERE r.request_id IS NOT NULL AND r.pubkey IS NOT NULL
          AND (NOT EXISTS (SELECT 1 FROM public.requests q WHERE q.request_id = r.request_id
                           AND q.pubkey IS NOT DISTINCT FROM r.pubkey)
               OR NOT EXISTS (SELECT 1 FROM public.identities i WHERE i.pubkey = r.pubkey))
)
SELECT invariant, detail FROM findings
WHERE ord = 0 OR (SELECT ok FROM made)
ORDER BY ord, k NULLS FIRST, detail
