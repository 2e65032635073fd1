//! A history: everything needed to re-run a simulation exactly, without any randomness.
//!
//! A random run draws its flows and its schedule from the seed and records them here; a
//! replay, a shrink step and a saved counterexample all run a `History` as it is. Saved as
//! JSON Lines: one header line, one line per user and per flow, then the events.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};

use ledger_core::{Config, Tier};
use serde::{Deserialize, Serialize};

use crate::fault::Fault;

/// Version of the trace format.
pub const TRACE_VERSION: u32 = 1;

/// What a flow is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum FlowKind {
    /// An asynchronous job (DESIGN §1).
    Job,
    /// A synchronous session.
    Session,
    /// The trust service moves the user to `tier`.
    SetTier {
        /// The new tier.
        tier: Tier,
    },
    /// The expiry sweeper runs.
    Expire,
}

/// One caller's script: what it will ask, what its work will cost, which faults hit it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    /// The flow's id; its request id is the same number.
    pub id: u32,
    /// What it is.
    #[serde(flatten)]
    pub kind: FlowKind,
    /// The user.
    pub user: u32,
    /// Estimated cost.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub estimated_sats: u64,
    /// Actual cost of the work.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub actual_sats: u64,
    /// The user abandons invoices.
    #[serde(default, skip_serializing_if = "is_false")]
    pub abandon: bool,
    /// The work fails.
    #[serde(default, skip_serializing_if = "is_false")]
    pub work_fails: bool,
    /// The worker crashes after its `n`-th call (from 1) returns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crash_after: Option<u8>,
    /// The `n`-th call is delivered twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<u8>,
    /// The `n`-th call's acknowledgement is lost and the call retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost_ack: Option<u8>,
    /// Credit webhooks of this flow are delivered twice.
    #[serde(default, skip_serializing_if = "is_false")]
    pub duplicate_credit: bool,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn is_false(v: &bool) -> bool {
    !*v
}

impl Flow {
    /// Removes `fault` from this flow, if it carries it; true when it did. Faults of the
    /// schedule (clock jumps, tier changes) live in the history's events, not in a flow, and
    /// are shrunk with the events.
    pub fn take_fault(&mut self, fault: Fault) -> bool {
        match fault {
            Fault::Crash => self.crash_after.take().is_some(),
            Fault::WorkFailure => std::mem::take(&mut self.work_fails),
            Fault::Abandon => std::mem::take(&mut self.abandon),
            Fault::Duplicate => self.duplicate.take().is_some(),
            Fault::LostAck => self.lost_ack.take().is_some(),
            Fault::DuplicateCredit => std::mem::take(&mut self.duplicate_credit),
            Fault::ClockJump | Fault::TierChange => false,
        }
    }

    /// Number of faults this flow carries.
    pub fn n_faults(&self) -> usize {
        Fault::ALL.iter().filter(|&&f| self.clone().take_fault(f)).count()
    }
}

/// One scheduling decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// Flow `id` arrives.
    Start(u32),
    /// Flow `id` takes its next step.
    Step(u32),
    /// The duplicate delivery `n` of flow `id` takes its next step.
    Ghost(u32, u8),
    /// The clock jumps forward by `ms`.
    Jump(u64),
}

/// Everything a run needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// The engine it ran on.
    pub engine: String,
    /// The seed it was drawn from.
    pub seed: u64,
    /// Virtual milliseconds per event.
    pub step_ms: u64,
    /// The ledger's configuration.
    pub config: Config,
    /// Users and their starting tier (`None`: unknown to the trust service).
    pub users: BTreeMap<u32, Option<Tier>>,
    /// The flows, by id.
    pub flows: Vec<Flow>,
    /// The schedule of the fault phase; the drain follows deterministically.
    pub events: Vec<Event>,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "line", rename_all = "snake_case")]
enum Line {
    Header { format: String, version: u32, engine: String, seed: u64, step_ms: u64, config: Config },
    User { user: u32, tier: Option<Tier> },
    Flow(Flow),
    Event { ev: Event },
}

/// A trace file that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// A line that is not valid.
    #[error("{path}:{line}: {message}")]
    Line {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Reading failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl History {
    /// Write as JSON Lines.
    pub fn write_jsonl(&self, mut out: impl Write) -> std::io::Result<()> {
        let header = Line::Header {
            format: "ledger-sim-trace".into(),
            version: TRACE_VERSION,
            engine: self.engine.clone(),
            seed: self.seed,
            step_ms: self.step_ms,
            config: self.config,
        };
        let mut put = |l: &Line| -> std::io::Result<()> {
            serde_json::to_writer(&mut out, l)?;
            out.write_all(b"\n")
        };
        put(&header)?;
        for (&user, &tier) in &self.users {
            put(&Line::User { user, tier })?;
        }
        for f in &self.flows {
            put(&Line::Flow(f.clone()))?;
        }
        for &ev in &self.events {
            put(&Line::Event { ev })?;
        }
        Ok(())
    }

    /// Read JSON Lines written by [`History::write_jsonl`]; `path` names the file in errors.
    pub fn read_jsonl(input: impl BufRead, path: &str) -> Result<History, TraceError> {
        let mut history: Option<History> = None;
        for (i, line) in input.lines().enumerate() {
            let line_no = i + 1;
            let text = line.map_err(|source| TraceError::Io { path: path.to_owned(), source })?;
            if text.trim().is_empty() {
                continue;
            }
            let bad = |message: String| TraceError::Line { path: path.to_owned(), line: line_no, message };
            let parsed: Line = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
            match (parsed, history.as_mut()) {
                (Line::Header { format, version, engine, seed, step_ms, config }, None) => {
                    if format != "ledger-sim-trace" || version != TRACE_VERSION {
                        return Err(bad(format!("unsupported trace {format:?} version {version}")));
                    }
                    history = Some(History {
                        engine,
                        seed,
                        step_ms,
                        config,
                        users: BTreeMap::new(),
                        flows: Vec::new(),
                        events: Vec::new(),
                    });
                }
                (Line::Header { .. }, Some(_)) => return Err(bad("a second header".into())),
                (_, None) => return Err(bad("the first line must be the header".into())),
                (Line::User { user, tier }, Some(h)) => {
                    h.users.insert(user, tier);
                }
                (Line::Flow(f), Some(h)) => {
                    if h.flows.last().is_some_and(|last| last.id >= f.id) {
                        return Err(bad(format!("flow ids must increase (flow {})", f.id)));
                    }
                    if !h.users.contains_key(&f.user) {
                        return Err(bad(format!("flow {} names user {} with no user line", f.id, f.user)));
                    }
                    for (what, v) in [("estimated_sats", f.estimated_sats), ("actual_sats", f.actual_sats)] {
                        if ledger_core::Sats::new(v).is_err() {
                            return Err(bad(format!(
                                "flow {}: {what} {v} is above the largest amount, {} sats",
                                f.id,
                                ledger_core::Sats::MAX
                            )));
                        }
                    }
                    h.flows.push(f);
                }
                (Line::Event { ev }, Some(h)) => {
                    let id = match ev {
                        Event::Start(id) | Event::Step(id) | Event::Ghost(id, _) => Some(id),
                        Event::Jump(_) => None,
                    };
                    if let Some(id) = id {
                        if h.flows.binary_search_by_key(&id, |f| f.id).is_err() {
                            return Err(bad(format!("event names flow {id}, which has no flow line")));
                        }
                    }
                    h.events.push(ev);
                }
            }
        }
        history.ok_or_else(|| TraceError::Line { path: path.to_owned(), line: 0, message: "empty trace".into() })
    }
}
