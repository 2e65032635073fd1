// `./logger.js` as the seed imports it: `makeLogger(name)` with info/warn/error/debug. Each line
// is kept with the call that wrote it (the adapter infers the gate reason of `decide` and the
// credit computed by `credit` from them). LEDGER_SEED_LOG=1 also prints them on stderr.

import { callContext } from "./context.js";

const echo = process.env.LEDGER_SEED_LOG === "1";

export function makeLogger(name: string) {
  const at = (level: string) => (msg: string, fields?: Record<string, unknown>) => {
    callContext.getStore()?.logs.push({ level, msg, fields });
    if (echo) process.stderr.write(`[${name}] ${level} ${msg} ${fields ? JSON.stringify(fields) : ""}\n`);
  };
  return { info: at("info"), warn: at("warn"), error: at("error"), debug: at("debug") };
}
