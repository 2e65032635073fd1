// The child's side of the engine protocol, version 1 (SPEC.md §9): JSON Lines on stdin/stdout.
//
// Requests are read line by line and served concurrently: each `call` and `observe` runs as
// soon as it arrives (after the `hello` or `reset` before it has finished), and its response
// is written when it finishes, in whatever order that is. `hello` and `reset` wait for the
// requests already in flight. On end of input the server waits for what is in flight, closes
// the engine (its connection pool) and exits.

import { createInterface } from "node:readline";
import { parseJson, stringifyJson, quoted, HUGE_INTEGER, MAX_INTEGER_DIGITS, JsonSyntaxError, type Json, type JsonObject } from "./json.js";

export const PROTOCOL_VERSION = 1n;
export const MAX_I64 = (1n << 63n) - 1n;
/** The largest request id (SPEC.md §9.1): a line whose `id` is above it, or negative, has no id. */
export const MAX_ID = (1n << 64n) - 1n;

export type Tier = "new" | "established" | "trusted" | "elite";
export const TIERS: readonly Tier[] = ["new", "established", "trusted", "elite"];

export interface LedgerConfig {
  budget_sats: Record<Tier, bigint>;
  pool_initial_sats: bigint;
  credit_bps: bigint;
  reservation_ttl_ms: bigint;
}

/** A `call` as the harness sends it (§9.2). `amount_sats` of `release` and `pubkey` and
 * `reserved_sats` of `record` are the seed's extra fields: present for the seed, ignored (and
 * optional) for a reference implementation. */
export type Call =
  | { call: "set_tier"; pubkey: string; tier: Tier }
  | { call: "decide"; request_id: bigint; pubkey: string; estimated_sats: bigint }
  | { call: "reserve_partial"; request_id: bigint; pubkey: string; amount_sats: bigint }
  | { call: "release"; request_id: bigint; amount_sats?: bigint }
  | { call: "record"; request_id: bigint; actual_sats: bigint; pubkey?: string; reserved_sats?: bigint }
  | { call: "credit"; payment_id: bigint; paid_sats: bigint }
  | { call: "expire" };

export type ErrorCode = "malformed" | "not_supported" | "out_of_range" | "unavailable" | "abort" | "timeout" | "crash";
const DEFINITE: Record<ErrorCode, boolean> = {
  malformed: true,
  not_supported: true,
  out_of_range: true,
  unavailable: true,
  abort: true,
  timeout: false,
  crash: false,
};

/** An error response: thrown by the server's checks and by engines. */
export class ProtocolError extends Error {
  constructor(
    readonly code: ErrorCode,
    text: string,
  ) {
    super(text);
  }
}

export interface Hello {
  name: string;
  api: "seed" | "reference";
  state: "memory" | "durable";
}

export interface CallResult {
  fresh: boolean;
  reply: Record<string, unknown>;
}

export interface Engine {
  hello(config: LedgerConfig): Promise<Hello>;
  reset(config: LedgerConfig): Promise<void>;
  call(nowMs: bigint, call: Call): Promise<CallResult>;
  observe(): Promise<Record<string, unknown>>;
  close(): Promise<void>;
  /** The error response for a failure the engine threw (anything but a ProtocolError). */
  classify(err: unknown): ProtocolError;
}

export interface Limits {
  /** The largest amount (and id) the engine represents; a larger one is `out_of_range`. */
  maxAmount: bigint;
  /** The largest `now_ms` the engine represents. */
  maxTime: bigint;
  /** True when `release.amount_sats` and `record.pubkey`/`reserved_sats` are required. */
  seedFields: boolean;
}

// ── reading requests ─────────────────────────────────────────────────────────────────────────

/** An integer for an error text: a long one cut short, one json.ts did not convert said so. */
function shown(v: bigint): string {
  if (v >= HUGE_INTEGER || -v >= HUGE_INTEGER) return `${v < 0n ? "-" : ""}(an integer of more than ${MAX_INTEGER_DIGITS} digits)`;
  const s = v.toString();
  return s.length <= 40 ? s : `${s.slice(0, 16)}...${s.slice(-16)} (${s.length} characters)`;
}

function field(o: JsonObject, key: string, where: string): Json {
  if (!Object.prototype.hasOwnProperty.call(o, key)) throw new ProtocolError("malformed", `${where}: missing ${key}`);
  return o[key];
}

function int(o: JsonObject, key: string, where: string, max: bigint): bigint {
  const v = field(o, key, where);
  if (typeof v !== "bigint") {
    throw new ProtocolError("malformed", `${where}: ${key} is not an integer`);
  }
  if (v < 0n || v > max) throw new ProtocolError("out_of_range", `${where}: ${key} = ${shown(v)} is out of range (0..=${max})`);
  return v;
}

function optInt(o: JsonObject, key: string, where: string, max: bigint, required: boolean): bigint | undefined {
  if (!required && (!Object.prototype.hasOwnProperty.call(o, key) || o[key] === null)) return undefined;
  return int(o, key, where, max);
}

function pubkey(o: JsonObject, key: string, where: string): string {
  const v = field(o, key, where);
  if (typeof v !== "string" || !/^[0-9a-f]{64}$/.test(v)) {
    throw new ProtocolError("malformed", `${where}: ${key} is not 64 lowercase hex characters`);
  }
  return v;
}

function optPubkey(o: JsonObject, key: string, where: string, required: boolean): string | undefined {
  if (!required && (!Object.prototype.hasOwnProperty.call(o, key) || o[key] === null)) return undefined;
  return pubkey(o, key, where);
}

function tier(o: JsonObject, key: string, where: string): Tier {
  const v = field(o, key, where);
  if (typeof v !== "string" || !(TIERS as readonly string[]).includes(v)) {
    throw new ProtocolError("malformed", `${where}: ${key} is not a tier`);
  }
  return v as Tier;
}

function obj(v: Json, where: string): JsonObject {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new ProtocolError("malformed", `${where} is not an object`);
  return v as JsonObject;
}

/** A config's keys are all known (SPEC.md section 9.1): a misspelt setting is never ignored. */
function onlyKeys(o: JsonObject, keys: readonly string[], where: string): void {
  for (const k of Object.keys(o)) {
    if (!keys.includes(k)) throw new ProtocolError("malformed", `${where}: unknown key ${JSON.stringify(k)}`);
  }
}

export function readConfig(v: Json): LedgerConfig {
  const c = obj(v, "config");
  onlyKeys(c, ["budget_sats", "pool_initial_sats", "credit_bps", "reservation_ttl_ms"], "config");
  const b = obj(field(c, "budget_sats", "config"), "config.budget_sats");
  onlyKeys(b, TIERS, "config.budget_sats");
  const budget = {} as Record<Tier, bigint>;
  for (const t of TIERS) budget[t] = int(b, t, "config.budget_sats", MAX_I64);
  const credit_bps = int(c, "credit_bps", "config", MAX_I64);
  // Within 0..=2^63-1 but beyond the ledger's limits (SPEC.md section 1): an invalid config,
  // `malformed`, as SPEC.md section 9.2 says; `out_of_range` is for integers beyond 2^63-1.
  if (credit_bps > 10000n) throw new ProtocolError("malformed", "config: credit_bps above 10000");
  const reservation_ttl_ms = int(c, "reservation_ttl_ms", "config", MAX_I64);
  if (reservation_ttl_ms < 1n) throw new ProtocolError("malformed", "config: reservation_ttl_ms below 1");
  return { budget_sats: budget, pool_initial_sats: int(c, "pool_initial_sats", "config", MAX_I64), credit_bps, reservation_ttl_ms };
}

export function readCall(v: Json, limits: Limits): Call {
  const c = obj(v, "call");
  const kind = field(c, "call", "call");
  if (typeof kind !== "string") throw new ProtocolError("malformed", "call: `call` is not a string");
  const w = kind;
  const amt = limits.maxAmount;
  const id = MAX_I64;
  switch (kind) {
    case "set_tier":
      return { call: kind, pubkey: pubkey(c, "pubkey", w), tier: tier(c, "tier", w) };
    case "decide":
      return { call: kind, request_id: int(c, "request_id", w, id), pubkey: pubkey(c, "pubkey", w), estimated_sats: int(c, "estimated_sats", w, amt) };
    case "reserve_partial":
      return { call: kind, request_id: int(c, "request_id", w, id), pubkey: pubkey(c, "pubkey", w), amount_sats: int(c, "amount_sats", w, amt) };
    case "release":
      return { call: kind, request_id: int(c, "request_id", w, id), amount_sats: optInt(c, "amount_sats", w, amt, limits.seedFields) };
    case "record":
      return {
        call: kind,
        request_id: int(c, "request_id", w, id),
        actual_sats: int(c, "actual_sats", w, amt),
        pubkey: optPubkey(c, "pubkey", w, limits.seedFields),
        reserved_sats: optInt(c, "reserved_sats", w, amt, limits.seedFields),
      };
    case "credit":
      return { call: kind, payment_id: int(c, "payment_id", w, id), paid_sats: int(c, "paid_sats", w, amt) };
    case "expire":
      return { call: kind };
    default:
      // A call the protocol does not define is malformed (SPEC.md §9.1); not_supported is for one
      // it defines that an implementation lacks.
      throw new ProtocolError("malformed", `no call ${quoted(kind)}`);
  }
}

// ── the loop ─────────────────────────────────────────────────────────────────────────────────

function write(msg: Record<string, unknown>): void {
  // A pipe on Linux is written synchronously: one line, whole, per response.
  process.stdout.write(`${stringifyJson(msg)}\n`);
}

function errorMsg(id: Json, e: ProtocolError): Record<string, unknown> {
  return { id, type: "error", code: e.code, definite: DEFINITE[e.code], text: e.message };
}

/** Serves the protocol on stdin/stdout until end of input. */
export async function serve(engine: Engine, limits: Limits, log: (s: string) => void): Promise<void> {
  const inflight = new Set<Promise<void>>();
  // Calls wait for the last hello/reset; hello/reset wait for everything before them.
  let barrier: Promise<unknown> = Promise.resolve();
  // Whether a `hello` has been answered `hello_ok`: a request before it is `unavailable`
  // (SPEC.md §9.1). A request after a `hello` line waits for it, so it sees the flag set.
  let greeted = false;

  const handle = async (id: Json, req: JsonObject): Promise<Record<string, unknown>> => {
    const type = req.type;
    // Before hello a request that can be read is `unavailable`, one that cannot `malformed`
    // (SPEC.md §9.1): each kind is read first, then asked whether a hello came.
    const greetedOrUnavailable = () => {
      if (!greeted) throw new ProtocolError("unavailable", `${String(type)} before hello`);
    };
    switch (type) {
      case "hello": {
        const protocol = field(req, "protocol", "hello");
        if (typeof protocol !== "bigint") throw new ProtocolError("malformed", "hello: protocol is not an integer");
        if (protocol !== PROTOCOL_VERSION) throw new ProtocolError("not_supported", `protocol ${shown(protocol)}: this child speaks protocol 1`);
        const config = readConfig(field(req, "config", "hello"));
        const h = await engine.hello(config);
        greeted = true;
        return { id, type: "hello_ok", protocol: PROTOCOL_VERSION, name: h.name, api: h.api, clock: "harness", state: h.state };
      }
      case "reset": {
        const config = readConfig(field(req, "config", "reset"));
        greetedOrUnavailable();
        await engine.reset(config);
        return { id, type: "reset_ok" };
      }
      case "call": {
        const now = field(req, "now_ms", "call");
        if (typeof now !== "bigint") throw new ProtocolError("malformed", "call: now_ms is not an integer");
        if (now < 0n || now > limits.maxTime) throw new ProtocolError("out_of_range", `call: now_ms = ${shown(now)} is out of range (0..=${limits.maxTime})`);
        const call = readCall(field(req, "call", "call"), limits);
        greetedOrUnavailable();
        const r = await engine.call(now, call);
        return { id, type: "reply", fresh: r.fresh, reply: r.reply };
      }
      case "observe":
        greetedOrUnavailable();
        return { id, type: "observed", ...(await engine.observe()) };
      default:
        // A type the protocol does not define is malformed (SPEC.md §9.1), and so is one named by
        // anything but a string (a number is a `bigint` here, which JSON.stringify throws on).
        if (type === undefined) throw new ProtocolError("malformed", "missing type");
        if (typeof type !== "string") throw new ProtocolError("malformed", "type is not a string");
        throw new ProtocolError("malformed", `no request type ${quoted(type)}`);
    }
  };

  const run = (id: Json, req: JsonObject, exclusive: boolean) => {
    const before = exclusive ? Promise.allSettled([barrier, ...inflight]) : barrier;
    const p = before
      .then(() => handle(id, req))
      .catch((e: unknown) => errorMsg(id, e instanceof ProtocolError ? e : engine.classify(e)))
      .then(write)
      .catch((e: unknown) => log(`cannot write a response: ${String(e)}`));
    if (exclusive) barrier = p;
    const tracked = p.finally(() => inflight.delete(tracked));
    inflight.add(tracked);
  };

  const rl = createInterface({ input: process.stdin, crlfDelay: Infinity, terminal: false });
  for await (const line of rl) {
    if (line.trim() === "") {
      log("an empty line: not a request, and no id to answer");
      continue;
    }
    let req: JsonObject;
    // The line's own `id`, read whole before any fault (SPEC.md §9.1): a key of the top-level
    // object, not an "id" inside a value, and not one the end of the line may have cut short.
    // An `id` named twice is no id, whichever comes first: either could be another request's.
    let topId: bigint | undefined;
    let idNamed = 0;
    try {
      const v = parseJson(line, {
        key: (key) => {
          if (key === "id" && ++idNamed > 1) topId = undefined;
        },
        entry: (key, value) => {
          if (key === "id" && idNamed === 1 && typeof value === "bigint" && value >= 0n && value <= MAX_ID) topId = value;
        },
      });
      if (typeof v !== "object" || v === null || Array.isArray(v)) throw new JsonSyntaxError("not an object");
      req = v as JsonObject;
    } catch (e) {
      // Answer with the id if one can be made out, so that the harness is not left waiting.
      if (topId !== undefined) write(errorMsg(topId, new ProtocolError("malformed", `unreadable request: ${(e as Error).message}`)));
      else log(`unreadable request line (no id): ${(e as Error).message}: ${line.slice(0, 200)}`);
      continue;
    }
    const id = req.id;
    if (typeof id !== "bigint" || id < 0n || id > MAX_ID) {
      log(`request without an id in 0..=2^64-1: ${line.slice(0, 200)}`);
      continue;
    }
    run(id, req, req.type === "hello" || req.type === "reset");
  }
  while (inflight.size > 0) await Promise.allSettled([...inflight]);
  await engine.close();
}
