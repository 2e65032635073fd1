// What one call of the seed sees: its clock (the harness's `now_ms`), the log lines the seed
// wrote, the identity the trust service handed it, and the results of the statements it sent.
//
// Calls run concurrently, each inside `callContext.run(ctx, ...)`; AsyncLocalStorage carries
// the context through every `await` of the seed's code, so `Date.now()`, `new Date()`,
// `logger.info` and the pg client all find the call they belong to.

import { AsyncLocalStorage } from "node:async_hooks";

export interface LogLine {
  level: string;
  msg: string;
  fields?: Record<string, unknown>;
}

export interface StatementResult {
  text: string;
  command: string | null;
  rowCount: number | null;
}

export interface CallContext {
  nowMs: number;
  logs: LogLine[];
  /** What `trustService.getIdentityWithDecay` returned, each time it was asked. */
  identities: (IdentityView | null)[];
  statements: StatementResult[];
}

export interface IdentityView {
  tier: string;
  satsAbsorbedToday: number;
  absorbedResetAt: Date;
}

export const callContext = new AsyncLocalStorage<CallContext>();

export function newContext(nowMs: number): CallContext {
  return { nowMs, logs: [], identities: [], statements: [] };
}

let installed = false;

/**
 * Replaces the global `Date` with one whose clock, inside a call, is the call's `now_ms`:
 * `Date.now()`, `new Date()` and `Date()` read it. With arguments, `new Date(...)` is the
 * original; outside a call the real clock is used. Instances are ordinary Dates
 * (`instanceof Date` holds both ways, the prototype is the same).
 */
export function installHarnessClock(): void {
  if (installed) return;
  installed = true;
  const RealDate = Date;
  const realNow = RealDate.now.bind(RealDate);
  const now = (): number => callContext.getStore()?.nowMs ?? realNow();
  const HarnessDate: DateConstructor = new Proxy(RealDate, {
    construct(target, args, newTarget): object {
      const a = args.length === 0 ? [now()] : args;
      return Reflect.construct(target, a, newTarget === HarnessDate ? target : newTarget);
    },
    apply() {
      return new RealDate(now()).toString();
    },
    get(target, prop, receiver) {
      if (prop === "now") return now;
      return Reflect.get(target, prop, receiver);
    },
  });
  globalThis.Date = HarnessDate;
}
