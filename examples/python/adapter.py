#!/usr/bin/env python3
"""An adapter for the harness's engine protocol (SPEC.md section 9), in plain Python 3.9+.

It reads one JSON request per line on stdin and writes one JSON response per line on stdout.
The service it drives is free_tier.py; to check your own service, keep the loop and rewrite
the part marked "THE TABLE" (and `observe`). It handles one request at a time, which is enough
for the harness: with --concurrency N it simply answers the requests in turn.

    ledger-sim run --engine exec --exec 'python3 examples/python/adapter.py'
"""

import json
import sys

from free_tier import FreeTierService, StatementError, TrustService

MAX = 2**63 - 1  # amounts, ids and times are integers in 0..=MAX
MAX_ID = 2**64 - 1  # a request's own id is an integer in 0..=MAX_ID
TIERS = ("new", "established", "trusted", "elite")
DEFINITE = {"malformed": True, "not_supported": True, "out_of_range": True, "unavailable": True,
            "abort": True, "timeout": False, "crash": False}


class ProtocolError(Exception):
    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code = code


class Instance:
    """One service at genesis, and the clock it reads: the current call's now_ms."""

    def __init__(self, config: dict) -> None:
        self.now_ms = 0
        self.trust = TrustService()
        self.service = FreeTierService(config, self.trust, clock=lambda: self.now_ms)


# ---- THE TABLE: each protocol call, the fields it carries, and what answers it. ----------------
# Replace the right-hand sides with calls to your service. Each returns an outcome of SPEC.md
# section 9.2 (api "seed": what the seed's function did). `s` is the Instance, `c` the call.

def decided(d):
    if d.serve == "free":
        return {"outcome": "decided", "decision": {"serve": "free", "reserved_sats": d.absorb_sats}}
    if d.serve == "partial":
        return {"outcome": "decided",
                "decision": {"serve": "partial", "offer_sats": d.absorb_sats, "charge_sats": d.charge_sats}}
    return {"outcome": "decided", "decision": {"serve": "gate", "reason": d.reason, "charge_sats": d.charge_sats}}


def recorded(absorbed_and_returned):
    absorbed, returned = absorbed_and_returned
    return {"outcome": "recorded", "absorbed_sats": absorbed, "returned_sats": returned, "overrun_sats": 0}


CALLS = {
    # replace this with your trust service's write (the harness changes tiers as it goes)
    "set_tier": (("pubkey", "tier"), lambda s, c: {
        "outcome": "tier_set", "previous": s.trust.set_tier(c["pubkey"], c["tier"], s.now_ms)}),
    # replace this with your service's decide
    "decide": (("request_id", "pubkey", "estimated_sats"), lambda s, c: decided(
        s.service.decide(c["pubkey"], c["estimated_sats"]))),
    # replace this with your service's partial grant at payment time
    "reserve_partial": (("request_id", "pubkey", "amount_sats"), lambda s, c: {
        "outcome": "reserved", "reserved_sats": s.service.reserve_partial_grant(c["amount_sats"], c["pubkey"])}),
    # replace this with your service's release
    "release": (("request_id", "amount_sats"), lambda s, c: {
        "outcome": "released", "returned_sats": s.service.release_reservation(c["amount_sats"], "harness")}),
    # replace this with your service's record (the request id stands for the request hash)
    "record": (("request_id", "pubkey", "actual_sats", "reserved_sats"), lambda s, c: recorded(
        s.service.record_grant(c["pubkey"], str(c["request_id"]), c["actual_sats"], c["reserved_sats"]))),
    # replace this with your service's credit of a paid invoice
    "credit": (("payment_id", "paid_sats"), lambda s, c: {
        "outcome": "credited", "credited_sats": s.service.credit(c["paid_sats"])}),
    # replace this with your sweeper, if your service has one (the seed has none)
    "expire": ((), lambda s, c: {"outcome": "expired", "released": []}),
}


def observe(s: Instance) -> dict:
    """What the service stores: replace this with reads of your tables."""
    svc = s.service
    return {
        # before first boot there is no pool row: the seed's getPoolBalance() would answer this
        "pool_sats": svc.pool_initial if svc.pool_row is None else svc.pool_row,
        "reserved_sats": None,  # the seed keeps no reservations
        "granted_sats": svc.granted_sats,  # sum and count of the audit rows
        "n_grants": svc.n_grants,
        # "identities" (optional, not read in a run) would list each identity's standing
    }
# ---- end of the table --------------------------------------------------------------------------


def field(obj, name: str, where: str):
    """obj[name], checked: a tier, a pubkey (64 lowercase hex digits), or an integer in 0..=MAX."""
    if not isinstance(obj, dict) or name not in obj:
        raise ProtocolError("malformed", f"{where}: no field {name}")
    v = obj[name]
    if name == "tier":
        valid = v in TIERS
    elif name == "pubkey":
        valid = isinstance(v, str) and len(v) == 64 and all(ch in "0123456789abcdef" for ch in v)
    elif isinstance(v, int) and not isinstance(v, bool):
        if not 0 <= v <= MAX:
            raise ProtocolError("out_of_range", f"{where}: {name} = {v} is out of range")
        valid = True
    else:
        valid = False
    if not valid:
        raise ProtocolError("malformed", f"{where}: {name} = {json.dumps(v)} is not valid")
    return v


def read_config(config) -> dict:
    budgets = config.get("budget_sats") if isinstance(config, dict) else None
    return {"budget_sats": {t: field(budgets, t, "budget_sats") for t in TIERS},
            "pool_initial_sats": field(config, "pool_initial_sats", "config"),
            "credit_bps": field(config, "credit_bps", "config"),
            "reservation_ttl_ms": field(config, "reservation_ttl_ms", "config")}


def read_json(text: str):
    """`text` as JSON, and the first key that one of its objects names twice (None when none
    does), and whether its top-level object names `id` twice. An integer longer than 4000
    characters is out of range whatever its digits: it reads as -1 or 2**64, unconverted (Python
    refuses to convert more than 4300 digits, and a 16 MiB one would take minutes)."""
    twice, top = [], []

    def pairs_to_dict(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                twice.append(key)
            seen.add(key)
        top[:] = pairs  # the top-level object's pairs come last
        return dict(pairs)

    def parse_int(digits: str) -> int:
        return int(digits) if len(digits) <= 4000 else (-1 if digits.startswith("-") else 2**64)

    value = json.loads(text, object_pairs_hook=pairs_to_dict, parse_int=parse_int)
    return value, (twice[0] if twice else None), sum(key == "id" for key, _ in top) > 1


class Server:
    def __init__(self) -> None:
        self.instance = None  # created by the first hello, replaced by every reset

    def handle(self, req: dict) -> dict:
        kind = req.get("type")
        if kind == "hello":
            # Any integer but 1 is another version, out of range or not (SPEC.md section 9.2).
            protocol = req.get("protocol")
            if not isinstance(protocol, int) or isinstance(protocol, bool):
                raise ProtocolError("malformed", "hello: protocol is not an integer")
            if protocol != 1:
                raise ProtocolError("not_supported", "this adapter speaks protocol 1")
            config = read_config(req.get("config"))
            # A hello never returns the ledger to genesis (SPEC.md section 9.2): a reset does.
            if self.instance is None:
                self.instance = Instance(config)
            else:
                print("adapter.py: a second hello leaves the ledger as it is", file=sys.stderr)
            return {"type": "hello_ok", "protocol": 1, "name": "free_tier.py", "api": "seed",
                    "clock": "harness", "state": "memory"}
        # A type the protocol does not define is malformed (SPEC.md section 9.1), and so is a
        # request that cannot be read, even before hello; one that can be read is unavailable then.
        if kind == "reset":
            config = read_config(req.get("config"))
            if self.instance is None:
                raise ProtocolError("unavailable", "no hello yet")
            self.instance = Instance(config)
            return {"type": "reset_ok"}
        if kind == "observe":
            if self.instance is None:
                raise ProtocolError("unavailable", "no hello yet")
            return {"type": "observed", **observe(self.instance)}
        if kind != "call":
            raise ProtocolError("malformed", f"no request type {kind!r}")
        now_ms = field(req, "now_ms", "call")
        call = req.get("call")
        name = call.get("call") if isinstance(call, dict) else None
        if not isinstance(name, str):
            raise ProtocolError("malformed", "call: no call name")
        if name not in CALLS:
            raise ProtocolError("malformed", f"no call {name!r}")
        needs, answer = CALLS[name]
        args = {f: field(call, f, name) for f in needs}
        if self.instance is None:
            raise ProtocolError("unavailable", "no hello yet")
        self.instance.now_ms = now_ms
        try:
            outcome = answer(self.instance, args)
        except StatementError as e:  # the service's transaction rolled back: nothing happened
            raise ProtocolError("abort", str(e)) from e
        # fresh: the seed keeps no idempotency, so every answer is a first answer. (A service with
        # idempotent ids answers false for a repeat: the harness reads fresh where sats move.)
        return {"type": "reply", "fresh": True, "reply": {"reply": "ok", **outcome}}

    def answer_line(self, raw: bytes) -> dict:
        req_id = None
        try:
            try:
                req, twice, id_twice = read_json(raw.decode("utf-8"))
            except (ValueError, RecursionError) as e:
                raise ProtocolError("malformed", f"not JSON: {e}") from e
            if not isinstance(req, dict):
                raise ProtocolError("malformed", "not a JSON object")
            req_id = req.get("id")
            # An id is an integer in 0..=MAX_ID named once (SPEC.md section 9.1); anything else
            # is no id, and the answer says "id": null.
            if not isinstance(req_id, int) or isinstance(req_id, bool) or not 0 <= req_id <= MAX_ID or id_twice:
                req_id = None
                raise ProtocolError("malformed", "no id: an integer in 0..=2^64-1, named once")
            if twice is not None:
                raise ProtocolError("malformed", f"the key {twice!r} is named twice in one object")
            return {"id": req_id, **self.handle(req)}
        except ProtocolError as e:
            return {"id": req_id, "type": "error", "code": e.code, "definite": DEFINITE[e.code], "text": str(e)}
        except Exception as e:  # a failure inside the service: it may have changed state
            return {"id": req_id, "type": "error", "code": "crash", "definite": False, "text": repr(e)}


def main() -> None:
    server = Server()
    for raw in sys.stdin.buffer:  # one request at a time, until end of input
        # A line of JSON white space only is no request (SPEC.md section 9.1).
        if not raw.strip(b" \t\r\n"):
            print("adapter.py: an empty line is no request", file=sys.stderr)
            continue
        sys.stdout.write(json.dumps(server.answer_line(raw), separators=(",", ":")) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
