//! The conformance vectors (`fixtures/conformance/`) replayed through the protocol
//! (`ledger-sim conform --exec COMMAND`): each case from a `reset` under its configuration,
//! each step's reply, freshness and totals compared with the case's.
//!
//! A failure is told in the protocol's own words, for a team that wrote its implementation
//! from SPEC.md alone and knows the wire, not this crate's types: the request sent, the answer
//! expected and the answer received, each as a line of JSON, and every field that differs,
//! named by its path in that JSON. The requests of the case before the failing one come with
//! it, so that the case can be followed without the vector file.
//!
//! An implementation that fails a request of a case on its own (it exits, does not answer
//! within the bound, or writes a line that is not a protocol 1 answer to it) fails that case
//! ([`Broke`]); the next case runs on a new child, started with the same command.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use ledger_core::{Command, Ledger, Pubkey, RequestId, Sats};
use ledger_harness::conformance::Segment;
use ledger_harness::{Call, Reply};

use crate::child::{Child, ExecError};
use crate::engine::FailureKind;
use crate::protocol::{Api, IdentityView, Observation, Request, RequestBody, Response, ResponseBody};
use crate::serve::is_fresh;

/// The first step of a case where the implementation answered otherwise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The vector file.
    pub file: String,
    /// The case.
    pub case: String,
    /// The ids of the SPEC.md rules the case pins (its header's `rules`): the rule most likely
    /// broken.
    pub rules: Vec<String>,
    /// The failing step's line in the file (the header's when `reset` was answered wrongly).
    pub line: usize,
    /// The failing step's number in the case, from 1; 0 when `reset` was answered wrongly.
    pub step: usize,
    /// What differed, in a few words (`expire: the reply differs`).
    pub what: String,
    /// The request of the failing step, one line of JSON as it was sent.
    pub sent: String,
    /// The `observe` that followed it, when its answer is what differed.
    pub observe: Option<String>,
    /// The answer the case expects, as JSON. A reply's `fresh` is left out where the protocol
    /// does not read it (SPEC.md §9.2); an observation holds only what the implementation
    /// chose to show.
    pub expected: String,
    /// The answer received, as JSON (an error's text with any password hidden); `null` when
    /// the implementation gave none it could read ([`Failure::broke`]).
    pub got: String,
    /// Each field of `expected` that `got` does not match, in the order `expected` has them.
    pub differs: Vec<Difference>,
    /// The requests of the case before the failing step (its `reset` first; the `observe`
    /// after each step is not listed), each with its line in the file.
    pub before: Vec<SentLine>,
    /// How the implementation failed the request on its own, when it did: it crashed, hung or
    /// wrote a line that is not an answer to it.
    pub broke: Option<Broke>,
}

/// How an implementation failed a request of a case on its own: no answer to compare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broke {
    /// `crash` (it exited), `no_answer` (not within `--exec-timeout`) or `bad_answer` (a line
    /// that is not a protocol 1 answer to the request).
    pub kind: FailureKind,
    /// What it did, naming the request (`did not answer record within 10 s (--exec-timeout)`),
    /// the line it wrote quoted.
    pub how: String,
    /// The line it wrote, shown safely and shortened when long, for a `bad_answer` whose line
    /// could be kept.
    pub line: Option<String>,
}

impl Broke {
    /// The failure `e` of the implementation when it was sent `what`; `None` for an error of
    /// the harness's own (a child that could not be started).
    fn of(e: &ExecError, what: &str) -> Option<Broke> {
        let (kind, how) = FailureKind::of_error(e, what)?;
        let line = match e {
            ExecError::Garbled { line, .. } if !line.is_empty() => Some(line.clone()),
            _ => None,
        };
        Some(Broke { kind, how: ledger_harness::text::shown(&how), line })
    }

    /// What failed, in a few words, for the head of a failing case.
    fn what(&self) -> &'static str {
        match self.kind {
            FailureKind::Crash => "the implementation exited before answering (crash)",
            FailureKind::NoAnswer => "no answer within --exec-timeout (no_answer)",
            FailureKind::BadAnswer => "the answer is not a protocol 1 response (bad_answer)",
        }
    }
}

/// A request sent, with the line of the vector file it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentLine {
    /// The header's line for the `reset`, the step's for a call.
    pub line: usize,
    /// One line of JSON, as it was sent.
    pub request: String,
}

/// One field whose value differs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    /// Its path in the answer's JSON (`reply.released`, `absorbed_reset_at_ms`).
    pub field: String,
    /// The value expected.
    pub expected: Value,
    /// The value received; `None` when the answer has no such field.
    pub got: Option<Value>,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.got {
            Some(got) => write!(f, "{}: expected {}, got {got}", self.field, self.expected),
            None => write!(f, "{}: expected {}, got no such field", self.field, self.expected),
        }
    }
}

impl Failure {
    /// The failure in one line: what differed and each field, or what the implementation did.
    pub fn detail(&self) -> String {
        let fields: Vec<String> = self.differs.iter().map(Difference::to_string).collect();
        match &self.broke {
            Some(broke) => format!("{}: {}", self.what, broke.how),
            None if fields.is_empty() => self.what.clone(),
            None => format!("{}: {}", self.what, fields.join("; ")),
        }
    }
}

/// What a conformance run found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Cases run.
    pub cases: usize,
    /// Steps run.
    pub steps: usize,
    /// One per failing case.
    pub failures: Vec<Failure>,
    /// The cases not run (file, case), and why: the implementation failed a case and could
    /// not be started again.
    pub not_run: Vec<(String, String)>,
    /// Why the cases of [`Report::not_run`] were not.
    pub stopped: Option<String>,
}

/// The call a conformance step's command is, with the fields only the seed's API reads filled
/// from the case so far (the pubkey that decided a request; a reservation's amount is unknown
/// to the vectors and sent as 0).
fn call_of(command: &Command, holders: &BTreeMap<RequestId, Pubkey>) -> Call {
    match *command {
        Command::SetTier { pubkey, tier } => Call::SetTier { pubkey, tier },
        Command::Decide { request_id, pubkey, estimated_sats } => Call::Decide { request_id, pubkey, estimated_sats },
        Command::ReservePartial { request_id, pubkey, amount_sats } => {
            Call::ReservePartial { request_id, pubkey, amount_sats }
        }
        Command::Release { request_id } => Call::Release { request_id, amount_sats: Sats::ZERO },
        Command::Record { request_id, actual_sats } => Call::Record {
            request_id,
            pubkey: holders.get(&request_id).copied().unwrap_or(Pubkey::from_bytes([0; 32])),
            actual_sats,
            reserved_sats: Sats::ZERO,
        },
        Command::Credit { payment_id, paid_sats } => Call::Credit { payment_id, paid_sats },
        Command::Expire => Call::Expire,
    }
}

/// One answer judged: what was expected and what came, both as the wire has them.
struct Judged {
    expected: String,
    got: String,
    differs: Vec<Difference>,
}

/// Compares `expected` with `got` field by field (`root` names the whole when it is not an
/// object on both sides).
fn judge(expected: &impl Serialize, got: &impl Serialize, root: &str) -> Judged {
    let mut differs = Vec::new();
    differences(&value(expected), &value(got), "", root, &mut differs);
    let expected = text(expected);
    // A value's keys are sorted; the fields are listed in the order the answer has them.
    differs.sort_by_key(|d| position(&expected, &d.field));
    Judged { expected, got: text(got), differs }
}

/// Where the field at `path` (`reply.released[0]`) is in the JSON `text`: each key of the
/// path looked for after the one before it. The answers' strings are names and hex, which
/// never hold a quoted key.
fn position(text: &str, path: &str) -> usize {
    let mut at = 0;
    for key in path.split('.') {
        let key = format!("\"{}\":", key.split('[').next().unwrap_or(key));
        match text[at..].find(&key) {
            Some(i) => at += i + key.len(),
            None => break,
        }
    }
    at
}

fn value(v: &impl Serialize) -> Value {
    serde_json::to_value(v).expect("protocol values serialize")
}

fn text(v: &impl Serialize) -> String {
    serde_json::to_string(v).expect("protocol values serialize")
}

/// The keys whose string value says which kind of object holds them (SPEC.md §9.1). When one
/// differs, the rest of that object is of another kind and is not compared field by field.
const TAGS: [&str; 6] = ["type", "call", "reply", "outcome", "refusal", "serve"];

/// Pushes onto `out` each field of `expected` that `got` does not match, by its path from
/// `path` (`root` when the path is empty). A field `got` has and `expected` lacks is not
/// compared: that is how a field the protocol does not read is left out.
fn differences(expected: &Value, got: &Value, path: &str, root: &str, out: &mut Vec<Difference>) {
    let at = |key: &str| if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") };
    match (expected, got) {
        (Value::Object(e), Value::Object(g)) => {
            let tag = TAGS.iter().find(|&&t| e.get(t).is_some_and(Value::is_string) && e.get(t) != g.get(t));
            if let Some(&tag) = tag {
                out.push(Difference { field: at(tag), expected: e[tag].clone(), got: g.get(tag).cloned() });
                return;
            }
            for (key, e) in e {
                match g.get(key) {
                    Some(g) => differences(e, g, &at(key), root, out),
                    None => out.push(Difference { field: at(key), expected: e.clone(), got: None }),
                }
            }
        }
        (Value::Array(e), Value::Array(g)) if e.len() == g.len() => {
            for (i, (e, g)) in e.iter().zip(g).enumerate() {
                let here = if path.is_empty() { format!("{root}[{i}]") } else { format!("{path}[{i}]") };
                differences(e, g, &here, root, out);
            }
        }
        (e, g) if e != g => out.push(Difference {
            field: if path.is_empty() { root.to_owned() } else { path.to_owned() },
            expected: e.clone(),
            got: Some(g.clone()),
        }),
        _ => {}
    }
}

/// A reply as the case expects it: `fresh` is given only where the protocol reads it.
#[derive(Serialize)]
struct ExpectedReply<'a> {
    id: u64,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    fresh: Option<bool>,
    reply: &'a Reply,
}

/// The request `body` as it went out under `id`, one line of JSON.
fn wire(id: u64, body: RequestBody) -> String {
    serde_json::to_string(&Request { id, body }).expect("requests serialize")
}

/// `response` as the report shows it: an error's text may quote a database URL, and its
/// password is hidden.
fn redacted(response: Response) -> Response {
    match response.body {
        ResponseBody::Error { code, definite, text } => Response {
            id: response.id,
            body: ResponseBody::Error { code, definite, text: ledger_harness::text::redacted_text(&text) },
        },
        _ => response,
    }
}

/// Runs every case of `files` on `child`, which must speak the reference API. A case in which
/// the implementation failed on its own ([`Broke`]) fails, and the next runs on a new child
/// started with the same command (left in `child`); when none can be started, the cases left
/// are not run ([`Report::not_run`]).
pub fn conform(child: &mut Child, files: &[(String, Vec<Segment>)]) -> Result<Report, ExecError> {
    if child.hello().api != Api::Reference {
        return Err(ExecError::Handshake {
            command: child.command().to_owned(),
            why: "speaks the seed's API; the conformance vectors are the reference API's (SPEC.md §3-§5)".to_owned(),
        });
    }
    let mut report = Report::default();
    for (file, segments) in files {
        for segment in segments {
            if report.stopped.is_some() {
                report.not_run.push((file.clone(), segment.header.case.clone()));
                continue;
            }
            if child.is_broken() {
                let (command, env, timeout) = (child.command().to_owned(), child.env().to_vec(), child.timeout());
                let last = report.failures.last().map_or_else(String::new, |f| f.case.clone());
                crate::say!(
                    "ledger-sim: `{command}` failed in case {last}: killing its process group and starting it again"
                );
                match Child::start(&command, &env, &segment.header.config, timeout) {
                    Ok(fresh) => *child = fresh,
                    Err(e) => {
                        let why = ledger_harness::text::shown(&format!(
                            "{e}; it was started again because it failed in case {last}, and could not be"
                        ));
                        crate::say!("ledger-sim: {why}: the cases after it are not run");
                        report.stopped = Some(why);
                        report.not_run.push((file.clone(), segment.header.case.clone()));
                        continue;
                    }
                }
            }
            report.cases += 1;
            let (steps, failure) = run_case(child, file, segment)?;
            report.steps += steps;
            report.failures.extend(failure);
        }
    }
    Ok(report)
}

/// Sends `body` alone and waits for its answer, sent under the id it returns; an answer the
/// implementation could not give is its failure ([`Broke`]), an error of the harness's own an
/// error.
fn ask(child: &mut Child, body: RequestBody, what: &str) -> Result<(u64, Result<Response, Broke>), ExecError> {
    let id = child.next_id();
    match child.ask(body) {
        Ok(answer) => Ok((id, Ok(answer))),
        Err(e) => match Broke::of(&e, what) {
            Some(broke) => Ok((id, Err(broke))),
            None => Err(e),
        },
    }
}

/// Runs one case from its `reset` to its first failing step: the steps run, and the failure.
fn run_case(child: &mut Child, file: &str, segment: &Segment) -> Result<(usize, Option<Failure>), ExecError> {
    let header = &segment.header;
    let fail =
        |line: usize, step: usize, what: String, sent: String, observe: Option<String>, judged: Judged| Failure {
            file: file.to_owned(),
            case: header.case.clone(),
            rules: header.rules.clone(),
            line,
            step,
            what,
            sent,
            observe,
            expected: judged.expected,
            got: judged.got,
            differs: judged.differs,
            before: Vec::new(),
            broke: None,
        };
    // A request the implementation failed: what was expected, and `null` for what came.
    let broken = |line: usize,
                  step: usize,
                  what: String,
                  sent: String,
                  observe: Option<String>,
                  expected: String,
                  broke: Broke| {
        let what = format!("{what}{}", broke.what());
        let judged = Judged { expected, got: "null".to_owned(), differs: Vec::new() };
        Failure { broke: Some(broke), ..fail(line, step, what, sent, observe, judged) }
    };
    let reset = RequestBody::Reset { config: header.config.into() };
    let (id, answer) = ask(child, reset.clone(), "reset")?;
    let answer = match answer {
        Ok(answer) => answer,
        Err(broke) => {
            let expected = text(&Response { id, body: ResponseBody::ResetOk });
            return Ok((
                0,
                Some(broken(segment.line, 0, "reset: ".to_owned(), wire(id, reset), None, expected, broke)),
            ));
        }
    };
    let reset = wire(answer.id, reset);
    if answer.body != ResponseBody::ResetOk {
        let expected = Response { id: answer.id, body: ResponseBody::ResetOk };
        let judged = judge(&expected, &redacted(answer), "response");
        return Ok((0, Some(fail(segment.line, 0, "reset: the answer differs".to_owned(), reset, None, judged))));
    }
    let mut before = vec![SentLine { line: segment.line, request: reset }];
    let mut reference = ledger_core::Ledger::new(header.config);
    let mut holders = BTreeMap::new();
    let mut journal = Vec::new();
    for (n, (line, step)) in segment.steps.iter().enumerate() {
        let name = step.command.name();
        if let Command::Decide { request_id, pubkey, .. } = step.command {
            holders.entry(request_id).or_insert(pubkey);
        }
        let (want, fresh) = expected_reply(&mut reference, &mut journal, step);
        let call = RequestBody::Call { now_ms: step.now, call: call_of(&step.command, &holders) };
        let (id, answer) = ask(child, call.clone(), name)?;
        let answer = match answer {
            Ok(answer) => answer,
            Err(broke) => {
                let expected = text(&ExpectedReply { id, kind: "reply", fresh, reply: &want });
                let failure = broken(*line, n + 1, format!("{name}: "), wire(id, call), None, expected, broke);
                return Ok((n + 1, Some(Failure { before, ..failure })));
            }
        };
        let sent = wire(answer.id, call);
        let expected = ExpectedReply { id: answer.id, kind: "reply", fresh, reply: &want };
        let judged = judge(&expected, &redacted(answer), "response");
        if !judged.differs.is_empty() {
            let what = if judged.differs.iter().all(|d| d.field == "fresh") {
                format!("{name}: the reply is right but its \"fresh\" is not (SPEC.md §9.2)")
            } else {
                format!("{name}: the reply differs")
            };
            return Ok((n + 1, Some(Failure { before, ..fail(*line, n + 1, what, sent, None, judged) })));
        }
        let (id, answer) = ask(child, RequestBody::Observe, "observe")?;
        let answer = match answer {
            Ok(answer) => answer,
            Err(broke) => {
                let observe = wire(id, RequestBody::Observe);
                let expected =
                    text(&Response { id, body: ResponseBody::Observed(Observation::of_totals(&step.totals)) });
                let what = format!("after {name}: observe: ");
                let failure = broken(*line, n + 1, what, sent, Some(observe), expected, broke);
                return Ok((n + 1, Some(Failure { before, ..failure })));
            }
        };
        let observe = wire(answer.id, RequestBody::Observe);
        if let Some((what, judged)) = judge_observed(step, answer) {
            let failure = fail(*line, n + 1, format!("after {name}: {what}"), sent, Some(observe), judged);
            return Ok((n + 1, Some(Failure { before, ..failure })));
        }
        before.push(SentLine { line: *line, request: sent });
    }
    Ok((segment.steps.len(), None))
}

/// The answer to the `observe` after `step`, judged against the step's totals and then the
/// standing of the identity it names: what differs, if anything.
fn judge_observed(step: &ledger_harness::conformance::Step, answer: Response) -> Option<(&'static str, Judged)> {
    let id = answer.id;
    let mut want = Observation::of_totals(&step.totals);
    let mut got = match answer.body {
        ResponseBody::Observed(got) => got,
        _ => {
            let expected = Response { id, body: ResponseBody::Observed(want) };
            return Some(("observe was answered otherwise", judge(&expected, &redacted(answer), "response")));
        }
    };
    let identities = got.identities.take();
    // The totals an implementation does not show are not judged.
    want.credited_sats = want.credited_sats.filter(|_| got.credited_sats.is_some());
    want.overrun_sats = want.overrun_sats.filter(|_| got.overrun_sats.is_some());
    let judged = judge(
        &Response { id, body: ResponseBody::Observed(want) },
        &Response { id, body: ResponseBody::Observed(got) },
        "response",
    );
    if !judged.differs.is_empty() {
        return Some(("the totals observed differ", judged));
    }
    // The standing, when the implementation shows identities.
    let (ids, pubkey, standing) =
        (identities?, ledger_harness::conformance::named_pubkey(&step.command)?, step.identity?);
    let observed = ids.iter().find(|i| i.pubkey == pubkey).copied();
    let want = IdentityView {
        pubkey,
        tier: standing.tier,
        sats_absorbed_today: standing.sats_absorbed_today,
        absorbed_reset_at_ms: standing.absorbed_reset_at_ms,
        // Judged only when the implementation shows it.
        reserved_sats: Some(standing.reserved_sats).filter(|_| observed.is_none_or(|i| i.reserved_sats.is_some())),
    };
    let judged = judge(&want, &observed, "identity");
    (!judged.differs.is_empty()).then_some(("the standing of its identity differs (observe's identities)", judged))
}

/// The reference's reply to `step`, and the `fresh` it must carry where the protocol reads it:
/// where the outcome moves sats (SPEC.md §9.2).
fn expected_reply(
    reference: &mut Ledger,
    journal: &mut Vec<ledger_core::Movement>,
    step: &ledger_harness::conformance::Step,
) -> (Reply, Option<bool>) {
    journal.clear();
    let result = reference.apply(&step.command, step.now, journal);
    let fresh = is_fresh(&step.command, &result, journal);
    let moves = result.as_ref().is_ok_and(|o| {
        ledger_core::implied_movements(&step.command, o, Some(Pubkey::from_bytes([0; 32]))).is_ok_and(|m| !m.is_empty())
    });
    (Reply::from(step.expect.to_result()), moves.then_some(fresh))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn diff(expected: Value, got: Value) -> Vec<String> {
        let mut out = Vec::new();
        differences(&expected, &got, "", "identity", &mut out);
        out.iter().map(Difference::to_string).collect()
    }

    #[test]
    fn each_differing_field_is_named_by_its_path() {
        let expected = json!({"id": 3, "type": "reply", "fresh": true, "reply": {"reply": "ok", "outcome": "expired", "released": []}});
        let got = json!({"id": 3, "type": "reply", "fresh": false, "reply": {"reply": "ok", "outcome": "expired", "released": [[1, 40]]}});
        assert_eq!(
            diff(expected, got),
            ["fresh: expected true, got false", "reply.released: expected [], got [[1,40]]"]
        );
        let expected = json!({"released": [[1, 40], [2, 5]]});
        let got = json!({"released": [[1, 40], [2, 6]]});
        assert_eq!(diff(expected, got), ["released[1][1]: expected 5, got 6"]);
    }

    #[test]
    fn an_object_of_another_kind_is_named_by_its_tag_only() {
        let expected =
            json!({"id": 3, "type": "reply", "reply": {"reply": "ok", "outcome": "expired", "released": []}});
        let got =
            json!({"id": 3, "type": "reply", "fresh": false, "reply": {"reply": "refused", "refusal": "overflow"}});
        assert_eq!(diff(expected.clone(), got), [r#"reply.reply: expected "ok", got "refused""#]);
        let got = json!({"id": 3, "type": "error", "code": "crash", "definite": false, "text": ""});
        assert_eq!(diff(expected, got), [r#"type: expected "reply", got "error""#]);
    }

    #[test]
    fn a_field_only_the_answer_has_is_not_judged_and_a_missing_one_is() {
        assert!(diff(json!({"a": 1}), json!({"a": 1, "fresh": true})).is_empty());
        assert_eq!(diff(json!({"a": 1, "b": null}), json!({"a": 1})), ["b: expected null, got no such field"]);
        assert_eq!(diff(json!({"a": 1}), json!(null)), [r#"identity: expected {"a":1}, got null"#]);
    }

    #[test]
    fn the_fields_come_in_the_order_of_the_expected_answer() {
        #[derive(Serialize)]
        struct Standing {
            tier: &'static str,
            absorbed_reset_at_ms: u64,
        }
        let judged = judge(
            &Standing { tier: "elite", absorbed_reset_at_ms: 2 },
            &Standing { tier: "new", absorbed_reset_at_ms: 1 },
            "identity",
        );
        assert_eq!(judged.expected, r#"{"tier":"elite","absorbed_reset_at_ms":2}"#);
        let fields: Vec<&str> = judged.differs.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(fields, ["tier", "absorbed_reset_at_ms"]);
        let reply = r#"{"id":1,"type":"reply","reply":{"reply":"ok","outcome":"recorded","absorbed_sats":1}}"#;
        assert!(position(reply, "reply.reply") > position(reply, "reply"));
        assert!(position(reply, "reply.absorbed_sats") > position(reply, "reply.outcome"));
    }
}
