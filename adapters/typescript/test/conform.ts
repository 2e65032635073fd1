// Replays the conformance vectors (fixtures/conformance/*.jsonl, format in that directory's
// README) through an adapter speaking the engine protocol, as `ledger-sim conform` does: a
// reset under each case's config, then every step as a call; each reply must be the `expect`,
// and the totals (from `observe`, plus credited and overrun summed from fresh replies) and the
// identity standing (tier and window) must match after it.
//
//   node adapters/typescript/test/conform.mjs [--exec CMD] [FILE.jsonl ...]
//
// Default CMD: the corrected adapter. DATABASE_URL must name a database it may use.

import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { parseJson, stringifyJson, type JsonObject } from "../src/protocol/json.js";
import { Child, REPO_ROOT, same } from "./client.js";

const args = process.argv.slice(2);
let exec = "node adapters/typescript/bin/corrected.mjs";
const files: string[] = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--exec") exec = args[++i];
  else files.push(args[i]);
}
const dir = join(REPO_ROOT, "fixtures/conformance");
if (files.length === 0) for (const f of readdirSync(dir).sort()) if (f.endsWith(".jsonl")) files.push(join(dir, f));

// The corrected adapter then shows each identity's reserved sats too (the seed ignores it).
const child = new Child(exec, { ...process.env, LEDGER_OBSERVE_IDENTITY_RESERVED: "1" });
let helloDone = false;
let cases = 0;
let steps = 0;
let failures = 0;
const fail = (where: string, what: string) => {
  failures++;
  if (failures <= 30) console.log(`FAIL ${where}: ${what}`);
};

for (const file of files) {
  const lines = readFileSync(file, "utf8").split("\n").filter((l) => l !== "");
  let name = "";
  let credited = 0n;
  let overrun = 0n;
  let stepNo = 0;
  for (const line of lines) {
    const v = parseJson(line) as JsonObject;
    if ("footer" in v) continue;
    if ("format" in v) {
      name = `${file.split("/").pop()}:${v.case as string}`;
      if (!helloDone) {
        const h = await child.request({ type: "hello", protocol: 1n, config: v.config });
        if (h.type !== "hello_ok") throw new Error(`hello: ${stringifyJson(h)}`);
        helloDone = true;
      }
      const r = await child.request({ type: "reset", config: v.config });
      if (r.type !== "reset_ok") throw new Error(`reset: ${stringifyJson(r)}`);
      credited = 0n;
      overrun = 0n;
      stepNo = 0;
      cases++;
      continue;
    }
    stepNo++;
    steps++;
    const where = `${name} step ${stepNo}`;
    const { cmd, ...fields } = v.command as JsonObject;
    const r = await child.request({ type: "call", now_ms: v.now, call: { call: cmd, ...fields } });
    if (r.type !== "reply") {
      fail(where, `not a reply: ${stringifyJson(r)}`);
      continue;
    }
    const { reply: kind, ...got } = r.reply as JsonObject;
    if (!same(got, v.expect) || (kind === "ok") !== ("outcome" in (v.expect as JsonObject))) {
      fail(where, `${stringifyJson(v.command)}\n   expected ${stringifyJson(v.expect)}\n   got      ${stringifyJson(r.reply)}`);
    }
    if (r.fresh === true && kind === "ok") {
      if (got.outcome === "credited") credited += got.credited_sats as bigint;
      if (got.outcome === "recorded") overrun += got.overrun_sats as bigint;
    }
    const o = await child.request({ type: "observe" });
    const t = v.totals as JsonObject;
    const totals = {
      pool_sats: o.pool_sats,
      reserved_sats: o.reserved_sats,
      absorbed_sats: o.granted_sats,
      credited_sats: credited,
      overrun_sats: overrun,
      n_grants: o.n_grants,
    };
    if (!same(totals, t)) fail(where, `totals\n   expected ${stringifyJson(t)}\n   got      ${stringifyJson(totals)}`);
    if ("identity" in v) {
      const pk = (v.command as JsonObject).pubkey;
      const found = (o.identities as JsonObject[]).find((i) => i.pubkey === pk);
      const want = v.identity as JsonObject | null;
      const withReserved = found !== undefined && "reserved_sats" in found;
      const pick = (i: JsonObject) => ({
        tier: i.tier,
        sats_absorbed_today: i.sats_absorbed_today,
        absorbed_reset_at_ms: i.absorbed_reset_at_ms,
        ...(withReserved ? { reserved_sats: i.reserved_sats } : {}),
      });
      const gotId = found ? pick(found) : null;
      const wantId = want ? pick(want) : null;
      if (!same(gotId, wantId)) fail(where, `identity\n   expected ${stringifyJson(want)}\n   got      ${stringifyJson(gotId)}`);
    }
  }
}
const code = await child.close();
console.log(`${cases} cases, ${steps} steps, ${failures} failures; child exited ${code}`);
process.exit(failures === 0 && code === 0 ? 0 : 1);
