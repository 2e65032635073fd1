-- The seed's own tables, as the TypeScript service (free-tier.ts, drizzle-orm) uses them.
--
-- These are deliberately left as loose as the original: the pool is a text value in a key/value
-- table, counters are 32-bit integers, grants carry no uniqueness on the request. The `pg-seed`
-- engine runs the seed's statements against exactly this, so that its flaws show up on a real
-- server.

CREATE TABLE timmy_config (
    key        text PRIMARY KEY,
    value      text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE nostr_identities (
    pubkey              text PRIMARY KEY,
    tier                text NOT NULL DEFAULT 'new',
    sats_absorbed_today integer NOT NULL DEFAULT 0,
    absorbed_reset_at   timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE free_tier_grants (
    id                 text PRIMARY KEY,
    pubkey             text NOT NULL,
    request_hash       text NOT NULL,
    sats_absorbed      integer NOT NULL,
    pool_balance_after integer NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now()
);
