// node adapters/typescript/test/conform.mjs [--exec CMD] [FILE.jsonl ...]  (see conform.ts)
import { register } from "tsx/esm/api";
register();
await import("./conform.ts");
