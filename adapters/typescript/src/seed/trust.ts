// `./trust.js` as the seed imports it: `trustService.getIdentityWithDecay(pubkey)`, reduced to
// the read it makes of the identity row (which the harness's `set_tier` wrote; trust decay is
// the harness's tier changes). Returns `{tier, satsAbsorbedToday, absorbedResetAt}` or null.

import { eq } from "drizzle-orm";
import { callContext, type IdentityView } from "./context.js";
import { db, nostrIdentities } from "./workspace-db.js";

export const trustService = {
  async getIdentityWithDecay(pubkey: string): Promise<IdentityView | null> {
    const rows = await db
      .select({
        tier: nostrIdentities.tier,
        satsAbsorbedToday: nostrIdentities.satsAbsorbedToday,
        absorbedResetAt: nostrIdentities.absorbedResetAt,
      })
      .from(nostrIdentities)
      .where(eq(nostrIdentities.pubkey, pubkey))
      .limit(1);
    const identity = rows[0] ?? null;
    callContext.getStore()?.identities.push(identity);
    return identity;
  },
};
