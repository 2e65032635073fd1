//! How fast an implementation answers over the protocol (`ledger-sim bench-exec`): the same
//! calls applied in process to the reference, then sent to the child one at a time (lockstep),
//! then with many in flight; each figure in calls per second, and the ratio to the in-process
//! reference measured in the same run.
//!
//! The speed of a wrong implementation means nothing: a `reference` implementation's every
//! reply is compared with the in-process reference's (outside the timed loop's own work: the
//! expected replies are computed before it), and the first that differs ends the benchmark
//! with it ([`BenchReport::wrong_answer`]). A `seed` implementation answers another API, so its
//! replies are not compared ([`BenchReport::answers_checked`] is false).

use std::time::{Duration, Instant};

use ledger_core::{Config, Ledger, PaymentId, RequestId, Sats, Tier, TimeMs};
use ledger_harness::{Call, Reply};
use serde::Serialize;

use crate::child::{Child, ExecError};
use crate::protocol::{Api, RequestBody, ResponseBody};

/// Users the calls are spread over.
const USERS: u64 = 100;

/// The calls of a benchmark: every user made elite, then a request decided, recorded, and
/// every fifth a payment credited. Independent of the answers, so that they can be sent
/// without waiting for them.
pub fn workload(n: usize) -> Vec<Call> {
    let sats = |v: u64| Sats::new(v).expect("small amounts");
    let mut calls: Vec<Call> =
        (0..USERS).map(|u| Call::SetTier { pubkey: ledger_harness::user_pubkey(u), tier: Tier::Elite }).collect();
    let mut i = 0u64;
    while calls.len() < n {
        let pubkey = ledger_harness::user_pubkey(i % USERS);
        let request_id = RequestId(i);
        calls.push(Call::Decide { request_id, pubkey, estimated_sats: sats(1 + i % 7) });
        calls.push(Call::Record { request_id, pubkey, actual_sats: sats(1 + i % 5), reserved_sats: sats(1 + i % 7) });
        if i % 5 == 0 {
            calls.push(Call::Credit { payment_id: PaymentId(i), paid_sats: sats(100 + i % 1000) });
        }
        i += 1;
    }
    calls.truncate(n);
    calls
}

/// One measurement.
#[derive(Clone, Debug, Serialize)]
pub struct Figure {
    /// What was measured.
    pub mode: String,
    /// Calls answered.
    pub calls: usize,
    /// Wall time.
    pub seconds: f64,
    /// Calls per second.
    pub calls_per_sec: f64,
    /// In-process reference calls per second divided by this figure (1 for the reference).
    pub slower_than_in_process: f64,
}

/// The benchmark's report.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// The implementation's name.
    pub implementation: String,
    /// The command.
    pub command: String,
    /// Calls per second of each mode: those measured before a wrong answer, if one came.
    pub figures: Vec<Figure>,
    /// Whether every reply was compared with the reference's (a `reference` implementation's).
    pub answers_checked: bool,
    /// The first reply that was not the reference's, which ended the benchmark.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wrong_answer: Option<WrongAnswer>,
}

/// A reply that was not the reference's.
#[derive(Clone, Debug, Serialize)]
pub struct WrongAnswer {
    /// The measurement it came in.
    pub mode: String,
    /// The call's place in the workload, from 0 (each measurement starts from a reset).
    pub call_index: usize,
    /// The call, in the protocol's JSON.
    pub call: serde_json::Value,
    /// The reference's reply, in the protocol's JSON.
    pub expected: serde_json::Value,
    /// The implementation's, in the protocol's JSON.
    pub got: serde_json::Value,
}

fn figure(mode: String, calls: usize, took: Duration, baseline: Option<f64>) -> Figure {
    let seconds = took.as_secs_f64().max(1e-9);
    let calls_per_sec = calls as f64 / seconds;
    Figure { mode, calls, seconds, calls_per_sec, slower_than_in_process: baseline.map_or(1.0, |b| b / calls_per_sec) }
}

fn reset(child: &mut Child, config: Config) -> Result<(), ExecError> {
    match child.ask(RequestBody::Reset { config: config.into() })?.body {
        ResponseBody::ResetOk => Ok(()),
        other => Err(unexpected(child, &other)),
    }
}

fn unexpected(child: &Child, body: &ResponseBody) -> ExecError {
    ExecError::Handshake { command: child.command().to_owned(), why: format!("answered with {body:?}") }
}

/// A reply to the call at `index`: `Ok(None)` when it is the reference's (or not compared:
/// `expected` is empty), `Ok(Some(..))` when it is not.
fn check(
    child: &Child,
    body: &ResponseBody,
    mode: &str,
    index: usize,
    calls: &[Call],
    expected: &[Reply],
) -> Result<Option<WrongAnswer>, ExecError> {
    let ResponseBody::Reply { reply, .. } = body else { return Err(unexpected(child, body)) };
    match expected.get(index) {
        Some(want) if want != reply => {
            let json = |v: serde_json::Result<serde_json::Value>| v.unwrap_or(serde_json::Value::Null);
            Ok(Some(WrongAnswer {
                mode: mode.to_owned(),
                call_index: index,
                call: json(serde_json::to_value(&calls[index])),
                expected: json(serde_json::to_value(want)),
                got: json(serde_json::to_value(reply)),
            }))
        }
        _ => Ok(None),
    }
}

/// Measures `child` on `calls`: in process, lockstep, and `in_flight` at once (each from a
/// reset, the clock one millisecond a call).
pub fn bench(child: &mut Child, config: Config, calls: &[Call], in_flight: usize) -> Result<BenchReport, ExecError> {
    let at = |i: usize| TimeMs(1_700_000_000_000 + i as u64);
    let mut ledger = Ledger::new(config);
    let mut journal = Vec::new();
    let started = Instant::now();
    for (i, call) in calls.iter().enumerate() {
        journal.clear();
        let _ = std::hint::black_box(ledger.apply(&call.to_command(), at(i), &mut journal));
    }
    let base = figure("in-process reference".into(), calls.len(), started.elapsed(), None);
    let baseline = Some(base.calls_per_sec);
    let answers_checked = child.hello().api == Api::Reference;
    let expected: Vec<Reply> = if answers_checked {
        let mut ledger = Ledger::new(config);
        calls
            .iter()
            .enumerate()
            .map(|(i, call)| Reply::from(ledger.apply(&call.to_command(), at(i), &mut journal)))
            .collect()
    } else {
        Vec::new()
    };
    let mut report = BenchReport {
        implementation: child.hello().name.clone(),
        command: child.command().to_owned(),
        figures: vec![base],
        answers_checked,
        wrong_answer: None,
    };

    reset(child, config)?;
    let mode = "protocol, lockstep (one call at a time)";
    let started = Instant::now();
    for (i, call) in calls.iter().enumerate() {
        let r = child.ask(RequestBody::Call { now_ms: at(i), call: call.clone() })?;
        if let Some(wrong) = check(child, &r.body, mode, i, calls, &expected)? {
            report.wrong_answer = Some(wrong);
            return Ok(report);
        }
    }
    report.figures.push(figure(mode.into(), calls.len(), started.elapsed(), baseline));

    reset(child, config)?;
    let window = in_flight.max(1);
    let mode = format!("protocol, {window} in flight");
    let started = Instant::now();
    let mut next = 0;
    let mut answered = 0;
    // The id of the first call: the child numbers its requests in order.
    let mut first_id = None;
    while answered < calls.len() {
        // Refill the window once half of it has come back, in one write: the child then reads
        // many requests a wake-up, as a busy service does.
        if child.in_flight() <= window / 2 {
            while next < calls.len() && child.in_flight() < window {
                let id = child.send(RequestBody::Call { now_ms: at(next), call: calls[next].clone() })?;
                first_id.get_or_insert(id);
                next += 1;
            }
            child.flush()?;
        }
        let mut r = Some(child.recv()?);
        while let Some(response) = r {
            let index = usize::try_from(response.id - first_id.expect("a call sent")).expect("an index of a call");
            if let Some(wrong) = check(child, &response.body, &mode, index, calls, &expected)? {
                report.wrong_answer = Some(wrong);
                return Ok(report);
            }
            answered += 1;
            r = child.recv_ready()?;
        }
    }
    report.figures.push(figure(mode, calls.len(), started.elapsed(), baseline));
    Ok(report)
}
