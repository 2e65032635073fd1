// Module resolution hooks for the seed adapter (registered with `module.register`).
//
// The seed module is loaded unmodified from wherever it lives (a read-only directory with no
// node_modules). For imports made *by the seed module* (any `?v=N` version of it):
//   - the specifiers the adapter provides (`@workspace/db`, `./logger.js`, `./trust.js`)
//     resolve to the adapter's own modules, shared with the adapter;
//   - other bare specifiers (`drizzle-orm`, `crypto`) resolve as if imported from the
//     adapter, so from the adapter's node_modules, the same instances the adapter uses.
// Everything else resolves as usual (then TypeScript is compiled by tsx's hooks).

let seedUrl = "";
let provided = {};
let anchor = "";

export function initialize(data) {
  seedUrl = data.seedUrl;
  provided = data.provided;
  anchor = data.anchor;
}

const isBare = (s) => !/^(\.{1,2}\/|\/|[a-zA-Z][a-zA-Z0-9+.-]*:)/.test(s);

export async function resolve(specifier, context, nextResolve) {
  const parent = context.parentURL ? context.parentURL.split("?")[0] : "";
  if (parent === seedUrl) {
    if (Object.prototype.hasOwnProperty.call(provided, specifier)) {
      // Through the rest of the chain, so that tsx loads it as it loads the adapter's own.
      return nextResolve(provided[specifier], context);
    }
    if (isBare(specifier)) return nextResolve(specifier, { ...context, parentURL: anchor });
  }
  const r = await nextResolve(specifier, context);
  // The seed is ECMAScript module syntax whatever package.json (none) is above it.
  if (r.url.split("?")[0] === seedUrl) return { ...r, format: "module" };
  return r;
}
