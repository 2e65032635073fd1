// The protocol's edges, for both adapters: framing, errors as responses, lossless numbers,
// end of input, the seed's gate reasons and numbers, and the corrected adapter's durability
// (killed with SIGKILL and started again, it finds everything it acknowledged).
//
//   node adapters/typescript/test/protocol.mjs

import { stringifyJson, type JsonObject } from "../src/protocol/json.js";
import { Child } from "./client.js";

const CORRECTED = "node adapters/typescript/bin/corrected.mjs";
const SEED = "node adapters/typescript/bin/seed.mjs --module fixtures/seed/free-tier.ts";
const MAX = (1n << 63n) - 1n;
const config = (over: Partial<Record<string, unknown>> = {}) => ({
  budget_sats: { new: 0n, established: 50n, trusted: 200n, elite: 1000n },
  pool_initial_sats: 10000n,
  credit_bps: 1234n,
  reservation_ttl_ms: 600000n,
  ...over,
});
const P1 = "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";
const P2 = "0".repeat(63) + "2";
const P3 = "0".repeat(63) + "3";
const T = 1_700_000_000_000n;

let failures = 0;
let checks = 0;
function expect(what: string, got: unknown, want: unknown) {
  checks++;
  const g = stringifyJson(got);
  const w = stringifyJson(want);
  if (g !== w) {
    failures++;
    console.log(`FAIL ${what}\n   expected ${w}\n   got      ${g}`);
  }
}
const reply = (r: JsonObject) => (r.type === "reply" ? { fresh: r.fresh, ...(r.reply as JsonObject) } : { error: r.code, definite: r.definite });
const call = (c: Child, now: bigint, x: Record<string, unknown>) => c.request({ type: "call", now_ms: now, call: x }).then(reply);
/** Sends `line`, then `{"id":next,"type":"observe"}`: whether an answer to `id` came before the
 * observe's (an answer to the unreadable line is written before the next line is read). */
async function answered(c: Child, id: bigint, line: string, next: bigint): Promise<boolean> {
  let got = false;
  void c.raw(id, line).then(() => (got = true));
  await c.raw(next, `{"id":${next},"type":"observe"}`);
  return got;
}
/** An integer literal of `n` digits, far beyond 2^64. */
const digits = (n: number) => "1" + "0".repeat(n - 1);

// ── both: nothing is served before hello ───────────────────────────────────────────────────
for (const [name, command] of [["corrected", CORRECTED], ["seed", SEED]]) {
  const c = new Child(command);
  const unavailable = { error: "unavailable", definite: true };
  expect(`${name}: observe before hello`, reply(await c.request({ type: "observe" })), unavailable);
  expect(`${name}: call before hello`, await call(c, T, { call: "credit", payment_id: 1n, paid_sats: 100n }), unavailable);
  expect(`${name}: reset before hello`, reply(await c.request({ type: "reset", config: config() })), unavailable);
  // A type named by a number cannot be read: malformed, before hello as after (SPEC.md §9.1).
  const malformed = { error: "malformed", definite: true };
  expect(`${name}: a type named by a number before hello`, reply(await c.request({ type: 1n })), malformed);
  expect(`${name}: a refused hello greets nobody`, (await c.request({ type: "hello", protocol: 2n, config: config() })).code, "not_supported");
  expect(`${name}: still unavailable`, reply(await c.request({ type: "observe" })), unavailable);
  expect(`${name}: hello`, (await c.request({ type: "hello", protocol: 1n, config: config() })).type, "hello_ok");
  expect(`${name}: reset after hello`, (await c.request({ type: "reset", config: config() })).type, "reset_ok");
  expect(`${name}: a type named by a number`, reply(await c.request({ type: 1n })), malformed);
  expect(`${name}: a type that is an object holding a number`, reply(await c.request({ type: { a: 1n } })), malformed);
  expect(`${name}: a type that is an array`, reply(await c.request({ type: [1n, "observe"] })), malformed);
  expect(`${name}: no type`, reply(await c.request({})), malformed);
  expect(`${name}: a call named by a number`, await call(c, T, { call: 1n }), malformed);
  expect(`${name}: a tier named by a number`, await call(c, T, { call: "set_tier", pubkey: P1, tier: 3n }), malformed);
  // A second hello changes nothing, whatever its configuration (SPEC.md §9.2).
  await call(c, T, { call: "credit", payment_id: 1n, paid_sats: 1000n });
  const before = await c.request({ type: "observe" });
  expect(`${name}: a second hello`, (await c.request({ type: "hello", protocol: 1n, config: config({ pool_initial_sats: 5n }) })).type, "hello_ok");
  expect(`${name}: the ledger as it was`, { ...(await c.request({ type: "observe" })), id: 0n }, { ...before, id: 0n });
  expect(`${name}: exit`, await c.close(), 0);
}

// ── corrected: errors, numbers, end of input ───────────────────────────────────────────────
{
  const c = new Child(CORRECTED);
  expect("hello", await c.request({ type: "hello", protocol: 1n, config: config() }), {
    id: 0n, type: "hello_ok", protocol: 1n, name: "free-tier-corrected.ts", api: "reference", clock: "harness", state: "durable",
  });
  expect("reset", (await c.request({ type: "reset", config: config() })).type, "reset_ok");
  expect("other protocol", (await c.request({ type: "hello", protocol: 2n, config: config() })).code, "not_supported");
  expect("unknown type", (await c.request({ type: "frobnicate" })).code, "malformed");
  // A config within 0..=2^63-1 but beyond the ledger's limits, or with a key this protocol
  // does not define, is malformed; an integer beyond 2^63-1 is out_of_range (SPEC.md §9.2).
  expect("credit_bps 10001", (await c.request({ type: "reset", config: config({ credit_bps: 10001n }) })).code, "malformed");
  expect("ttl 0", (await c.request({ type: "reset", config: config({ reservation_ttl_ms: 0n }) })).code, "malformed");
  expect("unknown config key", (await c.request({ type: "reset", config: config({ credit_pct: 10n }) })).code, "malformed");
  expect("pool 2^63", (await c.request({ type: "reset", config: config({ pool_initial_sats: 9223372036854775808n }) })).code, "out_of_range");
  // Any other object may carry keys this version does not define: they are ignored.
  expect("unknown call key", await call(c, T, { call: "expire", note: "later version" }), { fresh: true, reply: "ok", outcome: "expired", released: [] });
  expect("unknown call", await call(c, T, { call: "frobnicate" }), { error: "malformed", definite: true });
  expect("missing field", await call(c, T, { call: "decide", request_id: 1n, pubkey: P1 }), { error: "malformed", definite: true });
  expect("bad pubkey", await call(c, T, { call: "set_tier", pubkey: "AB", tier: "elite" }), { error: "malformed", definite: true });
  expect("fraction", (await c.raw(100n, `{"id":100,"type":"call","now_ms":1.0,"call":{"call":"expire"}}`)).code, "malformed");
  expect("2^63", (await c.raw(101n, `{"id":101,"type":"call","now_ms":1,"call":{"call":"credit","payment_id":1,"paid_sats":9223372036854775808}}`)).code, "out_of_range");
  expect("negative", (await c.raw(102n, `{"id":102,"type":"call","now_ms":-1,"call":{"call":"expire"}}`)).code, "out_of_range");
  expect("garbled with an id", (await c.raw(103n, `{"id":103,"type":"call",`)).code, "malformed");
  expect("duplicate key", (await c.raw(104n, `{"id":104,"type":"observe","type":"observe"}`)).code, "malformed");
  // The line's own id, not an "id" inside one of its values (which another request may have).
  expect("an id inside a value", (await c.raw(105n, `{"call":{"call":"expire","id":104},"id":105,"type":"call"} and more`)).code, "malformed");
  // An id the end of the line may have cut short is no id: nothing to answer, and no answer
  // to request 1 or 10 from the line below (the next request's answer comes first).
  c.send(`{"type":"observe","id":10`);
  expect("after a cut id", (await c.raw(107n, `{"id":107,"type":"observe"}`)).type, "observed");
  // An id named twice cannot be made out, whichever comes first (SPEC.md §9.1): either could be
  // another request's. No answer (a note on standard error).
  expect("an id named twice", await answered(c, 108n, `{"id":108,"id":109,"type":"observe"}`, 110n), false);
  expect("an id named twice, the same", await answered(c, 111n, `{"id":111,"id":111,"type":"observe"}`, 112n), false);
  expect("an id named twice, after the type", await answered(c, 113n, `{"id":113,"type":"observe","id":114}`, 115n), false);
  // An integer is judged by its digits however many there are: out_of_range at any length,
  // never malformed (SPEC.md §9.1); -0 is 0.
  const code = (r: JsonObject) => r.code ?? r.type;
  for (const n of [21, 1101, 1200, 4 << 20]) {
    expect(`now_ms of ${n} digits`, code(await c.raw(116n, `{"id":116,"type":"call","now_ms":${digits(n)},"call":{"call":"expire"}}`)), "out_of_range");
    expect(`now_ms of -${n} digits`, code(await c.raw(117n, `{"id":117,"type":"call","now_ms":-${digits(n)},"call":{"call":"expire"}}`)), "out_of_range");
    expect(`paid_sats of ${n} digits`, code(await c.raw(118n, `{"id":118,"type":"call","now_ms":1,"call":{"call":"credit","payment_id":1,"paid_sats":${digits(n)}}}`)), "out_of_range");
    expect(`an id of ${n} digits`, await answered(c, 119n, `{"id":${digits(n)},"type":"observe"} x`, 120n), false);
  }
  expect("now_ms of 1200 digits and a fraction", code(await c.raw(121n, `{"id":121,"type":"call","now_ms":${digits(1200)}.5,"call":{"call":"expire"}}`)), "malformed");
  expect("now_ms -0", code(await c.raw(122n, `{"id":122,"type":"call","now_ms":-0,"call":{"call":"expire"}}`)), "reply");
  // Where nothing moves, `fresh` is not read, and SPEC.md §9.2 recommends `true` for a first
  // answer, a refusal included, and `false` for a repeat (an insufficient_funds remembered,
  // R-PARTIAL-7).
  await call(c, T, { call: "set_tier", pubkey: P2, tier: "established" });
  await call(c, T, { call: "decide", request_id: 20n, pubkey: P2, estimated_sats: 100n });
  const short = { reply: "refused", refusal: "insufficient_funds", available_sats: 50n };
  expect("a first insufficient_funds", await call(c, T, { call: "reserve_partial", request_id: 20n, pubkey: P2, amount_sats: 100n }), { fresh: true, ...short });
  expect("the same, remembered", await call(c, T, { call: "reserve_partial", request_id: 20n, pubkey: P2, amount_sats: 100n }), { fresh: false, ...short });
  expect("an expire that closes nothing", await call(c, T, { call: "expire" }), { fresh: true, reply: "ok", outcome: "expired", released: [] });
  expect("an unknown request", await call(c, T, { call: "reserve_partial", request_id: 21n, pubkey: P2, amount_sats: 1n }), {
    fresh: true, reply: "refused", refusal: "unknown_request",
  });
  // 2^63-1 exactly, through the credit's 77-bit product: floor((2^63-1) * 1234 / 10000) of an
  // empty genesis... judged on genesis plus credits: 10000 + that fits.
  expect("max paid", await call(c, MAX, { call: "credit", payment_id: MAX, paid_sats: MAX }), {
    fresh: true, reply: "ok", outcome: "credited", credited_sats: (MAX * 1234n) / 10000n,
  });
  expect("max paid again", await call(c, MAX, { call: "credit", payment_id: MAX, paid_sats: MAX }), {
    fresh: false, reply: "ok", outcome: "credited", credited_sats: (MAX * 1234n) / 10000n,
  });
  expect("observe", (await c.request({ type: "observe" })).pool_sats, 10000n + (MAX * 1234n) / 10000n);
  expect("exit on end of input", await c.close(), 0);
}

// ── corrected: durable across SIGKILL ─────────────────────────────────────────────────────
{
  let c = new Child(CORRECTED);
  await c.request({ type: "hello", protocol: 1n, config: config() });
  await c.request({ type: "reset", config: config({ pool_initial_sats: 500n }) });
  await call(c, T, { call: "set_tier", pubkey: P1, tier: "elite" });
  expect("decide before kill", await call(c, T + 1n, { call: "decide", request_id: 7n, pubkey: P1, estimated_sats: 300n }), {
    fresh: true, reply: "ok", outcome: "decided", decision: { serve: "free", reserved_sats: 300n },
  });
  const before = await c.request({ type: "observe" });
  c.kill();
  await c.exited;
  c = new Child(CORRECTED);
  await c.request({ type: "hello", protocol: 1n, config: config() }); // no reset: the ledger goes on
  const after = await c.request({ type: "observe" });
  expect("state survives", { ...after, id: 0n }, { ...before, id: 0n });
  expect("repeat after restart", await call(c, T + 2n, { call: "decide", request_id: 7n, pubkey: P1, estimated_sats: 300n }), {
    fresh: false, reply: "ok", outcome: "decided", decision: { serve: "free", reserved_sats: 300n },
  });
  expect("genesis config kept", await call(c, T + 3n, { call: "decide", request_id: 8n, pubkey: P1, estimated_sats: 300n }), {
    fresh: true, reply: "ok", outcome: "decided", decision: { serve: "partial", offer_sats: 200n, charge_sats: 100n },
  });
  expect("exit", await c.close(), 0);
}

// ── seed: what its functions did ──────────────────────────────────────────────────────────
{
  const c = new Child(SEED);
  expect("seed hello", await c.request({ type: "hello", protocol: 1n, config: config() }), {
    id: 0n, type: "hello_ok", protocol: 1n, name: "free-tier.ts", api: "seed", clock: "harness", state: "memory",
  });
  const gate = (reason: string, charge: bigint) => ({ fresh: true, reply: "ok", outcome: "decided", decision: { serve: "gate", reason, charge_sats: charge } });
  expect("zero_estimate", await call(c, T, { call: "decide", request_id: 1n, pubkey: P1, estimated_sats: 0n }), gate("zero_estimate", 0n));
  expect("unknown_identity", await call(c, T, { call: "decide", request_id: 2n, pubkey: P1, estimated_sats: 10n }), gate("unknown_identity", 10n));
  expect("set_tier new", await call(c, T, { call: "set_tier", pubkey: P1, tier: "new" }), { fresh: true, reply: "ok", outcome: "tier_set", previous: null });
  expect("zero_budget", await call(c, T, { call: "decide", request_id: 3n, pubkey: P1, estimated_sats: 10n }), gate("zero_budget", 10n));
  expect("set_tier established", await call(c, T, { call: "set_tier", pubkey: P1, tier: "established" }), { fresh: true, reply: "ok", outcome: "tier_set", previous: "new" });
  // No pool row yet: the release and the over-reservation vanish, and say so.
  expect("release before first boot", await call(c, T, { call: "release", request_id: 4n, amount_sats: 5n }), { fresh: true, reply: "ok", outcome: "released", returned_sats: 0n });
  expect("free", await call(c, T + 1n, { call: "decide", request_id: 4n, pubkey: P1, estimated_sats: 50n }), {
    fresh: true, reply: "ok", outcome: "decided", decision: { serve: "free", reserved_sats: 50n },
  });
  expect("record", await call(c, T + 2n, { call: "record", request_id: 4n, pubkey: P1, actual_sats: 50n, reserved_sats: 50n }), {
    fresh: true, reply: "ok", outcome: "recorded", absorbed_sats: 50n, returned_sats: 0n, overrun_sats: 0n,
  });
  expect("daily_budget_exhausted", await call(c, T + 3n, { call: "decide", request_id: 5n, pubkey: P1, estimated_sats: 10n }), gate("daily_budget_exhausted", 10n));
  // A day later the window counts 0 again (the seed's `Date.now()` is the call's now).
  expect("next day", await call(c, T + 86_400_000n, { call: "decide", request_id: 6n, pubkey: P1, estimated_sats: 10n }), {
    fresh: true, reply: "ok", outcome: "decided", decision: { serve: "free", reserved_sats: 10n },
  });
  expect("release", await call(c, T + 86_400_001n, { call: "release", request_id: 6n, amount_sats: 10n }), { fresh: true, reply: "ok", outcome: "released", returned_sats: 10n });
  expect("record below", await call(c, T + 86_400_002n, { call: "record", request_id: 6n, pubkey: P1, actual_sats: 4n, reserved_sats: 10n }), {
    fresh: true, reply: "ok", outcome: "recorded", absorbed_sats: 4n, returned_sats: 6n, overrun_sats: 0n,
  });
  expect("record nothing", await call(c, T + 86_400_002n, { call: "record", request_id: 6n, pubkey: P1, actual_sats: 0n, reserved_sats: 0n }), {
    fresh: true, reply: "ok", outcome: "recorded", absorbed_sats: 0n, returned_sats: 0n, overrun_sats: 0n,
  });
  expect("credit 12.34 %", await call(c, T, { call: "credit", payment_id: 1n, paid_sats: 999n }), { fresh: true, reply: "ok", outcome: "credited", credited_sats: 123n });
  expect("credit nothing", await call(c, T, { call: "credit", payment_id: 2n, paid_sats: 8n }), { fresh: true, reply: "ok", outcome: "credited", credited_sats: 0n });
  expect("expire", await call(c, T, { call: "expire" }), { fresh: true, reply: "ok", outcome: "expired", released: [] });
  expect("reserve (identity unknown)", await call(c, T, { call: "reserve_partial", request_id: 9n, pubkey: P2, amount_sats: 5n }), { fresh: true, reply: "ok", outcome: "reserved", reserved_sats: 0n });
  const o = await c.request({ type: "observe" });
  expect("seed observe", { pool: o.pool_sats, reserved: o.reserved_sats, granted: o.granted_sats, n: o.n_grants }, {
    pool: 10000n - 50n - 10n + 10n + 6n + 123n, reserved: null, granted: 54n, n: 2n,
  });
  expect("seed identity", (o.identities as JsonObject[])[0], {
    pubkey: P1, tier: "established", sats_absorbed_today: 4n, absorbed_reset_at_ms: T + 86_400_002n,
  });
  expect("seed out_of_range", await call(c, T, { call: "credit", payment_id: 3n, paid_sats: 2n ** 53n }), { error: "out_of_range", definite: true });
  // Beyond the seed's 32-bit columns: the server refuses the statement, which rolled back.
  expect("seed abort", await call(c, T, { call: "release", request_id: 9n, amount_sats: 3_000_000_000n }), { error: "abort", definite: true });
  // A reset with another configuration: a fresh module reads it.
  await c.request({ type: "reset", config: config({ pool_initial_sats: 0n, credit_bps: 10000n }) });
  await call(c, T, { call: "set_tier", pubkey: P3, tier: "elite" });
  expect("pool_empty", await call(c, T, { call: "decide", request_id: 1n, pubkey: P3, estimated_sats: 10n }), gate("pool_empty", 10n));
  expect("credit 100 %", await call(c, T, { call: "credit", payment_id: 1n, paid_sats: 7n }), { fresh: true, reply: "ok", outcome: "credited", credited_sats: 7n });
  expect("seed exit", await c.close(), 0);
}

console.log(`${checks} checks, ${failures} failures`);
process.exit(failures === 0 ? 0 : 1);
