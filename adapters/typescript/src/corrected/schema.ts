// The corrected free tier's tables (drizzle-orm), and the DDL that creates them.
//
// Every amount is a BIGINT >= 0 and every time a BIGINT of milliseconds since the epoch passed
// in by the caller: the database clock is never read. The names do not clash with the original
// service's tables (timmy_config, nostr_identities, free_tier_grants), so both can live in one
// database while a service moves over.
//
// - free_tier_pool: one row, the rules (the configuration) and the pool with its running
//   totals. Conservation (I2) is a CHECK on the row: genesis + credited = pool + reserved +
//   absorbed, in numeric so that the sum cannot overflow.
// - free_tier_identities: tier, the daily window (sats_absorbed_today from
//   absorbed_reset_at_ms) and the identity's outstanding reservations.
// - free_tier_requests: every decided request and its first decision, forever (idempotency).
// - free_tier_reservations: at most one per request, outstanding until recorded, released or
//   expired; `by_decide` tells a free decision's reservation from reserve_partial's.
// - free_tier_refused_reservations: the amounts reserve_partial refused for lack of funds,
//   with the `available` it answered (SPEC.md R-PARTIAL-7).
// - free_tier_grant_audit: one row per record that settled a reservation (I5).
// - free_tier_payments: every credited payment, with what it paid and what it credited.

import { bigint, boolean, integer, pgTable, primaryKey, smallint, text } from "drizzle-orm/pg-core";

const sats = (name: string) => bigint(name, { mode: "bigint" });

export const pool = pgTable("free_tier_pool", {
  id: smallint("id").primaryKey(),
  budgetNew: sats("budget_new").notNull(),
  budgetEstablished: sats("budget_established").notNull(),
  budgetTrusted: sats("budget_trusted").notNull(),
  budgetElite: sats("budget_elite").notNull(),
  poolInitialSats: sats("pool_initial_sats").notNull(),
  creditBps: integer("credit_bps").notNull(),
  reservationTtlMs: sats("reservation_ttl_ms").notNull(),
  poolSats: sats("pool_sats").notNull(),
  reservedSats: sats("reserved_sats").notNull(),
  absorbedSats: sats("absorbed_sats").notNull(),
  creditedSats: sats("credited_sats").notNull(),
  overrunSats: sats("overrun_sats").notNull(),
  nGrants: sats("n_grants").notNull(),
});

export const identities = pgTable("free_tier_identities", {
  pubkey: text("pubkey").primaryKey(),
  tier: text("tier").$type<"new" | "established" | "trusted" | "elite">().notNull(),
  satsAbsorbedToday: sats("sats_absorbed_today").notNull(),
  absorbedResetAtMs: sats("absorbed_reset_at_ms").notNull(),
  reservedSats: sats("reserved_sats").notNull(),
});

export const requests = pgTable("free_tier_requests", {
  requestId: sats("request_id").primaryKey(),
  pubkey: text("pubkey").notNull(),
  estimatedSats: sats("estimated_sats").notNull(),
  serve: text("serve").$type<"free" | "partial" | "gate">().notNull(),
  /** free: the reservation; partial: the offer; gate: 0. */
  offerSats: sats("offer_sats").notNull(),
  chargeSats: sats("charge_sats").notNull(),
  gateReason: text("gate_reason"),
});

export type ReservationState = "outstanding" | "recorded" | "released" | "expired";

export const reservations = pgTable("free_tier_reservations", {
  requestId: sats("request_id").primaryKey(),
  pubkey: text("pubkey").notNull(),
  amountSats: sats("amount_sats").notNull(),
  byDecide: boolean("by_decide").notNull(),
  state: text("state").$type<ReservationState>().notNull(),
  deadlineMs: sats("deadline_ms").notNull(),
  actualSats: sats("actual_sats"),
});

export const refusedReservations = pgTable(
  "free_tier_refused_reservations",
  {
    requestId: sats("request_id").notNull(),
    amountSats: sats("amount_sats").notNull(),
    availableSats: sats("available_sats").notNull(),
  },
  (t) => [primaryKey({ columns: [t.requestId, t.amountSats] })],
);

export const grantAudit = pgTable("free_tier_grant_audit", {
  requestId: sats("request_id").primaryKey(),
  pubkey: text("pubkey").notNull(),
  actualSats: sats("actual_sats").notNull(),
  absorbedSats: sats("absorbed_sats").notNull(),
  returnedSats: sats("returned_sats").notNull(),
  overrunSats: sats("overrun_sats").notNull(),
  atMs: sats("at_ms").notNull(),
});

export const payments = pgTable("free_tier_payments", {
  paymentId: sats("payment_id").primaryKey(),
  paidSats: sats("paid_sats").notNull(),
  creditedSats: sats("credited_sats").notNull(),
  atMs: sats("at_ms").notNull(),
});

/** Creates the tables if they are not there (idempotent). */
export const DDL = `
CREATE TABLE IF NOT EXISTS free_tier_pool (
    id                 smallint PRIMARY KEY CHECK (id = 1),
    budget_new         bigint NOT NULL CHECK (budget_new >= 0),
    budget_established bigint NOT NULL CHECK (budget_established >= 0),
    budget_trusted     bigint NOT NULL CHECK (budget_trusted >= 0),
    budget_elite       bigint NOT NULL CHECK (budget_elite >= 0),
    pool_initial_sats  bigint NOT NULL CHECK (pool_initial_sats >= 0),
    credit_bps         integer NOT NULL CHECK (credit_bps BETWEEN 0 AND 10000),
    reservation_ttl_ms bigint NOT NULL CHECK (reservation_ttl_ms >= 1),
    pool_sats          bigint NOT NULL CHECK (pool_sats >= 0),
    reserved_sats      bigint NOT NULL CHECK (reserved_sats >= 0),
    absorbed_sats      bigint NOT NULL CHECK (absorbed_sats >= 0),
    credited_sats      bigint NOT NULL CHECK (credited_sats >= 0),
    overrun_sats       bigint NOT NULL CHECK (overrun_sats >= 0),
    n_grants           bigint NOT NULL CHECK (n_grants >= 0),
    CHECK (pool_initial_sats::numeric + credited_sats = pool_sats::numeric + reserved_sats + absorbed_sats)
);
CREATE TABLE IF NOT EXISTS free_tier_identities (
    pubkey               text PRIMARY KEY CHECK (pubkey ~ '^[0-9a-f]{64}$'),
    tier                 text NOT NULL CHECK (tier IN ('new', 'established', 'trusted', 'elite')),
    sats_absorbed_today  bigint NOT NULL CHECK (sats_absorbed_today >= 0),
    absorbed_reset_at_ms bigint NOT NULL CHECK (absorbed_reset_at_ms >= 0),
    reserved_sats        bigint NOT NULL CHECK (reserved_sats >= 0)
);
CREATE TABLE IF NOT EXISTS free_tier_requests (
    request_id     bigint PRIMARY KEY CHECK (request_id >= 0),
    pubkey         text NOT NULL,
    estimated_sats bigint NOT NULL CHECK (estimated_sats >= 0),
    serve          text NOT NULL CHECK (serve IN ('free', 'partial', 'gate')),
    offer_sats     bigint NOT NULL CHECK (offer_sats >= 0),
    charge_sats    bigint NOT NULL CHECK (charge_sats >= 0),
    gate_reason    text CHECK ((serve = 'gate') = (gate_reason IS NOT NULL)),
    CHECK (offer_sats::numeric + charge_sats = estimated_sats)
);
CREATE TABLE IF NOT EXISTS free_tier_reservations (
    request_id  bigint PRIMARY KEY REFERENCES free_tier_requests (request_id),
    pubkey      text NOT NULL REFERENCES free_tier_identities (pubkey),
    amount_sats bigint NOT NULL CHECK (amount_sats > 0),
    by_decide   boolean NOT NULL,
    state       text NOT NULL CHECK (state IN ('outstanding', 'recorded', 'released', 'expired')),
    deadline_ms bigint NOT NULL,
    actual_sats bigint CHECK (actual_sats >= 0),
    CHECK ((state = 'recorded') = (actual_sats IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS free_tier_reservations_due
    ON free_tier_reservations (deadline_ms, request_id) WHERE state = 'outstanding';
CREATE TABLE IF NOT EXISTS free_tier_refused_reservations (
    request_id     bigint NOT NULL REFERENCES free_tier_requests (request_id),
    amount_sats    bigint NOT NULL CHECK (amount_sats > 0),
    available_sats bigint NOT NULL CHECK (available_sats >= 0 AND available_sats < amount_sats),
    PRIMARY KEY (request_id, amount_sats)
);
CREATE TABLE IF NOT EXISTS free_tier_grant_audit (
    request_id    bigint PRIMARY KEY REFERENCES free_tier_reservations (request_id),
    pubkey        text NOT NULL,
    actual_sats   bigint NOT NULL CHECK (actual_sats >= 0),
    absorbed_sats bigint NOT NULL CHECK (absorbed_sats >= 0),
    returned_sats bigint NOT NULL CHECK (returned_sats >= 0),
    overrun_sats  bigint NOT NULL CHECK (overrun_sats >= 0),
    at_ms         bigint NOT NULL,
    CHECK (absorbed_sats::numeric + overrun_sats = actual_sats)
);
CREATE TABLE IF NOT EXISTS free_tier_payments (
    payment_id    bigint PRIMARY KEY CHECK (payment_id >= 0),
    paid_sats     bigint NOT NULL CHECK (paid_sats >= 0),
    credited_sats bigint NOT NULL CHECK (credited_sats >= 0 AND credited_sats <= paid_sats),
    at_ms         bigint NOT NULL
);
`;

/** Every table, children first (for TRUNCATE). */
export const TABLES = [
  "free_tier_grant_audit",
  "free_tier_refused_reservations",
  "free_tier_reservations",
  "free_tier_requests",
  "free_tier_payments",
  "free_tier_identities",
  "free_tier_pool",
];
