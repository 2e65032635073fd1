//! How fast an implementation answers over the protocol (`ledger-sim bench-exec`): the same
//! calls applied in process to the reference, then sent to the child one at a time (lockstep),
//! then with many in flight; each figure in calls per second, and the ratio to the in-process
//! reference measured in the same run.

use std::time::{Duration, Instant};

use ledger_core::{Config, Ledger, PaymentId, RequestId, Sats, Tier, TimeMs};
use ledger_harness::Call;
use serde::Serialize;

use crate::child::{Child, ExecError};
use crate::protocol::{RequestBody, ResponseBody};

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
    /// Calls per second of each mode.
    pub figures: Vec<Figure>,
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

fn check(child: &Child, body: &ResponseBody) -> Result<(), ExecError> {
    match body {
        ResponseBody::Reply { .. } => Ok(()),
        other => Err(unexpected(child, other)),
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

    reset(child, config)?;
    let started = Instant::now();
    for (i, call) in calls.iter().enumerate() {
        let r = child.ask(RequestBody::Call { now_ms: at(i), call: call.clone() })?;
        check(child, &r.body)?;
    }
    let lockstep = figure("protocol, lockstep (one call at a time)".into(), calls.len(), started.elapsed(), baseline);

    reset(child, config)?;
    let window = in_flight.max(1);
    let started = Instant::now();
    let mut next = 0;
    let mut answered = 0;
    while answered < calls.len() {
        // Refill the window once half of it has come back, in one write: the child then reads
        // many requests a wake-up, as a busy service does.
        if child.in_flight() <= window / 2 {
            while next < calls.len() && child.in_flight() < window {
                child.send(RequestBody::Call { now_ms: at(next), call: calls[next].clone() })?;
                next += 1;
            }
            child.flush()?;
        }
        let r = child.recv()?;
        check(child, &r.body)?;
        answered += 1;
        while let Some(r) = child.recv_ready()? {
            check(child, &r.body)?;
            answered += 1;
        }
    }
    let pipelined = figure(format!("protocol, {window} in flight"), calls.len(), started.elapsed(), baseline);
    Ok(BenchReport {
        implementation: child.hello().name.clone(),
        command: child.command().to_owned(),
        figures: vec![base, lockstep, pipelined],
    })
}
