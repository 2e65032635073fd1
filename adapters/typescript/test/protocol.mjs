// node adapters/typescript/test/protocol.mjs  (see protocol.ts)
import { register } from "tsx/esm/api";
register();
await import("./protocol.ts");
