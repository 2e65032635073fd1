//! The messages of the engine protocol, version 1 (SPEC.md §9), as they go over the wire.
//!
//! A request is `{"id": N, "type": ..., ...}` from the harness; a response is
//! `{"id": N, "type": ..., ...}` from the implementation. The calls, outcomes and refusals are
//! the harness's own vocabulary ([`Call`], [`Reply`]), so the wire and the simulator cannot
//! drift apart.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use ledger_core::{ConfigJson, Pubkey, Sats, Tier, TimeMs};
use ledger_harness::{Call, Reply};

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// The largest id and time a request may carry (SPEC.md §1): 2^63-1, what a PostgreSQL
/// `BIGINT` holds, as for amounts.
pub const MAX_NUMBER: u64 = i64::MAX as u64;

/// A request with its id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Unique within the child's life.
    pub id: u64,
    /// What is asked.
    #[serde(flatten)]
    pub body: RequestBody,
}

/// What the harness asks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RequestBody {
    /// The first request: the protocol version and the configuration.
    Hello {
        /// [`PROTOCOL_VERSION`].
        protocol: u32,
        /// The ledger's configuration.
        config: ConfigJson,
    },
    /// Back to genesis under `config`.
    Reset {
        /// The configuration from now on.
        config: ConfigJson,
    },
    /// One command at `now_ms`.
    Call {
        /// The harness's clock: the implementation's only time.
        now_ms: TimeMs,
        /// The command.
        call: Call,
    },
    /// What the implementation stores.
    Observe,
}

impl RequestBody {
    /// The first time or id above [`MAX_NUMBER`] the request carries, named by its field and
    /// with its value: such a request is answered `out_of_range` (SPEC.md §1, §9.1). Amounts
    /// above it do not reach here: they do not read as [`Sats`]. A configuration's
    /// `reservation_ttl_ms` is a time too.
    pub fn out_of_range(&self) -> Option<(&'static str, u64)> {
        if let RequestBody::Hello { config, .. } | RequestBody::Reset { config } = self {
            let ttl = config.reservation_ttl_ms;
            return (ttl > MAX_NUMBER).then_some(("config.reservation_ttl_ms", ttl));
        }
        let RequestBody::Call { now_ms, call } = self else { return None };
        let payment_id = match call {
            Call::Credit { payment_id, .. } => Some(payment_id.0),
            _ => None,
        };
        [
            ("now_ms", Some(now_ms.0)),
            ("call.request_id", call.request_id().map(|r| r.0)),
            ("call.payment_id", payment_id),
        ]
        .into_iter()
        .find_map(|(field, v)| v.filter(|v| *v > MAX_NUMBER).map(|v| (field, v)))
    }
}

/// The first integer written outside `0..=`[`MAX_NUMBER`] (negative, or above it, however many
/// digits it has) in the `now_ms`, the `call` or the `config` of `request`, one JSON value that
/// did not read as a request: named by its keys, with its digits (shortened when long). Such a
/// request is out of range rather than malformed (SPEC.md §9.1). A number with a fraction or an
/// exponent (`1.5`, `1e3`) is no integer, and stays malformed.
pub fn integer_out_of_range(request: &str) -> Option<String> {
    find_scalar(request, |keys, _, text| {
        let checked = keys.first().is_some_and(|k| ["now_ms", "call", "config"].contains(&k.as_ref()));
        (checked && integer_outside(text)?).then(|| format!("{} {}", keys.join("."), shortened(text)))
    })
}

/// The first amount (the value of a key that ends in `_sats`) that the response `line` writes
/// outside `0..=`[`MAX_NUMBER`], in words that say what it is evidence of: a negative amount
/// or one beyond 2^63-1 is a pool that went below zero or an amount that overflowed, I1
/// (SPEC.md §6). `None` when it has none (or is not JSON enough to tell).
pub fn amount_out_of_range(line: &str) -> Option<String> {
    find_scalar(line, |keys, _, text| {
        let amount = keys.last().is_some_and(|k| k.ends_with("_sats"));
        (amount && integer_outside(text)?).then(|| {
            let what = if text.starts_with('-') { "a negative amount" } else { "an amount beyond 2^63-1" };
            format!(
                "{} is {}: {what}, evidence that I1 broke (the pool never negative, and no amount overflows)",
                keys.join("."),
                shortened(text)
            )
        })
    })
}

/// The `id` a response `line` names at its top level, when it is an integer of 64 bits: the
/// request a line the harness cannot read meant to answer.
pub fn top_level_id(line: &str) -> Option<u64> {
    find_scalar(line, |keys, _, text| (keys.len() == 1 && keys[0] == "id").then(|| text.parse::<u64>().ok())).flatten()
}

/// `Some(true)` for an integer written outside `0..=`[`MAX_NUMBER`], `Some(false)` for one inside
/// it (`-0` included), `None` for any other scalar (a string, a number with a fraction or an
/// exponent). Judged on its digits, however many: never through a float, which would read
/// `18446744073709551616` as `1.8446744073709552e19` and 400 digits as an error.
pub(crate) fn integer_outside(text: &str) -> Option<bool> {
    let (negative, digits) = text.strip_prefix('-').map_or((false, text), |digits| (true, digits));
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let significant = digits.trim_start_matches('0');
    Some(if negative {
        !significant.is_empty()
    } else {
        // 19 digits or fewer fit a u64.
        significant.len() > 19 || significant.parse::<u64>().is_ok_and(|v| v > MAX_NUMBER)
    })
}

/// A number as a message quotes it: whole when short, its ends and its length when long (a
/// line may hold 16 MiB of digits).
pub(crate) fn shortened(text: &str) -> String {
    const KEEP: usize = 16;
    match (text.get(..KEEP), text.get(text.len().saturating_sub(KEEP)..)) {
        (Some(head), Some(tail)) if text.len() > 3 * KEEP => format!("{head}...{tail} ({} characters)", text.len()),
        _ => text.to_owned(),
    }
}

/// Calls `f` on each string and number of `json` in the order they are written, until it
/// answers `Some`: with the keys of the objects the scalar lies in, outermost first (an array
/// adds none), the offset of its first byte, and its text as written (a string with its quotes
/// and escapes). `json` is one JSON value (the caller has checked that `serde_json` reads it);
/// on anything else the walk stops early or finds less, but never panics. Nothing is read
/// through a float, and the work is linear in the text.
pub(crate) fn find_scalar<'a, T>(
    json: &'a str,
    mut f: impl FnMut(&[Cow<'a, str>], usize, &'a str) -> Option<T>,
) -> Option<T> {
    let bytes = json.as_bytes();
    // The key being read in each object open around the cursor, and whether each open container
    // is an object.
    let mut keys: Vec<Cow<'a, str>> = Vec::new();
    let mut objects: Vec<bool> = Vec::new();
    // Whether the next string is a key.
    let mut key_next = false;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let start = i;
        i += 1;
        match b {
            b'{' => {
                objects.push(true);
                keys.push(Cow::Borrowed(""));
                key_next = true;
            }
            b'[' => objects.push(false),
            b'}' => {
                objects.pop();
                keys.pop();
            }
            b']' => {
                objects.pop();
            }
            b',' => key_next = objects.last() == Some(&true),
            b':' => key_next = false,
            b'"' => {
                while let Some(&c) = bytes.get(i) {
                    i += if c == b'\\' { 2 } else { 1 };
                    if c == b'"' {
                        break;
                    }
                }
                let text = json.get(start..i)?;
                if !key_next {
                    if let Some(found) = f(&keys, start, text) {
                        return Some(found);
                    }
                } else if let Some(key) = keys.last_mut() {
                    // Escapes decoded, as serde reads the key: `"\u0074ype"` is `type`.
                    let inner = text.get(1..text.len() - 1)?;
                    *key = if inner.contains('\\') {
                        Cow::Owned(serde_json::from_str(text).ok()?)
                    } else {
                        Cow::Borrowed(inner)
                    };
                }
            }
            b'-' | b'0'..=b'9' => {
                while bytes.get(i).is_some_and(|c| matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')) {
                    i += 1;
                }
                if let Some(found) = f(&keys, start, json.get(start..i)?) {
                    return Some(found);
                }
            }
            // Whitespace, and the letters of `true`, `false` and `null`.
            _ => {}
        }
    }
    None
}

/// The keys whose value names a variant on the wire: a message's `type`, a call's `call`, a
/// reply's `reply`, `outcome`, `refusal` and a decision's `serve`.
const TAG_KEYS: [&str; 6] = ["type", "call", "reply", "outcome", "refusal", "serve"];

/// Checks that every variant a message names, it names by its name (SPEC.md §9.2): serde reads
/// an integer in a tag as the variant of that index, so `{"type":3}` would read as the fourth
/// kind of message and `"outcome":0` as the first outcome. A child that answers so speaks
/// another protocol, and a request so written is `malformed`. `Err` names the key and the
/// value; a line that is not JSON is left to the parse that reads it.
pub fn tags_are_names(line: &str) -> Result<(), String> {
    check_names(line, false)
}

/// [`tags_are_names`] for a request, which must also name each key of an object once (SPEC.md
/// §9.1): serde refuses a field it knows named twice, but keeps the last of a key it ignores
/// (`{"x":1,"x":2}` in a request's `call`, or at its top level). `Err` names the key.
pub fn request_names_are_sound(line: &str) -> Result<(), String> {
    check_names(line, true)
}

/// [`tags_are_names`], and with `keys_once` each object's keys distinct.
fn check_names(line: &str, keys_once: bool) -> Result<(), String> {
    use serde::de::{DeserializeSeed, Deserializer, Error, MapAccess, SeqAccess, Visitor};
    use std::collections::BTreeSet;
    use std::fmt;

    /// A value; under a tag key (`tag`) an integer is an error.
    struct Value {
        tag: Option<&'static str>,
        keys_once: bool,
    }
    impl<'de> DeserializeSeed<'de> for Value {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Value {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_bool<E: Error>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E: Error>(self, v: i64) -> Result<(), E> {
            match self.tag {
                Some(key) => Err(E::custom(format!("\"{key}\": {v} is a number, not the name of a variant"))),
                None => Ok(()),
            }
        }
        fn visit_u64<E: Error>(self, v: u64) -> Result<(), E> {
            match self.tag {
                Some(key) => Err(E::custom(format!("\"{key}\": {v} is a number, not the name of a variant"))),
                None => Ok(()),
            }
        }
        fn visit_f64<E: Error>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E: Error>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E: Error>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while seq.next_element_seed(Value { tag: None, keys_once: self.keys_once })?.is_some() {}
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            // A set, not a list: an object of many keys is checked in n log n.
            let mut seen = BTreeSet::new();
            while let Some((tag, key)) = map.next_key_seed(Key { keys_once: self.keys_once })? {
                if let Some(key) = key {
                    if seen.contains(&key) {
                        return Err(A::Error::custom(format!("the key \"{key}\" is named twice in one object")));
                    }
                    seen.insert(key);
                }
                map.next_value_seed(Value { tag, keys_once: self.keys_once })?;
            }
            Ok(())
        }
    }

    /// A key: which tag key it is, if any (escapes decoded), and with `keys_once` its text
    /// (borrowed from the line when it has no escapes).
    struct Key {
        keys_once: bool,
    }
    impl<'de> DeserializeSeed<'de> for Key {
        type Value = (Option<&'static str>, Option<Cow<'de, str>>);
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_str(self)
        }
    }
    impl<'de> Visitor<'de> for Key {
        type Value = (Option<&'static str>, Option<Cow<'de, str>>);
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a key")
        }
        fn visit_borrowed_str<E: Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok((TAG_KEYS.into_iter().find(|k| *k == v), self.keys_once.then_some(Cow::Borrowed(v))))
        }
        fn visit_str<E: Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok((TAG_KEYS.into_iter().find(|k| *k == v), self.keys_once.then(|| Cow::Owned(v.to_owned()))))
        }
    }

    let mut de = serde_json::Deserializer::from_str(line);
    match (Value { tag: None, keys_once }).deserialize(&mut de) {
        Ok(()) => Ok(()),
        // Not JSON (or nested too deep): the parse that reads the line says why.
        Err(e) if !e.is_data() => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// A response with the id of the request it answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// The request's id.
    pub id: u64,
    /// The answer.
    #[serde(flatten)]
    pub body: ResponseBody,
}

/// Which API an implementation speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    /// The commands, outcomes and refusals of SPEC.md §3-§5.
    Reference,
    /// The original service's functions (`decide`, `reservePartialGrant`, ...).
    Seed,
}

/// Where an implementation keeps its state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateKind {
    /// In the process: lost when it dies.
    Memory,
    /// Outside the process: what it acknowledged survives a SIGKILL and a restart.
    Durable,
}

/// What an implementation answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseBody {
    /// The answer to `hello`.
    HelloOk {
        /// The version it speaks.
        protocol: u32,
        /// Its name, for reports.
        #[serde(default)]
        name: String,
        /// Its API.
        api: Api,
        /// Whose clock it uses: it must be `harness`.
        clock: String,
        /// Where its state lives.
        state: StateKind,
    },
    /// The answer to `reset`.
    ResetOk,
    /// The answer to `call`.
    Reply {
        /// True when the call changed the state (false for a repeat or a refusal).
        fresh: bool,
        /// The outcome or refusal.
        reply: Reply,
    },
    /// The answer to `observe`.
    Observed(Observation),
    /// The request could not be served.
    Error {
        /// What went wrong.
        code: ErrorCode,
        /// True when the request surely took no effect.
        definite: bool,
        /// For people.
        #[serde(default)]
        text: String,
    },
}

/// What an implementation stores, as `observe` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    /// The pool balance (negative when a broken implementation drove it there).
    pub pool_sats: i64,
    /// Outstanding reservations; `None` when it keeps none (the seed).
    pub reserved_sats: Option<i64>,
    /// Sum of audit grants.
    pub granted_sats: i64,
    /// Number of audit grants.
    pub n_grants: u64,
    /// Everything ever credited, when the implementation shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credited_sats: Option<i64>,
    /// Every overrun reported, when the implementation shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overrun_sats: Option<i64>,
    /// Identities' standing, when the implementation shows them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identities: Option<Vec<IdentityView>>,
}

impl Observation {
    /// What a ledger with `totals` shows, every total given and no identities: what `serve`
    /// answers, and what `conform` expects after a step.
    pub fn of_totals(t: &ledger_core::Totals) -> Observation {
        let wide = |s: ledger_core::Sats| i64::try_from(s.to_u64()).expect("amounts are at most 2^63-1");
        Observation {
            pool_sats: wide(t.pool_sats),
            reserved_sats: Some(wide(t.reserved_sats)),
            granted_sats: wide(t.absorbed_sats),
            n_grants: t.n_grants,
            credited_sats: Some(wide(t.credited_sats)),
            overrun_sats: Some(wide(t.overrun_sats)),
            identities: None,
        }
    }
}

/// One identity as `observe` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityView {
    /// Whose.
    pub pubkey: Pubkey,
    /// Its tier.
    pub tier: Tier,
    /// Absorbed in the window that began at `absorbed_reset_at_ms`.
    pub sats_absorbed_today: Sats,
    /// Start of the window.
    pub absorbed_reset_at_ms: TimeMs,
    /// Its outstanding reservations, when the implementation shows them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserved_sats: Option<Sats>,
}

/// The error codes of SPEC.md §9.2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request could not be read; nothing happened.
    Malformed,
    /// A request, call or version the implementation does not have.
    NotSupported,
    /// An amount or time it cannot represent; nothing happened.
    OutOfRange,
    /// Refused before doing anything; a retry may succeed.
    Unavailable,
    /// The transaction was rolled back; nothing happened.
    Abort,
    /// The call may or may not have taken effect.
    Timeout,
    /// The implementation failed in the middle; the call may have taken effect.
    Crash,
}

impl ErrorCode {
    /// Whether an error of this code means the request surely took no effect.
    pub const fn is_definite(self) -> bool {
        !matches!(self, ErrorCode::Timeout | ErrorCode::Crash)
    }

    /// The code as the wire spells it.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Malformed => "malformed",
            ErrorCode::NotSupported => "not_supported",
            ErrorCode::OutOfRange => "out_of_range",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Abort => "abort",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Crash => "crash",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_core::{Config, Decision, Outcome, RequestId};

    fn round_trip_request(text: &str) -> Request {
        let r: Request = serde_json::from_str(text).expect(text);
        assert_eq!(serde_json::to_string(&r).expect("serializes"), text, "a request round-trips byte for byte");
        r
    }

    #[test]
    fn requests_are_the_lines_spec_md_shows() {
        let config = ConfigJson::from(Config::default());
        let hello = round_trip_request(
            r#"{"id":0,"type":"hello","protocol":1,"config":{"budget_sats":{"new":0,"established":50,"trusted":200,"elite":1000},"pool_initial_sats":10000,"credit_bps":1000,"reservation_ttl_ms":600000}}"#,
        );
        assert_eq!(hello.body, RequestBody::Hello { protocol: 1, config });
        let call = round_trip_request(
            r#"{"id":12,"type":"call","now_ms":1700000000012,"call":{"call":"credit","payment_id":5,"paid_sats":1000}}"#,
        );
        assert!(matches!(call.body, RequestBody::Call { call: Call::Credit { .. }, .. }));
        assert_eq!(round_trip_request(r#"{"id":14,"type":"observe"}"#).body, RequestBody::Observe);
    }

    /// A response's amount outside `0..=2^63-1` is named by its keys, as evidence of I1; the
    /// id a line names at its top level is the request it meant to answer.
    #[test]
    fn an_amount_out_of_range_is_evidence_of_i1_and_the_id_is_read_from_the_top_level() {
        let negative = r#"{"id":3,"type":"reply","fresh":true,"reply":{"reply":"refused","refusal":"insufficient_funds","available_sats":-1}}"#;
        assert_eq!(
            amount_out_of_range(negative).as_deref(),
            Some(
                "reply.available_sats is -1: a negative amount, evidence that I1 broke (the pool never negative, \
                 and no amount overflows)"
            )
        );
        let beyond = amount_out_of_range(r#"{"id":3,"type":"observed","pool_sats":9223372036854775808}"#);
        assert!(beyond.is_some_and(|b| b.starts_with("pool_sats is 9223372036854775808: an amount beyond 2^63-1")));
        // A count is no amount, and an amount in range says nothing.
        assert_eq!(amount_out_of_range(r#"{"id":3,"type":"observed","pool_sats":5,"n_grants":-1}"#), None);
        assert_eq!(amount_out_of_range("Traceback (most recent call last)"), None);
        assert_eq!(top_level_id(r#"{"type":"reply","id":42,"reply":{"id":7}}"#), Some(42));
        assert_eq!(top_level_id(r#"{"reply":{"id":7},"id":-1}"#), None);
        assert_eq!(top_level_id(r#"{"id":"7"}"#), None);
        assert_eq!(top_level_id("not json"), None);
    }

    #[test]
    fn responses_are_the_lines_spec_md_shows() {
        let r: Response = serde_json::from_str(
            r#"{"id":8,"type":"reply","fresh":true,"reply":{"reply":"ok","outcome":"decided","decision":{"serve":"free","reserved_sats":120}}}"#,
        )
        .expect("parses");
        let free = Decision::Free { reserved_sats: Sats::new(120).expect("in range") };
        assert_eq!(r.body, ResponseBody::Reply { fresh: true, reply: Reply::Ok(Outcome::Decided { decision: free }) });
        let e: Response =
            serde_json::from_str(r#"{"id":9,"type":"error","code":"timeout","definite":false,"text":"x"}"#)
                .expect("parses");
        assert!(matches!(e.body, ResponseBody::Error { code: ErrorCode::Timeout, definite: false, .. }));
        let o: Response = serde_json::from_str(
            r#"{"id":14,"type":"observed","pool_sats":-3,"reserved_sats":null,"granted_sats":800,"n_grants":3}"#,
        )
        .expect("parses");
        assert!(matches!(o.body, ResponseBody::Observed(Observation { pool_sats: -3, reserved_sats: None, .. })));
        let _ = RequestId(0);
    }
}
