#!/usr/bin/env node
// The seed adapter: serves SPEC.md §9 (api "seed") by running the original TypeScript service
// module, unmodified, against PostgreSQL at DATABASE_URL.
//
//   node adapters/typescript/bin/seed.mjs --module PATH/TO/free-tier.ts
//
// PATH is taken relative to the working directory. See adapters/typescript/README.md.

import { realpathSync } from "node:fs";
import { register } from "node:module";
import { resolve as resolvePath } from "node:path";
import { pathToFileURL } from "node:url";
import { register as registerTsx } from "tsx/esm/api";

const usage = "usage: seed.mjs --module PATH/TO/free-tier.ts";
const args = process.argv.slice(2);
let modulePath;
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === "--module") modulePath = args[++i];
  else if (a.startsWith("--module=")) modulePath = a.slice("--module=".length);
  else if (a === "--help" || a === "-h") {
    process.stdout.write(`${usage}\n`);
    process.exit(0);
  } else {
    process.stderr.write(`seed.mjs: unknown argument ${a}\n${usage}\n`);
    process.exit(2);
  }
}
if (!modulePath) {
  process.stderr.write(`seed.mjs: --module is required\n${usage}\n`);
  process.exit(2);
}

// Node resolves a module's URL through symbolic links, so the hooks must know it by its real
// path (a module reached through a link would otherwise not be recognised as the seed).
let realPath;
try {
  realPath = realpathSync(resolvePath(process.cwd(), modulePath));
} catch (e) {
  process.stderr.write(`seed.mjs: --module ${modulePath}: ${e.message}\n`);
  process.exit(2);
}
const seedUrl = pathToFileURL(realPath).href;
const src = new URL("../src/seed/", import.meta.url);

// tsx first, then ours: the hook registered last runs first.
registerTsx();
register("../src/seed/hooks.mjs", import.meta.url, {
  data: {
    seedUrl,
    anchor: new URL("main.ts", src).href,
    provided: {
      "@workspace/db": new URL("workspace-db.ts", src).href,
      "./logger.js": new URL("logger.ts", src).href,
      "./trust.js": new URL("trust.ts", src).href,
    },
  },
});

const { main } = await import("../src/seed/main.ts");
await main(seedUrl);
