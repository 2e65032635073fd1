-- The reference schema: DESIGN §3 on PostgreSQL.
--
-- Amounts are BIGINT with CHECK (x >= 0). Times are milliseconds since the epoch, passed in
-- by the caller (the database clock is never read). Ids are the core's u64 ids, which the
-- adapter keeps below 2^63.
--
-- What the constraints guarantee even against a client that writes SQL by hand:
-- - I1: the pool balance and every running total are CHECK (>= 0).
-- - I2: the pool row is written only by the journal trigger, so the balance is the sum of the
--   journal, and the journal is append-only.
-- - I5: one grant per request (primary key), only for a reservation in state `recorded`; a
--   reservation leaves `reserved` once and never comes back; a `recorded` reservation has its
--   grant by the end of the transaction.
-- - Idempotency: requests, reservations and payments are keyed by their ids.

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

-- The pool and the ledger's running totals: one row, moved only by the journal.
CREATE TABLE pool (
    id             smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    balance_sats   bigint NOT NULL DEFAULT 0 CHECK (balance_sats >= 0),
    reserved_sats  bigint NOT NULL DEFAULT 0 CHECK (reserved_sats >= 0),
    absorbed_sats  bigint NOT NULL DEFAULT 0 CHECK (absorbed_sats >= 0),
    credited_sats  bigint NOT NULL DEFAULT 0 CHECK (credited_sats >= 0),
    overrun_sats   bigint NOT NULL DEFAULT 0 CHECK (overrun_sats >= 0),
    n_grants       bigint NOT NULL DEFAULT 0 CHECK (n_grants >= 0)
);

-- Every pool movement. `amount_sats` is the signed change of the pool balance; the other
-- deltas move the running totals. The sum of each column equals the pool row.
CREATE TABLE pool_journal (
    seq             bigserial PRIMARY KEY,
    kind            text NOT NULL CHECK (kind IN
                        ('genesis', 'debit', 'release', 'expire', 'record', 'credit')),
    request_id      bigint,
    payment_id      bigint,
    amount_sats     bigint NOT NULL,
    d_reserved_sats bigint NOT NULL DEFAULT 0,
    d_absorbed_sats bigint NOT NULL DEFAULT 0,
    d_credited_sats bigint NOT NULL DEFAULT 0,
    d_overrun_sats  bigint NOT NULL DEFAULT 0,
    d_grants        bigint NOT NULL DEFAULT 0,
    at_ms           bigint NOT NULL,
    CHECK ((kind = 'credit') = (payment_id IS NOT NULL)),
    CHECK ((kind IN ('genesis', 'credit')) = (request_id IS NULL))
);

CREATE TABLE identities (
    pubkey                text PRIMARY KEY,
    tier                  text NOT NULL CHECK (tier IN ('new', 'established', 'trusted', 'elite')),
    sats_absorbed_today   bigint NOT NULL DEFAULT 0 CHECK (sats_absorbed_today >= 0),
    absorbed_reset_at_ms  bigint NOT NULL,
    -- Outstanding reservations, which count against the daily remaining.
    reserved_sats         bigint NOT NULL DEFAULT 0 CHECK (reserved_sats >= 0)
);

-- Every decided request and its first decision, so that a repeated decide answers the same.
CREATE TABLE requests (
    request_id     bigint PRIMARY KEY CHECK (request_id >= 0),
    pubkey         text NOT NULL,
    estimated_sats bigint NOT NULL CHECK (estimated_sats >= 0),
    decision       text NOT NULL CHECK (decision IN ('free', 'partial', 'gate')),
    -- free: the reservation; partial: the offer; gate: 0.
    offer_sats     bigint NOT NULL CHECK (offer_sats >= 0),
    charge_sats    bigint NOT NULL CHECK (charge_sats >= 0),
    gate_reason    text CHECK ((decision = 'gate') = (gate_reason IS NOT NULL)),
    CHECK (offer_sats + charge_sats = estimated_sats)
);

CREATE TABLE reservations (
    request_id   bigint PRIMARY KEY REFERENCES requests (request_id),
    pubkey       text NOT NULL REFERENCES identities (pubkey),
    amount_sats  bigint NOT NULL CHECK (amount_sats > 0),
    by_decide    boolean NOT NULL,
    state        text NOT NULL DEFAULT 'reserved'
                     CHECK (state IN ('reserved', 'recorded', 'released', 'expired')),
    deadline_ms  bigint NOT NULL,
    closed_at_ms bigint CHECK ((state = 'reserved') = (closed_at_ms IS NULL))
);

CREATE INDEX reservations_outstanding_by_deadline
    ON reservations (deadline_ms, request_id) WHERE state = 'reserved';

-- The audit: one grant per recorded reservation.
CREATE TABLE grants (
    request_id    bigint PRIMARY KEY REFERENCES reservations (request_id),
    pubkey        text NOT NULL,
    actual_sats   bigint NOT NULL CHECK (actual_sats >= 0),
    absorbed_sats bigint NOT NULL CHECK (absorbed_sats >= 0),
    returned_sats bigint NOT NULL CHECK (returned_sats >= 0),
    overrun_sats  bigint NOT NULL CHECK (overrun_sats >= 0),
    at_ms         bigint NOT NULL,
    CHECK (absorbed_sats + overrun_sats = actual_sats)
);

CREATE TABLE processed_payments (
    payment_id    bigint PRIMARY KEY CHECK (payment_id >= 0),
    paid_sats     bigint NOT NULL CHECK (paid_sats >= 0),
    credited_sats bigint NOT NULL CHECK (credited_sats >= 0),
    at_ms         bigint NOT NULL
);

-- ── Guards ──────────────────────────────────────────────────────────────────────────────────

-- The journal moves the pool: one update per journal row.
CREATE FUNCTION pool_journal_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE pool SET
        balance_sats  = balance_sats  + NEW.amount_sats,
        reserved_sats = reserved_sats + NEW.d_reserved_sats,
        absorbed_sats = absorbed_sats + NEW.d_absorbed_sats,
        credited_sats = credited_sats + NEW.d_credited_sats,
        overrun_sats  = overrun_sats  + NEW.d_overrun_sats,
        n_grants      = n_grants      + NEW.d_grants
    WHERE id = 1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pool row missing: run ledger_genesis first' USING ERRCODE = 'P0001';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER pool_journal_apply AFTER INSERT ON pool_journal
    FOR EACH ROW EXECUTE FUNCTION pool_journal_apply();

CREATE FUNCTION pool_journal_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'pool_journal is append-only' USING ERRCODE = 'P0001';
END $$;

CREATE TRIGGER pool_journal_append_only BEFORE UPDATE OR DELETE ON pool_journal
    FOR EACH ROW EXECUTE FUNCTION pool_journal_append_only();
CREATE TRIGGER pool_journal_no_truncate BEFORE TRUNCATE ON pool_journal
    FOR EACH STATEMENT EXECUTE FUNCTION pool_journal_append_only();

-- Only the journal trigger (depth >= 2) may change the pool row after genesis.
CREATE FUNCTION pool_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF pg_trigger_depth() < 2 THEN
        RAISE EXCEPTION 'the pool moves only through pool_journal' USING ERRCODE = 'P0001';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END $$;

CREATE TRIGGER pool_guard BEFORE UPDATE OR DELETE ON pool
    FOR EACH ROW EXECUTE FUNCTION pool_guard();

-- A reservation leaves `reserved` once, and nothing else about it changes.
CREATE FUNCTION reservation_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'reservations are never deleted' USING ERRCODE = 'P0001';
    END IF;
    IF OLD.state <> 'reserved'
       OR NEW.request_id <> OLD.request_id OR NEW.pubkey <> OLD.pubkey
       OR NEW.amount_sats <> OLD.amount_sats OR NEW.by_decide <> OLD.by_decide
       OR NEW.deadline_ms <> OLD.deadline_ms THEN
        RAISE EXCEPTION 'reservation % is closed or immutable', OLD.request_id
            USING ERRCODE = 'P0001';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER reservation_guard BEFORE UPDATE OR DELETE ON reservations
    FOR EACH ROW EXECUTE FUNCTION reservation_guard();

-- A grant only for a recorded reservation, of its amount.
CREATE FUNCTION grant_guard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r reservations%ROWTYPE;
BEGIN
    IF TG_OP <> 'INSERT' THEN
        RAISE EXCEPTION 'grants are append-only' USING ERRCODE = 'P0001';
    END IF;
    SELECT * INTO r FROM reservations WHERE request_id = NEW.request_id;
    IF r.state IS DISTINCT FROM 'recorded' OR r.pubkey <> NEW.pubkey
       OR NEW.absorbed_sats + NEW.returned_sats <> r.amount_sats THEN
        RAISE EXCEPTION 'grant % does not match a recorded reservation', NEW.request_id
            USING ERRCODE = 'P0001';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER grant_guard BEFORE INSERT OR UPDATE OR DELETE ON grants
    FOR EACH ROW EXECUTE FUNCTION grant_guard();

-- A recorded reservation has its grant by commit.
CREATE FUNCTION reservation_recorded_has_grant() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state = 'recorded'
       AND NOT EXISTS (SELECT 1 FROM grants WHERE request_id = NEW.request_id) THEN
        RAISE EXCEPTION 'reservation % recorded without a grant', NEW.request_id
            USING ERRCODE = 'P0001';
    END IF;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER reservation_recorded_has_grant
    AFTER UPDATE ON reservations DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.state = 'recorded')
    EXECUTE FUNCTION reservation_recorded_has_grant();
