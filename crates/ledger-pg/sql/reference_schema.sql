-- The reference schema: SPEC.md on PostgreSQL. Its tables, types and view; the functions
-- that run the commands and the triggers that guard the tables are in `functions/`, one file
-- per function, installed after this file in the order of `src/schema.rs`.
--
-- Amounts are BIGINT >= 0. Times are milliseconds since the epoch, passed in by the caller (the
-- database clock is never read). Ids are the core's u64 ids, which the adapter keeps below 2^63.
--
-- What the constraints guarantee even against a client that writes SQL by hand:
-- - I1: the pool balance and every running total are >= 0 (the domain `sats`).
-- - I2: the pool stripes are written only by the journal's trigger, so the balance is the sum
--   of the journal, and the journal is append-only.
-- - I5: one grant per request (primary key), only for an open reservation of the same pubkey
--   and amount, which the grant's insert closes as `recorded`; a reservation leaves `reserved`
--   once and never comes back.
-- - Idempotency: requests, reservations and payments are keyed by their ids; a decision never
--   changes (requests are append-only).
--
-- Column checks are domains. A domain's CHECK is compiled once per session (the type cache),
-- where a table's CHECK constraints are read back from their stored text and planned again by
-- every statement that writes the table: a third of a command's server time went there. Checks
-- across columns stay table checks, or live in a trigger that runs anyway (the journal's and
-- the grant's).

CREATE DOMAIN sats AS bigint CHECK (VALUE >= 0);
CREATE DOMAIN positive_sats AS bigint CHECK (VALUE > 0);
CREATE DOMAIN stripe_no AS smallint CHECK (VALUE >= 0);
CREATE DOMAIN ledger_id AS bigint CHECK (VALUE >= 0);
CREATE DOMAIN tier_name AS text CHECK (VALUE IN ('new', 'established', 'trusted', 'elite'));
CREATE DOMAIN decision_kind AS text CHECK (VALUE IN ('free', 'partial', 'gate'));
CREATE DOMAIN reservation_state AS text CHECK (VALUE IN ('reserved', 'recorded', 'released', 'expired'));
CREATE DOMAIN journal_kind AS text
    CHECK (VALUE IN ('genesis', 'debit', 'release', 'expire', 'record', 'credit', 'rebalance'));

-- What every command answers. `ok` false is a refusal (nothing changed). `fresh` is true when
-- this call made the change, false for an idempotent repeat (the caller journals movements of
-- fresh calls only). `code` names the outcome or the refusal. Each field after those holds one
-- thing, set for the commands and codes named beside it and NULL otherwise; `ledger_ok` and
-- `ledger_refuse` build the answer with the fields named.
CREATE TYPE ledger_result AS (
    ok             boolean,
    code           text,
    fresh          boolean,
    -- decide: free, partial, gate (offer and charge as in `requests`).
    offer_sats     bigint,
    charge_sats    bigint,
    gate_reason    text,
    -- set_tier: tier_set (NULL when the identity was created).
    previous_tier  text,
    -- reserve_partial: reserved; the refusal reservation_exists (the existing reservation's).
    reserved_sats  bigint,
    -- release: released; record: recorded.
    returned_sats  bigint,
    -- record: recorded (`pubkey` is the reservation's).
    absorbed_sats  bigint,
    overrun_sats   bigint,
    pubkey         text,
    -- credit: credited.
    credited_sats  bigint,
    -- The amounts refusals report.
    estimated_sats bigint,  -- exists_with_different_estimate, amount_above_estimate
    available_sats bigint,  -- insufficient_funds
    actual_sats    bigint,  -- recorded_with_different_amount (the first call's)
    paid_sats      bigint   -- payment_with_different_amount (the first call's)
);

-- The rules the functions apply: one row, written at genesis.
CREATE TABLE ledger_config (
    id                  smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    budget_new          bigint NOT NULL CHECK (budget_new >= 0),
    budget_established  bigint NOT NULL CHECK (budget_established >= 0),
    budget_trusted      bigint NOT NULL CHECK (budget_trusted >= 0),
    budget_elite        bigint NOT NULL CHECK (budget_elite >= 0),
    pool_initial_sats   bigint NOT NULL CHECK (pool_initial_sats >= 0),
    credit_bps          integer NOT NULL CHECK (credit_bps BETWEEN 0 AND 10000),
    reservation_ttl_ms  bigint NOT NULL CHECK (reservation_ttl_ms >= 0)
);

-- ── the pool, in stripes ────────────────────────────────────────────────────────────────────
--
-- One hot row was the bottleneck of every command that moves sats, so the pool's balance and
-- running totals are split over `ledger_n_stripes()` rows of `pool_stripes`. The pool balance
-- is their sum; `pool` is a view of the sums, so readers and the audit see one row.
--
-- Why the outcomes stay exactly the reference's (`decide` answers from the *whole* pool):
-- - Every request has a home stripe (request id mod N); its reservation, release, record and
--   expiry are booked there, so each stripe's `reserved_sats` stays >= 0.
-- - A debit first tries the home stripe alone: the journal's trigger moves the stripe only if
--   it covers the amount, and otherwise inserts nothing. Success means the stripe, hence the
--   pool, covered the amount: the reference would have granted it too.
-- - When the home stripe is short, the function locks *all* stripes in stripe order and reads
--   the exact total. If the total covers the amount, the debit is spread over the stripes (home
--   first, one journal row per stripe touched); if not, the answer is computed from that exact
--   total, as the reference computes it from its single balance.
-- - An advisory answer (a partial offer, a refusal's `available`) needs the pool only when it
--   could be the smallest term: if the home stripe alone holds at least the daily remaining,
--   the pool does too, and the answer is the daily remaining without locking anything.
-- - Overflow refusals (sums near 2^63) need exact totals; they are checked without locks only
--   when the amount is at most 2^40 and the totals at most 2^61, which no set of concurrent
--   transactions (at most 2^18 connections) can push past 2^63. Otherwise all stripes are
--   locked and the check is exact.
--
-- Deadlock freedom: a transaction either holds one stripe (its home) and then waits for no
-- other stripe, or takes every stripe it needs in stripe order. Duplicates of one `decide`
-- are serialised by a transaction-scoped advisory lock on the request id, taken first.

CREATE TABLE pool_stripes (
    stripe         stripe_no PRIMARY KEY,
    balance_sats   sats NOT NULL DEFAULT 0,
    reserved_sats  sats NOT NULL DEFAULT 0,
    absorbed_sats  sats NOT NULL DEFAULT 0,
    credited_sats  sats NOT NULL DEFAULT 0,
    overrun_sats   sats NOT NULL DEFAULT 0,
    n_grants       sats NOT NULL DEFAULT 0
);

CREATE VIEW pool AS
SELECT 1::smallint AS id,
       sum(balance_sats)::bigint  AS balance_sats,
       sum(reserved_sats)::bigint AS reserved_sats,
       sum(absorbed_sats)::bigint AS absorbed_sats,
       sum(credited_sats)::bigint AS credited_sats,
       sum(overrun_sats)::bigint  AS overrun_sats,
       sum(n_grants)::bigint      AS n_grants
FROM pool_stripes
HAVING count(*) > 0;

-- Every pool movement, on one stripe. `amount_sats` is the signed change of the stripe's
-- balance; the other deltas move its running totals. The sum of each column over a stripe's
-- rows equals the stripe. `rebalance` moves sats between stripes (the rows of one rebalance
-- sum to zero). The row checks (a payment exactly for `credit`, a request for every kind but
-- `genesis`, `credit` and `rebalance`) are in the BEFORE INSERT trigger, `pool_journal_move`.
CREATE TABLE pool_journal (
    seq             bigserial PRIMARY KEY,
    kind            journal_kind NOT NULL,
    request_id      bigint,
    payment_id      bigint,
    amount_sats     bigint NOT NULL,
    d_reserved_sats bigint NOT NULL DEFAULT 0,
    d_absorbed_sats bigint NOT NULL DEFAULT 0,
    d_credited_sats bigint NOT NULL DEFAULT 0,
    d_overrun_sats  bigint NOT NULL DEFAULT 0,
    d_grants        bigint NOT NULL DEFAULT 0,
    at_ms           bigint NOT NULL,
    stripe          smallint NOT NULL DEFAULT 0
);

-- ── identities, requests, reservations, grants, payments ────────────────────────────────────

CREATE TABLE identities (
    pubkey                text PRIMARY KEY,
    tier                  tier_name NOT NULL,
    sats_absorbed_today   sats NOT NULL DEFAULT 0,
    absorbed_reset_at_ms  bigint NOT NULL,
    -- Outstanding reservations, which count against the daily remaining.
    reserved_sats         sats NOT NULL DEFAULT 0
);

-- Every decided request and its first decision, so that a repeated decide answers the same.
CREATE TABLE requests (
    request_id     ledger_id PRIMARY KEY,
    pubkey         text NOT NULL,
    estimated_sats sats NOT NULL,
    decision       decision_kind NOT NULL,
    -- free: the reservation; partial: the offer; gate: 0.
    offer_sats     sats NOT NULL,
    charge_sats    sats NOT NULL,
    gate_reason    text CHECK ((decision = 'gate') = (gate_reason IS NOT NULL)),
    CHECK (offer_sats + charge_sats = estimated_sats)
);

-- A reservation has no foreign keys: they cost a sixth of a batched request's server time (two
-- referential checks, each a query, per reservation) and guard none of I1, I5 or idempotency,
-- which stay with keys, domains and guards. What they did guard is kept otherwise: a
-- reservation is only ever written by `decide` and `reserve_partial`, under the locks of its
-- request and identity; requests are append-only and identities undeletable (guards that cost
-- nothing on insert), so what a reservation refers to cannot go away; and
-- the audit (`audit_reference.sql`) reports any reservation whose request or identity is missing
-- or disagrees. `stripe` is the request's home stripe, where its movements are booked.
CREATE TABLE reservations (
    request_id   bigint PRIMARY KEY,
    pubkey       text NOT NULL,
    amount_sats  positive_sats NOT NULL,
    by_decide    boolean NOT NULL,
    state        reservation_state NOT NULL DEFAULT 'reserved',
    deadline_ms  bigint NOT NULL,
    closed_at_ms bigint,
    stripe       smallint NOT NULL DEFAULT 0,
    CHECK ((state = 'reserved') = (closed_at_ms IS NULL))
);

CREATE INDEX reservations_outstanding_by_deadline
    ON reservations (deadline_ms, request_id) WHERE state = 'reserved';

-- The audit: one grant per recorded reservation. The grant's guard checks that it matches an
-- open reservation (reservations are never deleted, so that check is the foreign key's too)
-- and that absorbed + overrun = actual.
CREATE TABLE grants (
    request_id    bigint PRIMARY KEY,
    pubkey        text NOT NULL,
    actual_sats   sats NOT NULL,
    absorbed_sats sats NOT NULL,
    returned_sats sats NOT NULL,
    overrun_sats  sats NOT NULL,
    at_ms         bigint NOT NULL
);

CREATE TABLE processed_payments (
    payment_id    ledger_id PRIMARY KEY,
    paid_sats     sats NOT NULL,
    credited_sats sats NOT NULL,
    at_ms         bigint NOT NULL
);

-- A refused `reserve_partial` stays refused on repeat: a duplicate delivered late must never
-- succeed after the caller has re-quoted and moved on (ledger-core's `Request::refused`).
-- The refusal changes no balance; it only remembers its answer.
CREATE TABLE refused_reservations (
    request_id     bigint NOT NULL REFERENCES requests (request_id),
    amount_sats    positive_sats NOT NULL,
    available_sats bigint NOT NULL CHECK (available_sats >= 0 AND available_sats < amount_sats),
    PRIMARY KEY (request_id, amount_sats)
);
