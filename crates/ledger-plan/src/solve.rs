//! The solver: the smallest (or largest) value of one key that meets a target, by bisection
//! with a sequential test at each value.
//!
//! `plan S.toml --target 'p_dry(day=90) <= 0.05' --solve credit_pct=0..100` tests both ends
//! of the range first; the end that meets the target gives the direction (more credit helps,
//! a larger budget hurts), and the search bisects between the value known to fail and the
//! value known to meet until they are one resolution step apart. At each value the seeds
//! `seed, seed + 1, ...` run in batches of one per thread and feed Wald's SPRT
//! ([`crate::sprt`]) in seed order until it decides, so a value far from the boundary costs a
//! few seeds and one near it many, up to the cap. Every value uses the same seeds (common
//! random numbers), so neighbouring values differ by the key, not by luck.
//!
//! The answer is an interval of the key: the target is met at one end and not at the other,
//! each decision wrong with probability at most `alpha` (a value that meets, called failing)
//! or `beta` (the reverse) outside the indifference band. It assumes that the target's chance
//! is monotone in the key over the range; a value the test could not decide within the cap
//! counts as not meeting. It is not a grid: no value but those tested is claimed.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::model::{self, SeedResult};
use super::report::{thousands, PoolBand};
use super::scenario::{fmt_f64, from_table, set_number, PlanError, PlanScenario};
use super::sprt::{Decision, Sprt, SprtSpec};
use super::target::Target;

/// The output format version.
pub const FORMAT: &str = "ledger-sim-solve/1";

/// `KEY=LO..HI`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SolveRange {
    /// The dotted key.
    pub key: String,
    /// The low end.
    pub lo: f64,
    /// The high end.
    pub hi: f64,
}

/// Parse `--solve KEY=LO..HI`.
pub fn parse_solve(s: &str) -> Result<SolveRange, PlanError> {
    let fail = |why: &str| PlanError::Solve(format!("{s}: {why}"));
    let (key, range) = s.split_once('=').ok_or_else(|| fail("expected KEY=LO..HI, e.g. credit_pct=0..100"))?;
    let (lo, hi) = range.split_once("..").ok_or_else(|| fail("expected KEY=LO..HI, e.g. credit_pct=0..100"))?;
    let number = |v: &str| -> Result<f64, PlanError> {
        match v.trim().replace('_', "").parse::<f64>() {
            Ok(x) if x.is_finite() => Ok(x),
            _ => Err(fail(&format!("{:?} is not a number", v.trim()))),
        }
    };
    let (lo, hi) = (number(lo)?, number(hi)?);
    if lo >= hi {
        return Err(fail("empty range: the low end must be below the high end"));
    }
    Ok(SolveRange { key: key.trim().to_owned(), lo, hi })
}

/// How the solver decides.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SolveOptions {
    /// The width at which bisection stops (default: a 200th of the range, at least 1 for a
    /// key that takes whole numbers).
    pub resolution: Option<f64>,
    /// The largest chance of calling a value that meets the target failing.
    pub alpha: f64,
    /// The largest chance of calling a value that fails the target meeting.
    pub beta: f64,
    /// Half the width of the indifference band around the target's limit (default: a fifth
    /// of the limit, or of one minus it when that is smaller: 0.04..0.06 around 0.05).
    pub band: Option<f64>,
    /// The most seeds one value may take.
    pub max_seeds: u64,
}

impl Default for SolveOptions {
    fn default() -> SolveOptions {
        SolveOptions { resolution: None, alpha: 0.05, beta: 0.05, band: None, max_seeds: 2000 }
    }
}

/// One value tested.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// The key's value.
    pub value: f64,
    /// What the test said.
    pub decision: Decision,
    /// Seeds the decision used.
    pub seeds: u64,
    /// Of those, seeds in which the bad event happened.
    pub events: u64,
    /// Seeds run (a batch's last seeds may come after the decision).
    pub seeds_run: u64,
    /// The end-of-day pool balance over the seeds the decision used, for reports (a run
    /// stopped on the day its pool ran dry counts as 0 after it).
    pub pool: PoolBand,
}

/// What the search found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Verdict {
    /// The target is met at `meets_at` and not at `fails_at`, one resolution step or less
    /// apart: the boundary lies between them.
    Between {
        /// The closest value shown to meet the target.
        meets_at: f64,
        /// The closest value not shown to meet it.
        fails_at: f64,
        /// Whether the test at `fails_at` decided "fails" (rather than reaching the cap).
        fails_decided: bool,
    },
    /// Both ends of the range meet the target.
    AllMeet,
    /// Neither end meets it.
    NoneMeets,
}

/// Bisection over the grid `lo, lo + resolution, ..., hi` with `test` at each value tested:
/// the ends first, then midpoints between the closest values known to fail and to meet.
pub fn bisect(
    lo: f64,
    hi: f64,
    resolution: f64,
    mut test: impl FnMut(f64) -> Result<Step, PlanError>,
) -> Result<(Vec<Step>, Verdict), PlanError> {
    assert!(lo < hi && resolution > 0.0, "a checked range");
    // Grid index k is the value lo + k * resolution; the last index is hi.
    let last = ((hi - lo) / resolution - 1e-9).ceil().max(1.0) as u64;
    let value = |k: u64| if k == last { hi } else { lo + k as f64 * resolution };
    let mut steps = Vec::new();
    let mut at = |k: u64, steps: &mut Vec<Step>| -> Result<Decision, PlanError> {
        let step = test(value(k))?;
        let d = step.decision;
        steps.push(step);
        Ok(d)
    };
    let at_lo = at(0, &mut steps)?;
    let at_hi = at(last, &mut steps)?;
    let (mut meet, mut fail, mut fail_decision) = match (at_lo, at_hi) {
        (Decision::Meets, Decision::Meets) => return Ok((steps, Verdict::AllMeet)),
        (Decision::Meets, d) => (0, last, d),
        (d, Decision::Meets) => (last, 0, d),
        _ => return Ok((steps, Verdict::NoneMeets)),
    };
    while meet.abs_diff(fail) > 1 {
        let mid = meet.min(fail) + meet.abs_diff(fail) / 2;
        match at(mid, &mut steps)? {
            Decision::Meets => meet = mid,
            d => (fail, fail_decision) = (mid, d),
        }
    }
    let verdict = Verdict::Between {
        meets_at: value(meet),
        fails_at: value(fail),
        fails_decided: fail_decision == Decision::Fails,
    };
    Ok((steps, verdict))
}

/// The solve of one target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetResult {
    /// The target.
    pub target: Target,
    /// Its bad event per seed, in words.
    pub event: String,
    /// The test.
    pub test: SprtSpec,
    /// The values tested, in order.
    pub steps: Vec<Step>,
    /// The answer.
    pub verdict: Verdict,
    /// Seeds run for this target.
    pub seeds_run: u64,
    /// The verdict in one line.
    pub line: String,
}

/// The output of a solve.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SolveOutput {
    /// [`FORMAT`].
    pub format: String,
    /// The scenario with command-line overrides, before the key is set.
    pub scenario: PlanScenario,
    /// The key and its range.
    pub range: SolveRange,
    /// The resolution used.
    pub resolution: f64,
    /// One per target, in the order given.
    pub results: Vec<TargetResult>,
    /// Requests decided over all runs.
    pub requests: u64,
    /// Invariant violations over all runs (must be 0).
    pub violations: u64,
    /// The first violation, if any.
    pub first_violation: Option<String>,
}

/// A solve ready to run: the scenario document, the key, the targets and their tests.
#[derive(Clone, Debug)]
pub struct Solver {
    doc: toml::Table,
    /// The scenario with command-line overrides.
    pub base: PlanScenario,
    range: SolveRange,
    resolution: f64,
    targets: Vec<(Target, SprtSpec)>,
}

impl Solver {
    /// A solver for the scenario TOML `text` (`origin` names it in errors) with top-level
    /// `overrides`, over `range`, for `targets` (as written). Every error is found here,
    /// before any work: a target that does not parse, a key the scenario does not have or
    /// cannot set, an end of the range out of the key's range, a fractional value of a
    /// whole-number key, options out of range.
    pub fn new(
        text: &str,
        origin: &str,
        overrides: &[(&str, String)],
        range: SolveRange,
        targets: &[String],
        options: SolveOptions,
    ) -> Result<Solver, PlanError> {
        let doc = crate::document(text, origin, overrides)?;
        let base = from_table(doc.clone(), "command line")?;
        if targets.is_empty() {
            return Err(PlanError::Solve(format!("{}: give at least one --target", range.key)));
        }
        let mut solver = Solver { doc, base, range, resolution: 0.0, targets: Vec::new() };
        let whole = solver.takes_whole_numbers()?;
        let (lo, hi, key) = (solver.range.lo, solver.range.hi, solver.range.key.clone());
        let resolution = match options.resolution {
            Some(r) if !(r.is_finite() && r > 0.0) => {
                return Err(PlanError::Solve(format!("{key}: --resolution {r} must be above 0")))
            }
            Some(r) if whole && r.fract() != 0.0 => {
                return Err(PlanError::Solve(format!("{key}: --resolution {r}: {key} takes whole numbers")))
            }
            Some(r) => r,
            None if whole => ((hi - lo) / 200.0).round().max(1.0),
            None => (hi - lo) / 200.0,
        };
        solver.resolution = resolution;
        for text in targets {
            let target = Target::parse(text, solver.base.days)?;
            let limit = target.limit();
            let band = options.band.unwrap_or(limit.min(1.0 - limit) / 5.0);
            // Rounded to nine places so that 0.05 + 0.01 reads 0.06 in reports.
            let round = |p: f64| (p * 1e9).round() / 1e9;
            let spec =
                SprtSpec::new(round(limit - band), round(limit + band), options.alpha, options.beta, options.max_seeds)
                    .map_err(|e| PlanError::Target(format!("{text:?} (limit {limit}, band {band}): {e}")))?;
            solver.targets.push((target, spec));
        }
        for (target, _) in &solver.targets {
            for v in [lo, hi] {
                solver.scenario_for(target, v)?;
            }
        }
        Ok(solver)
    }

    /// Whether the key takes only whole numbers (the scenario's schema refuses a fraction
    /// for it), then whether both ends of the range are values it takes.
    fn takes_whole_numbers(&self) -> Result<bool, PlanError> {
        let SolveRange { key, lo, hi } = &self.range;
        let mut doc = self.doc.clone();
        let whole = set_number(&mut doc, key, &format!("{:?}", lo.floor() + 0.5)).is_ok()
            && matches!(from_table(doc, "probe"),
                Err(PlanError::Toml { message, .. }) if message.contains("invalid type: floating point"));
        if whole && (lo.fract() != 0.0 || hi.fract() != 0.0) {
            return Err(PlanError::Solve(format!("{key}={lo}..{hi}: {key} takes whole numbers")));
        }
        for v in [*lo, *hi] {
            self.scenario_at(v)?;
        }
        Ok(whole)
    }

    /// The key solved for.
    pub fn key(&self) -> &str {
        &self.range.key
    }

    /// The scenario with the key at `value`.
    pub fn scenario_at(&self, value: f64) -> Result<PlanScenario, PlanError> {
        let mut doc = self.doc.clone();
        let v = fmt_f64(value);
        let key = &self.range.key;
        set_number(&mut doc, key, &v).map_err(|e| match e {
            PlanError::Sweep(why) => PlanError::Solve(why),
            e => e,
        })?;
        from_table(doc, &format!("--solve {key}={v}"))
    }

    /// The scenario at `value`, cut to the days `target` needs.
    fn scenario_for(&self, target: &Target, value: f64) -> Result<PlanScenario, PlanError> {
        let mut s = self.scenario_at(value)?;
        if let Some(day) = target.last_day() {
            s.days = day;
        }
        Ok(s)
    }

    /// About how many bytes the largest run holds (see [`crate::Plan::bytes_per_run`]).
    pub fn bytes_per_run(&self) -> u64 {
        [self.range.lo, self.range.hi]
            .iter()
            .filter_map(|&v| self.scenario_at(v).ok())
            .map(|s| model::bytes_needed(&s))
            .max()
            .unwrap_or(0)
    }

    /// This solve with another numeric key of the scenario set to `value` (as written): one
    /// point of a frontier. Its targets are read again against the new scenario (a target's
    /// day must still be one of its days), and both ends of the range must still be values
    /// the key takes.
    pub fn with_setting(&self, key: &str, value: &str) -> Result<Solver, PlanError> {
        let mut s = self.clone();
        set_number(&mut s.doc, key, value).map_err(|e| match e {
            PlanError::Sweep(why) => PlanError::Over(why),
            e => e,
        })?;
        s.base = from_table(s.doc.clone(), &format!("--over {key}={value}"))?;
        for (target, _) in &mut s.targets {
            *target = Target::parse(&target.text, s.base.days)?;
        }
        for (target, _) in &s.targets {
            for v in [s.range.lo, s.range.hi] {
                s.scenario_for(target, v)?;
            }
        }
        Ok(s)
    }

    /// The range solved over.
    pub fn range(&self) -> &SolveRange {
        &self.range
    }

    /// The resolution bisection stops at.
    pub fn resolution(&self) -> f64 {
        self.resolution
    }

    /// Solve every target on the current rayon pool; `on_step` hears of each value tested.
    pub fn solve(&self, on_step: &dyn Fn(&Target, &Step)) -> Result<SolveOutput, PlanError> {
        let mut tally = Tally::default();
        let mut results = Vec::new();
        for (target, spec) in &self.targets {
            let (steps, verdict) = bisect(self.range.lo, self.range.hi, self.resolution, |value| {
                let scenario = self.scenario_for(target, value)?;
                let step = test_value(&scenario, value, target, *spec, &mut tally);
                on_step(target, &step);
                Ok(step)
            })?;
            let seeds_run = steps.iter().map(|s| s.seeds_run).sum();
            let line = verdict_line(&self.range, target, spec, &verdict, seeds_run);
            results.push(TargetResult {
                target: target.clone(),
                event: target.event_words(),
                test: *spec,
                steps,
                verdict,
                seeds_run,
                line,
            });
        }
        Ok(SolveOutput {
            format: FORMAT.to_owned(),
            scenario: self.base.clone(),
            range: self.range.clone(),
            resolution: self.resolution,
            results,
            requests: tally.requests,
            violations: tally.violations,
            first_violation: tally.first_violation,
        })
    }
}

/// What all runs add up to.
#[derive(Default)]
struct Tally {
    requests: u64,
    violations: u64,
    first_violation: Option<String>,
}

/// Run seeds of `scenario` in batches of one per thread, in seed order into the test, until
/// it decides.
fn test_value(scenario: &PlanScenario, value: f64, target: &Target, spec: SprtSpec, tally: &mut Tally) -> Step {
    let mut sprt = Sprt::new(spec);
    let batch = rayon::current_num_threads().max(1) as u64;
    let stop_when_dry = target.stops_when_dry();
    let mut next = 0;
    let mut pools: Vec<Vec<u64>> = Vec::new();
    loop {
        let n = batch.min(spec.max_trials - next);
        let runs: Vec<SeedResult> = (0..n as usize)
            .into_par_iter()
            .with_max_len(1)
            .map(|i| model::run_until_dry(scenario, 0, scenario.seed + next + i as u64, stop_when_dry))
            .collect();
        next += n;
        for r in &runs {
            tally.requests += r.requests();
            tally.violations += r.violations;
            if tally.first_violation.is_none() {
                tally.first_violation.clone_from(&r.first_violation);
            }
            if sprt.decision().is_none() {
                sprt.observe(target.bad_event(r));
                pools.push(r.pool_by_day.clone());
            }
        }
        if let Some(decision) = sprt.decision() {
            let pool = PoolBand::of(pools.iter().map(Vec::as_slice));
            return Step { value, decision, seeds: sprt.trials(), events: sprt.events(), seeds_run: next, pool };
        }
    }
}

/// The unit of a key's values, for verdicts: `" %"`, `" sats"` or nothing.
pub fn unit(key: &str) -> &'static str {
    if key.ends_with("_pct") {
        " %"
    } else if key.starts_with("budget.") || key.ends_with("_sats") {
        " sats"
    } else {
        ""
    }
}

fn verdict_line(range: &SolveRange, target: &Target, spec: &SprtSpec, verdict: &Verdict, seeds_run: u64) -> String {
    let key = &range.key;
    let span = format!("{}..{}", fmt_f64(range.lo), fmt_f64(range.hi));
    let confidence = fmt_f64((100.0 * (1.0 - spec.alpha.max(spec.beta)) * 1e6).round() / 1e6);
    let u = unit(key);
    let answer = match verdict {
        Verdict::Between { meets_at, fails_at, fails_decided } => {
            let (a, b) = (meets_at.min(*fails_at), meets_at.max(*fails_at));
            let (m, f) = (fmt_f64(*meets_at), fmt_f64(*fails_at));
            let not = if *fails_decided { "fails" } else { "undecided at the seed cap" };
            format!(
                "{key} between {} and {}{u} (meets at {m}, {not} at {f}), {confidence} % confidence",
                fmt_f64(a),
                fmt_f64(b)
            )
        }
        Verdict::AllMeet => format!("every {key} in {span} meets it (both ends do), {confidence} % confidence"),
        Verdict::NoneMeets => format!("no {key} in {span} meets it (neither end does), {confidence} % confidence"),
    };
    format!("{}: {answer}; {} seeds spent", target.text, thousands(seeds_run))
}

/// A decision in one word.
pub fn decision_word(d: Decision) -> &'static str {
    match d {
        Decision::Meets => "meets",
        Decision::Fails => "fails",
        Decision::Undecided => "undecided",
    }
}

/// The terminal text of a solve: the verdicts first, then each target's steps.
pub fn text(out: &SolveOutput) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    for r in &out.results {
        let _ = writeln!(s, "{}", r.line);
    }
    for r in &out.results {
        let t = &r.test;
        let _ = writeln!(
            s,
            "\n{}: bad event \"{}\", tested {} against {} (alpha {}, beta {}, at most {} seeds a value)",
            r.target.text,
            r.event,
            fmt_f64(t.p0),
            fmt_f64(t.p1),
            fmt_f64(t.alpha),
            fmt_f64(t.beta),
            thousands(t.max_trials)
        );
        for step in &r.steps {
            let d = decision_word(step.decision);
            let _ = writeln!(
                s,
                "  {}={:<10} {d:<9} {:>6} seeds, {:>6} with the event",
                out.range.key,
                fmt_f64(step.value),
                thousands(step.seeds),
                thousands(step.events)
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(value: f64, decision: Decision) -> Step {
        Step { value, decision, seeds: 1, events: 0, seeds_run: 1, pool: PoolBand::default() }
    }

    /// Bisection with a test that meets at `threshold` and above.
    fn search(lo: f64, hi: f64, resolution: f64, meets: impl Fn(f64) -> bool) -> (Vec<f64>, Verdict) {
        let (steps, verdict) =
            bisect(lo, hi, resolution, |v| Ok(step(v, if meets(v) { Decision::Meets } else { Decision::Fails })))
                .unwrap();
        (steps.iter().map(|s| s.value).collect(), verdict)
    }

    #[test]
    fn bisection_brackets_the_boundary_to_the_resolution() {
        let (tested, v) = search(0.0, 100.0, 0.5, |x| x >= 22.7);
        assert_eq!(v, Verdict::Between { meets_at: 23.0, fails_at: 22.5, fails_decided: true });
        // The two ends, then log2(200) = 7.6 midpoints.
        assert_eq!(tested.len(), 2 + 8, "{tested:?}");
        // Decreasing: the largest value that meets.
        let (_, v) = search(0.0, 200.0, 5.0, |x| x <= 72.0);
        assert_eq!(v, Verdict::Between { meets_at: 70.0, fails_at: 75.0, fails_decided: true });
        // A resolution that does not divide the range: the last step ends at the high end.
        let (_, v) = search(0.0, 10.0, 3.0, |x| x >= 9.5);
        assert_eq!(v, Verdict::Between { meets_at: 10.0, fails_at: 9.0, fails_decided: true });
        assert_eq!(search(0.0, 1.0, 0.1, |_| true).1, Verdict::AllMeet);
        assert_eq!(search(0.0, 1.0, 0.1, |_| false).1, Verdict::NoneMeets);
    }

    #[test]
    fn an_undecided_value_counts_as_not_meeting() {
        let (steps, v) =
            bisect(0.0, 4.0, 1.0, |x| Ok(step(x, if x >= 3.0 { Decision::Meets } else { Decision::Undecided })))
                .unwrap();
        assert_eq!(v, Verdict::Between { meets_at: 3.0, fails_at: 2.0, fails_decided: false });
        assert_eq!(steps.len(), 4);
    }

    #[test]
    fn ranges_parse_and_empty_ones_are_refused() {
        let r = parse_solve("credit_pct=0..100").unwrap();
        assert_eq!((r.key.as_str(), r.lo, r.hi), ("credit_pct", 0.0, 100.0));
        let r = parse_solve(" budget.trusted = 10 .. 1_000 ").unwrap();
        assert_eq!((r.key.as_str(), r.lo, r.hi), ("budget.trusted", 10.0, 1000.0));
        for (bad, why) in [
            ("credit_pct", "expected KEY=LO..HI"),
            ("credit_pct=5", "expected KEY=LO..HI"),
            ("credit_pct=5..5", "empty range"),
            ("credit_pct=9..2", "empty range"),
            ("credit_pct=a..2", "\"a\" is not a number"),
            ("credit_pct=0..NaN", "\"NaN\" is not a number"),
        ] {
            let e = parse_solve(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
