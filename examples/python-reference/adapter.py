#!/usr/bin/env python3
"""Engine protocol (SPEC.md §9, version 1) in front of ledger.Ledger.

JSON Lines on stdin/stdout; stderr is ours (never parsed by the harness, §9.1).
Requests are served one at a time, in arrival order, each answered as soon as it is
applied. The harness may keep many requests in flight (§9.1): we never wait for anything
but the next line, so pipelined requests are fine, and serving them serially is trivially
linearizable (§2: "some serial order of them").
"""
import json
import os
import random
import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ledger import Ledger, MAX, TIERS  # noqa: E402

PROTOCOL = 1
LINE_LIMIT = 16 * 1024 * 1024          # §9.1: a line longer than 16 MiB cannot be read
PUBKEY_RE = re.compile(r"^[0-9a-f]{64}$")
# The id of a line that cannot be read, made out only where the harness writes it, first in
# the object: an `"id"` further in could be one nested in a value, or cut short.
ID_RE = re.compile(rb'\A[ \t\r]*\{[ \t\r]*"id"[ \t\r]*:[ \t\r]*(\d{1,20})[ \t\r]*,')
ID_MAX = 2 ** 64 - 1                   # §9.1: an id is an integer in 0..=2^64-1
CONFIG_KEYS = ("budget_sats", "pool_initial_sats", "credit_bps", "reservation_ttl_ms")
JSON_WHITE_SPACE = b" \t\r"           # §9.1: a line of JSON white space only is no request


class Malformed(Exception):
    pass


class OutOfRange(Exception):
    pass


class NotSupported(Exception):
    pass


class _NonInteger:
    """A JSON number with a fraction or exponent (§9.1: `1.5`, `1e3` are malformed)."""


class _HugeInteger:
    """An integer literal too long to be in range (avoids int-parsing limits)."""


NON_INTEGER = _NonInteger()
HUGE_INTEGER = _HugeInteger()


def _reject_constant(name):
    raise Malformed("not a JSON number: %s" % name)


def _parse_int(s):
    if len(s.lstrip("-")) > 25:
        return HUGE_INTEGER
    return int(s)


def _object(pairs):
    """§9.1: a request in which an object names a key twice is malformed."""
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise Malformed("the key %r is named twice" % key)
        obj[key] = value
    return obj


def parse_json(text):
    return json.loads(text, parse_float=lambda s: NON_INTEGER, parse_int=_parse_int,
                      parse_constant=_reject_constant, object_pairs_hook=_object)


class Checker:
    """Reads fields of a request; malformed beats out_of_range (both definite)."""

    def __init__(self):
        self.out_of_range = []

    def obj(self, parent, key):
        if not isinstance(parent, dict) or key not in parent:
            raise Malformed("missing field %r" % key)
        v = parent[key]
        if not isinstance(v, dict):
            raise Malformed("field %r is not an object" % key)
        return v

    def int(self, parent, key, lo=0, hi=MAX):
        if key not in parent:
            raise Malformed("missing field %r" % key)
        v = parent[key]
        if v is HUGE_INTEGER:
            self.out_of_range.append(key)
            return 0
        if v is NON_INTEGER:
            raise Malformed("field %r is not an integer" % key)
        if type(v) is not int:  # bool is an int in Python: refuse it
            raise Malformed("field %r is not an integer" % key)
        if v < 0 or v > MAX:
            # §9.1: an integer outside 0..=2^63-1 is out_of_range
            self.out_of_range.append(key)
            return 0
        if v < lo or v > hi:
            # inside 0..=2^63-1 but outside what this field may hold (credit_bps, ttl)
            raise Malformed("field %r out of its domain" % key)
        return v

    def str(self, parent, key):
        if key not in parent:
            raise Malformed("missing field %r" % key)
        v = parent[key]
        if not isinstance(v, str):
            raise Malformed("field %r is not a string" % key)
        return v

    def pubkey(self, parent, key="pubkey"):
        v = self.str(parent, key)
        if not PUBKEY_RE.match(v):
            raise Malformed("pubkey is not 64 lowercase hex characters")
        return v

    def tier(self, parent, key="tier"):
        v = self.str(parent, key)
        if v not in TIERS:
            raise Malformed("unknown tier %r" % v)
        return v

    def config(self, msg):
        c = self.obj(msg, "config")
        b = self.obj(c, "budget_sats")
        # A config's keys are all known (SPEC.md §9.1): a misspelt setting is never ignored.
        for obj, keys, where in ((c, CONFIG_KEYS, "config"), (b, TIERS, "config.budget_sats")):
            for k in obj:
                if k not in keys:
                    raise Malformed("%s: unknown key %r" % (where, k))
        cfg = {
            "budget_sats": {t: self.int(b, t) for t in TIERS},
            "pool_initial_sats": self.int(c, "pool_initial_sats"),
            "credit_bps": self.int(c, "credit_bps", 0, 10_000),
            "reservation_ttl_ms": self.int(c, "reservation_ttl_ms", 1, MAX),
        }
        return cfg

    def finish(self):
        if self.out_of_range:
            raise OutOfRange("out of range: %s" % ", ".join(self.out_of_range))


def parse_call(ch, msg):
    """Return (now, name, args) of a `call` request (§9.2)."""
    now = ch.int(msg, "now_ms")
    c = ch.obj(msg, "call")
    name = ch.str(c, "call")
    if name == "set_tier":
        args = (ch.pubkey(c), ch.tier(c))
    elif name == "decide":
        args = (ch.int(c, "request_id"), ch.pubkey(c), ch.int(c, "estimated_sats"))
    elif name == "reserve_partial":
        args = (ch.int(c, "request_id"), ch.pubkey(c), ch.int(c, "amount_sats"))
    elif name == "release":
        # `amount_sats` is the seed API's; a reference implementation ignores it (§9.2)
        args = (ch.int(c, "request_id"),)
    elif name == "record":
        # `pubkey` and `reserved_sats` are the seed API's; ignored (§9.2)
        args = (ch.int(c, "request_id"), ch.int(c, "actual_sats"))
    elif name == "credit":
        args = (ch.int(c, "payment_id"), ch.int(c, "paid_sats"))
    elif name == "expire":
        args = ()
    else:
        # a call name this protocol does not define
        raise Malformed("unknown call %r" % name)
    ch.finish()
    return now, name, args


class Server:
    def __init__(self, out):
        self.out = out
        self.out_lock = threading.Lock()
        # One lock around the ledger: each command is one atomic step (§2), so any
        # interleaving of threads is the serial order in which they took the lock.
        self.ledger_lock = threading.Lock()
        self.hello_answer = None   # the first successful hello's answer (§9.2)
        self.ledger = None

    def send(self, obj):
        line = json.dumps(obj, separators=(",", ":")).encode() + b"\n"
        with self.out_lock:
            self.out.write(line)
            self.out.flush()

    def error(self, rid, code, text, definite=True):
        self.send({"id": rid, "type": "error", "code": code, "definite": definite,
                   "text": text})

    def handle_line(self, raw):
        # §9.1: not UTF-8 is malformed when the id can be made out
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return self.unreadable(raw, "not UTF-8")
        try:
            msg = parse_json(text)
        except Malformed as e:
            return self.unreadable(raw, str(e))
        except ValueError as e:
            return self.unreadable(raw, "not JSON: %s" % e)
        if not isinstance(msg, dict):
            return self.unreadable(raw, "not a JSON object")
        rid = msg.get("id")
        if type(rid) is not int or not 0 <= rid <= ID_MAX:
            return self.unreadable(raw, "no id in 0..=2^64-1")
        try:
            self.handle(rid, msg)
        except Malformed as e:
            self.error(rid, "malformed", str(e))
        except OutOfRange as e:
            self.error(rid, "out_of_range", str(e))
        except NotSupported as e:
            self.error(rid, "not_supported", str(e))
        except Exception as e:  # a bug of ours, in the middle of a command
            print("adapter: crash on request %d: %r" % (rid, e), file=sys.stderr)
            self.error(rid, "crash", repr(e), definite=False)

    def unreadable(self, raw, why):
        # The id, when it can be made out: exactly one `"id"` key, an integer in range.
        m = ID_RE.match(raw) if raw.count(b'"id"') == 1 else None
        if m and int(m.group(1)) <= ID_MAX:
            self.error(int(m.group(1)), "malformed", why)
        else:
            print("adapter: unreadable line without an id (%s): %r" % (why, raw[:200]),
                  file=sys.stderr)

    def handle(self, rid, msg):
        typ = msg.get("type")
        if not isinstance(typ, str):
            raise Malformed("type missing or not a string")
        if typ not in ("hello", "reset", "call", "observe"):
            raise Malformed("unknown type %r" % typ)
        if typ == "hello":
            return self.hello(rid, msg)
        # Read the whole request first: before hello, one that cannot be read is malformed
        # and one that can is unavailable (§9.1).
        ch = Checker()
        if typ == "reset":
            cfg = ch.config(msg)
            ch.finish()
        elif typ == "call":
            now, name, args = parse_call(ch, msg)
        if self.hello_answer is None:
            return self.error(rid, "unavailable", "request before hello")
        if typ == "reset":
            with self.ledger_lock:
                self.ledger = Ledger(cfg)
            return self.send({"id": rid, "type": "reset_ok"})
        if typ == "observe":
            with self.ledger_lock:
                obs = self.ledger.observe()
            obs.update(id=rid, type="observed")
            return self.send(obs)
        with self.ledger_lock:
            answer, fresh = getattr(self.ledger, name)(now, *args)
        self.send({"id": rid, "type": "reply", "fresh": fresh, "reply": answer})

    def hello(self, rid, msg):
        # §9.2: every hello is judged on its protocol first, a second one included.
        proto = msg.get("protocol")
        if proto is HUGE_INTEGER:
            raise NotSupported("a protocol version of more than 25 digits (this implementation speaks 1)")
        if type(proto) is not int:
            raise Malformed("protocol missing or not an integer")
        if proto != PROTOCOL:
            raise NotSupported("protocol %d (this implementation speaks 1)" % proto)
        ch = Checker()
        cfg = ch.config(msg)
        ch.finish()
        if self.hello_answer is not None:
            # a second valid hello of version 1: answered as the first was, changes nothing,
            # whatever values its config holds (§9.2)
            ans = dict(self.hello_answer)
            ans["id"] = rid
            return self.send(ans)
        # A memory implementation has no state before its first hello: it starts at genesis
        # under hello's configuration (the harness sends reset before every seed anyway).
        self.ledger = Ledger(cfg)
        self.hello_answer = {"type": "hello_ok", "protocol": PROTOCOL,
                             "name": "python-reference/ledger.py", "api": "reference",
                             "clock": "harness", "state": "memory"}
        ans = dict(self.hello_answer)
        ans["id"] = rid
        self.send(ans)


def main():
    """adapter.py [--threads N [--jitter-ms MS]]

    Without --threads: requests are served one at a time in arrival order. With it: every
    `call` and `observe` goes to a pool of N threads (answers leave in any order, §9.1),
    each optionally delayed by a random 0..MS ms so that they overtake one another.
    hello and reset are served in order, after everything before them has been answered.
    """
    args = sys.argv[1:]
    threads = int(args[args.index("--threads") + 1]) if "--threads" in args else 0
    jitter = float(args[args.index("--jitter-ms") + 1]) / 1000 if "--jitter-ms" in args else 0.0
    inp = sys.stdin.buffer
    server = Server(sys.stdout.buffer)
    pool = ThreadPoolExecutor(threads) if threads else None
    pending = []

    def serve_async(raw):
        if jitter:
            time.sleep(random.random() * jitter)
        server.handle_line(raw)

    def dispatch(raw):
        if pool is None:
            return server.handle_line(raw)
        # hello/reset are barriers: let everything in flight finish first
        if b'"hello"' in raw or b'"reset"' in raw:
            for f in pending:
                f.result()
            pending.clear()
            return server.handle_line(raw)
        pending.append(pool.submit(serve_async, raw))
        if len(pending) > 4096:
            pending[:] = [f for f in pending if not f.done()]
    while True:
        raw = inp.readline(LINE_LIMIT + 1)
        if not raw:
            break
        if raw.endswith(b"\n"):
            raw = raw[:-1]
        elif len(raw) > LINE_LIMIT:
            # too long to read whole: answer by the id if it came before the cut, then skip
            server.unreadable(raw, "line longer than 16 MiB")
            while True:
                rest = inp.readline(LINE_LIMIT)
                if not rest or rest.endswith(b"\n"):
                    break
            continue
        if not raw.strip(JSON_WHITE_SPACE):
            print("adapter: empty line ignored", file=sys.stderr)
            continue
        dispatch(raw)
    if pool is not None:
        pool.shutdown(wait=True)


if __name__ == "__main__":
    main()
