// Many callers at once against the corrected adapter: 32 callers (by default) run the
// simulator's kinds of flows (decide, then reserve/record/release, duplicates delivered
// concurrently, credits, sweeps, crashed workers that leave reservations to expire), all
// their calls in flight together. Afterwards the books must add up (SPEC.md §6):
//   I1 pool >= 0; I2 genesis + credits = pool + reserved + absorbed, and the pool equals
//   genesis plus the movements of the fresh replies; I4 no identity absorbed plus reserved
//   beyond its budget; I5 grants = fresh records; I6 a final expire leaves nothing reserved.
//
//   node adapters/typescript/test/concurrency.mjs [--exec CMD] [--callers N] [--flows N] [--seed N]

import { stringifyJson, type JsonObject } from "../src/protocol/json.js";
import { Child } from "./client.js";

const args = process.argv.slice(2);
let exec = "node adapters/typescript/bin/corrected.mjs";
let callers = 32;
let flows = 40;
let seed = 1;
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--exec") exec = args[++i];
  else if (args[i] === "--callers") callers = Number(args[++i]);
  else if (args[i] === "--flows") flows = Number(args[++i]);
  else if (args[i] === "--seed") seed = Number(args[++i]);
}

// A small deterministic generator (mulberry32).
let state = seed >>> 0;
const rand = () => {
  state = (state + 0x6d2b79f5) >>> 0;
  let t = state;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
const pick = (n: number) => Math.floor(rand() * n);

const config = {
  budget_sats: { new: 0n, established: 50n, trusted: 200n, elite: 1000n },
  pool_initial_sats: 3000n,
  credit_bps: 1234n,
  reservation_ttl_ms: 2000n,
};
const T0 = 1_700_000_000_000n;
const pubkeys = Array.from({ length: 8 }, (_, i) => (i + 1).toString(16).padStart(64, "0"));
const tiers = ["elite", "elite", "trusted", "trusted", "established", "established", "new", "elite"] as const;

const child = new Child(exec, { ...process.env, LEDGER_OBSERVE_IDENTITY_RESERVED: "1" });
const h = await child.request({ type: "hello", protocol: 1n, config });
if (h.type !== "hello_ok") throw new Error(stringifyJson(h));
await child.request({ type: "reset", config });

let movement = 0n; // the pool's movements from fresh replies
let credited = 0n;
let freshRecords = 0n;
let absorbed = 0n;
let errors = 0;
const problems: string[] = [];

async function call(now: bigint, c: Record<string, unknown>): Promise<JsonObject | null> {
  const r = await child.request({ type: "call", now_ms: now, call: c });
  if (r.type !== "reply") {
    errors++;
    problems.push(`error reply to ${stringifyJson(c)}: ${stringifyJson(r)}`);
    return null;
  }
  const reply = r.reply as JsonObject;
  if (r.fresh === true && reply.reply === "ok") {
    switch (reply.outcome) {
      case "decided": {
        const d = reply.decision as JsonObject;
        if (d.serve === "free") movement -= d.reserved_sats as bigint;
        break;
      }
      case "reserved":
        movement -= reply.reserved_sats as bigint;
        break;
      case "released":
        movement += reply.returned_sats as bigint;
        break;
      case "recorded":
        movement += reply.returned_sats as bigint;
        absorbed += reply.absorbed_sats as bigint;
        freshRecords++;
        break;
      case "credited":
        movement += reply.credited_sats as bigint;
        credited += reply.credited_sats as bigint;
        break;
      case "expired":
        for (const [, amount] of reply.released as [bigint, bigint][]) movement += amount;
        break;
    }
  }
  return reply;
}

/** Sends `c` once, or twice at once (a duplicate delivery); answers the first reply. */
async function deliver(now: bigint, c: Record<string, unknown>): Promise<JsonObject | null> {
  if (rand() < 0.25) {
    const [a, b] = await Promise.all([call(now, c), call(now, c)]);
    // (expire is not keyed by an id: two sweeps at once split what is due.)
    if (c.call !== "expire" && a && b && stringifyJson(a) !== stringifyJson(b)) problems.push(`duplicate answered differently: ${stringifyJson(c)}: ${stringifyJson(a)} vs ${stringifyJson(b)}`);
    return a;
  }
  return call(now, c);
}

await Promise.all(pubkeys.map((pubkey, i) => call(T0, { call: "set_tier", pubkey, tier: tiers[i] })));

const started = Date.now();
let nCalls = 0;
await Promise.all(
  Array.from({ length: callers }, async (_, c) => {
    for (let k = 0; k < flows; k++) {
      const now = T0 + BigInt(k * 500 + pick(400));
      const request_id = BigInt(c * 1_000_000 + k);
      const pubkey = pubkeys[pick(pubkeys.length)];
      const estimated_sats = BigInt(1 + pick(250));
      nCalls++;
      const r = await deliver(now, { call: "decide", request_id, pubkey, estimated_sats });
      if (!r || r.reply !== "ok") continue;
      const d = r.decision as JsonObject;
      let reserved = 0n;
      if (d.serve === "free") reserved = d.reserved_sats as bigint;
      else if (d.serve === "partial") {
        const amount_sats = d.offer_sats as bigint;
        const rr = await deliver(now + 1n, { call: "reserve_partial", request_id, pubkey, amount_sats });
        if (rr?.reply === "ok") reserved = amount_sats;
        // The user pays the charge.
        await deliver(now + 2n, { call: "credit", payment_id: request_id, paid_sats: d.charge_sats });
      } else {
        await deliver(now + 2n, { call: "credit", payment_id: request_id, paid_sats: d.charge_sats });
      }
      if (reserved > 0n) {
        const fate = rand();
        if (fate < 0.15) {
          // The worker crashed: the sweeper will return it.
        } else if (fate < 0.35) await deliver(now + 3n, { call: "release", request_id });
        else {
          const actual_sats = BigInt(pick(Number(reserved) + 60));
          await deliver(now + 3n, { call: "record", request_id, actual_sats });
        }
      }
      if (rand() < 0.1) await deliver(now + 4n, { call: "expire" });
      nCalls += 3;
    }
  }),
);
const elapsed = (Date.now() - started) / 1000;

// Every deadline has passed: the sweep leaves nothing reserved (I6).
await call(T0 + 10_000_000n, { call: "expire" });
const o = await child.request({ type: "observe" });
const pool = o.pool_sats as bigint;
const reserved = o.reserved_sats as bigint;
const granted = o.granted_sats as bigint;
if (pool < 0n) problems.push(`I1: pool ${pool}`);
if (config.pool_initial_sats + credited !== pool + reserved + granted) {
  problems.push(`I2: genesis ${config.pool_initial_sats} + credited ${credited} != pool ${pool} + reserved ${reserved} + granted ${granted}`);
}
if (config.pool_initial_sats + movement !== pool) problems.push(`I2: genesis + movements ${config.pool_initial_sats + movement} != pool ${pool}`);
if (granted !== absorbed || (o.n_grants as bigint) !== freshRecords) {
  problems.push(`I5: grants ${granted}/${o.n_grants} vs fresh records ${absorbed}/${freshRecords}`);
}
if (reserved !== 0n) problems.push(`I6: ${reserved} still reserved`);
for (const id of o.identities as JsonObject[]) {
  const budget = config.budget_sats[id.tier as keyof typeof config.budget_sats];
  const used = (id.sats_absorbed_today as bigint) + ((id.reserved_sats as bigint | undefined) ?? 0n);
  if (used > budget) problems.push(`I4: ${id.pubkey} absorbed+reserved ${used} > budget ${budget}`);
}
const code = await child.close();
for (const p of problems.slice(0, 20)) console.log(`PROBLEM ${p}`);
console.log(
  `${callers} callers x ${flows} flows, ~${nCalls} calls in ${elapsed.toFixed(1)} s; pool ${pool}, granted ${granted} in ${o.n_grants} grants, credited ${credited}; ` +
    `${errors} error replies, ${problems.length} problems; child exited ${code}`,
);
process.exit(problems.length === 0 && code === 0 ? 0 : 1);
