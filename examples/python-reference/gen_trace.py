#!/usr/bin/env python3
"""Write a ledger-conformance version 2 trace (conformance README) of random commands run
on our ledger, for `ledger-sim check-trace`.

usage: gen_trace.py OUT.jsonl [SEED] [SEGMENTS] [STEPS]
"""
import hashlib
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ledger import Ledger, MAX, TIERS, DAY_MS  # noqa: E402


def dumps(o):
    return json.dumps(o, separators=(",", ":"))


def random_config(rng):
    pick = lambda: rng.choice([0, 1, 5, 50, 200, 1000, MAX, rng.randrange(0, 3000)])
    return {
        "budget_sats": {t: pick() for t in TIERS},
        "pool_initial_sats": rng.choice([0, 10, 500, 10_000, MAX, MAX - 5, rng.randrange(0, 20000)]),
        "credit_bps": rng.choice([0, 1, 333, 1000, 9999, 10_000]),
        "reservation_ttl_ms": rng.choice([1, 1000, 600_000, MAX]),
    }


def segment(rng, case, steps):
    cfg = random_config(rng)
    led = Ledger(cfg)
    lines = [dumps({"format": "ledger-conformance", "version": 2, "case": case,
                    "description": "random commands on examples/python-reference", "config": cfg})]
    pubkeys = ["%064x" % rng.getrandbits(256) for _ in range(4)]
    now = rng.choice([0, 1_700_000_000_000, MAX - 3 * DAY_MS])
    rids = list(range(6)) + [MAX]
    amt = lambda: rng.choice([0, 1, 2, 10, 49, 50, 51, 199, 200, 1000, MAX, rng.randrange(0, 1500)])
    for _ in range(steps):
        now = max(0, min(MAX, now + rng.choice([0, 1, 1000, 599_999, 600_000, 600_001,
                                               DAY_MS - 1, DAY_MS, -1000, -DAY_MS * 2])))
        k = rng.choice(["set_tier", "decide", "decide", "reserve_partial", "reserve_partial",
                        "release", "record", "record", "credit", "expire"])
        if k == "set_tier":
            cmd = {"cmd": k, "pubkey": rng.choice(pubkeys), "tier": rng.choice(TIERS)}
            ans, _ = led.set_tier(now, cmd["pubkey"], cmd["tier"])
        elif k == "decide":
            cmd = {"cmd": k, "request_id": rng.choice(rids), "pubkey": rng.choice(pubkeys),
                   "estimated_sats": amt()}
            ans, _ = led.decide(now, cmd["request_id"], cmd["pubkey"], cmd["estimated_sats"])
        elif k == "reserve_partial":
            cmd = {"cmd": k, "request_id": rng.choice(rids), "pubkey": rng.choice(pubkeys),
                   "amount_sats": amt()}
            ans, _ = led.reserve_partial(now, cmd["request_id"], cmd["pubkey"], cmd["amount_sats"])
        elif k == "release":
            cmd = {"cmd": k, "request_id": rng.choice(rids)}
            ans, _ = led.release(now, cmd["request_id"])
        elif k == "record":
            cmd = {"cmd": k, "request_id": rng.choice(rids), "actual_sats": amt()}
            ans, _ = led.record(now, cmd["request_id"], cmd["actual_sats"])
        elif k == "credit":
            cmd = {"cmd": k, "payment_id": rng.choice([0, 1, 2, MAX]), "paid_sats": amt()}
            ans, _ = led.credit(now, cmd["payment_id"], cmd["paid_sats"])
        else:
            cmd = {"cmd": "expire"}
            ans, _ = led.expire(now)
        expect = {k2: v for k2, v in ans.items() if k2 != "reply"}
        step = {"now": now, "command": cmd, "expect": expect, "totals": led.totals()}
        if "pubkey" in cmd:
            ident = led.identities.get(cmd["pubkey"])
            step["identity"] = ident.standing() if ident else None
        lines.append(dumps(step))
    return lines


def main():
    out = sys.argv[1]
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    nseg = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    nsteps = int(sys.argv[4]) if len(sys.argv) > 4 else 200
    rng = random.Random(seed)
    lines = []
    for i in range(nseg):
        lines += segment(rng, "python-reference/%d/%d" % (seed, i), nsteps)
    body = "".join(l + "\n" for l in lines).encode()
    footer = {"footer": {"segments": nseg, "steps": nseg * nsteps,
                         "sha256": hashlib.sha256(body).hexdigest()}}
    with open(out, "wb") as f:
        f.write(body + dumps(footer).encode() + b"\n")


if __name__ == "__main__":
    main()
