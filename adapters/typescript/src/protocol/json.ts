// Lossless JSON for the engine protocol (SPEC.md §9).
//
// `JSON.parse` reads every number as a double, so 9223372036854775807 would come back as
// 9223372036854775808. Here an integer literal (no fraction, no exponent) is read as a
// `bigint`, exactly; any other number stays a `number`, so the caller can tell `1` from `1.0`.
// An integer literal of more than MAX_INTEGER_DIGITS digits, however long, is read as
// ±HUGE_INTEGER (its sign kept): far outside every range of the protocol, and judged as such,
// without the cost of converting megabytes of digits (superlinear in V8: seconds for 16 MiB).
// Objects are made without a prototype, and a key named twice is an error.

export type Json = null | boolean | string | bigint | number | Json[] | JsonObject;
export interface JsonObject {
  [key: string]: Json;
}

export class JsonSyntaxError extends Error {}

/** Integer literals with more digits than this are not converted (see above). */
export const MAX_INTEGER_DIGITS = 1100;
/** 10^MAX_INTEGER_DIGITS: what an integer literal of more digits is read as (with its sign). A
 * `bigint` of at least this magnitude stands for a literal of more than MAX_INTEGER_DIGITS digits. */
export const HUGE_INTEGER = 10n ** BigInt(MAX_INTEGER_DIGITS);

/** `s` as a JSON string for an error text, cut to about `max` characters. */
export function quoted(s: string, max = 64): string {
  return s.length <= max ? JSON.stringify(s) : `${JSON.stringify(s.slice(0, max))}... (${s.length} characters)`;
}

/** What the caller of `parseJson` sees of a top-level object before the whole text is read. */
export interface TopLevel {
  /** Each key, as soon as it is read: before the check that it is not named twice. */
  key?: (key: string) => void;
  /** Each key with its value, once what follows the value (`,` or `}`) has been read too. */
  entry?: (key: string, value: Json) => void;
}

/**
 * `text` as JSON. `topLevel`, when given, sees the keys of a top-level object as they are read,
 * before any error later in the text: the server reads the `id` of a line that is not one JSON
 * value from them.
 */
export function parseJson(text: string, topLevel?: TopLevel): Json {
  let i = 0;
  const n = text.length;

  const fail = (what: string): never => {
    throw new JsonSyntaxError(`${what} at character ${i}`);
  };
  const ws = () => {
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) i++;
      else break;
    }
  };

  const value = (depth: number): Json => {
    if (depth > 64) fail("nesting too deep");
    ws();
    if (i >= n) fail("unexpected end");
    const c = text[i];
    if (c === "{") return object(depth);
    if (c === "[") return array(depth);
    if (c === '"') return string();
    if (c === "-" || (c >= "0" && c <= "9")) return number();
    if (text.startsWith("true", i)) {
      i += 4;
      return true;
    }
    if (text.startsWith("false", i)) {
      i += 5;
      return false;
    }
    if (text.startsWith("null", i)) {
      i += 4;
      return null;
    }
    return fail(`unexpected ${JSON.stringify(c)}`);
  };

  const object = (depth: number): JsonObject => {
    i++; // {
    const out: JsonObject = Object.create(null);
    ws();
    if (text[i] === "}") {
      i++;
      return out;
    }
    for (;;) {
      ws();
      if (text[i] !== '"') fail("expected a key");
      const key = string();
      if (depth === 0) topLevel?.key?.(key);
      if (Object.prototype.hasOwnProperty.call(out, key)) fail(`key ${quoted(key)} named twice`);
      ws();
      if (text[i] !== ":") fail("expected ':'");
      i++;
      const v = value(depth + 1);
      out[key] = v;
      ws();
      const next = text[i];
      if (depth === 0 && topLevel?.entry && (next === "," || next === "}")) topLevel.entry(key, v);
      if (next === ",") {
        i++;
        continue;
      }
      if (next === "}") {
        i++;
        return out;
      }
      fail("expected ',' or '}'");
    }
  };

  const array = (depth: number): Json[] => {
    i++; // [
    const out: Json[] = [];
    ws();
    if (text[i] === "]") {
      i++;
      return out;
    }
    for (;;) {
      out.push(value(depth + 1));
      ws();
      if (text[i] === ",") {
        i++;
        continue;
      }
      if (text[i] === "]") {
        i++;
        return out;
      }
      fail("expected ',' or ']'");
    }
  };

  const string = (): string => {
    // Find the closing quote, then let JSON.parse decode the escapes of that one token.
    const start = i;
    i++;
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 0x22) break;
      if (c === 0x5c) i += 2;
      else if (c < 0x20) fail("control character in a string");
      else i++;
    }
    if (i >= n) fail("unterminated string");
    i++;
    try {
      return JSON.parse(text.slice(start, i)) as string;
    } catch {
      return fail("bad escape in a string");
    }
  };

  // Sticky: matched at `i` in place, however long the number (a line is up to 16 MiB).
  const NUMBER = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;
  const number = (): bigint | number => {
    NUMBER.lastIndex = i;
    const m = NUMBER.exec(text);
    if (!m) return fail("bad number");
    i += m[0].length;
    if (m[1] !== undefined || m[2] !== undefined) return Number(m[0]);
    // An integer, judged by its digits however many there are (`-0` is 0).
    const negative = m[0][0] === "-";
    if (m[0].length - (negative ? 1 : 0) > MAX_INTEGER_DIGITS) return negative ? -HUGE_INTEGER : HUGE_INTEGER;
    return BigInt(m[0]);
  };

  const v = value(0);
  ws();
  if (i !== n) fail("trailing characters");
  return v;
}

/** JSON text of `v`, with `bigint`s written as integers. `undefined` fields are left out. */
export function stringifyJson(v: unknown): string {
  switch (typeof v) {
    case "bigint":
      return v.toString();
    case "number":
      return Number.isFinite(v) ? String(v) : "null";
    case "string":
      return JSON.stringify(v);
    case "boolean":
      return v ? "true" : "false";
    case "undefined":
      return "null";
    case "object": {
      if (v === null) return "null";
      if (Array.isArray(v)) return `[${v.map(stringifyJson).join(",")}]`;
      const parts: string[] = [];
      for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
        if (x !== undefined) parts.push(`${JSON.stringify(k)}:${stringifyJson(x)}`);
      }
      return `{${parts.join(",")}}`;
    }
    default:
      return "null";
  }
}
