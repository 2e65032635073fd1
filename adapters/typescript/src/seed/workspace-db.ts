// `@workspace/db` as the seed imports it: `db` (drizzle on a node-postgres Pool on
// DATABASE_URL), the tables `timmyConfig`, `freeTierGrants`, `nostrIdentities` and the type
// `TrustTier`.
//
// The tables are exactly those of crates/ledger-pg/sql/seed_tables.sql (the adapter runs that
// file to create them): the pool is a text value in a key/value table, counters are 32-bit
// integers, grants carry no uniqueness on the request. Columns with a SQL default are declared
// with a default here too, so that drizzle sends `default` for them as it does in production.
//
// The Pool records, for the call in whose context a statement is sent, the statement's command
// and row count: the adapter reads them to report what the seed's void functions did (whether
// `releaseReservation`'s UPDATE found the pool row, as the Rust port reports it).

import { readFileSync } from "node:fs";
import pg from "pg";
import { drizzle } from "drizzle-orm/node-postgres";
import { integer, pgTable, text, timestamp } from "drizzle-orm/pg-core";
import { callContext, type CallContext } from "./context.js";

export type TrustTier = "new" | "established" | "trusted" | "elite";

export const timmyConfig = pgTable("timmy_config", {
  key: text("key").primaryKey(),
  value: text("value").notNull(),
  updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
});

export const nostrIdentities = pgTable("nostr_identities", {
  pubkey: text("pubkey").primaryKey(),
  tier: text("tier").$type<TrustTier>().notNull().default("new"),
  satsAbsorbedToday: integer("sats_absorbed_today").notNull().default(0),
  absorbedResetAt: timestamp("absorbed_reset_at", { withTimezone: true }).notNull().defaultNow(),
  updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
});

export const freeTierGrants = pgTable("free_tier_grants", {
  id: text("id").primaryKey(),
  pubkey: text("pubkey").notNull(),
  requestHash: text("request_hash").notNull(),
  satsAbsorbed: integer("sats_absorbed").notNull(),
  poolBalanceAfter: integer("pool_balance_after").notNull(),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
});

// ── the pool, tracing statements per call ───────────────────────────────────────────────────

type QueryArg = string | { text?: string } | undefined;

function record(ctx: CallContext, arg: QueryArg, res: { command?: string; rowCount?: number | null } | undefined): void {
  const text = typeof arg === "string" ? arg : (arg?.text ?? "");
  ctx.statements.push({ text, command: res?.command ?? null, rowCount: res?.rowCount ?? null });
}

function traced<T>(ctx: CallContext | undefined, arg: QueryArg, r: T): T {
  const p = r as unknown as Promise<{ command?: string; rowCount?: number | null }> | undefined;
  if (ctx && p && typeof p.then === "function") {
    p.then(
      (res) => record(ctx, arg, res),
      () => {},
    );
  }
  return r;
}

const WRAPPED = Symbol("traced");

/** Traces, per call, the statements sent through `pool`: Pool.query (drizzle outside a
 * transaction) and the promise-form queries of a client checked out with `connect()` (drizzle's
 * transactions). The pool's own callback-form use of a client is not traced, so nothing is
 * counted twice. */
function trace(pool: pg.Pool): pg.Pool {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const p = pool as any;
  const query = p.query.bind(pool);
  p.query = (...args: unknown[]) => traced(callContext.getStore(), args[0] as QueryArg, query(...args));
  const connect = p.connect.bind(pool);
  p.connect = (...args: unknown[]) => {
    const r = connect(...args);
    if (!r || typeof r.then !== "function") return r;
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    return r.then((client: any) => {
      if (!client[WRAPPED]) {
        const orig = client.query;
        client.query = function (this: unknown, ...a: unknown[]) {
          return traced(callContext.getStore(), a[0] as QueryArg, orig.apply(this, a));
        };
        client[WRAPPED] = true;
      }
      return client;
    });
  };
  return pool;
}

const url = process.env.DATABASE_URL;
export const pool = trace(
  new pg.Pool({
    connectionString: url,
    max: Number(process.env.LEDGER_PG_POOL_MAX ?? 16),
  }),
);
// A connection the server drops while idle must not take the process down.
pool.on("error", (e) => process.stderr.write(`seed adapter: idle connection error: ${e.message}\n`));

export const db = drizzle(pool);

const SEED_TABLES = new URL("../../../../crates/ledger-pg/sql/seed_tables.sql", import.meta.url);

/** Drops and creates the seed's tables, empty (no pool row until first boot). */
export async function recreateTables(): Promise<void> {
  const ddl = readFileSync(SEED_TABLES, "utf8");
  const client = await pool.connect();
  try {
    await client.query("BEGIN");
    await client.query("DROP TABLE IF EXISTS timmy_config, nostr_identities, free_tier_grants");
    await client.query(ddl);
    await client.query("COMMIT");
  } catch (e) {
    await client.query("ROLLBACK").catch(() => {});
    throw e;
  } finally {
    client.release();
  }
}
