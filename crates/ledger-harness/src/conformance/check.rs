//! The checker behind `ledger-sim check-trace FILE`: a conformance trace written by any
//! implementation, replayed against the reference.
//!
//! The trace ([`crate::conformance`], version 1 or 2) is replayed against the reference engine,
//! segment by segment from genesis. The first step whose outcome, totals or identity standing
//! differs from the reference is reported with the lines around it. Independently, the
//! invariant checker runs over what the *trace* claims: the pool movements its outcomes imply
//! and the balances it reports, so a trace that breaks conservation or the daily budget is
//! caught even where the reference agrees with nothing. I3 needs the caller's charges, which a
//! trace does not carry, and is not checked; I5/I6 at the drain are checked when a segment ends
//! with an `expire` after which the trace reports nothing reserved. A trace may break one
//! invariant at every step: the report keeps the first [`VIOLATIONS_KEPT`] of each and counts
//! them all.
//!
//! A balance of a step's `totals` that the format cannot hold (a negative pool, one beyond
//! 2^63-1) is what the implementation claims it had, not malformed input: the step diverges
//! from the reference there, and the invariants judge the claim (a negative pool breaks I1).
//!
//! Exit codes as for `run`: 0 when the trace matches and no invariant broke, 1 otherwise, 2 on
//! input that is not a valid trace (the error names the line).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use ledger_core::{Command, Decision, Ledger, Movement, Outcome, PaymentId, Pubkey, RequestId};

use crate::conformance::{self, named_pubkey, Balances, Expect, Segment, Standing};
use crate::{Checker, Observed};
use serde::Serialize;

/// One field where the trace and the reference disagree.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FieldDiff {
    /// `expect`, `totals.pool_sats`, `identity`...
    pub field: String,
    /// What the trace says.
    pub trace: serde_json::Value,
    /// What the reference engine gives.
    pub reference: serde_json::Value,
}

/// A line of the trace, for context.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ContextLine {
    /// 1-based line number.
    pub line: usize,
    /// The line (cut at 240 characters).
    pub text: String,
}

/// The first step where the trace and the reference engine disagree.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Divergence {
    /// The step's line.
    pub line: usize,
    /// The case (segment) it belongs to.
    pub case: String,
    /// The command's name.
    pub command: String,
    /// Every field that differs.
    pub fields: Vec<FieldDiff>,
    /// The lines around it.
    pub context: Vec<ContextLine>,
}

/// An invariant the trace's own claims break.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TraceViolation {
    /// The line after which it was found.
    pub line: usize,
    /// The case.
    pub case: String,
    /// `I1` ... `I6`.
    pub invariant: String,
    /// Its name.
    pub name: String,
    /// The numbers.
    pub detail: String,
}

/// How many violations of each invariant a report lists; the rest are counted.
pub const VIOLATIONS_KEPT: usize = 10;

/// What `check-trace` found.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CheckReport {
    /// The file.
    pub file: String,
    /// The trace's format version.
    pub version: u64,
    /// True when the trace ends with a footer that matched (version 2): it is whole. A version
    /// 1 trace has none, and a cut one cannot be told from a whole one.
    pub footer: bool,
    /// Number of segments (cases).
    pub segments: usize,
    /// Number of steps.
    pub steps: usize,
    /// The first divergence from the reference engine, if any.
    pub divergence: Option<Divergence>,
    /// The invariant violations of the trace's claims, in line order: the first
    /// [`VIOLATIONS_KEPT`] of each invariant.
    pub violations: Vec<TraceViolation>,
    /// The number of violations of each invariant (`I2`), kept or not; empty when none.
    pub violation_counts: BTreeMap<String, usize>,
}

impl CheckReport {
    /// True when the trace matches the reference and breaks no invariant.
    pub fn ok(&self) -> bool {
        self.divergence.is_none() && self.violation_counts.is_empty()
    }

    /// Counts a violation, and keeps it if fewer than [`VIOLATIONS_KEPT`] of its invariant are.
    fn add(&mut self, v: TraceViolation) {
        let n = self.violation_counts.entry(v.invariant.clone()).or_default();
        *n += 1;
        if *n <= VIOLATIONS_KEPT {
            self.violations.push(v);
        }
    }
}

/// What the trace claims happened to each request and payment, to turn its outcomes into the
/// pool movements they imply (a repeat implies none).
#[derive(Default)]
struct Claims {
    pubkeys: BTreeMap<RequestId, Pubkey>,
    debited: BTreeSet<RequestId>,
    closed: BTreeSet<RequestId>,
    credited: BTreeSet<PaymentId>,
}

impl Claims {
    /// The movements the trace's outcome of `command` implies: those of
    /// [`ledger_core::implied_movements`], once per request or payment (a repeat is
    /// idempotent and moves nothing).
    fn movements(&mut self, command: &Command, expect: &Expect) -> Vec<Movement> {
        let Expect::Outcome(outcome) = expect else { return Vec::new() };
        let fresh = match (command, outcome) {
            (Command::Decide { request_id, pubkey, .. }, Outcome::Decided { decision }) => {
                let first = !self.pubkeys.contains_key(request_id);
                self.pubkeys.entry(*request_id).or_insert(*pubkey);
                if first && matches!(decision, Decision::Free { .. }) {
                    self.debited.insert(*request_id);
                }
                first
            }
            (Command::ReservePartial { request_id, pubkey, .. }, Outcome::Reserved { .. }) => {
                self.pubkeys.entry(*request_id).or_insert(*pubkey);
                self.debited.insert(*request_id)
            }
            (Command::Release { request_id }, Outcome::Released { .. })
            | (Command::Record { request_id, .. }, Outcome::Recorded { .. }) => self.closed.insert(*request_id),
            (Command::Credit { payment_id, .. }, Outcome::Credited { .. }) => self.credited.insert(*payment_id),
            (Command::Expire, Outcome::Expired { released }) => {
                self.closed.extend(released.iter().map(|(request_id, _)| *request_id));
                true
            }
            _ => false,
        };
        if !fresh {
            return Vec::new();
        }
        // A record for a request the trace never reserved: the checker reports it.
        let holder = match command {
            Command::Record { request_id, .. } => {
                Some(self.pubkeys.get(request_id).copied().unwrap_or(Pubkey::from_bytes([0; 32])))
            }
            _ => None,
        };
        ledger_core::implied_movements(command, outcome, holder).expect("a record is given its holder")
    }
}

/// What a step claims it stores: its balances, those written out of range (`claimed`) as
/// written.
fn observed(b: &Balances, claimed: &[(String, i128)]) -> Observed {
    let claim =
        |key: &str, read: ledger_core::Sats| claimed.iter().find(|(k, _)| k == key).map_or(read.to_i128(), |&(_, v)| v);
    Observed {
        pool_sats: claim("pool_sats", b.pool_sats),
        reserved_sats: Some(claim("reserved_sats", b.reserved_sats)),
        granted_sats: claim("absorbed_sats", b.absorbed_sats),
        n_grants: b.n_grants,
    }
}

/// A balance claimed out of range, as JSON: it is within 64 bits (signed when negative).
fn claim_json(v: i128) -> serde_json::Value {
    match (i64::try_from(v), u64::try_from(v)) {
        (Ok(v), _) => v.into(),
        (_, Ok(v)) => v.into(),
        _ => serde_json::Value::Null,
    }
}

fn json<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// The fields of one step where the trace and the reference differ; `claimed`, the step's
/// balances written out of range, as written.
fn diff_step(
    expect: &Expect,
    totals: &Balances,
    claimed: &[(String, i128)],
    identity: Option<&Option<Standing>>,
    ref_expect: &Expect,
    ref_totals: &Balances,
    ref_identity: &Option<Standing>,
) -> Vec<FieldDiff> {
    let mut fields = Vec::new();
    if expect != ref_expect {
        fields.push(FieldDiff { field: "expect".into(), trace: json(expect), reference: json(ref_expect) });
    }
    let mut trace_totals = json(totals);
    if let serde_json::Value::Object(t) = &mut trace_totals {
        for (key, v) in claimed {
            t.insert(key.clone(), claim_json(*v));
        }
    }
    if let (serde_json::Value::Object(t), serde_json::Value::Object(r)) = (trace_totals, json(ref_totals)) {
        for (k, tv) in &t {
            if Some(tv) != r.get(k) {
                let reference = r.get(k).cloned().unwrap_or_default();
                fields.push(FieldDiff { field: format!("totals.{k}"), trace: tv.clone(), reference });
            }
        }
    }
    if let Some(identity) = identity {
        if identity != ref_identity {
            fields.push(FieldDiff { field: "identity".into(), trace: json(identity), reference: json(ref_identity) });
        }
    }
    fields
}

/// Checks a trace given as bytes. `Err` is bad input (not a valid trace), naming the line.
pub fn check_bytes(file: &str, bytes: &[u8], context: usize) -> Result<CheckReport, conformance::ReadError> {
    let trace = conformance::read_trace_claims(bytes)?;
    let lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    let mut report = CheckReport {
        file: file.to_owned(),
        version: trace.version,
        footer: trace.footer.is_some(),
        segments: trace.segments.len(),
        steps: trace.segments.iter().map(|s| s.steps.len()).sum(),
        divergence: None,
        violations: Vec::new(),
        violation_counts: BTreeMap::new(),
    };
    for seg in &trace.segments {
        check_segment(seg, &trace.claimed_totals, &lines, context, &mut report);
    }
    Ok(report)
}

fn check_segment(
    seg: &Segment,
    claimed_totals: &BTreeMap<usize, Vec<(String, i128)>>,
    lines: &[&[u8]],
    context: usize,
    report: &mut CheckReport,
) {
    let config = seg.header.config;
    let mut ledger = Ledger::new(config);
    let mut checker = Checker::new(&config);
    let mut claims = Claims::default();
    let mut n_seen = 0;
    let case = &seg.header.case;
    let mut take_violations = |checker: &Checker, line: usize, report: &mut CheckReport| {
        for v in &checker.violations()[n_seen..] {
            report.add(TraceViolation {
                line,
                case: case.clone(),
                invariant: v.invariant.id().to_owned(),
                name: v.invariant.name().to_owned(),
                detail: v.to_string(),
            });
        }
        n_seen = checker.violations().len();
    };
    for (line, step) in &seg.steps {
        let claimed = claimed_totals.get(line).map_or(&[][..], Vec::as_slice);
        // The reference's answer.
        let ref_expect = Expect::from(ledger.apply(&step.command, step.now, &mut Vec::new()));
        let ref_totals = Balances::from(ledger.totals());
        let named = named_pubkey(&step.command);
        let ref_identity = named.and_then(|p| ledger.identity(&p)).map(Standing::from);
        if report.divergence.is_none() {
            let identity = named.map(|_| &step.identity);
            let fields =
                diff_step(&step.expect, &step.totals, claimed, identity, &ref_expect, &ref_totals, &ref_identity);
            if !fields.is_empty() {
                report.divergence = Some(Divergence {
                    line: *line,
                    case: case.clone(),
                    command: step.command.name().to_owned(),
                    fields,
                    context: around(lines, *line, context),
                });
            }
        }
        // The trace's own claims, under the checker.
        match (&step.command, &step.expect) {
            (Command::SetTier { pubkey, tier }, Expect::Outcome(Outcome::TierSet { .. })) => {
                checker.on_tier(*pubkey, *tier, step.now)
            }
            // A refused credit is no payment: its id may come back with another amount.
            (Command::Credit { payment_id, paid_sats }, Expect::Outcome(Outcome::Credited { .. })) => {
                checker.on_payment(*payment_id, *paid_sats)
            }
            _ => {}
        }
        let movements = claims.movements(&step.command, &step.expect);
        checker.on_movements(&movements, step.now);
        checker.after_step(&observed(&step.totals, claimed));
        take_violations(&checker, *line, report);
    }
    // The drain: a segment that ends with an expire and nothing reserved must have ended
    // every reservation it made.
    if let Some((line, last)) = seg.steps.last() {
        if last.command == Command::Expire && last.totals.reserved_sats.is_zero() {
            checker.finish();
            take_violations(&checker, *line, report);
        }
    }
}

fn around(lines: &[&[u8]], line: usize, context: usize) -> Vec<ContextLine> {
    let first = line.saturating_sub(context).max(1);
    let last = line.saturating_add(context).min(lines.len());
    (first..=last)
        .filter_map(|n| {
            let raw = lines.get(n - 1)?;
            if raw.is_empty() && n == lines.len() {
                return None;
            }
            let text = String::from_utf8_lossy(raw);
            let text: String = if text.chars().count() > 240 {
                text.chars().take(240).chain("...".chars()).collect()
            } else {
                text.into()
            };
            Some(ContextLine { line: n, text })
        })
        .collect()
}

/// Writes a report as text, the way `ledger-sim check-trace` prints it.
pub fn write_text(out: &mut impl Write, r: &CheckReport) -> std::io::Result<()> {
    writeln!(out, "check-trace {}: {} segments, {} steps", r.file, r.segments, r.steps)?;
    if !r.footer {
        writeln!(out, "version {} trace: no footer, a cut trace cannot be detected", r.version)?;
    }
    if let Some(d) = &r.divergence {
        writeln!(
            out,
            "DIVERGENCE at line {} (case {}): {} differs from the reference engine",
            d.line, d.case, d.command
        )?;
        for f in &d.fields {
            writeln!(out, "  {}: trace {} / reference {}", f.field, f.trace, f.reference)?;
        }
        for c in &d.context {
            let mark = if c.line == d.line { '>' } else { ' ' };
            writeln!(out, "  {mark} {:>6} | {}", c.line, c.text)?;
        }
    }
    for v in &r.violations {
        writeln!(out, "VIOLATION line {} (case {}): {}", v.line, v.case, v.detail)?;
    }
    for (invariant, n) in &r.violation_counts {
        let kept = r.violations.iter().filter(|v| &v.invariant == invariant).count();
        if *n > kept {
            writeln!(out, "... and {} more {invariant} violations", n - kept)?;
        }
    }
    if r.ok() {
        writeln!(out, "ok: the trace matches the reference engine and breaks no invariant")?;
    }
    Ok(())
}
