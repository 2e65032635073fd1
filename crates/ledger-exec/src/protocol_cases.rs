//! The error rules of the engine protocol (SPEC.md §9.1 and §9.2) as cases an implementation
//! answers over the wire (`ledger-sim conform --exec COMMAND`, after the vectors): requests the
//! harness never sends in a run (an unknown type, a key named twice, an integer beyond
//! `2^63-1`, `1e3`, an invalid config, a line of white space...), each with the answer SPEC.md
//! requires. A run never meets them, so without these cases an implementation that answers
//! them wrongly would pass every other check.
//!
//! Each case is one line sent to a child that has answered `hello`, with the id the child's
//! numbering gives it. A case that expects no answer (a line of white space) is followed by an
//! `observe`, whose answer must come next. No case depends on what another did, so the cases
//! share one child; the first answer the harness cannot read ends them (the child can no
//! longer be trusted), and the rest are reported as not run.

use serde::Serialize;

use crate::child::{Child, ExecError};
use crate::protocol::{ErrorCode, ResponseBody};

/// What a case's line must be answered with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// An `error` with this code.
    Error(ErrorCode),
    /// A `reply` (the line is a call the implementation serves).
    Reply,
    /// Nothing: the next answer is that of the `observe` sent after it.
    NoAnswer,
}

impl Expect {
    fn words(self) -> String {
        match self {
            Expect::Error(code) => format!("error {}", code.as_str()),
            Expect::Reply => "a reply".to_owned(),
            Expect::NoAnswer => "no answer (the observe after it answered first)".to_owned(),
        }
    }
}

/// One case.
#[derive(Clone, Debug)]
pub struct Case {
    /// Its name (`protocol/duplicate-key`).
    pub name: &'static str,
    /// What SPEC.md says, in a few words, with its section.
    pub spec: &'static str,
    /// The line, with `{id}` where its id goes.
    pub line: String,
    /// The answer required.
    pub expect: Expect,
}

const CONFIG: &str = r#"{"budget_sats":{"new":0,"established":50,"trusted":200,"elite":1000},"pool_initial_sats":10000,"credit_bps":1000,"reservation_ttl_ms":600000"#;

/// The cases, in the order they are sent.
pub fn cases() -> Vec<Case> {
    let reset = |extra: &str| format!(r#"{{"id":{{id}},"type":"reset","config":{CONFIG}{extra}}}}}"#);
    let reset_with = |config: &str| format!(r#"{{"id":{{id}},"type":"reset","config":{config}}}"#);
    use ErrorCode::{Malformed, NotSupported, OutOfRange};
    use Expect::{Error, NoAnswer, Reply};
    vec![
        Case {
            name: "protocol/unknown-type",
            spec: "§9.1: a type the protocol does not define is malformed",
            line: r#"{"id":{id},"type":"frobnicate"}"#.to_owned(),
            expect: Error(Malformed),
        },
        Case {
            name: "protocol/unknown-call",
            spec: "§9.1: a call the protocol does not define is malformed",
            line: r#"{"id":{id},"type":"call","now_ms":1700000000000,"call":{"call":"recordGrant"}}"#.to_owned(),
            expect: Error(Malformed),
        },
        Case {
            name: "protocol/duplicate-key",
            spec: "§9.1: a request in which an object names a key twice is malformed",
            line: r#"{"id":{id},"type":"call","now_ms":1700000000000,"call":{"call":"expire","call":"expire"}}"#.to_owned(),
            expect: Error(Malformed),
        },
        Case {
            name: "protocol/type-as-number",
            spec: "§9.1: a type named by a number is malformed",
            line: r#"{"id":{id},"type":3}"#.to_owned(),
            expect: Error(Malformed),
        },
        Case {
            name: "protocol/missing-field",
            spec: "§9.1: a missing field is malformed",
            line: r#"{"id":{id},"type":"call","now_ms":1700000000000,"call":{"call":"credit","payment_id":1}}"#.to_owned(),
            expect: Error(Malformed),
        },
        Case {
            name: "protocol/fraction",
            spec: "§9.1: a number that is not an integer (1.5) is malformed",
            line: r#"{"id":{id},"type":"call","now_ms":1700000000000.5,"call":{"call":"expire"}}"#.to_owned(),
            expect: Error(Malformed),
        },
        Case {
            name: "protocol/exponent",
            spec: "§9.1: a number written with an exponent (1e3) is malformed",
            line: r#"{"id":{id},"type":"call","now_ms":1700000000000,"call":{"call":"credit","payment_id":1,"paid_sats":1e3}}"#.to_owned(),
            expect: Error(Malformed),
        },
        Case {
            name: "protocol/above-2^63-1",
            spec: "§9.1: an integer above 2^63-1 is out_of_range",
            line: r#"{"id":{id},"type":"call","now_ms":1700000000000,"call":{"call":"credit","payment_id":1,"paid_sats":9223372036854775808}}"#.to_owned(),
            expect: Error(OutOfRange),
        },
        Case {
            name: "protocol/negative",
            spec: "§9.1: a negative integer is out_of_range",
            line: r#"{"id":{id},"type":"call","now_ms":-1,"call":{"call":"expire"}}"#.to_owned(),
            expect: Error(OutOfRange),
        },
        Case {
            name: "protocol/400-digits",
            spec: "§9.1: an integer is judged by its digits however many there are: 400 digits is out_of_range",
            line: format!(
                r#"{{"id":{{id}},"type":"call","now_ms":1700000000000,"call":{{"call":"credit","payment_id":1,"paid_sats":1{}}}}}"#,
                "0".repeat(399)
            ),
            expect: Error(OutOfRange),
        },
        Case {
            name: "protocol/2^63-1-is-held",
            spec: "§9.1: every integer of 0..=2^63-1 is held exactly (a payment of 2^63-1 sats is served)",
            line: r#"{"id":{id},"type":"call","now_ms":1700000000000,"call":{"call":"credit","payment_id":9223372036854775807,"paid_sats":9223372036854775807}}"#.to_owned(),
            expect: Reply,
        },
        Case {
            name: "protocol/unknown-key-ignored",
            spec: "§9.1: a key this version does not define, outside a config, is ignored",
            line: r#"{"id":{id},"type":"call","now_ms":1700000000000,"trace":"x","call":{"call":"expire","note":"a later version's"}}"#.to_owned(),
            expect: Reply,
        },
        Case { name: "protocol/empty-line", spec: "§9.1: an empty line is not a request: no answer", line: String::new(), expect: NoAnswer },
        Case {
            name: "protocol/white-space-line",
            spec: "§9.1: a line of JSON white space only is not a request: no answer",
            line: " \t ".to_owned(),
            expect: NoAnswer,
        },
        Case {
            name: "protocol/other-version",
            spec: "§9.2: a hello of another protocol version is not_supported",
            line: format!(r#"{{"id":{{id}},"type":"hello","protocol":2,"config":{CONFIG}}}}}"#),
            expect: Error(NotSupported),
        },
        Case {
            name: "protocol/config-unknown-key",
            spec: "§9.1, §9.2: a config with a key the protocol does not define is malformed",
            line: reset(r#","credit_pct":10"#),
            expect: Error(Malformed),
        },
        Case {
            name: "protocol/config-credit-bps-10001",
            spec: "§9.2: a config beyond the ledger's limits (credit_bps above 10,000) is malformed",
            line: reset_with(
                r#"{"budget_sats":{"new":0,"established":50,"trusted":200,"elite":1000},"pool_initial_sats":10000,"credit_bps":10001,"reservation_ttl_ms":600000}"#,
            ),
            expect: Error(Malformed),
        },
        Case {
            name: "protocol/config-ttl-0",
            spec: "§9.2: a config beyond the ledger's limits (reservation_ttl_ms of 0) is malformed",
            line: reset_with(
                r#"{"budget_sats":{"new":0,"established":50,"trusted":200,"elite":1000},"pool_initial_sats":10000,"credit_bps":1000,"reservation_ttl_ms":0}"#,
            ),
            expect: Error(Malformed),
        },
        Case {
            name: "protocol/config-above-2^63-1",
            spec: "§9.2: a config with an integer above 2^63-1 is out_of_range",
            line: reset_with(
                r#"{"budget_sats":{"new":0,"established":50,"trusted":200,"elite":1000},"pool_initial_sats":9223372036854775808,"credit_bps":1000,"reservation_ttl_ms":600000}"#,
            ),
            expect: Error(OutOfRange),
        },
    ]
}

/// A case answered otherwise than SPEC.md requires.
#[derive(Clone, Debug, Serialize)]
pub struct Failure {
    /// The case.
    pub case: String,
    /// What SPEC.md requires.
    pub spec: String,
    /// The line sent (cut to its first 200 characters).
    pub sent: String,
    /// The answer required, in words.
    pub expected: String,
    /// The answer received, in words (or what the harness could not read).
    pub got: String,
}

/// What the cases came to.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Outcome {
    /// Cases answered as SPEC.md requires.
    pub passed: Vec<String>,
    /// Cases answered otherwise.
    pub failed: Vec<Failure>,
    /// Cases not run: after an answer the harness could not read, the child is not trusted.
    pub not_run: Vec<String>,
}

fn cut(line: &str) -> String {
    if line.chars().count() <= 200 {
        line.to_owned()
    } else {
        format!("{}... ({} bytes)", line.chars().take(200).collect::<String>(), line.len())
    }
}

fn words(body: &ResponseBody) -> String {
    match body {
        ResponseBody::Error { code, text, .. } => format!("error {} ({text})", code.as_str()),
        other => format!("a {} answer", crate::child::kind(other)),
    }
}

/// Runs every case on `child`, which has answered `hello` and has nothing in flight.
pub fn run(child: &mut Child) -> Outcome {
    let mut out = Outcome::default();
    let all = cases();
    for (i, case) in all.iter().enumerate() {
        let line = case.line.replace("{id}", &child.next_id().to_string());
        let failure = |got: String| Failure {
            case: case.name.to_owned(),
            spec: case.spec.to_owned(),
            sent: cut(&line),
            expected: case.expect.words(),
            got,
        };
        let answered = match case.expect {
            Expect::NoAnswer => child.send_raw(&line, None).and_then(|_| {
                let observe = child.send(crate::protocol::RequestBody::Observe)?;
                child.flush()?;
                let r = child.recv()?;
                Ok((r.id == observe).then_some(()).ok_or_else(|| words(&r.body)))
            }),
            Expect::Error(_) | Expect::Reply => child.send_raw(&line, Some("a protocol case")).and_then(|_| {
                child.flush()?;
                let r = child.recv()?;
                let right = match (case.expect, &r.body) {
                    (Expect::Error(want), ResponseBody::Error { code, .. }) => *code == want,
                    (Expect::Reply, ResponseBody::Reply { .. }) => true,
                    _ => false,
                };
                Ok(right.then_some(()).ok_or_else(|| words(&r.body)))
            }),
        };
        match answered {
            Ok(Ok(())) => out.passed.push(case.name.to_owned()),
            Ok(Err(got)) => out.failed.push(failure(got)),
            Err(e) => {
                out.failed.push(failure(unreadable(&e)));
                out.not_run.extend(all[i + 1..].iter().map(|c| c.name.to_owned()));
                break;
            }
        }
    }
    out
}

fn unreadable(e: &ExecError) -> String {
    format!("an answer the harness could not take: {e}")
}
