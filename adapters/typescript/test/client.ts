// A minimal harness-side client of the engine protocol (SPEC.md §9), for the adapters' tests:
// starts `sh -c CMD` in the repository root and matches responses to requests by id.

import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { parseJson, stringifyJson, type JsonObject } from "../src/protocol/json.js";

export const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url));

export class Child {
  private readonly proc: ChildProcess;
  private nextId = 0n;
  private readonly waiting = new Map<bigint, (v: JsonObject) => void>();
  readonly exited: Promise<number | null>;

  constructor(command: string, env: NodeJS.ProcessEnv = process.env) {
    this.proc = spawn("sh", ["-c", command], { cwd: REPO_ROOT, env, stdio: ["pipe", "pipe", "inherit"] });
    this.exited = new Promise((res) => this.proc.on("exit", (code) => res(code)));
    const rl = createInterface({ input: this.proc.stdout!, crlfDelay: Infinity });
    rl.on("line", (line) => {
      const v = parseJson(line) as JsonObject;
      const id = v.id as bigint;
      const w = this.waiting.get(id);
      if (!w) throw new Error(`response to an id not in flight: ${line}`);
      this.waiting.delete(id);
      w(v);
    });
  }

  request(msg: Record<string, unknown>): Promise<JsonObject> {
    const id = this.nextId++;
    return this.raw(id, stringifyJson({ id, ...msg }));
  }

  /** Sends `line` as is and waits for the response with `id`. */
  raw(id: bigint, line: string): Promise<JsonObject> {
    const p = new Promise<JsonObject>((res) => this.waiting.set(id, res));
    this.proc.stdin!.write(`${line}\n`);
    return p;
  }

  /** Sends `line` as is, expecting no response: one with an id not in flight ends the test. */
  send(line: string): void {
    this.proc.stdin!.write(`${line}\n`);
  }

  async close(): Promise<number | null> {
    this.proc.stdin!.end();
    return this.exited;
  }

  kill(): void {
    this.proc.kill("SIGKILL");
  }
}

/** Deep equality for parsed JSON (bigints, arrays, prototype-less objects). */
export function same(a: unknown, b: unknown): boolean {
  if (typeof a !== "object" || a === null || typeof b !== "object" || b === null) return a === b;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a as object);
  const kb = Object.keys(b as object);
  if (ka.length !== kb.length) return false;
  return ka.every((k) => Object.prototype.hasOwnProperty.call(b, k) && same((a as never)[k], (b as never)[k]));
}
