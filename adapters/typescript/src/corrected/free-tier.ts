// The generosity-pool ledger of SPEC.md §1-§5 on PostgreSQL with drizzle-orm: a corrected
// free tier that can take the place of the original service's free-tier.ts.
//
// What changes for the service that calls it (SPEC.md §0 describes the callers):
// - Every command carries the caller's ids (request id, payment id) and its `now`; a repeat
//   answers the first answer and moves nothing (at-least-once delivery is safe).
// - `decide` reserves the whole estimate for a free decision, or gives an advisory offer;
//   `reservePartial` reserves all of an amount or nothing; `record` settles a reservation
//   (absorbing at most what was reserved, reporting the overrun), `release` returns it,
//   `expire` returns those whose deadline passed. Outstanding reservations count against the
//   daily budget. The ledger never reads a clock: `now` is an argument (pass Date.now() as a
//   bigint in production).
// - Amounts are bigint sats in 0..=2^63-1, stored in BIGINT columns; every sum is checked.
//
// Concurrency: each command is one READ COMMITTED transaction that first locks the pool row
// (`SELECT ... FOR UPDATE`), then the identity row it touches (several identities: in pubkey
// order), then reads and writes requests and reservations. Every command but `setTier` takes
// the pool row first, so they apply one at a time in lock order; `setTier` locks only its
// identity, which the others lock after the pool, so no cycle of waits can form. A
// transaction that fails with a serialization failure or a deadlock (40001, 40P01), which
// rolled it back, is retried.

import { and, asc, eq, inArray, lt, sql } from "drizzle-orm";
import type { NodePgDatabase } from "drizzle-orm/node-postgres";
import { DDL, TABLES, grantAudit, identities, payments, pool, refusedReservations, requests, reservations } from "./schema.js";

export const MAX_SATS = (1n << 63n) - 1n;
export const DAY_MS = 86_400_000n;

export type Tier = "new" | "established" | "trusted" | "elite";
export type GateReason = "zero_estimate" | "unknown_identity" | "zero_budget" | "daily_budget_exhausted" | "pool_empty";

export interface LedgerConfig {
  budget_sats: Record<Tier, bigint>;
  pool_initial_sats: bigint;
  credit_bps: bigint;
  reservation_ttl_ms: bigint;
}

export type Decision =
  | { serve: "free"; reserved_sats: bigint }
  | { serve: "partial"; offer_sats: bigint; charge_sats: bigint }
  | { serve: "gate"; reason: GateReason; charge_sats: bigint };

export type Outcome =
  | { reply: "ok"; outcome: "tier_set"; previous: Tier | null }
  | { reply: "ok"; outcome: "decided"; decision: Decision }
  | { reply: "ok"; outcome: "reserved"; reserved_sats: bigint }
  | { reply: "ok"; outcome: "released"; returned_sats: bigint }
  | { reply: "ok"; outcome: "recorded"; absorbed_sats: bigint; returned_sats: bigint; overrun_sats: bigint }
  | { reply: "ok"; outcome: "credited"; credited_sats: bigint }
  | { reply: "ok"; outcome: "expired"; released: [bigint, bigint][] };

export type Refusal =
  | { reply: "refused"; refusal: "unknown_identity" | "unknown_request" | "zero_amount" | "exists_with_different_pubkey" }
  | { reply: "refused"; refusal: "not_reserved" | "already_recorded" | "already_released" | "reservation_expired" | "overflow" }
  | { reply: "refused"; refusal: "insufficient_funds"; available_sats: bigint }
  | { reply: "refused"; refusal: "exists_with_different_estimate" | "amount_above_estimate"; estimated_sats: bigint }
  | { reply: "refused"; refusal: "reservation_exists"; reserved_sats: bigint }
  | { reply: "refused"; refusal: "recorded_with_different_amount"; actual_sats: bigint }
  | { reply: "refused"; refusal: "payment_with_different_amount"; paid_sats: bigint };

/** What a command answered, and whether it changed the state (false for a repeat or a refusal). */
export interface Answer<T = Outcome> {
  fresh: boolean;
  reply: T | Refusal;
}

/** The storage failed. `definite`: the transaction surely rolled back (nothing happened);
 * otherwise it failed while committing and may or may not have taken effect. */
export class LedgerStorageError extends Error {
  constructor(
    message: string,
    readonly definite: boolean,
    readonly cause?: unknown,
  ) {
    super(message);
  }
}

export interface Snapshot {
  pool_sats: bigint;
  reserved_sats: bigint;
  absorbed_sats: bigint;
  credited_sats: bigint;
  overrun_sats: bigint;
  n_grants: bigint;
  /** The sum and count of the grant audit (equal to absorbed_sats and n_grants). */
  granted_sats: bigint;
  n_audit_grants: bigint;
  identities: { pubkey: string; tier: Tier; sats_absorbed_today: bigint; absorbed_reset_at_ms: bigint; reserved_sats: bigint }[];
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Db = NodePgDatabase<any>;
type Tx = Parameters<Parameters<Db["transaction"]>[0]>[0];
type PoolRow = typeof pool.$inferSelect;
type IdentityRow = typeof identities.$inferSelect;
type RequestRow = typeof requests.$inferSelect;

const ok = <T extends Outcome>(fresh: boolean, o: T): Answer<T> => ({ fresh, reply: o });
/** A refusal moves nothing, so `fresh` is not read (SPEC.md §9.2); it says, as recommended,
 * whether this is a first answer (`true`) or a remembered one repeated (R-PARTIAL-7, `false`). */
const refuse = (r: Refusal, fresh = true): Answer<never> => ({ fresh, reply: r });

const min = (a: bigint, b: bigint) => (a < b ? a : b);
/** The SQLSTATE of a failure, looking through drizzle's wrapping (`cause`). */
export function pgCode(e: unknown): string | undefined {
  for (let x = e, depth = 0; x && depth < 5; x = (x as { cause?: unknown }).cause, depth++) {
    const c = (x as { code?: unknown }).code;
    if (typeof c === "string" && /^[0-9A-Z]{5}$/.test(c)) return c;
  }
  return undefined;
}

/** The message of a failure: the server's, when drizzle wrapped it. */
function messageOf(e: unknown): string {
  const cause = (e as { cause?: unknown } | null)?.cause;
  if (cause instanceof Error) return cause.message;
  return e instanceof Error ? e.message : String(e);
}

function budgetOf(p: PoolRow, tier: Tier): bigint {
  switch (tier) {
    case "elite":
      return p.budgetElite;
    case "trusted":
      return p.budgetTrusted;
    case "established":
      return p.budgetEstablished;
    default:
      return p.budgetNew;
  }
}

/** The absorption that counts in the identity's window at `now` (R-WINDOW-1, R-WINDOW-5). */
function countedAbsorption(id: IdentityRow, now: bigint): bigint {
  return now - id.absorbedResetAtMs < DAY_MS ? id.satsAbsorbedToday : 0n;
}

/** Budget less the window's absorption less outstanding reservations, at least 0 (R-DECIDE-6). */
function remaining(p: PoolRow, id: IdentityRow, now: bigint): bigint {
  const r = budgetOf(p, id.tier) - countedAbsorption(id, now) - id.reservedSats;
  return r < 0n ? 0n : r;
}

/** `now + ttl`, or 2^63-1 when that is beyond it: such a reservation never expires (R-EXPIRE-1). */
function deadline(p: PoolRow, now: bigint): bigint {
  return min(now + p.reservationTtlMs, MAX_SATS);
}

function decisionOf(r: RequestRow): Decision {
  switch (r.serve) {
    case "free":
      return { serve: "free", reserved_sats: r.offerSats };
    case "partial":
      return { serve: "partial", offer_sats: r.offerSats, charge_sats: r.chargeSats };
    default:
      return { serve: "gate", reason: r.gateReason as GateReason, charge_sats: r.chargeSats };
  }
}

function recordedOutcome(amount: bigint, actual: bigint) {
  const absorbed = min(actual, amount);
  return { reply: "ok" as const, outcome: "recorded" as const, absorbed_sats: absorbed, returned_sats: amount - absorbed, overrun_sats: actual - absorbed };
}

export class FreeTierLedger {
  constructor(
    private readonly db: Db,
    private readonly maxAttempts = 50,
  ) {}

  // ── installation ─────────────────────────────────────────────────────────────────────────

  /** Creates the tables if they are missing. */
  async install(): Promise<void> {
    await this.db.execute(sql.raw(DDL));
  }

  /** The configuration stored at genesis, or null before genesis. */
  async storedConfig(): Promise<LedgerConfig | null> {
    const [p] = await this.db.select().from(pool).where(eq(pool.id, 1));
    if (!p) return null;
    return {
      budget_sats: { new: p.budgetNew, established: p.budgetEstablished, trusted: p.budgetTrusted, elite: p.budgetElite },
      pool_initial_sats: p.poolInitialSats,
      credit_bps: BigInt(p.creditBps),
      reservation_ttl_ms: p.reservationTtlMs,
    };
  }

  /** Empties every table and starts the ledger at genesis under `config`: the pool holds
   * `pool_initial_sats`, every total is 0, no identities, requests or payments. */
  async genesis(config: LedgerConfig): Promise<void> {
    await this.transaction(async (tx) => {
      await tx.execute(sql.raw(`TRUNCATE ${TABLES.join(", ")}`));
      const b = config.budget_sats;
      await tx.insert(pool).values({
        id: 1,
        budgetNew: b.new,
        budgetEstablished: b.established,
        budgetTrusted: b.trusted,
        budgetElite: b.elite,
        poolInitialSats: config.pool_initial_sats,
        creditBps: Number(config.credit_bps),
        reservationTtlMs: config.reservation_ttl_ms,
        poolSats: config.pool_initial_sats,
        reservedSats: 0n,
        absorbedSats: 0n,
        creditedSats: 0n,
        overrunSats: 0n,
        nGrants: 0n,
      });
    });
  }

  // ── commands (SPEC.md §3) ────────────────────────────────────────────────────────────────

  /** §3.1: creates the identity (window opening at `now`) or changes its tier only. */
  setTier(pubkey: string, tier: Tier, now: bigint): Promise<Answer> {
    return this.transaction(async (tx) => {
      const inserted = await tx
        .insert(identities)
        .values({ pubkey, tier, satsAbsorbedToday: 0n, absorbedResetAtMs: now, reservedSats: 0n })
        .onConflictDoNothing()
        .returning({ pubkey: identities.pubkey });
      if (inserted.length > 0) return ok(true, { reply: "ok", outcome: "tier_set", previous: null });
      // It exists (perhaps created by a concurrent set_tier, which ON CONFLICT waited for).
      const [old] = await tx.select({ tier: identities.tier }).from(identities).where(eq(identities.pubkey, pubkey)).for("update");
      await tx.update(identities).set({ tier }).where(eq(identities.pubkey, pubkey));
      return ok(true, { reply: "ok", outcome: "tier_set", previous: old.tier });
    });
  }

  /** §3.2 and R-IDEM-1/2. */
  decide(requestId: bigint, pubkey: string, estimated: bigint, now: bigint): Promise<Answer> {
    return this.transaction(async (tx) => {
      const p = await this.lockPool(tx);
      const [req] = await tx.select().from(requests).where(eq(requests.requestId, requestId));
      if (req) {
        if (req.pubkey !== pubkey) return refuse({ reply: "refused", refusal: "exists_with_different_pubkey" });
        if (req.estimatedSats !== estimated) {
          return refuse({ reply: "refused", refusal: "exists_with_different_estimate", estimated_sats: req.estimatedSats });
        }
        return ok(false, { reply: "ok", outcome: "decided", decision: decisionOf(req) });
      }

      const gate = (reason: GateReason): Decision => ({ serve: "gate", reason, charge_sats: estimated });
      let decision: Decision;
      let identity: IdentityRow | undefined;
      if (estimated === 0n) {
        decision = gate("zero_estimate");
      } else {
        [identity] = await tx.select().from(identities).where(eq(identities.pubkey, pubkey)).for("update");
        if (!identity) decision = gate("unknown_identity");
        else if (budgetOf(p, identity.tier) === 0n) decision = gate("zero_budget");
        else {
          const rem = remaining(p, identity, now);
          if (rem === 0n) decision = gate("daily_budget_exhausted");
          else if (p.poolSats === 0n) decision = gate("pool_empty");
          else {
            const available = min(rem, p.poolSats);
            decision =
              available >= estimated
                ? { serve: "free", reserved_sats: estimated }
                : { serve: "partial", offer_sats: available, charge_sats: estimated - available };
          }
        }
      }

      await tx.insert(requests).values({
        requestId,
        pubkey,
        estimatedSats: estimated,
        serve: decision.serve,
        offerSats: decision.serve === "free" ? decision.reserved_sats : decision.serve === "partial" ? decision.offer_sats : 0n,
        chargeSats: decision.serve === "free" ? 0n : decision.charge_sats,
        gateReason: decision.serve === "gate" ? decision.reason : null,
      });
      if (decision.serve === "free") {
        // R-DECIDE-8: debit and reserve in the same step.
        await this.reserve(tx, p, identity!, requestId, estimated, true, now);
      }
      return ok(true, { reply: "ok", outcome: "decided", decision });
    });
  }

  /** §3.3: all of `amount` or nothing. */
  reservePartial(requestId: bigint, pubkey: string, amount: bigint, now: bigint): Promise<Answer> {
    return this.transaction(async (tx) => {
      const p = await this.lockPool(tx);
      const [req] = await tx.select().from(requests).where(eq(requests.requestId, requestId));
      if (!req) return refuse({ reply: "refused", refusal: "unknown_request" });
      if (req.pubkey !== pubkey) return refuse({ reply: "refused", refusal: "exists_with_different_pubkey" });
      const [res] = await tx.select().from(reservations).where(eq(reservations.requestId, requestId));
      if (res) {
        if (!res.byDecide && res.amountSats === amount) return ok(false, { reply: "ok", outcome: "reserved", reserved_sats: amount });
        return refuse({ reply: "refused", refusal: "reservation_exists", reserved_sats: res.amountSats });
      }
      if (amount === 0n) return refuse({ reply: "refused", refusal: "zero_amount" });
      if (amount > req.estimatedSats) return refuse({ reply: "refused", refusal: "amount_above_estimate", estimated_sats: req.estimatedSats });
      const [before] = await tx
        .select({ available: refusedReservations.availableSats })
        .from(refusedReservations)
        .where(and(eq(refusedReservations.requestId, requestId), eq(refusedReservations.amountSats, amount)));
      if (before) return refuse({ reply: "refused", refusal: "insufficient_funds", available_sats: before.available }, false);
      const [identity] = await tx.select().from(identities).where(eq(identities.pubkey, pubkey)).for("update");
      if (!identity) return refuse({ reply: "refused", refusal: "unknown_identity" });
      const available = min(remaining(p, identity, now), p.poolSats);
      if (amount <= available) {
        await this.reserve(tx, p, identity, requestId, amount, false, now);
        return ok(true, { reply: "ok", outcome: "reserved", reserved_sats: amount });
      }
      // Remembered, so that a late duplicate never succeeds after the caller re-quoted.
      await tx.insert(refusedReservations).values({ requestId, amountSats: amount, availableSats: available });
      return refuse({ reply: "refused", refusal: "insufficient_funds", available_sats: available });
    });
  }

  /** §3.4. */
  release(requestId: bigint, _now: bigint): Promise<Answer> {
    return this.transaction(async (tx) => {
      const p = await this.lockPool(tx);
      const found = await this.findReservation(tx, requestId);
      if ("refusal" in found) return refuse(found.refusal);
      const res = found.res;
      switch (res.state) {
        case "released":
          return ok(false, { reply: "ok", outcome: "released", returned_sats: res.amountSats });
        case "recorded":
          return refuse({ reply: "refused", refusal: "already_recorded" });
        case "expired":
          return refuse({ reply: "refused", refusal: "reservation_expired" });
      }
      const amount = res.amountSats;
      await tx
        .update(pool)
        .set({ poolSats: p.poolSats + amount, reservedSats: p.reservedSats - amount })
        .where(eq(pool.id, 1));
      await this.unreserveIdentity(tx, res.pubkey, amount);
      await tx.update(reservations).set({ state: "released" }).where(eq(reservations.requestId, requestId));
      return ok(true, { reply: "ok", outcome: "released", returned_sats: amount });
    });
  }

  /** §3.5. */
  record(requestId: bigint, actual: bigint, now: bigint): Promise<Answer> {
    return this.transaction(async (tx) => {
      const p = await this.lockPool(tx);
      const found = await this.findReservation(tx, requestId);
      if ("refusal" in found) return refuse(found.refusal);
      const res = found.res;
      switch (res.state) {
        case "released":
          return refuse({ reply: "refused", refusal: "already_released" });
        case "expired":
          return refuse({ reply: "refused", refusal: "reservation_expired" });
        case "recorded":
          if (res.actualSats === actual) return ok(false, recordedOutcome(res.amountSats, actual));
          return refuse({ reply: "refused", refusal: "recorded_with_different_amount", actual_sats: res.actualSats! });
      }
      const amount = res.amountSats;
      const outcome = recordedOutcome(amount, actual);
      // R-RECORD-6: the overrun total must stay within 2^63-1.
      if (p.overrunSats + outcome.overrun_sats > MAX_SATS) return refuse({ reply: "refused", refusal: "overflow" });
      await tx
        .update(pool)
        .set({
          poolSats: p.poolSats + outcome.returned_sats,
          reservedSats: p.reservedSats - amount,
          absorbedSats: p.absorbedSats + outcome.absorbed_sats,
          overrunSats: p.overrunSats + outcome.overrun_sats,
          nGrants: p.nGrants + 1n,
        })
        .where(eq(pool.id, 1));
      const [identity] = await tx.select().from(identities).where(eq(identities.pubkey, res.pubkey)).for("update");
      const window: Partial<IdentityRow> = {};
      if (outcome.absorbed_sats > 0n) {
        // §4: a non-zero absorption 24 h or more after the window opened opens a new one now.
        if (now - identity.absorbedResetAtMs >= DAY_MS) {
          window.satsAbsorbedToday = outcome.absorbed_sats;
          window.absorbedResetAtMs = now;
        } else {
          window.satsAbsorbedToday = identity.satsAbsorbedToday + outcome.absorbed_sats;
        }
      }
      await tx
        .update(identities)
        .set({ ...window, reservedSats: identity.reservedSats - amount })
        .where(eq(identities.pubkey, res.pubkey));
      await tx.update(reservations).set({ state: "recorded", actualSats: actual }).where(eq(reservations.requestId, requestId));
      await tx.insert(grantAudit).values({
        requestId,
        pubkey: res.pubkey,
        actualSats: actual,
        absorbedSats: outcome.absorbed_sats,
        returnedSats: outcome.returned_sats,
        overrunSats: outcome.overrun_sats,
        atMs: now,
      });
      return ok(true, outcome);
    });
  }

  /** §3.6: floor(paid * credit_bps / 10000), exactly. */
  credit(paymentId: bigint, paid: bigint, now: bigint): Promise<Answer> {
    return this.transaction(async (tx) => {
      const p = await this.lockPool(tx);
      const [pay] = await tx.select().from(payments).where(eq(payments.paymentId, paymentId));
      if (pay) {
        if (pay.paidSats !== paid) return refuse({ reply: "refused", refusal: "payment_with_different_amount", paid_sats: pay.paidSats });
        return ok(false, { reply: "ok", outcome: "credited", credited_sats: pay.creditedSats });
      }
      const credited = (paid * BigInt(p.creditBps)) / 10000n;
      // R-CREDIT-4: judged on genesis plus every credit, not on the pool.
      if (p.poolInitialSats + p.creditedSats + credited > MAX_SATS) return refuse({ reply: "refused", refusal: "overflow" });
      await tx
        .update(pool)
        .set({ poolSats: p.poolSats + credited, creditedSats: p.creditedSats + credited })
        .where(eq(pool.id, 1));
      await tx.insert(payments).values({ paymentId, paidSats: paid, creditedSats: credited, atMs: now });
      return ok(true, { reply: "ok", outcome: "credited", credited_sats: credited });
    });
  }

  /** §3.7: closes every outstanding reservation whose deadline < now, in (deadline, id) order. */
  expire(now: bigint): Promise<Answer> {
    return this.transaction(async (tx) => {
      const p = await this.lockPool(tx);
      const due = await tx
        .select({ requestId: reservations.requestId, pubkey: reservations.pubkey, amount: reservations.amountSats })
        .from(reservations)
        .where(and(eq(reservations.state, "outstanding"), lt(reservations.deadlineMs, now)))
        .orderBy(asc(reservations.deadlineMs), asc(reservations.requestId))
        .for("update");
      if (due.length === 0) return ok(true, { reply: "ok", outcome: "expired", released: [] });
      let total = 0n;
      const perIdentity = new Map<string, bigint>();
      for (const d of due) {
        total += d.amount;
        perIdentity.set(d.pubkey, (perIdentity.get(d.pubkey) ?? 0n) + d.amount);
      }
      await tx
        .update(pool)
        .set({ poolSats: p.poolSats + total, reservedSats: p.reservedSats - total })
        .where(eq(pool.id, 1));
      const keys = [...perIdentity.keys()].sort();
      for (let i = 0; i < keys.length; i += 5000) {
        const chunk = keys.slice(i, i + 5000);
        const rows = await tx.select().from(identities).where(inArray(identities.pubkey, chunk)).orderBy(asc(identities.pubkey)).for("update");
        for (const row of rows) {
          await tx
            .update(identities)
            .set({ reservedSats: row.reservedSats - perIdentity.get(row.pubkey)! })
            .where(eq(identities.pubkey, row.pubkey));
        }
      }
      for (let i = 0; i < due.length; i += 5000) {
        const ids = due.slice(i, i + 5000).map((d) => d.requestId);
        await tx.update(reservations).set({ state: "expired" }).where(inArray(reservations.requestId, ids));
      }
      return ok(true, { reply: "ok", outcome: "expired", released: due.map((d) => [d.requestId, d.amount] as [bigint, bigint]) });
    });
  }

  /** The stored state, read in one snapshot. */
  snapshot(): Promise<Snapshot> {
    return this.db.transaction(
      async (tx) => {
        const [p] = await tx.select().from(pool).where(eq(pool.id, 1));
        if (!p) throw new LedgerStorageError("the ledger has no genesis", true);
        const [g] = await tx
          .select({ sum: sql<string>`coalesce(sum(${grantAudit.absorbedSats}), 0)::text`, n: sql<string>`count(*)::text` })
          .from(grantAudit);
        const ids = await tx.select().from(identities).orderBy(asc(identities.pubkey));
        return {
          pool_sats: p.poolSats,
          reserved_sats: p.reservedSats,
          absorbed_sats: p.absorbedSats,
          credited_sats: p.creditedSats,
          overrun_sats: p.overrunSats,
          n_grants: p.nGrants,
          granted_sats: BigInt(g.sum),
          n_audit_grants: BigInt(g.n),
          identities: ids.map((i) => ({
            pubkey: i.pubkey,
            tier: i.tier,
            sats_absorbed_today: i.satsAbsorbedToday,
            absorbed_reset_at_ms: i.absorbedResetAtMs,
            reserved_sats: i.reservedSats,
          })),
        };
      },
      { isolationLevel: "repeatable read", accessMode: "read only" },
    );
  }

  // ── helpers ──────────────────────────────────────────────────────────────────────────────

  /** Locks the pool row; every command but setTier starts here. */
  private async lockPool(tx: Tx): Promise<PoolRow> {
    const [p] = await tx.select().from(pool).where(eq(pool.id, 1)).for("update");
    if (!p) throw new LedgerStorageError("the ledger has no genesis", true);
    return p;
  }

  /** The request's reservation, or the refusal for a request without one (R-RELEASE-1,
   * R-RECORD-1). */
  private async findReservation(
    tx: Tx,
    requestId: bigint,
  ): Promise<{ res: typeof reservations.$inferSelect } | { refusal: Refusal }> {
    const rows = await tx
      .select({ requestId: requests.requestId, res: reservations })
      .from(requests)
      .leftJoin(reservations, eq(reservations.requestId, requests.requestId))
      .where(eq(requests.requestId, requestId));
    if (rows.length === 0) return { refusal: { reply: "refused", refusal: "unknown_request" } };
    const res = rows[0].res;
    if (!res) return { refusal: { reply: "refused", refusal: "not_reserved" } };
    return { res };
  }

  /** Debits `amount` from the pool and reserves it for the identity (the pool row and the
   * identity row are locked by the caller). */
  private async reserve(tx: Tx, p: PoolRow, identity: IdentityRow, requestId: bigint, amount: bigint, byDecide: boolean, now: bigint) {
    await tx
      .update(pool)
      .set({ poolSats: p.poolSats - amount, reservedSats: p.reservedSats + amount })
      .where(eq(pool.id, 1));
    await tx
      .update(identities)
      .set({ reservedSats: identity.reservedSats + amount })
      .where(eq(identities.pubkey, identity.pubkey));
    await tx.insert(reservations).values({
      requestId,
      pubkey: identity.pubkey,
      amountSats: amount,
      byDecide,
      state: "outstanding",
      deadlineMs: deadline(p, now),
    });
  }

  private async unreserveIdentity(tx: Tx, pubkey: string, amount: bigint) {
    const [identity] = await tx.select().from(identities).where(eq(identities.pubkey, pubkey)).for("update");
    await tx
      .update(identities)
      .set({ reservedSats: identity.reservedSats - amount })
      .where(eq(identities.pubkey, pubkey));
  }

  /** Runs `fn` in one READ COMMITTED transaction; retries one that was rolled back by a
   * serialization failure or a deadlock. */
  private async transaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      let committing = false;
      try {
        return await this.db.transaction(
          async (tx) => {
            const r = await fn(tx);
            committing = true;
            return r;
          },
          { isolationLevel: "read committed" },
        );
      } catch (e) {
        if (e instanceof LedgerStorageError) throw e;
        const code = pgCode(e);
        if ((code === "40001" || code === "40P01") && attempt < this.maxAttempts) continue;
        // Before COMMIT was sent nothing can have been committed; a COMMIT the server answered
        // with an error (not a lost connection) rolled back too.
        const definite = !committing || (code !== undefined && !/^(08|57|53|58|XX)/.test(code));
        const text = messageOf(e);
        throw new LedgerStorageError(code ? `${code}: ${text}` : text, definite, e);
      }
    }
  }
}
