// The seed adapter's engine: each protocol call is one call of the seed module's
// `freeTierService`, inside a context whose clock is the call's `now_ms`; the reply says, in
// the protocol's vocabulary, what the seed's function did (SPEC.md §9.2, api "seed"). The
// numbers are those the Rust port of the seed reports (crates/ledger-pg/src/engine.rs,
// `PgSeedEngine`), so that the two can be run side by side.

import { basename } from "node:path";
import { fileURLToPath } from "node:url";
import {
  serve,
  ProtocolError,
  type Call,
  type CallResult,
  type Engine,
  type Hello,
  type LedgerConfig,
  type Tier,
  TIERS,
} from "../protocol/server.js";
import { callContext, installHarnessClock, newContext, type CallContext } from "./context.js";
import { pool, recreateTables } from "./workspace-db.js";

interface SeedDecision {
  serve: "free" | "partial" | "gate";
  absorbSats: number;
  chargeSats: number;
}

/** The seed's `FreeTierService`, as far as the adapter calls it. */
interface SeedService {
  decide(pubkey: string | null, estimatedSats: number): Promise<SeedDecision>;
  reservePartialGrant(requestedAbsorbSats: number, pubkey: string): Promise<number>;
  releaseReservation(absorbSats: number, reason: string): Promise<void>;
  credit(paidSats: number): Promise<void>;
  recordGrant(pubkey: string, requestHash: string, actualAbsorbed: number, reservedAbsorbed: number): Promise<void>;
}

const POOL_KEY = "generosity_pool_sats";
/** The largest time a JavaScript Date holds. */
const DATE_MAX_MS = 8_640_000_000_000_000n;

/** A number the seed handed back, as a protocol amount. */
function sats(n: number): bigint {
  if (!Number.isFinite(n) || !Number.isInteger(n)) throw new Error(`the seed returned a non-integer amount ${n}`);
  return BigInt(n);
}

/** JavaScript's `parseInt(s, 10) || 0`, exactly (as a bigint). */
function parseIntOrZero(s: string): bigint {
  const m = /^\s*([+-]?)([0-9]+)/.exec(s);
  if (!m) return 0n;
  const v = BigInt(m[2]);
  return m[1] === "-" ? -v : v;
}

/** credit_bps as the percentage FREE_TIER_POOL_CREDIT_PCT holds (1234 bp is "12.34"). */
function pctString(bps: bigint): string {
  const frac = (bps % 100n).toString().padStart(2, "0");
  return `${bps / 100n}.${frac}`;
}

const log = (s: string) => process.stderr.write(`seed adapter: ${s}\n`);

const ok = (outcome: string, fields: Record<string, unknown>) => ({ reply: "ok", outcome, ...fields });

class SeedEngine implements Engine {
  private service: SeedService | null = null;
  private config: LedgerConfig | null = null;
  private version = 0;

  constructor(private readonly seedUrl: string) {}

  private async load(config: LedgerConfig): Promise<void> {
    // The seed reads its configuration from the environment when the module is evaluated:
    // set it, then evaluate a fresh instance of the module (a new `?v=` is a new module).
    const b = config.budget_sats;
    process.env.FREE_TIER_BUDGET_NEW = b.new.toString();
    process.env.FREE_TIER_BUDGET_ESTABLISHED = b.established.toString();
    process.env.FREE_TIER_BUDGET_TRUSTED = b.trusted.toString();
    process.env.FREE_TIER_BUDGET_ELITE = b.elite.toString();
    process.env.FREE_TIER_POOL_INITIAL_SATS = config.pool_initial_sats.toString();
    process.env.FREE_TIER_POOL_CREDIT_PCT = pctString(config.credit_bps);
    this.version += 1;
    const mod = (await import(`${this.seedUrl}?v=${this.version}`)) as {
      freeTierService?: SeedService;
      FreeTierService?: new () => SeedService;
    };
    const service = mod.freeTierService ?? (mod.FreeTierService ? new mod.FreeTierService() : undefined);
    if (!service) throw new ProtocolError("unavailable", "the seed module exports neither freeTierService nor FreeTierService");
    this.service = service;
    this.config = config;
  }

  async hello(config: LedgerConfig): Promise<Hello> {
    // A hello never returns the ledger to genesis (SPEC.md §9.2): a second one changes nothing.
    if (this.service) log("hello: a second hello leaves the ledger as it is (a reset returns it to genesis)");
    else {
      await recreateTables();
      await this.load(config);
    }
    return { name: basename(fileURLToPath(this.seedUrl)), api: "seed", state: "memory" };
  }

  async reset(config: LedgerConfig): Promise<void> {
    await recreateTables();
    await this.load(config);
  }

  async call(nowMs: bigint, call: Call): Promise<CallResult> {
    const service = this.service;
    if (!service) throw new ProtocolError("unavailable", "no hello or reset yet");
    const ctx = newContext(Number(nowMs));
    const reply = await callContext.run(ctx, () => this.dispatch(service, ctx, call));
    // Every call of the seed changes state, or might have: the seed keeps no idempotency.
    return { fresh: true, reply };
  }

  private budget(tier: string): bigint {
    const t = (TIERS as readonly string[]).includes(tier) ? (tier as Tier) : "new";
    return this.config!.budget_sats[t];
  }

  private async dispatch(service: SeedService, ctx: CallContext, call: Call): Promise<Record<string, unknown>> {
    switch (call.call) {
      case "set_tier": {
        // The trust service's write (not the seed's): create the identity with its window
        // opening now, or change its tier only. The statement of the Rust port's `set_tier`.
        const now = new Date(ctx.nowMs);
        const r = await pool.query<{ tier: string }>(
          "WITH old AS (SELECT tier FROM nostr_identities WHERE pubkey = $1 FOR UPDATE), " +
            "up AS (INSERT INTO nostr_identities (pubkey, tier, sats_absorbed_today, absorbed_reset_at, updated_at) " +
            "VALUES ($1, $2, 0, $3, $3) ON CONFLICT (pubkey) DO UPDATE SET tier = EXCLUDED.tier) " +
            "SELECT tier FROM old",
          [call.pubkey, call.tier, now],
        );
        const prev = r.rows[0]?.tier;
        const previous = prev === undefined ? null : (TIERS as readonly string[]).includes(prev) ? prev : "new";
        return ok("tier_set", { previous });
      }
      case "decide": {
        const estimated = Number(call.estimated_sats);
        const d = await service.decide(call.pubkey, estimated);
        if (d.serve === "free") return ok("decided", { decision: { serve: "free", reserved_sats: sats(d.absorbSats) } });
        if (d.serve === "partial") {
          return ok("decided", { decision: { serve: "partial", offer_sats: sats(d.absorbSats), charge_sats: sats(d.chargeSats) } });
        }
        return ok("decided", { decision: { serve: "gate", reason: this.gateReason(ctx, estimated), charge_sats: sats(d.chargeSats) } });
      }
      case "reserve_partial": {
        const debited = await service.reservePartialGrant(Number(call.amount_sats), call.pubkey);
        return ok("reserved", { reserved_sats: sats(debited) });
      }
      case "release": {
        const amount = Number(call.amount_sats ?? 0n);
        await service.releaseReservation(amount, "harness");
        // The sats reach the pool only if the UPDATE found the pool row (before first boot
        // there is none, and they vanish): the port answers 0 then, as when it returned early.
        const returned = amount > 0 && this.updatedPoolRow(ctx) ? amount : 0;
        return ok("released", { returned_sats: sats(returned) });
      }
      case "record": {
        const actual = Number(call.actual_sats);
        const reserved = Number(call.reserved_sats ?? 0n);
        await service.recordGrant(call.pubkey ?? "", call.request_id.toString(), actual, reserved);
        const toRecord = Math.max(0, actual);
        const overReserved = Math.max(0, reserved - toRecord);
        if (toRecord <= 0 && overReserved <= 0) {
          return ok("recorded", { absorbed_sats: 0n, returned_sats: 0n, overrun_sats: 0n });
        }
        const returned = overReserved > 0 && this.updatedPoolRow(ctx) ? overReserved : 0;
        return ok("recorded", { absorbed_sats: sats(toRecord), returned_sats: sats(returned), overrun_sats: 0n });
      }
      case "credit": {
        await service.credit(Number(call.paid_sats));
        // What the seed computed: its log line says it (none when it credited nothing).
        const line = ctx.logs.find((l) => l.msg === "generosity pool credited");
        const credited = typeof line?.fields?.creditSats === "number" ? line.fields.creditSats : 0;
        return ok("credited", { credited_sats: sats(credited) });
      }
      case "expire":
        // The seed has no expiry.
        return ok("expired", { released: [] });
    }
  }

  /** True when one of the call's statements was an UPDATE of timmy_config that hit a row. */
  private updatedPoolRow(ctx: CallContext): boolean {
    return ctx.statements.some((s) => s.command === "UPDATE" && /update\s+"?timmy_config"?/i.test(s.text) && (s.rowCount ?? 0) > 0);
  }

  /** The reason behind a gate, from the path the seed's `decide` took. */
  private gateReason(ctx: CallContext, estimated: number): string {
    if (estimated <= 0) return "zero_estimate";
    const identity = ctx.identities[0];
    if (!identity) return "unknown_identity";
    const said = (s: string) => ctx.logs.some((l) => l.msg.includes(s));
    if (said("daily budget exhausted")) return "daily_budget_exhausted";
    if (said("pool empty") || said("pool drained")) return "pool_empty";
    if (this.budget(identity.tier) === 0n) return "zero_budget";
    // `canAbsorb <= 0`: nothing left to give.
    return "pool_empty";
  }

  async observe(): Promise<Record<string, unknown>> {
    const r = await pool.query<{ value: string | null; granted: string; n: string }>(
      "SELECT (SELECT value FROM timmy_config WHERE key = $1) AS value, " +
        "(SELECT coalesce(sum(sats_absorbed), 0)::bigint FROM free_tier_grants) AS granted, " +
        "(SELECT count(*) FROM free_tier_grants) AS n",
      [POOL_KEY],
    );
    const row = r.rows[0];
    // Before first boot there is no pool row: `getPoolBalance()` would answer the initial sats.
    const poolSats = row.value === null ? (this.config?.pool_initial_sats ?? 0n) : parseIntOrZero(row.value);
    const ids = await pool.query<{ pubkey: string; tier: string; sats: number; reset_ms: string }>(
      "SELECT pubkey, tier, sats_absorbed_today AS sats, " +
        "(extract(epoch FROM absorbed_reset_at) * 1000)::bigint AS reset_ms FROM nostr_identities ORDER BY pubkey",
    );
    return {
      pool_sats: poolSats,
      reserved_sats: null,
      granted_sats: BigInt(row.granted),
      n_grants: BigInt(row.n),
      identities: ids.rows.map((i) => ({
        pubkey: i.pubkey,
        tier: i.tier,
        sats_absorbed_today: BigInt(i.sats),
        absorbed_reset_at_ms: BigInt(i.reset_ms),
      })),
    };
  }

  async close(): Promise<void> {
    await pool.end();
  }

  classify(err: unknown): ProtocolError {
    // drizzle wraps the driver's error (`cause`), which carries the SQLSTATE.
    const cause = (err as { cause?: unknown } | null)?.cause;
    const e = (cause instanceof Error ? cause : err) as { code?: unknown; message?: unknown };
    const text = typeof e?.message === "string" ? e.message : String(err);
    // A statement the server refused (an integer out of range, a failed cast): it and its
    // transaction rolled back. Connection trouble, or a failure in the seed's own code, may
    // come after some of the call's statements took effect.
    if (typeof e?.code === "string" && /^[0-9A-Z]{5}$/.test(e.code) && !/^(08|57|53|58|XX)/.test(e.code)) {
      return new ProtocolError("abort", `${e.code}: ${text}`);
    }
    return new ProtocolError("crash", text);
  }
}

export async function main(seedUrl: string): Promise<void> {
  installHarnessClock();
  await serve(new SeedEngine(seedUrl), { maxAmount: BigInt(Number.MAX_SAFE_INTEGER), maxTime: DATE_MAX_MS, seedFields: true }, log);
}
