// Serves the corrected free tier over the engine protocol (SPEC.md §9): api "reference",
// state "durable" (everything acknowledged is committed in PostgreSQL; a restarted child finds
// it there). `hello` creates the tables if they are missing and, on an empty database, writes
// genesis under the hello's configuration; `reset` empties the tables and writes genesis under
// the reset's configuration.

import pg from "pg";
import { drizzle } from "drizzle-orm/node-postgres";
import { serve, ProtocolError, MAX_I64, type Call, type CallResult, type Engine, type Hello, type LedgerConfig } from "../protocol/server.js";
import { FreeTierLedger, LedgerStorageError, type Answer } from "./free-tier.js";

const withIdentityReserved = process.env.LEDGER_OBSERVE_IDENTITY_RESERVED === "1";
const log = (s: string) => process.stderr.write(`corrected adapter: ${s}\n`);

function sameConfig(a: LedgerConfig, b: LedgerConfig): boolean {
  return (
    a.pool_initial_sats === b.pool_initial_sats &&
    a.credit_bps === b.credit_bps &&
    a.reservation_ttl_ms === b.reservation_ttl_ms &&
    (["new", "established", "trusted", "elite"] as const).every((t) => a.budget_sats[t] === b.budget_sats[t])
  );
}

class CorrectedEngine implements Engine {
  private readonly pool: pg.Pool;
  private readonly ledger: FreeTierLedger;

  constructor() {
    this.pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: Number(process.env.LEDGER_PG_POOL_MAX ?? 16) });
    this.pool.on("error", (e) => log(`idle connection error: ${e.message}`));
    this.ledger = new FreeTierLedger(drizzle(this.pool));
  }

  async hello(config: LedgerConfig): Promise<Hello> {
    await this.ledger.install();
    const stored = await this.ledger.storedConfig();
    if (!stored) await this.ledger.genesis(config);
    else if (!sameConfig(stored, config)) {
      // A restart after a kill: the ledger goes on under the configuration of its genesis.
      log("hello: the database holds a ledger under another configuration; keeping the stored one (reset to change it)");
    }
    return { name: "free-tier-corrected.ts", api: "reference", state: "durable" };
  }

  async reset(config: LedgerConfig): Promise<void> {
    await this.ledger.install();
    await this.ledger.genesis(config);
  }

  async call(now: bigint, call: Call): Promise<CallResult> {
    const l = this.ledger;
    let a: Answer;
    switch (call.call) {
      case "set_tier":
        a = await l.setTier(call.pubkey, call.tier, now);
        break;
      case "decide":
        a = await l.decide(call.request_id, call.pubkey, call.estimated_sats, now);
        break;
      case "reserve_partial":
        a = await l.reservePartial(call.request_id, call.pubkey, call.amount_sats, now);
        break;
      case "release":
        a = await l.release(call.request_id, now);
        break;
      case "record":
        a = await l.record(call.request_id, call.actual_sats, now);
        break;
      case "credit":
        a = await l.credit(call.payment_id, call.paid_sats, now);
        break;
      case "expire":
        a = await l.expire(now);
        break;
    }
    return { fresh: a.fresh, reply: a.reply as unknown as Record<string, unknown> };
  }

  async observe(): Promise<Record<string, unknown>> {
    const s = await this.ledger.snapshot();
    return {
      pool_sats: s.pool_sats,
      reserved_sats: s.reserved_sats,
      granted_sats: s.granted_sats,
      n_grants: s.n_audit_grants,
      identities: s.identities.map((i) => ({
        pubkey: i.pubkey,
        tier: i.tier,
        sats_absorbed_today: i.sats_absorbed_today,
        absorbed_reset_at_ms: i.absorbed_reset_at_ms,
        // Not in §9.2's observed identity; the adapter's own tests ask for it.
        reserved_sats: withIdentityReserved ? i.reserved_sats : undefined,
      })),
    };
  }

  async close(): Promise<void> {
    await this.pool.end();
  }

  classify(err: unknown): ProtocolError {
    if (err instanceof LedgerStorageError) return new ProtocolError(err.definite ? "abort" : "crash", err.message);
    const text = err instanceof Error ? err.message : String(err);
    // Outside a command's transaction (hello, reset, observe): nothing was half done.
    return new ProtocolError("unavailable", text);
  }
}

export async function main(): Promise<void> {
  await serve(new CorrectedEngine(), { maxAmount: MAX_I64, maxTime: MAX_I64, seedFields: false }, log);
}
