//! A history: everything needed to re-run a simulation exactly, without any randomness.
//!
//! A random run draws its flows and its schedule from the seed and records them here; a
//! replay, a shrink step and a saved counterexample all run a `History` as it is. Saved as
//! JSON Lines (format `ledger-sim-trace`): one header line, one line per user and per flow,
//! then the events, then (since version 2) a footer line that counts the users, flows and
//! events and holds the SHA-256 of every byte before it:
//!
//! ```text
//! {"line":"footer","users":3,"flows":12,"events":40,"sha256":"<64 lowercase hex>"}
//! ```
//!
//! A version 2 trace without its footer (cut short), with a line after it, or whose counts or
//! hash do not match is refused, naming the file and line. Version 1, which has no footer, is
//! still read (a cut version 1 trace cannot be detected); [`History::write_jsonl`] writes
//! version 2.
//!
//! A trace of either version is held to the bounds of the scenarios that write one
//! ([`crate::scenario`]), and refused beyond them naming the line and the field, never
//! replayed into a violation the engine would be blamed for: a reservation TTL of at most
//! [`MAX_TRACE_TTL_MS`]; a pool at genesis of at most
//! [`MAX_POOL_INITIAL_SATS`](crate::scenario::MAX_POOL_INITIAL_SATS), flow amounts of at most
//! [`MAX_FLOW_SATS`](crate::scenario::MAX_FLOW_SATS), and the pool with every flow's amounts
//! at most `Sats::MAX`; and a schedule whose clock (from [`EPOCH`](crate::exec::EPOCH), every
//! event's step and every clock jump) ends by
//! [`MAX_SCHEDULE_MS`](crate::scenario::MAX_SCHEDULE_MS). A key a line does not have is
//! refused, and the header's configuration names every key, so that a misspelt fault or TTL is
//! not dropped or defaulted without a word; a user has one line; a flow starts once, and no
//! event names it before its start. An event may name a flow that never starts or has ended: a
//! shrunk trace keeps such events for the step of the clock each takes.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};

use ledger_core::{Config, ConfigJson, Tier};
use ledger_harness::conformance::Sha256Hex;
use serde::{Deserialize, Serialize};

use crate::fault::Fault;

/// Version of the trace format written; versions 1 to this one are read.
pub const TRACE_VERSION: u32 = 2;

/// The longest reservation TTL a trace takes: 2^61 ms. A run's is shorter
/// ([`MAX_TTL_MS`](crate::scenario::MAX_TTL_MS)), a bound that came later: traces written
/// before it still replay. With a schedule that ends by
/// [`MAX_SCHEDULE_MS`](crate::scenario::MAX_SCHEDULE_MS), the drain's steps and its jump of
/// the TTL plus one past every deadline keep the clock in SPEC's `0..=2^63-1`.
pub const MAX_TRACE_TTL_MS: u64 = 1 << 61;

const _: () = assert!(crate::scenario::MAX_TTL_MS <= MAX_TRACE_TTL_MS);

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
///
/// Read from its trace line, a key it does not know is refused: a misspelt fault
/// (`crash_afterr`) would otherwise be dropped without a word.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "FlowLine")]
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
    /// How the user answers what the decision asks of them (the planner's payment rates).
    #[serde(default, skip_serializing_if = "Declines::is_none")]
    pub declines: Declines,
}

/// A flow's line as read: [`Flow`]'s keys with its kind's `tier` beside them, none unknown.
/// (A derived reader of `Flow` takes the kind through serde's `flatten`, which cannot refuse
/// unknown keys.)
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FlowLine {
    id: u32,
    kind: KindName,
    #[serde(default)]
    tier: Option<Tier>,
    user: u32,
    #[serde(default)]
    estimated_sats: u64,
    #[serde(default)]
    actual_sats: u64,
    #[serde(default)]
    abandon: bool,
    #[serde(default)]
    work_fails: bool,
    #[serde(default)]
    crash_after: Option<u8>,
    #[serde(default)]
    duplicate: Option<u8>,
    #[serde(default)]
    lost_ack: Option<u8>,
    #[serde(default)]
    duplicate_credit: bool,
    #[serde(default)]
    declines: Declines,
}

/// The `kind` of a flow's line.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum KindName {
    Job,
    Session,
    SetTier,
    Expire,
}

impl TryFrom<FlowLine> for Flow {
    type Error = String;

    fn try_from(l: FlowLine) -> Result<Flow, String> {
        let kind = match (l.kind, l.tier) {
            (KindName::SetTier, Some(tier)) => FlowKind::SetTier { tier },
            (KindName::SetTier, None) => return Err("missing field `tier`: a set_tier flow names its tier".into()),
            (_, Some(_)) => return Err("unknown field `tier`: only a set_tier flow has one".into()),
            (KindName::Job, None) => FlowKind::Job,
            (KindName::Session, None) => FlowKind::Session,
            (KindName::Expire, None) => FlowKind::Expire,
        };
        Ok(Flow {
            id: l.id,
            kind,
            user: l.user,
            estimated_sats: l.estimated_sats,
            actual_sats: l.actual_sats,
            abandon: l.abandon,
            work_fails: l.work_fails,
            crash_after: l.crash_after,
            duplicate: l.duplicate,
            lost_ack: l.lost_ack,
            duplicate_credit: l.duplicate_credit,
            declines: l.declines,
        })
    }
}

/// Whether a flow's user walks away, by what the decision asked: a partial offer's reduced
/// charge, or a full charge (a gate, or an offer the service does not make). A declined job
/// abandons its invoice; a declined session does not run its work. Unlike the
/// [`Fault::Abandon`] fault, the answer depends on the decision, and it is behaviour, not a
/// fault: it holds in the drain too. The simulator's own flows decline nothing; a workload
/// with payment rates per kind of charge (the planner's) draws both answers up front.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Declines {
    /// Walks away from a partial offer.
    #[serde(default, skip_serializing_if = "is_false")]
    pub partial: bool,
    /// Walks away from a full charge.
    #[serde(default, skip_serializing_if = "is_false")]
    pub gate: bool,
}

impl Declines {
    /// Declines nothing.
    pub fn is_none(&self) -> bool {
        !self.partial && !self.gate
    }
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn is_false(v: &bool) -> bool {
    !*v
}

impl Flow {
    /// Flow `id` of `kind` for `user`, with no amounts and no faults: what a generator fills in.
    pub fn new(id: u32, kind: FlowKind, user: u32) -> Flow {
        Flow {
            id,
            kind,
            user,
            estimated_sats: 0,
            actual_sats: 0,
            abandon: false,
            work_fails: false,
            crash_after: None,
            duplicate: None,
            lost_ack: None,
            duplicate_credit: false,
            declines: Declines::default(),
        }
    }

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

/// A line of a trace; a key a line does not have is refused (a flow's by [`FlowLine`]), and the
/// header's configuration names every key ([`ConfigJson`]), so that no misspelt or missing key
/// is replaced by a default without a word.
#[derive(Serialize, Deserialize)]
#[serde(tag = "line", rename_all = "snake_case", deny_unknown_fields)]
enum Line {
    Header { format: String, version: u32, engine: String, seed: u64, step_ms: u64, config: ConfigJson },
    User { user: u32, tier: Option<Tier> },
    Flow(Flow),
    Event { ev: Event },
    Footer { users: usize, flows: usize, events: usize, sha256: String },
}

/// Writes lines, hashing what it writes for the footer.
struct HashingWriter<W> {
    out: W,
    hash: Sha256Hex,
}

impl<W: Write> HashingWriter<W> {
    fn put(&mut self, l: &Line) -> std::io::Result<()> {
        let mut bytes = serde_json::to_vec(l)?;
        bytes.push(b'\n');
        self.hash.update(&bytes);
        self.out.write_all(&bytes)
    }
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

/// Whether `line` is a call of a concurrent run's history (`write_ops` in ledger-pg-runs: an
/// object with the call and when it was invoked), which a reader of traces is given by mistake.
fn is_concurrent_call(line: &str) -> bool {
    serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(line)
        .is_ok_and(|o| o.contains_key("call") && o.contains_key("invoked"))
}

/// Whether `line` is the header of a conformance trace (what `check-trace` and `conform` read),
/// which a reader of a run's traces is given by mistake.
fn is_conformance_header(line: &str) -> bool {
    serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(line)
        .is_ok_and(|o| o.get("format").and_then(|f| f.as_str()) == Some("ledger-conformance"))
}

impl History {
    /// Write as JSON Lines, version [`TRACE_VERSION`], footer last.
    pub fn write_jsonl(&self, out: impl Write) -> std::io::Result<()> {
        let header = Line::Header {
            format: "ledger-sim-trace".into(),
            version: TRACE_VERSION,
            engine: self.engine.clone(),
            seed: self.seed,
            step_ms: self.step_ms,
            config: self.config.into(),
        };
        let mut w = HashingWriter { out, hash: Sha256Hex::default() };
        w.put(&header)?;
        for (&user, &tier) in &self.users {
            w.put(&Line::User { user, tier })?;
        }
        for f in &self.flows {
            w.put(&Line::Flow(f.clone()))?;
        }
        for &ev in &self.events {
            w.put(&Line::Event { ev })?;
        }
        let sha256 = w.hash.hex();
        w.put(&Line::Footer { users: self.users.len(), flows: self.flows.len(), events: self.events.len(), sha256 })
    }

    /// Read JSON Lines written by [`History::write_jsonl`], version 1 or 2; `path` names the
    /// file in errors. A version 2 trace must end with a footer that matches what precedes
    /// it.
    pub fn read_jsonl(mut input: impl BufRead, path: &str) -> Result<History, TraceError> {
        let mut reading: Option<Reading> = None;
        let mut hash = Sha256Hex::default();
        let mut footer_at: Option<usize> = None;
        let mut raw = Vec::new();
        let mut line_no = 0;
        loop {
            raw.clear();
            let n =
                input.read_until(b'\n', &mut raw).map_err(|source| TraceError::Io { path: path.to_owned(), source })?;
            if n == 0 {
                break;
            }
            line_no += 1;
            let bad = |message: String| TraceError::Line { path: path.to_owned(), line: line_no, message };
            if let Some(at) = footer_at {
                return Err(bad(format!("a line after the footer (line {at}): the footer is the last line")));
            }
            let before = hash.clone();
            hash.update(&raw);
            let text = std::str::from_utf8(&raw).map_err(|_| bad("the line is not UTF-8".into()))?;
            let text = text.strip_suffix('\n').unwrap_or(text);
            let text = text.strip_suffix('\r').unwrap_or(text);
            if text.trim().is_empty() {
                continue;
            }
            let parsed: Line = serde_json::from_str(text).map_err(|e| match reading {
                None if is_conformance_header(text) => bad(
                    "this is a conformance trace (\"format\": \"ledger-conformance\"), which `ledger-sim check-trace` \
                     checks; replay reads the trace a run writes (\"format\": \"ledger-sim-trace\")"
                        .to_owned(),
                ),
                None if is_concurrent_call(text) => {
                    bad("this is the call history of a concurrent run (one call a line, with when it was invoked and \
                     completed), not a trace: a concurrent run cannot be replayed, its calls interleaved as they \
                     ran; run the seed again with the command its report gives"
                        .to_owned())
                }
                _ => match ledger_harness::conformance::integer_beyond_64_bits(text) {
                    // serde_json reads such digits as a float: say what is wrong with them.
                    Some((key, digits)) if e.to_string().contains("floating point") => bad(format!(
                        "{}{digits} is out of range: a number of a trace is a whole number in 0..={}",
                        key.map(|k| format!("\"{k}\": ")).unwrap_or_default(),
                        u64::MAX
                    )),
                    _ => bad(e.to_string()),
                },
            })?;
            match (parsed, reading.as_mut()) {
                (Line::Header { format, version, engine, seed, step_ms, config }, None) => {
                    if format != "ledger-sim-trace" || !(1..=TRACE_VERSION).contains(&version) {
                        return Err(bad(format!(
                            "unsupported trace {format:?} version {version} (this reader reads \"ledger-sim-trace\" versions 1 to {TRACE_VERSION})"
                        )));
                    }
                    let config = Config::try_from(config).map_err(|e| bad(format!("config: {e}")))?;
                    check_header(step_ms, &config).map_err(bad)?;
                    let h = History {
                        engine,
                        seed,
                        step_ms,
                        config,
                        users: BTreeMap::new(),
                        flows: Vec::new(),
                        events: Vec::new(),
                    };
                    let sats = u128::from(config.pool_initial_sats.to_u64());
                    reading = Some(Reading { version, sats, clock: 0, seen: Vec::new(), h });
                }
                (Line::Header { .. }, Some(_)) => return Err(bad("a second header".into())),
                (_, None) => return Err(bad("the first line must be the header".into())),
                (Line::Footer { users, flows, events, sha256 }, Some(Reading { version, h, .. })) => {
                    if *version < 2 {
                        return Err(bad("a footer in a version 1 trace: footers came with version 2".into()));
                    }
                    let counted = (h.users.len(), h.flows.len(), h.events.len());
                    if (users, flows, events) != counted {
                        return Err(bad(format!(
                            "the footer counts {users} users, {flows} flows and {events} events; the lines before it hold {}, {} and {}",
                            counted.0, counted.1, counted.2
                        )));
                    }
                    let want = before.hex();
                    if sha256 != want {
                        return Err(bad(format!(
                            "the footer's sha256 is {sha256}, the lines before it hash to {want}"
                        )));
                    }
                    footer_at = Some(line_no);
                }
                (line, Some(r)) => r.take(line, line_no).map_err(bad)?,
            }
        }
        match reading {
            None => Err(TraceError::Line {
                path: path.to_owned(),
                line: line_no + 1,
                message: "the trace is empty: its first line must be the header".into(),
            }),
            Some(r) if r.version >= 2 && footer_at.is_none() => Err(TraceError::Line {
                path: path.to_owned(),
                line: line_no + 1,
                message: format!("the trace ends after line {line_no} without its footer: it was cut short"),
            }),
            Some(r) => Ok(r.h),
        }
    }
}

/// The header's bounds, those of the scenarios that write traces ([`crate::scenario`]).
fn check_header(step_ms: u64, config: &Config) -> Result<(), String> {
    use crate::scenario::{MAX_POOL_INITIAL_SATS, MAX_STEP_MS};
    if step_ms > MAX_STEP_MS {
        return Err(format!(
            "step_ms {step_ms}: more than {MAX_STEP_MS} (a day a step); the trace's clock would leave SPEC's 0..=2^63-1"
        ));
    }
    if config.reservation_ttl_ms > MAX_TRACE_TTL_MS {
        return Err(format!(
            "config.reservation_ttl_ms {}: more than 2^61 ({MAX_TRACE_TTL_MS}), the longest a trace takes; the \
             drain's jump of the TTL plus one past every deadline would take the clock out of SPEC's 0..=2^63-1",
            config.reservation_ttl_ms
        ));
    }
    let pool = config.pool_initial_sats.to_u64();
    if pool > MAX_POOL_INITIAL_SATS {
        return Err(format!(
            "config.pool_initial_sats {pool}: more than 1e15 ({MAX_POOL_INITIAL_SATS}), the largest pool a simulation \
             takes (credits on top of more could reach Sats::MAX, where the ledger refuses them as an overflow)"
        ));
    }
    Ok(())
}

/// A trace being read: the history so far, and what its bounds need.
struct Reading {
    /// The header's version.
    version: u32,
    h: History,
    /// The pool at genesis plus every flow's estimated and actual cost so far: what bounds the
    /// credits (at most what the users pay, at most a job's estimate or a session's actual
    /// cost) and the overruns (at most the actual costs) a correct ledger books.
    sats: u128,
    /// When the next event runs, in milliseconds after [`EPOCH`](crate::exec::EPOCH), as the
    /// executor keeps the clock: every event's step and every clock jump.
    clock: u64,
    /// For each flow, by its index: the line of its start, or of the first event naming it
    /// before any start.
    seen: Vec<Option<Seen>>,
}

/// What the events so far said of a flow.
#[derive(Clone, Copy)]
enum Seen {
    /// It started at this line.
    Started(usize),
    /// An event at this line named it before any start: it may never start (a shrunk trace
    /// keeps such events, each a step of the clock), but it cannot start later.
    Named(usize),
}

impl Reading {
    /// Adds a user, flow or event line, line `line_no` of the file.
    fn take(&mut self, line: Line, line_no: usize) -> Result<(), String> {
        match line {
            Line::User { user, tier } => {
                if let Some(first) = self.h.users.get(&user) {
                    let first = first.map_or("unknown".to_owned(), |t| t.to_string());
                    return Err(format!(
                        "a second line for user {user}: a user's starting tier is given once (here {}, before {first})",
                        tier.map_or("unknown".to_owned(), |t| t.to_string())
                    ));
                }
                self.h.users.insert(user, tier);
            }
            Line::Flow(f) => {
                if self.h.flows.last().is_some_and(|last| last.id >= f.id) {
                    return Err(format!("flow ids must increase (flow {})", f.id));
                }
                if !self.h.users.contains_key(&f.user) {
                    return Err(format!("flow {} names user {} with no user line", f.id, f.user));
                }
                self.add_sats(&f)?;
                self.h.flows.push(f);
                self.seen.push(None);
            }
            Line::Event { ev } => {
                let id = match ev {
                    Event::Start(id) | Event::Step(id) | Event::Ghost(id, _) => Some(id),
                    Event::Jump(_) => None,
                };
                if let Some(id) = id {
                    let Ok(idx) = self.h.flows.binary_search_by_key(&id, |f| f.id) else {
                        return Err(format!("event names flow {id}, which has no flow line"));
                    };
                    self.see(ev, id, idx, line_no)?;
                }
                self.advance_clock(ev)?;
                self.h.events.push(ev);
            }
            Line::Header { .. } | Line::Footer { .. } => unreachable!("the reader takes headers and footers itself"),
        }
        Ok(())
    }

    /// Notes event `ev` at line `line_no` of flow `id` (index `idx`). A flow starts once, and
    /// no event names it before its start: a run never writes either (its schedule starts a
    /// flow once, then steps it; shrinking and cutting only take events out). An event may
    /// name a flow that never starts or has ended, which a shrunk trace keeps for its step of
    /// the clock.
    fn see(&mut self, ev: Event, id: u32, idx: usize, line_no: usize) -> Result<(), String> {
        let seen = &mut self.seen[idx];
        match (ev, *seen) {
            (Event::Start(_), Some(Seen::Started(at))) => {
                Err(format!("flow {id} starts a second time (it started at line {at}): a flow starts once"))
            }
            (Event::Start(_), Some(Seen::Named(at))) => Err(format!(
                "flow {id} starts after line {at} named it: a flow's steps and duplicates come after its start"
            )),
            (Event::Start(_), None) => {
                *seen = Some(Seen::Started(line_no));
                Ok(())
            }
            (Event::Ghost(_, 0), _) => {
                Err(format!("ghost 0 of flow {id}: a flow's duplicate deliveries are numbered from 1"))
            }
            (_, None) => {
                *seen = Some(Seen::Named(line_no));
                Ok(())
            }
            (_, Some(_)) => Ok(()),
        }
    }

    /// Moves the clock past event `ev`, as the executor will: by its jump, then by a step. The
    /// clock may not pass [`MAX_SCHEDULE_MS`](crate::scenario::MAX_SCHEDULE_MS), so that the
    /// drain after the schedule keeps every time an engine is given in SPEC's `0..=2^63-1`.
    fn advance_clock(&mut self, ev: Event) -> Result<(), String> {
        use crate::scenario::MAX_SCHEDULE_MS;
        let past = |at: u128| {
            format!(
                "the clock would reach {at} ms after the epoch, past 2^62 ms ({MAX_SCHEDULE_MS}), the furthest a \
                 trace's schedule may take it (the rest of SPEC's 0..=2^63-1 is the drain's)"
            )
        };
        let mut at = u128::from(self.clock);
        if let Event::Jump(ms) = ev {
            at += u128::from(ms);
            if at > u128::from(MAX_SCHEDULE_MS) {
                return Err(format!("ev.jump {ms}: {}", past(at)));
            }
        }
        at += u128::from(self.h.step_ms);
        if at > u128::from(MAX_SCHEDULE_MS) {
            return Err(format!("this event's step of {} ms: {}", self.h.step_ms, past(at)));
        }
        self.clock = u64::try_from(at).expect("at most MAX_SCHEDULE_MS");
        Ok(())
    }

    /// Counts flow `f`'s amounts, each at most [`MAX_FLOW_SATS`](crate::scenario::MAX_FLOW_SATS)
    /// and all of them, with the pool at genesis, at most `Sats::MAX`: beyond, a correct ledger
    /// would refuse a credit or a record as an overflow, and the replay would blame it.
    fn add_sats(&mut self, f: &Flow) -> Result<(), String> {
        use crate::scenario::MAX_FLOW_SATS;
        for (what, v) in [("estimated_sats", f.estimated_sats), ("actual_sats", f.actual_sats)] {
            if v > MAX_FLOW_SATS {
                return Err(format!(
                    "flow {}: {what} {v} is above {MAX_FLOW_SATS}, the largest amount a simulated flow carries \
                     (an edge probe's: 1000 times the largest estimate a scenario takes, 1e9, and one sat more)",
                    f.id
                ));
            }
        }
        let sats = self.sats + u128::from(f.estimated_sats) + u128::from(f.actual_sats);
        if sats > u128::from(ledger_core::Sats::MAX.to_u64()) {
            return Err(format!(
                "flow {}: the pool at genesis and the estimated and actual costs of the flows up to this one add up \
                 to {sats} sats, more than Sats::MAX ({}): the pool's credits or the overruns could pass it, which \
                 the ledger refuses as an overflow",
                f.id,
                ledger_core::Sats::MAX
            ));
        }
        self.sats = sats;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"{"budget_sats":{"new":0,"established":50,"trusted":200,"elite":1000},"pool_initial_sats":10000,"credit_bps":1000,"reservation_ttl_ms":600000}"#;

    /// A trace of `version` from its lines (the header first), with a footer that matches them
    /// from version 2 on: what a hostile hand writes to get past the hash.
    fn trace(version: u32, lines: &[String]) -> Vec<u8> {
        let mut text = String::new();
        for l in lines {
            text.push_str(l);
            text.push('\n');
        }
        if version >= 2 {
            let count = |kind: &str| lines.iter().filter(|l| l.contains(&format!("\"line\":\"{kind}\""))).count();
            let users: std::collections::BTreeSet<&str> = lines
                .iter()
                .filter(|l| l.contains("\"line\":\"user\""))
                .map(|l| l.split("\"user\":").nth(1).unwrap().split([',', '}']).next().unwrap())
                .collect();
            let sha256 = Sha256Hex::of(text.as_bytes());
            text.push_str(&format!(
                r#"{{"line":"footer","users":{},"flows":{},"events":{},"sha256":"{sha256}"}}"#,
                users.len(),
                count("flow"),
                count("event")
            ));
            text.push('\n');
        }
        text.into_bytes()
    }

    fn header(version: u32, config: &str) -> String {
        format!(
            r#"{{"line":"header","format":"ledger-sim-trace","version":{version},"engine":"reference","seed":0,"step_ms":250,"config":{config}}}"#
        )
    }

    /// An elite user's session whose worker crashes after its decide: the drain must expire
    /// its reservation.
    fn crashed_session(version: u32, config: &str) -> Vec<u8> {
        let mut lines = vec![
            header(version, config),
            r#"{"line":"user","user":1,"tier":"elite"}"#.to_owned(),
            r#"{"line":"flow","id":1,"kind":"session","user":1,"estimated_sats":100,"actual_sats":100,"crash_after":1}"#
                .to_owned(),
            r#"{"line":"event","ev":{"start":1}}"#.to_owned(),
        ];
        lines.extend((0..6).map(|_| r#"{"line":"event","ev":{"step":1}}"#.to_owned()));
        trace(version, &lines)
    }

    fn read(bytes: &[u8]) -> Result<History, String> {
        History::read_jsonl(bytes, "t.jsonl").map_err(|e| e.to_string())
    }

    #[test]
    fn a_reservation_ttl_beyond_the_bound_is_refused_at_the_header() {
        let ttl = |v: u64| CONFIG.replace("600000", &v.to_string());
        let max = MAX_TRACE_TTL_MS;
        for version in [1, 2] {
            let h = read(&crashed_session(version, &ttl(max))).unwrap();
            assert_eq!(h.config.reservation_ttl_ms, max);
            for bad in [max + 1, u64::MAX] {
                let e = read(&crashed_session(version, &ttl(bad))).unwrap_err();
                assert!(
                    e.starts_with(&format!("t.jsonl:1: config.reservation_ttl_ms {bad}: more than 2^61 ({max})")),
                    "{e}"
                );
            }
        }
    }

    /// Two gated jobs of a new user, `estimated` and `actual` each.
    fn gated_jobs(config: &str, estimated: u64, actual: u64) -> Vec<u8> {
        let mut lines = vec![header(2, config), r#"{"line":"user","user":1,"tier":"new"}"#.to_owned()];
        for id in [1, 2] {
            lines.push(format!(
                r#"{{"line":"flow","id":{id},"kind":"job","user":1,"estimated_sats":{estimated},"actual_sats":{actual}}}"#
            ));
        }
        for id in [1, 2] {
            lines.push(format!(r#"{{"line":"event","ev":{{"start":{id}}}}}"#));
            lines.extend((0..4).map(|_| format!(r#"{{"line":"event","ev":{{"step":{id}}}}}"#)));
        }
        trace(2, &lines)
    }

    #[test]
    fn amounts_beyond_what_a_scenario_writes_are_refused_at_their_line() {
        use crate::scenario::{MAX_FLOW_SATS, MAX_POOL_INITIAL_SATS};
        let full_credit = CONFIG.replace("\"credit_bps\":1000", "\"credit_bps\":10000");
        // Sats::MAX each: the second credit overflowed and I1 blamed the reference.
        let max = ledger_core::Sats::MAX.to_u64();
        let e = read(&gated_jobs(&full_credit, max, max)).unwrap_err();
        assert!(e.starts_with(&format!("t.jsonl:3: flow 1: estimated_sats {max} is above {MAX_FLOW_SATS}")), "{e}");
        let e = read(&gated_jobs(&full_credit, MAX_FLOW_SATS, MAX_FLOW_SATS + 1)).unwrap_err();
        assert!(e.starts_with(&format!("t.jsonl:3: flow 1: actual_sats {} is above", MAX_FLOW_SATS + 1)), "{e}");
        let h = read(&gated_jobs(&full_credit, MAX_FLOW_SATS, MAX_FLOW_SATS)).unwrap();
        assert_eq!(h.flows[1].estimated_sats, MAX_FLOW_SATS);
        // The pool at genesis, at the header.
        let pool = |v: u64| CONFIG.replace("\"pool_initial_sats\":10000", &format!("\"pool_initial_sats\":{v}"));
        for bad in [MAX_POOL_INITIAL_SATS + 1, max] {
            let e = read(&gated_jobs(&pool(bad), 10, 10)).unwrap_err();
            assert!(e.starts_with(&format!("t.jsonl:1: config.pool_initial_sats {bad}: more than 1e15")), "{e}");
        }
        assert!(read(&gated_jobs(&pool(MAX_POOL_INITIAL_SATS), 10, 10)).is_ok());
    }

    /// A concurrent run's history of calls, given to `replay` or `check-trace` by mistake (the
    /// report's `trace:` names it), is named as what it is, not as a missing field.
    #[test]
    fn a_concurrent_runs_calls_are_named_as_such() {
        let call = r#"{"flow":4,"call":{"call":"decide","request_id":4,"pubkey":"00","estimated_sats":50},"reply":{"reply":"ok"},"movements":[],"now":1,"invoked":5,"completed":7}"#;
        let e = read(format!("{call}\n").as_bytes()).unwrap_err();
        assert!(e.contains(":1: this is the call history of a concurrent run"), "{e}");
        assert!(e.contains("cannot be replayed"), "{e}");
        // Not for any other line that fails to read.
        let e = read(b"{\"flow\":4}\n").unwrap_err();
        assert!(!e.contains("concurrent"), "{e}");
    }

    /// Flows each within the bound, millions of them, could still add up past Sats::MAX: the
    /// reader counts them with the pool.
    #[test]
    fn the_flows_amounts_with_the_pool_are_held_below_sats_max() {
        let h = read(&gated_jobs(CONFIG, 0, 0)).unwrap();
        let max = u128::from(ledger_core::Sats::MAX.to_u64());
        let mut r =
            Reading { version: 2, h: History { flows: Vec::new(), ..h }, sats: max - 30, clock: 0, seen: Vec::new() };
        let mut f = Flow::new(7, FlowKind::Job, 1);
        (f.estimated_sats, f.actual_sats) = (10, 20);
        r.add_sats(&f).unwrap();
        assert_eq!(r.sats, max);
        f.id = 8;
        f.actual_sats = 0;
        let e = r.add_sats(&f).unwrap_err();
        assert!(e.starts_with(&format!("flow 8: the pool at genesis and the estimated and actual costs of the flows up to this one add up to {}", max + 10)), "{e}");
        assert_eq!(r.sats, max);
    }

    /// The bounds are what runs write: the largest scenario amounts, and edge probes aimed at a
    /// pool of 1e15, reach the largest flow amount exactly, and every trace reads back.
    #[test]
    fn what_the_largest_scenario_writes_reads_back_at_the_bounds() {
        use crate::scenario::{Scenario, MAX_ACTUAL_PCT, MAX_ESTIMATE_SATS, MAX_FLOW_SATS, MAX_POOL_INITIAL_SATS};
        let mut s = Scenario::small();
        (s.n_users, s.n_steps, s.estimate_max_sats, s.actual_max_pct) = (8, 400, MAX_ESTIMATE_SATS, MAX_ACTUAL_PCT);
        s.faults.clock_jump = 0.3;
        s.ledger.pool_initial_sats = ledger_core::Sats::new(MAX_POOL_INITIAL_SATS).unwrap();
        s.validate("s").unwrap();
        let mut largest = 0;
        for seed in 0..40 {
            let (_, h) = crate::gen::run_seed(
                ledger_harness::ReferenceEngine::new,
                "reference",
                &s,
                seed,
                crate::gen::SchedulerKind::Random,
            );
            let mut bytes = Vec::new();
            h.write_jsonl(&mut bytes).unwrap();
            assert_eq!(read(&bytes).unwrap(), h);
            largest = h.flows.iter().map(|f| f.estimated_sats.max(f.actual_sats)).max().unwrap_or(0).max(largest);
        }
        assert_eq!(largest, MAX_FLOW_SATS);
    }

    /// A job, then `jumps` of the clock, then its steps.
    fn jumps(config: &str, jumps: &[u64]) -> Vec<u8> {
        let mut lines = vec![
            header(2, config),
            r#"{"line":"user","user":1,"tier":"elite"}"#.to_owned(),
            r#"{"line":"flow","id":1,"kind":"job","user":1,"estimated_sats":10,"actual_sats":10}"#.to_owned(),
            r#"{"line":"event","ev":{"start":1}}"#.to_owned(),
        ];
        lines.extend(jumps.iter().map(|ms| format!(r#"{{"line":"event","ev":{{"jump":{ms}}}}}"#)));
        lines.extend((0..3).map(|_| r#"{"line":"event","ev":{"step":1}}"#.to_owned()));
        trace(2, &lines)
    }

    #[test]
    fn a_jump_past_the_schedules_bound_is_refused_at_its_line() {
        use crate::scenario::MAX_SCHEDULE_MS;
        let e = read(&jumps(CONFIG, &[u64::MAX])).unwrap_err();
        assert!(e.starts_with(&format!("t.jsonl:5: ev.jump {}: the clock would reach", u64::MAX)), "{e}");
        // Jumps each within the bound add up past it: the second is refused.
        let e = read(&jumps(CONFIG, &[1 << 61, 1 << 61, 1])).unwrap_err();
        assert!(e.starts_with(&format!("t.jsonl:6: ev.jump {}: the clock would reach", 1u64 << 61)), "{e}");
        // The start, the jump and three steps take five steps of 250 ms: at the bound exactly,
        // the schedule is read; one more millisecond, and the last step is refused.
        let last = MAX_SCHEDULE_MS - 5 * 250;
        let h = read(&jumps(CONFIG, &[last])).unwrap();
        assert_eq!(h.events[1], Event::Jump(last));
        let e = read(&jumps(CONFIG, &[last + 1])).unwrap_err();
        assert!(e.starts_with("t.jsonl:8: this event's step of 250 ms: the clock would reach"), "{e}");
    }

    /// At both bounds, the schedule's and the TTL's, the drain jumps past the deadline within
    /// SPEC's range of times and the reference holds.
    #[test]
    fn a_schedule_and_a_ttl_at_their_bounds_replay_within_specs_times() {
        use crate::scenario::MAX_SCHEDULE_MS;
        let config = CONFIG.replace("600000", &MAX_TRACE_TTL_MS.to_string());
        let mut lines = vec![
            header(2, &config),
            r#"{"line":"user","user":1,"tier":"elite"}"#.to_owned(),
            r#"{"line":"flow","id":1,"kind":"session","user":1,"estimated_sats":100,"actual_sats":100,"crash_after":1}"#
                .to_owned(),
            r#"{"line":"event","ev":{"start":1}}"#.to_owned(),
            r#"{"line":"event","ev":{"step":1}}"#.to_owned(),
        ];
        let last = MAX_SCHEDULE_MS - 3 * 250;
        lines.push(format!(r#"{{"line":"event","ev":{{"jump":{last}}}}}"#));
        let h = read(&trace(2, &lines)).unwrap();
        let r = crate::gen::replay(ledger_harness::ReferenceEngine::new, &h, true);
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert!(r.log.iter().any(|l| l.contains("worker crashes")), "{:?}", r.log);
        assert!(r.log.iter().any(|l| l.ends_with(&format!("clock jumps {} ms", MAX_TRACE_TTL_MS + 1))), "{:?}", r.log);
    }

    /// The crashed session's trace with line `at` (from 0) edited.
    fn edited(at: usize, edit: impl Fn(&str) -> String) -> Vec<u8> {
        let text = String::from_utf8(crashed_session(2, CONFIG)).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        lines.pop();
        lines[at] = edit(&lines[at]);
        trace(2, &lines)
    }

    #[test]
    fn a_key_a_line_does_not_have_is_refused() {
        assert!(read(&edited(0, str::to_owned)).is_ok());
        for (at, from, to, words) in [
            // The fault was dropped without a word, and the replay ran another flow.
            (2, "crash_after", "crash_afterr", "unknown field `crash_afterr`"),
            (2, "\"user\":1,", "\"user\":1,\"tier\":\"new\",", "unknown field `tier`: only a set_tier flow has one"),
            (0, "step_ms", "step_mss", "unknown field `step_mss`"),
            (0, "\"seed\":0,", "\"seed\":0,\"seeds\":1,", "unknown field `seeds`"),
            (1, "\"tier\"", "\"tierr\":\"new\",\"tier\"", "unknown field `tierr`"),
            (3, "}}", "},\"at\":5}", "unknown field `at`"),
            (4, "{\"step\":1}", "{\"step\":1,\"start\":1}", ""),
            // The header's configuration names every key: a missing one took its default.
            (0, ",\"reservation_ttl_ms\":600000", "", "missing field `reservation_ttl_ms`"),
            (0, "\"credit_bps\":1000", "\"credit_pct\":10", "unknown field `credit_pct`"),
            (
                0,
                "\"reservation_ttl_ms\":600000",
                "\"reservation_ttl_ms\":0",
                "config: reservation_ttl_ms: must be at least 1",
            ),
        ] {
            let bytes = edited(at, |l| {
                assert!(l.contains(from), "{l}");
                l.replacen(from, to, 1)
            });
            let e = read(&bytes).unwrap_err();
            assert!(e.starts_with(&format!("t.jsonl:{}: ", at + 1)) && e.contains(words), "{from} -> {to}: {e}");
        }
        // A footer's key too.
        let mut text = String::from_utf8(crashed_session(2, CONFIG)).unwrap();
        text = text.replacen("{\"line\":\"footer\",", "{\"line\":\"footer\",\"lines\":11,", 1);
        let e = read(text.as_bytes()).unwrap_err();
        assert!(e.starts_with("t.jsonl:11: ") && e.contains("unknown field `lines`"), "{e}");
        // A set_tier flow names its tier.
        let e = read(&edited(2, |_| r#"{"line":"flow","id":1,"kind":"set_tier","user":1}"#.to_owned())).unwrap_err();
        assert!(e.starts_with("t.jsonl:3: ") && e.contains("missing field `tier`"), "{e}");
    }

    /// Every key a flow can carry is written and read back as it was.
    #[test]
    fn every_kind_and_fault_of_a_flow_reads_back() {
        let mut flows = Vec::new();
        for (id, kind) in
            [FlowKind::Job, FlowKind::Session, FlowKind::SetTier { tier: Tier::Trusted }, FlowKind::Expire]
                .into_iter()
                .zip(1..)
                .map(|(k, i)| (i, k))
        {
            let mut f = Flow::new(id, kind, 1);
            if id % 2 == 1 {
                (f.estimated_sats, f.actual_sats, f.abandon, f.work_fails) = (5, 7, true, true);
                (f.crash_after, f.duplicate, f.lost_ack, f.duplicate_credit) = (Some(1), Some(2), Some(3), true);
                f.declines = Declines { partial: true, gate: true };
            }
            flows.push(f);
        }
        let h = History {
            engine: "reference".into(),
            seed: 3,
            step_ms: 250,
            config: Config::default(),
            users: BTreeMap::from([(1, Some(Tier::New)), (2, None)]),
            events: flows.iter().map(|f| Event::Start(f.id)).chain([Event::Ghost(1, 1), Event::Jump(5)]).collect(),
            flows,
        };
        let mut bytes = Vec::new();
        h.write_jsonl(&mut bytes).unwrap();
        assert_eq!(read(&bytes).unwrap(), h);
    }

    #[test]
    fn a_second_line_for_a_user_is_refused() {
        // The second replaced the first's tier without a word.
        let bytes = edited(1, |l| format!("{}\n{l}", l.replace("elite", "new")));
        let e = read(&bytes).unwrap_err();
        assert!(e.starts_with("t.jsonl:3: a second line for user 1: a user's starting tier is given once"), "{e}");
        let bytes = edited(1, |l| format!("{}\n{l}", l.replace("\"elite\"", "null")));
        let e = read(&bytes).unwrap_err();
        assert!(e.contains("(here elite, before unknown)"), "{e}");
    }

    /// The crashed session's events replaced by `events`.
    fn with_events(events: &[&str]) -> Vec<u8> {
        let text = String::from_utf8(crashed_session(2, CONFIG)).unwrap();
        let mut lines: Vec<String> = text.lines().take(3).map(str::to_owned).collect();
        lines.extend(events.iter().map(|ev| format!(r#"{{"line":"event","ev":{ev}}}"#)));
        trace(2, &lines)
    }

    #[test]
    fn an_event_before_its_flows_start_or_a_second_start_is_refused() {
        // Each did nothing (the executor passes over an event of a flow that cannot act).
        for (events, line, words) in [
            (&[r#"{"step":1}"#, r#"{"start":1}"#][..], 5, "flow 1 starts after line 4 named it"),
            (&[r#"{"ghost":[1,1]}"#, r#"{"step":1}"#, r#"{"start":1}"#][..], 6, "flow 1 starts after line 4 named it"),
            (
                &[r#"{"start":1}"#, r#"{"step":1}"#, r#"{"start":1}"#][..],
                6,
                "flow 1 starts a second time (it started at line 4)",
            ),
            (&[r#"{"start":1}"#, r#"{"ghost":[1,0]}"#][..], 5, "ghost 0 of flow 1"),
        ] {
            let e = read(&with_events(events)).unwrap_err();
            assert!(e.starts_with(&format!("t.jsonl:{line}: {words}")), "{events:?}: {e}");
        }
        // What a shrunk trace holds is read: events of a flow that never starts (each a step of
        // the clock), and steps and duplicates of a flow past its end.
        let h = read(&with_events(&[r#"{"step":1}"#, r#"{"ghost":[1,2]}"#, r#"{"step":1}"#])).unwrap();
        assert_eq!(h.events.len(), 3);
        let mut events = vec![r#"{"start":1}"#];
        events.extend([r#"{"step":1}"#; 8]);
        events.push(r#"{"ghost":[1,3]}"#);
        assert_eq!(read(&with_events(&events)).unwrap().events.len(), 10);
    }
}
