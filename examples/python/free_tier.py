"""The service being checked: the seed's FreeTierService (free-tier.ts), ported to Python.

A faithful, in-memory port, flaws included: this is the code the harness should catch. The
three tables the seed touches are plain Python objects: `timmy_config`'s pool row is
`pool_row`, `nostr_identities` is `TrustService.identities`, and of `free_tier_grants` only
the sum and count of its rows are kept (`granted_sats`, `n_grants`).
The seed's flaws, kept on purpose:
  - decide debits min(requested, balance) and still answers "free" with charge 0;
  - the daily budget ignores outstanding reservations (only recordGrant writes it);
  - reservePartialGrant may debit less than asked; nothing is idempotent;
  - recordGrant records the actual cost uncapped by the reservation;
  - there is no pool row until first use: decide creates it with POOL_INITIAL_SATS, but a
    credit before that creates it with the credit alone, and a release before it vanishes;
  - the pool is stored as text and cast with `value::int`: past 2^31 - 1 the statement fails;
  - credit is Math.floor(paid * pct / 100) in floating point.
Where the seed only logs something (a gate's reason, the sats it returned), the port returns it,
so that the adapter can report it. The clock is `self.clock()`, never the wall clock.
"""

import math
from dataclasses import dataclass
from typing import Callable, Dict, Optional

DAY_MS = 24 * 60 * 60 * 1000
INT_MIN, INT_MAX = -(2**31), 2**31 - 1  # a Postgres `integer`, what `value::int` holds


class StatementError(Exception):
    """A statement Postgres would refuse (an integer out of range): its transaction rolls back."""


@dataclass
class Identity:
    """A row of nostr_identities, as far as the free tier reads it."""

    tier: str
    sats_absorbed_today: int
    absorbed_reset_at: int  # ms


class TrustService:
    """The trust service: the identities, written by the harness's set_tier."""

    def __init__(self) -> None:
        self.identities: Dict[str, Identity] = {}

    def set_tier(self, pubkey: str, tier: str, now_ms: int) -> Optional[str]:
        """Creates the identity (nothing absorbed, its window opening now) or changes its tier."""
        identity = self.identities.get(pubkey)
        if identity is None:
            self.identities[pubkey] = Identity(tier, 0, now_ms)
            return None
        previous, identity.tier = identity.tier, tier
        return previous

    def get_identity_with_decay(self, pubkey: str) -> Optional[Identity]:
        return self.identities.get(pubkey)


@dataclass
class Decision:
    serve: str  # "free" | "partial" | "gate"
    absorb_sats: int
    charge_sats: int
    reason: Optional[str] = None  # for a gate: which check gated it (the seed logs it)


class FreeTierService:
    def __init__(self, config: dict, trust: TrustService, clock: Callable[[], int]) -> None:
        self.budgets = config["budget_sats"]  # DAILY_BUDGET_NEW ... DAILY_BUDGET_ELITE
        self.pool_initial = config["pool_initial_sats"]  # POOL_INITIAL_SATS
        self.credit_pct = config["credit_bps"] / 100  # POOL_CREDIT_PCT, a float as in the seed
        self.trust = trust
        self.clock = clock  # Date.now()
        self.pool_row: Optional[int] = None  # timmy_config 'generosity_pool_sats'; None: no row yet
        self.granted_sats = 0  # free_tier_grants: sum(sats_absorbed)
        self.n_grants = 0  # and count(*)

    def daily_budget_for_tier(self, tier: str) -> int:
        return self.budgets.get(tier, self.budgets["new"])

    def _daily_remaining(self, identity: Identity) -> int:
        budget = self.daily_budget_for_tier(identity.tier)
        expired = self.clock() - identity.absorbed_reset_at >= DAY_MS
        today_absorbed = 0 if expired else identity.sats_absorbed_today
        return max(0, budget - today_absorbed)

    def get_pool_balance(self) -> int:
        """Reads the pool; on first boot creates the row with POOL_INITIAL_SATS."""
        if self.pool_row is not None:
            return self.pool_row
        self.pool_row = self.pool_initial  # INSERT ... ON CONFLICT DO NOTHING
        return self.pool_initial

    def _pool_int(self) -> Optional[int]:
        """`SELECT value::int`: None when there is no row."""
        if self.pool_row is not None and not INT_MIN <= self.pool_row <= INT_MAX:
            raise StatementError("integer out of range")
        return self.pool_row

    def _pool_add(self, n: int) -> bool:
        """`UPDATE timmy_config SET value = (value::int + n)::text`: False when no row was updated."""
        value = self._pool_int()
        if value is None:
            return False
        if not (INT_MIN <= n <= INT_MAX and INT_MIN <= value + n <= INT_MAX):
            raise StatementError("integer out of range")
        self.pool_row = value + n
        return True

    def decide(self, pubkey: Optional[str], estimated_sats: int) -> Decision:
        def gate(reason: str) -> Decision:
            return Decision("gate", 0, estimated_sats, reason)

        if estimated_sats <= 0:
            return gate("zero_estimate")
        identity = self.trust.get_identity_with_decay(pubkey) if pubkey else None
        if identity is None:
            return gate("unknown_identity")
        if self.daily_budget_for_tier(identity.tier) == 0:
            return gate("zero_budget")
        daily_remaining = self._daily_remaining(identity)
        if daily_remaining == 0:
            return gate("daily_budget_exhausted")
        pool_balance = self.get_pool_balance()
        if pool_balance <= 0:
            return gate("pool_empty")
        can_absorb = min(daily_remaining, pool_balance, estimated_sats)
        if can_absorb <= 0:
            return gate("pool_empty")
        if can_absorb >= estimated_sats:
            debited = self._atomic_pool_debit(can_absorb)
            if debited <= 0:
                return gate("pool_empty")  # drained between the read and the debit
            return Decision("free", debited, 0)
        # Partial: advisory only, the pool is debited later by reserve_partial_grant.
        return Decision("partial", can_absorb, estimated_sats - can_absorb)

    def _atomic_pool_debit(self, requested_sats: int) -> int:
        """One transaction: debits min(requested, balance); 0 when the pool is empty."""
        if requested_sats <= 0:
            return 0
        if self.pool_row is None:
            self.pool_row = self.pool_initial  # ensure the pool row exists
        balance = self._pool_int() or 0  # SELECT ... FOR UPDATE
        if balance <= 0:
            return 0
        debited = min(requested_sats, balance)
        self.pool_row = balance - debited
        return debited

    def reserve_partial_grant(self, requested_absorb_sats: int, pubkey: str) -> int:
        """Debits the pool for a partial grant at payment time; may debit less than asked."""
        if requested_absorb_sats <= 0:
            return 0
        identity = self.trust.get_identity_with_decay(pubkey)
        if identity is None:
            return 0
        can_absorb = min(requested_absorb_sats, self._daily_remaining(identity))
        if can_absorb <= 0:
            return 0
        return self._atomic_pool_debit(can_absorb)

    def release_reservation(self, absorb_sats: int, reason: str) -> int:
        """Returns absorb_sats to the pool; returns what reached it (0 if there was no row)."""
        if absorb_sats <= 0:
            return 0
        return absorb_sats if self._pool_add(absorb_sats) else 0

    def credit(self, paid_sats: int) -> int:
        """Credits floor(paid * pct / 100) to the pool; returns the credit."""
        if paid_sats <= 0:
            return 0
        credit_sats = math.floor(paid_sats * self.credit_pct / 100)
        if credit_sats <= 0:
            return 0
        if self.pool_row is None:
            self.pool_row = credit_sats  # the upsert's INSERT: the first write wins
        else:
            self._pool_add(credit_sats)  # ON CONFLICT DO UPDATE
        return credit_sats

    def record_grant(self, pubkey: str, request_hash: str, actual_absorbed: int, reserved_absorbed: int):
        """One transaction: returns the over-reservation, counts the day's absorption, writes the
        audit row. Returns (sats recorded, sats returned to the pool)."""
        to_record = max(0, actual_absorbed)
        over_reserved = max(0, reserved_absorbed - to_record)
        if to_record <= 0 and over_reserved <= 0:
            return 0, 0
        now = self.clock()
        returned = over_reserved if over_reserved > 0 and self._pool_add(over_reserved) else 0
        if to_record > 0:
            identity = self.trust.get_identity_with_decay(pubkey)  # UPDATE nostr_identities
            if identity is not None:
                if now - identity.absorbed_reset_at >= DAY_MS:  # a new day starts now
                    identity.sats_absorbed_today = to_record
                    identity.absorbed_reset_at = now
                else:
                    identity.sats_absorbed_today += to_record
            self.granted_sats += to_record  # INSERT INTO free_tier_grants
            self.n_grants += 1
        return to_record, returned
