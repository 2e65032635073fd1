"""The generosity-pool ledger, reference semantics of SPEC.md sections 1-6, in memory.

Written from SPEC.md alone, without reading the Rust reference. Each command returns
(answer, fresh), where answer is a dict in the protocol's words (SPEC §9.2):
  {"reply": "ok", "outcome": ..., ...fields}   or
  {"reply": "refused", "refusal": ..., ...fields}
and fresh says whether this call made the movements its outcome reports (§9.2). Where the
harness does not read it (a refusal, a partial or gate decision, tier_set, an empty expired),
it is what §9.2 recommends: True for a first answer, a refusal included, and False for a
repeat (a decision answered again, R-IDEM-1; an insufficient_funds refused again, R-PARTIAL-7).
"""

MAX = 2 ** 63 - 1          # §1: amounts, times and ids are in 0..=2^63-1
DAY_MS = 86_400_000        # §1: a day is exactly 86,400,000 ms
TIERS = ("new", "established", "trusted", "elite")

DEFAULT_CONFIG = {
    "budget_sats": {"new": 0, "established": 50, "trusted": 200, "elite": 1000},
    "pool_initial_sats": 10_000,
    "credit_bps": 1000,
    "reservation_ttl_ms": 600_000,
}

# reservation states (§2)
OUTSTANDING, RECORDED, RELEASED, EXPIRED = "outstanding", "recorded", "released", "expired"


def ok(outcome, **fields):
    d = {"reply": "ok", "outcome": outcome}
    d.update(fields)
    return d


def refused(refusal, **fields):
    d = {"reply": "refused", "refusal": refusal}
    d.update(fields)
    return d


class Identity:
    __slots__ = ("tier", "sats_absorbed_today", "absorbed_reset_at_ms", "reserved_sats")

    def __init__(self, tier, now):
        # R-TIER-1: the given tier, nothing absorbed, window opening at now, nothing reserved
        self.tier = tier
        self.sats_absorbed_today = 0
        self.absorbed_reset_at_ms = now
        self.reserved_sats = 0

    def standing(self):
        return {
            "tier": self.tier,
            "sats_absorbed_today": self.sats_absorbed_today,
            "absorbed_reset_at_ms": self.absorbed_reset_at_ms,
            "reserved_sats": self.reserved_sats,
        }


class Reservation:
    __slots__ = ("amount", "deadline", "by", "state", "actual", "outcome")

    def __init__(self, amount, deadline, by):
        self.amount = amount
        self.deadline = deadline
        self.by = by            # "decide" or "reserve_partial"
        self.state = OUTSTANDING
        self.actual = None      # set when recorded
        self.outcome = None     # the first `recorded` outcome (R-RECORD-5)


class Request:
    __slots__ = ("request_id", "pubkey", "estimate", "decision", "reservation", "refused_amounts")

    def __init__(self, request_id, pubkey, estimate, decision):
        self.request_id = request_id
        self.pubkey = pubkey
        self.estimate = estimate
        self.decision = decision          # the decision dict, as answered
        self.reservation = None
        self.refused_amounts = {}         # amount -> available (R-PARTIAL-7)


class Ledger:
    def __init__(self, config=None):
        cfg = config or DEFAULT_CONFIG
        self.budget = dict(cfg["budget_sats"])
        self.pool_initial = cfg["pool_initial_sats"]
        self.credit_bps = cfg["credit_bps"]
        self.ttl = cfg["reservation_ttl_ms"]
        # Genesis (§2): pool holds pool_initial_sats, every total 0, nothing else.
        self.pool = self.pool_initial
        self.reserved_sats = 0
        self.absorbed_sats = 0
        self.credited_sats = 0
        self.overrun_sats = 0
        self.n_grants = 0
        self.identities = {}   # pubkey -> Identity
        self.requests = {}     # request_id -> Request
        self.payments = {}     # payment_id -> (paid, credited)
        self.outstanding = {}  # request_id -> Request, reservations outstanding (for expire)

    # ----------------------------------------------------------------- helpers
    def _counted_absorption(self, ident, now):
        # R-WINDOW-1: counts while now - start < DAY; R-WINDOW-5: now before start counts.
        if now - ident.absorbed_reset_at_ms < DAY_MS:
            return ident.sats_absorbed_today
        return 0

    def _remaining(self, ident, now):
        # R-DECIDE-6 / §2 "Remaining": budget of the tier held now (R-TIER-3), less the
        # absorption counting in the window at now, less outstanding reservations
        # (R-DECIDE-7: whatever window they were made in); never below 0.
        r = self.budget[ident.tier] - self._counted_absorption(ident, now) - ident.reserved_sats
        return r if r > 0 else 0

    def _deadline(self, now):
        # R-EXPIRE-1: now + ttl, capped at 2^63-1
        return min(now + self.ttl, MAX)

    def _reserve(self, req, ident, amount, now, by):
        # R-DECIDE-8 / R-PARTIAL-9: debit the pool, make an outstanding reservation,
        # grow the identity's and the ledger's reserved sums.
        self.pool -= amount
        self.reserved_sats += amount
        ident.reserved_sats += amount
        req.reservation = Reservation(amount, self._deadline(now), by)
        self.outstanding[req.request_id] = req

    def _unreserve(self, req, res):
        # leaves the identity's and the ledger's reserved sums
        del self.outstanding[req.request_id]
        self.reserved_sats -= res.amount
        self.identities[req.pubkey].reserved_sats -= res.amount

    def _absorb(self, ident, absorbed, now):
        # Section 4: only absorption moves the window.
        if absorbed == 0:
            return  # R-WINDOW-4
        if now - ident.absorbed_reset_at_ms >= DAY_MS:
            # R-WINDOW-2: a new window at this now, holding this absorption alone
            ident.absorbed_reset_at_ms = now
            ident.sats_absorbed_today = absorbed
        else:
            # R-WINDOW-3 (and R-WINDOW-5 for a now before the start)
            ident.sats_absorbed_today += absorbed

    def totals(self):
        return {
            "pool_sats": self.pool,
            "reserved_sats": self.reserved_sats,
            "absorbed_sats": self.absorbed_sats,
            "credited_sats": self.credited_sats,
            "overrun_sats": self.overrun_sats,
            "n_grants": self.n_grants,
        }

    # ---------------------------------------------------------------- commands
    def set_tier(self, now, pubkey, tier):
        """§3.1: never refused."""
        ident = self.identities.get(pubkey)
        if ident is None:
            # R-TIER-1
            self.identities[pubkey] = Identity(tier, now)
            return ok("tier_set", previous=None), True
        # R-TIER-2: change the tier and nothing else; answer the tier replaced
        previous = ident.tier
        ident.tier = tier
        return ok("tier_set", previous=previous), True

    def decide(self, now, request_id, pubkey, estimated_sats):
        """§3.2"""
        req = self.requests.get(request_id)
        if req is not None:
            # R-IDEM-2: the pubkey is checked before the estimate
            if req.pubkey != pubkey:
                return refused("exists_with_different_pubkey"), True
            if req.estimate != estimated_sats:
                return refused("exists_with_different_estimate", estimated_sats=req.estimate), True
            # R-IDEM-1: the first decision, nothing moves
            return ok("decided", decision=dict(req.decision)), False

        est = estimated_sats
        ident = self.identities.get(pubkey)

        def gate(reason):
            # R-DECIDE-10: every gate charges the whole estimate
            return {"serve": "gate", "reason": reason, "charge_sats": est}

        decision = None
        if est == 0:
            decision = gate("zero_estimate")                     # R-DECIDE-1
        elif ident is None:
            decision = gate("unknown_identity")                  # R-DECIDE-2
        elif self.budget[ident.tier] == 0:
            decision = gate("zero_budget")                       # R-DECIDE-3 (R-TIER-3)
        else:
            remaining = self._remaining(ident, now)              # R-DECIDE-6, -7
            if remaining == 0:
                decision = gate("daily_budget_exhausted")        # R-DECIDE-4
            elif self.pool == 0:
                decision = gate("pool_empty")                    # R-DECIDE-5
            else:
                avail = min(remaining, self.pool)
                if avail >= est:
                    decision = {"serve": "free", "reserved_sats": est}  # R-DECIDE-8
                else:
                    # R-DECIDE-9: advisory, nothing moves
                    decision = {"serve": "partial", "offer_sats": avail,
                                "charge_sats": est - avail}
        # the request is remembered whatever the decision (§3.2)
        req = Request(request_id, pubkey, est, decision)
        self.requests[request_id] = req
        if decision["serve"] == "free":
            # R-DECIDE-8: in the same atomic step, debit and reserve (made by decide)
            self._reserve(req, ident, est, now, "decide")
        return ok("decided", decision=dict(decision)), True

    def reserve_partial(self, now, request_id, pubkey, amount_sats):
        """§3.3: checks in order."""
        req = self.requests.get(request_id)
        if req is None:
            return refused("unknown_request"), True                           # R-PARTIAL-1
        if req.pubkey != pubkey:
            return refused("exists_with_different_pubkey"), True              # R-PARTIAL-2
        res = req.reservation
        if res is not None:
            # R-PARTIAL-3 (before the amount is judged, R-PARTIAL-4)
            if res.by == "reserve_partial" and res.amount == amount_sats:
                return ok("reserved", reserved_sats=amount_sats), False
            return refused("reservation_exists", reserved_sats=res.amount), True
        if amount_sats == 0:
            return refused("zero_amount"), True                               # R-PARTIAL-5
        if amount_sats > req.estimate:
            return refused("amount_above_estimate", estimated_sats=req.estimate), True   # R-PARTIAL-6
        if amount_sats in req.refused_amounts:
            # R-PARTIAL-7: refused again with the first refusal's available
            return refused("insufficient_funds",
                           available_sats=req.refused_amounts[amount_sats]), False
        ident = self.identities.get(pubkey)
        if ident is None:
            return refused("unknown_identity"), True                          # R-PARTIAL-8
        available = min(self._remaining(ident, now), self.pool)             # R-PARTIAL-9
        if amount_sats <= available:
            self._reserve(req, ident, amount_sats, now, "reserve_partial")
            return ok("reserved", reserved_sats=amount_sats), True
        # nothing moves; the amount is remembered with available (R-PARTIAL-7)
        req.refused_amounts[amount_sats] = available
        return refused("insufficient_funds", available_sats=available), True

    def release(self, now, request_id):
        """§3.4"""
        req = self.requests.get(request_id)
        if req is None:
            return refused("unknown_request"), True                           # R-RELEASE-1
        res = req.reservation
        if res is None:
            return refused("not_reserved"), True                              # R-RELEASE-1
        if res.state == OUTSTANDING:
            # R-RELEASE-2: all of it back to the pool
            res.state = RELEASED
            self.pool += res.amount
            self._unreserve(req, res)
            return ok("released", returned_sats=res.amount), True
        if res.state == RELEASED:
            return ok("released", returned_sats=res.amount), False            # R-RELEASE-3
        if res.state == RECORDED:
            return refused("already_recorded"), True                          # R-RELEASE-4
        return refused("reservation_expired"), True                           # R-RELEASE-4

    def record(self, now, request_id, actual_sats):
        """§3.5"""
        req = self.requests.get(request_id)
        if req is None:
            return refused("unknown_request"), True                           # R-RECORD-1
        res = req.reservation
        if res is None:
            return refused("not_reserved"), True                              # R-RECORD-1
        if res.state == RELEASED:
            return refused("already_released"), True                          # R-RECORD-1
        if res.state == EXPIRED:
            return refused("reservation_expired"), True                       # R-RECORD-1
        if res.state == RECORDED:
            # R-RECORD-5
            if res.actual == actual_sats:
                return dict(res.outcome), False
            return refused("recorded_with_different_amount", actual_sats=res.actual), True
        # outstanding (R-RECORD-4: the deadline does not matter here)
        reserved = res.amount
        absorbed = min(actual_sats, reserved)
        returned = reserved - absorbed
        overrun = actual_sats - absorbed
        if self.overrun_sats + overrun > MAX:
            return refused("overflow"), True                                  # R-RECORD-6
        # R-RECORD-2
        self.pool += returned
        self._unreserve(req, res)
        self.absorbed_sats += absorbed
        self.overrun_sats += overrun
        self.n_grants += 1                                                    # R-RECORD-3
        self._absorb(self.identities[req.pubkey], absorbed, now)
        res.state = RECORDED
        res.actual = actual_sats
        res.outcome = ok("recorded", absorbed_sats=absorbed, returned_sats=returned,
                         overrun_sats=overrun)
        return dict(res.outcome), True

    def credit(self, now, payment_id, paid_sats):
        """§3.6"""
        p = self.payments.get(payment_id)
        if p is not None:
            # R-CREDIT-3
            paid, credited = p
            if paid == paid_sats:
                return ok("credited", credited_sats=credited), False
            return refused("payment_with_different_amount", paid_sats=paid), True
        # R-CREDIT-1: exact integer arithmetic (Python ints are unbounded)
        credited = paid_sats * self.credit_bps // 10_000
        # R-CREDIT-4: judged on genesis plus all credits, not on the pool
        if self.pool_initial + self.credited_sats + credited > MAX:
            return refused("overflow"), True
        # R-CREDIT-2: remembered, also when it credits 0
        self.payments[payment_id] = (paid_sats, credited)
        self.pool += credited
        self.credited_sats += credited
        return ok("credited", credited_sats=credited), True

    def expire(self, now):
        """§3.7: never refused."""
        due = []
        for rid, req in self.outstanding.items():
            res = req.reservation
            # R-EXPIRE-2: deadline < now; equal stays outstanding
            if res.deadline < now:
                due.append((res.deadline, rid, req, res))
        due.sort(key=lambda t: (t[0], t[1]))                                  # R-EXPIRE-4
        released = []
        for _deadline, rid, req, res in due:
            # R-EXPIRE-3
            res.state = EXPIRED
            self.pool += res.amount
            self._unreserve(req, res)
            released.append([rid, res.amount])
        # fresh: exact when it released something (§9.2); an expire that released nothing
        # is not read, and it is never a repeat of an earlier answer, so True.
        return ok("expired", released=released), True

    # ------------------------------------------------------------- observation
    def observe(self):
        return {
            "pool_sats": self.pool,
            "reserved_sats": self.reserved_sats,
            "granted_sats": self.absorbed_sats,
            "n_grants": self.n_grants,
            "credited_sats": self.credited_sats,
            "overrun_sats": self.overrun_sats,
            "identities": [
                dict(pubkey=pk, **ident.standing())
                for pk, ident in sorted(self.identities.items())
            ],
        }
