// node adapters/typescript/test/concurrency.mjs [--exec CMD] [--callers N] [--flows N] [--seed N]  (see concurrency.ts)
import { register } from "tsx/esm/api";
register();
await import("./concurrency.ts");
