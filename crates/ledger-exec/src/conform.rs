//! The conformance vectors (`fixtures/conformance/`) replayed through the protocol
//! (`ledger-sim conform --exec COMMAND`): each case from a `reset` under its configuration,
//! each step's reply, freshness and totals compared with the case's.

use std::collections::BTreeMap;

use ledger_core::{Command, Ledger, Pubkey, RequestId, Sats};
use ledger_harness::conformance::Segment;
use ledger_harness::{Call, Reply};

use crate::child::{error_text, kind, Child, ExecError};
use crate::protocol::{Api, Observation, RequestBody, ResponseBody};
use crate::serve::is_fresh;

/// The first step of a case where the implementation answered otherwise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The vector file.
    pub file: String,
    /// The case.
    pub case: String,
    /// The step's line in the file.
    pub line: usize,
    /// What differed, both sides.
    pub detail: String,
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

/// Runs every case of `files` on `child`, which must speak the reference API.
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
            report.cases += 1;
            let fail = |line: usize, detail: String| Failure {
                file: file.clone(),
                case: segment.header.case.clone(),
                line,
                detail,
            };
            match child.ask(RequestBody::Reset { config: segment.header.config.into() })?.body {
                ResponseBody::ResetOk => {}
                other => {
                    report.failures.push(fail(segment.line, format!("answered reset with {}", describe(&other))));
                    continue;
                }
            }
            let mut reference = Ledger::new(segment.header.config);
            let mut holders = BTreeMap::new();
            let mut journal = Vec::new();
            for (line, step) in &segment.steps {
                report.steps += 1;
                if let Command::Decide { request_id, pubkey, .. } = step.command {
                    holders.entry(request_id).or_insert(pubkey);
                }
                journal.clear();
                let expected = reference.apply(&step.command, step.now, &mut journal);
                let want_fresh = is_fresh(&step.command, &expected, &journal);
                // `fresh` is read only where the outcome moves sats (SPEC.md §9.2).
                let moves = expected.as_ref().is_ok_and(|o| {
                    ledger_core::implied_movements(&step.command, o, Some(Pubkey::from_bytes([0; 32])))
                        .is_ok_and(|m| !m.is_empty())
                });
                let want = Reply::from(step.expect.to_result());
                let call = call_of(&step.command, &holders);
                let got = child.ask(RequestBody::Call { now_ms: step.now, call })?.body;
                let mismatch = match &got {
                    ResponseBody::Reply { fresh, reply } if *reply == want && (*fresh == want_fresh || !moves) => None,
                    ResponseBody::Reply { fresh, reply } if *reply == want => Some(format!(
                        "{}: the reply is right but \"fresh\" is {fresh}, the reference's is {want_fresh}",
                        step.command.name()
                    )),
                    other => Some(format!("{}: expected {want:?}, got {}", step.command.name(), describe(other))),
                };
                if let Some(detail) = mismatch {
                    report.failures.push(fail(*line, detail));
                    break;
                }
                let t = step.totals;
                let want = Observation {
                    pool_sats: wide(t.pool_sats),
                    reserved_sats: Some(wide(t.reserved_sats)),
                    granted_sats: wide(t.absorbed_sats),
                    n_grants: t.n_grants,
                    credited_sats: None,
                    overrun_sats: None,
                    identities: None,
                };
                match child.ask(RequestBody::Observe)?.body {
                    ResponseBody::Observed(mut o) => {
                        let identities = o.identities.take();
                        let (credited, overrun) = (o.credited_sats.take(), o.overrun_sats.take());
                        let extra_wrong = credited.is_some_and(|c| c != wide(t.credited_sats))
                            || overrun.is_some_and(|v| v != wide(t.overrun_sats));
                        if extra_wrong {
                            report.failures.push(fail(
                                *line,
                                format!(
                                    "after {}: expected credited {} and overrun {}, observed {credited:?} and {overrun:?}",
                                    step.command.name(),
                                    t.credited_sats,
                                    t.overrun_sats
                                ),
                            ));
                            break;
                        }
                        if o != want {
                            report.failures.push(fail(
                                *line,
                                format!("after {}: expected totals {want:?}, observed {o:?}", step.command.name()),
                            ));
                            break;
                        }
                        if let (Some(ids), Some(pubkey), Some(standing)) =
                            (identities, ledger_harness::conformance::named_pubkey(&step.command), step.identity)
                        {
                            let shown = ids.iter().find(|i| i.pubkey == pubkey);
                            let right = shown.is_some_and(|i| {
                                i.tier == standing.tier
                                    && i.sats_absorbed_today == standing.sats_absorbed_today
                                    && i.absorbed_reset_at_ms == standing.absorbed_reset_at_ms
                                    && i.reserved_sats.is_none_or(|r| r == standing.reserved_sats)
                            });
                            if !right {
                                report.failures.push(fail(
                                    *line,
                                    format!(
                                        "after {}: expected the identity {standing:?}, observed {shown:?}",
                                        step.command.name()
                                    ),
                                ));
                                break;
                            }
                        }
                    }
                    other => {
                        report.failures.push(fail(*line, format!("answered observe with {}", describe(&other))));
                        break;
                    }
                }
            }
        }
    }
    Ok(report)
}

fn wide(s: Sats) -> i64 {
    i64::try_from(s.to_u64()).expect("amounts are at most 2^63-1")
}

fn describe(body: &ResponseBody) -> String {
    match body {
        ResponseBody::Reply { fresh, reply } => format!("{reply:?} (fresh {fresh})"),
        ResponseBody::Error { code, text, .. } => format!("error {}", error_text(*code, text)),
        other => kind(other).to_owned(),
    }
}
