#!/usr/bin/env node
// The corrected free tier: serves SPEC.md §9 (api "reference", state "durable") with
// src/corrected/free-tier.ts on PostgreSQL at DATABASE_URL.
//
//   node adapters/typescript/bin/corrected.mjs
//
// See adapters/typescript/README.md.

import { register as registerTsx } from "tsx/esm/api";

if (process.argv.length > 2) {
  process.stderr.write("usage: corrected.mjs (no arguments; DATABASE_URL names the database)\n");
  process.exit(2);
}
registerTsx();
const { main } = await import("../src/corrected/main.ts");
await main();
