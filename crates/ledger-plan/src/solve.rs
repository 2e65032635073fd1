//! The solver: the smallest (or largest) value of one key that meets a target, by bisection
//! with a sequential test at each value.
//!
//! `plan S.toml --target 'p_dry(day=90) <= 0.05' --solve credit_pct=0..100` searches in two
//! passes ([`search`]). The scout places the boundary with a cheap test (the band twice as
//! wide, alpha and beta 0.2): the low end first, and, when it fails, bisection between it and
//! the high end (which is tested only if nothing below it meets, since a value that meets is
//! the costly kind: every one of its seeds runs in full). Then the two neighbours the scout
//! found are decided by the user's test, going on from the seeds the scout read; where that
//! contradicts the scout, the bracket moves outward until a sure "meets" and a sure "fails"
//! enclose the boundary. At each value the seeds `seed, seed + 1, ...` run in batches of one
//! per thread and feed Wald's SPRT ([`crate::sprt`]) in seed order until it decides, so a
//! value far from the boundary costs a few seeds and one near it many, up to the cap. Every
//! value uses the same seeds (common random numbers), so neighbouring values differ by the
//! key, not by luck.
//!
//! The answer is an interval of the key: the target is met at one end and not at the other,
//! each a decision of the user's test, wrong with probability at most `alpha` (a value that
//! meets, called failing) or `beta` (the reverse) outside the indifference band; the scout's
//! decisions steer, and are never claimed. It assumes that the target's chance is monotone in
//! the key over the range; a value the test could not decide within the cap counts as not
//! meeting, and the verdict names it as undecided ([`TargetResult::undecided_at`]) rather than
//! claim it at the user's confidence. It is not a grid: no value but those tested is claimed.

use std::collections::BTreeMap;
use std::sync::Arc;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

pub use super::model::Cost;
use super::model::{self, Carry, SeedResult};
use super::report::{thousands, PoolBand};
use super::scenario::{fmt_f64, from_table, set_number, PlanError, PlanScenario};
use super::sprt::{Decision, Sprt, SprtSpec};
use super::target::Target;

/// The output format version.
pub const FORMAT: &str = "ledger-sim-solve/2";

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
            Ok(x) if x.is_infinite() => Err(fail(&format!("{:?} is out of range (not a finite number)", v.trim()))),
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
    /// key that takes whole numbers, and rounded up to 1, 2 or 5 times a power of ten for a key
    /// that cannot take it, such as a credit, which has at most two decimals).
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
    /// Carry a seed's run up from a lower value of `credit_pct` or `pool_initial_sats` where
    /// the pool never bound it, instead of running it again ([`model::Carry`]): the same
    /// result, without the checker's pass at the higher value. On by default.
    #[serde(default = "carry_by_default")]
    pub carry: bool,
}

fn carry_by_default() -> bool {
    true
}

impl Default for SolveOptions {
    fn default() -> SolveOptions {
        SolveOptions { resolution: None, alpha: 0.05, beta: 0.05, band: None, max_seeds: 2000, carry: true }
    }
}

/// One value tested.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// The key's value.
    pub value: f64,
    /// Whether the decision steers the search or is one the verdict may rest on.
    pub level: Level,
    /// What the test said.
    pub decision: Decision,
    /// Seeds the decision used.
    pub seeds: u64,
    /// Of those, seeds in which the bad event happened.
    pub events: u64,
    /// Seeds read at this value so far, by either test (the same on any number of threads).
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

/// How sure a decision must be. The search steers on scout decisions (the band twice as wide,
/// alpha and beta 0.2 or the user's if larger: a value far from the boundary is placed on a
/// few seeds), and claims only sure ones (the test the user asked for). A sure decision goes on
/// with the seeds the scout decision used, since both tests read the same seeds in the same
/// order: each test's own error bounds hold however the other one ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Steers the search only.
    Scout,
    /// The user's test: what the verdict rests on.
    Sure,
}

/// The search over the grid `lo, lo + resolution, ..., hi`, with `decide(value, level)` the
/// decision at a value; the caller remembers what each value has seen, so asking again costs
/// nothing and asking for `Sure` after `Scout` goes on from the same seeds.
///
/// 1. Scout: the low end first. If it fails, the values that meet (if any) lie above it, and
///    bisection between it and the high end places the boundary, the high end tested only if
///    every value below it fails (a value that meets is the costly kind: no seed may have
///    the event, so each runs in full). If the low end meets, the high end decides the
///    direction (or both meet).
/// 2. Sure: the scout's two neighbours are tested at the user's confidence; a sure decision that
///    contradicts the scout moves the bracket outward in doubling steps until a sure "meets"
///    and a sure "fails" enclose the boundary, and bisection with sure decisions closes it.
///    A verdict that every value or none meets rests on sure decisions at both ends.
pub fn search(
    lo: f64,
    hi: f64,
    resolution: f64,
    mut decide: impl FnMut(f64, Level) -> Result<Decision, PlanError>,
) -> Result<Verdict, PlanError> {
    assert!(lo < hi && resolution > 0.0, "a checked range");
    // Grid index k is the value lo + k * resolution; the last index is hi.
    let last = ((hi - lo) / resolution - 1e-9).ceil().max(1.0) as u64;
    let value = |k: u64| if k == last { hi } else { grid_value(lo, resolution, k) };
    let mut at = |k: u64, level: Level| decide(value(k), level);
    let meets = |d: Decision| d == Decision::Meets;

    // The scout: a bracket (fail, meet), the meet end presumed at the high end until tested.
    let (mut fail, mut meet) = if meets(at(0, Level::Scout)?) {
        if meets(at(last, Level::Scout)?) {
            return settle_ends(last, &mut at, value);
        }
        (last, 0)
    } else {
        (0, last)
    };
    while meet.abs_diff(fail) > 1 {
        let mid = meet.min(fail) + meet.abs_diff(fail) / 2;
        if meets(at(mid, Level::Scout)?) {
            meet = mid;
        } else {
            fail = mid;
        }
    }

    // Sure: gallop outward until a sure "meets" and a sure "fails" enclose the boundary.
    let up = meet > fail;
    let (meet_end, fail_end) = if up { (last, 0) } else { (0, last) };
    let outward = |k: u64, step: u64, toward: u64| {
        if toward > k {
            (k + step).min(toward)
        } else {
            k.saturating_sub(step).max(toward)
        }
    };
    let mut step = 1;
    while !meets(at(meet, Level::Sure)?) {
        if meet == meet_end {
            return settle_ends(last, &mut at, value);
        }
        fail = meet;
        meet = outward(meet, step, meet_end);
        step *= 2;
    }
    step = 1;
    while meets(at(fail, Level::Sure)?) {
        if fail == fail_end {
            return settle_ends(last, &mut at, value);
        }
        meet = fail;
        fail = outward(fail, step, fail_end);
        step *= 2;
    }
    sure_bisection(fail, meet, &mut at, value)
}

/// The grid's value `k`: `lo + k * resolution`, rounded to nine decimals so that the sum's
/// binary error (`39.800000000000004` for `0 + 199 * 0.2`) does not reach the key, whose
/// schema may allow only so many decimals.
pub fn grid_value(lo: f64, resolution: f64, k: u64) -> f64 {
    let v = lo + k as f64 * resolution;
    let rounded = (v * 1e9).round() / 1e9;
    if rounded.is_finite() {
        rounded
    } else {
        v
    }
}

/// Bisection with sure decisions between `fail` (a sure "fails" or cap) and `meet` (a sure
/// "meets").
fn sure_bisection(
    mut fail: u64,
    mut meet: u64,
    at: &mut impl FnMut(u64, Level) -> Result<Decision, PlanError>,
    value: impl Fn(u64) -> f64,
) -> Result<Verdict, PlanError> {
    while meet.abs_diff(fail) > 1 {
        let mid = meet.min(fail) + meet.abs_diff(fail) / 2;
        if at(mid, Level::Sure)? == Decision::Meets {
            meet = mid;
        } else {
            fail = mid;
        }
    }
    Ok(Verdict::Between {
        meets_at: value(meet),
        fails_at: value(fail),
        fails_decided: at(fail, Level::Sure)? == Decision::Fails,
    })
}

/// Sure decisions at both ends: every value meets, none does, or the direction and a sure
/// bisection over the whole range (what the scout missed).
fn settle_ends(
    last: u64,
    at: &mut impl FnMut(u64, Level) -> Result<Decision, PlanError>,
    value: impl Fn(u64) -> f64,
) -> Result<Verdict, PlanError> {
    let lo_meets = at(0, Level::Sure)? == Decision::Meets;
    let hi_meets = at(last, Level::Sure)? == Decision::Meets;
    match (lo_meets, hi_meets) {
        (true, true) => Ok(Verdict::AllMeet),
        (false, false) => Ok(Verdict::NoneMeets),
        (true, false) => sure_bisection(last, 0, at, value),
        (false, true) => sure_bisection(0, last, at, value),
    }
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
    /// The scout's test (see [`Level`]).
    pub scout: SprtSpec,
    /// The decisions, in the order they were made: a value may appear twice, scout then sure.
    pub steps: Vec<Step>,
    /// The answer.
    pub verdict: Verdict,
    /// The values the verdict rests on whose sure test reached the seed cap undecided
    /// (`fails_at` of a [`Verdict::Between`] not decided, an end of a [`Verdict::NoneMeets`]),
    /// in increasing order. The verdict claims the user's confidence for none of them: more
    /// seeds (`--max-seeds`) could show any of them to meet.
    #[serde(default)]
    pub undecided_at: Vec<f64>,
    /// Seeds read for this target, over all values (a batch's seeds that no test needed are
    /// not counted, so the figure does not depend on the number of threads).
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
    /// The modulus of the carries ([`model::Carry`]) when runs are carried up the key.
    carry_modulus: Option<u64>,
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
        if range.key == "days" {
            return Err(PlanError::Solve(format!(
                "{}: the days are the horizon, not a key to solve for (a target's day would replace \
                 them); set them with --days and solve for another key",
                range.key
            )));
        }
        // `--seeds` sets how many runs a plan makes; a solve runs as many at each value as its
        // test needs, so the flag would be silently ignored.
        if let Some((_, n)) = overrides.iter().find(|(k, _)| *k == "seeds") {
            return Err(PlanError::Solve(format!(
                "{}: --seeds {n} does not apply: a solve runs as many seeds at each value as its \
                 test needs, up to --max-seeds",
                range.key
            )));
        }
        let doc = crate::document(text, origin, overrides)?;
        let base = from_table(doc.clone(), "command line")?;
        if targets.is_empty() {
            return Err(PlanError::Solve(format!("{}: give at least one --target", range.key)));
        }
        let mut solver = Solver { doc, base, range, resolution: 0.0, targets: Vec::new(), carry_modulus: None };
        let whole = solver.takes_whole_numbers()?;
        let (lo, hi, key) = (solver.range.lo, solver.range.hi, solver.range.key.clone());
        let resolution = match options.resolution {
            Some(r) if !(r.is_finite() && r > 0.0) => {
                return Err(PlanError::Solve(format!("{key}: --resolution {} must be above 0", fmt_f64(r))))
            }
            // The grid's values are written to nine decimals (`grid_value`).
            Some(r) if r < 1e-9 => {
                return Err(PlanError::Solve(format!("{key}: --resolution {} is finer than a billionth", fmt_f64(r))))
            }
            Some(r) if whole && r.fract() != 0.0 => {
                return Err(PlanError::Solve(format!("{key}: --resolution {}: {key} takes whole numbers", fmt_f64(r))))
            }
            Some(r) => r,
            None if whole => ((hi - lo) / 200.0).round().max(1.0),
            None => solver.default_resolution()?,
        };
        solver.resolution = resolution;
        // A step the key cannot take (a basis point is the finest credit) is found here, not
        // in the middle of the search.
        if lo + resolution < hi {
            solver.scenario_at(grid_value(lo, resolution, 1)).map_err(|e| {
                PlanError::Solve(format!(
                    "{key}: --resolution {} gives values the key cannot take: {e}",
                    fmt_f64(resolution)
                ))
            })?;
        }
        if let Some(band) = options.band {
            // Checked before the band's ends are rounded to nine decimals, where a band too
            // narrow would vanish and be reported as an empty one.
            if !(band.is_finite() && band > 0.0) {
                return Err(PlanError::Solve(format!(
                    "{key}: --band {band:?}: the indifference band's half-width must be above 0"
                )));
            }
            if band < 1e-9 {
                return Err(PlanError::Solve(format!(
                    "{key}: --band {band:?} is narrower than a billionth, the precision chances are \
                     written to, and no affordable number of seeds tells a chance that close to \
                     the limit from it; try 0.01, or leave --band out for a fifth of the limit"
                )));
            }
        }
        for text in targets {
            let target = Target::parse(text, solver.base.days)?;
            if let Some((first, _)) = solver
                .targets
                .iter()
                .find(|(t, _)| (&t.metric, t.op, t.value) == (&target.metric, target.op, target.value))
            {
                return Err(PlanError::Target(format!(
                    "{text:?}: the same target as {:?}, given before: give it once (each target gets a verdict)",
                    first.text
                )));
            }
            let limit = target.limit();
            if limit <= 0.0 || limit >= 1.0 {
                return Err(PlanError::Target(format!(
                    "{text:?}: a chance of exactly 0 or 1 cannot be tested: no number of seeds shows that \
                     no seed, or every seed, would have the event; give a limit strictly between 0 and 1, \
                     such as 0.01 or 0.99"
                )));
            }
            let band = options.band.unwrap_or(limit.min(1.0 - limit) / 5.0);
            // Rounded to nine places so that 0.05 + 0.01 reads 0.06 in reports.
            let round = |p: f64| Some((p * 1e9).round() / 1e9).filter(|r| r.is_finite()).unwrap_or(p);
            let spec =
                SprtSpec::new(round(limit - band), round(limit + band), options.alpha, options.beta, options.max_seeds)
                    .map_err(|e| {
                        PlanError::Target(format!("{text:?} (limit {}, band {}): {e}", fmt_f64(limit), fmt_f64(band)))
                    })?;
            solver.targets.push((target, spec));
        }
        for (target, _) in &solver.targets {
            for v in [lo, hi] {
                solver.scenario_for(target, v)?;
            }
        }
        if options.carry {
            solver.carry_modulus = solver.carry_modulus();
        }
        Ok(solver)
    }

    /// The modulus by which runs count payments to be carried up the key ([`model::Carry`]):
    /// `None` for a key other than `credit_pct` and `pool_initial_sats` (the only two that
    /// add to the pool and change nothing else), or when the record would be too large.
    /// Every credit of the grid is a multiple of the greatest common divisor `g` of the low
    /// end's, the step's and the high end's (in basis points, with 10,000), so `10,000 / g`
    /// prices them all; a value off that pattern is run, not carried ([`Carry::carry`]
    /// refuses it).
    fn carry_modulus(&self) -> Option<u64> {
        if !model::CARRIED_KEYS.contains(&self.range.key.as_str()) {
            return None;
        }
        let bps = |v: f64| self.scenario_at(v).ok().map(|s| u64::from(s.credit_bps().to_u16()));
        let lo = bps(self.range.lo)?;
        let step = bps(grid_value(self.range.lo, self.resolution, 1)).map_or(0, |b| b.abs_diff(lo));
        // Solving for the genesis, the credit is the low end's throughout.
        model::carry_modulus([lo, step, bps(self.range.hi)?], self.base.days)
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
            return Err(PlanError::Solve(format!(
                "{key}={}..{}: {key} takes whole numbers",
                fmt_f64(*lo),
                fmt_f64(*hi)
            )));
        }
        // Named as given (`--solve credit_pct=0..500`), not as the end alone.
        for v in [*lo, *hi] {
            let mut doc = self.doc.clone();
            set_number(&mut doc, key, &fmt_f64(v)).map_err(|e| match e {
                PlanError::Sweep(why) => PlanError::Solve(why),
                e => e,
            })?;
            from_table(doc, &format!("--solve {key}={}..{}", fmt_f64(*lo), fmt_f64(*hi)))?;
        }
        Ok(whole)
    }

    /// The default resolution of a key that takes fractions: a 200th of the range, or, when
    /// the key cannot take a value that fine (a credit has at most two decimals), the smallest
    /// step above it of 1, 2 or 5 times a power of ten that the key takes.
    fn default_resolution(&self) -> Result<f64, PlanError> {
        let SolveRange { key, lo, hi } = &self.range;
        let (lo, hi) = (*lo, *hi);
        let takes = |step: f64| lo + step >= hi || self.scenario_at(grid_value(lo, step, 1)).is_ok();
        let fine = (hi - lo) / 200.0;
        if takes(fine) {
            return Ok(fine);
        }
        let mut decade = 10f64.powi(fine.log10().floor() as i32);
        while decade < hi - lo {
            for m in [1.0, 2.0, 5.0] {
                let step = grid_value(0.0, m * decade, 1);
                if step >= fine && takes(step) {
                    return Ok(step);
                }
            }
            decade *= 10.0;
        }
        Err(PlanError::Solve(format!(
            "{key}={}..{}: no step between its values that the key takes; give --resolution",
            fmt_f64(lo),
            fmt_f64(hi)
        )))
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

    /// Each target (as given) with the fewest seeds its sequential test needs to decide that a
    /// value meets it ([`SprtSpec::trials_to_meet`]), and its seed cap.
    pub fn seeds_to_meet(&self) -> Vec<(String, u64, u64)> {
        self.targets.iter().map(|(t, spec)| (t.text.clone(), spec.trials_to_meet(), spec.max_trials)).collect()
    }

    /// The range solved over.
    pub fn range(&self) -> &SolveRange {
        &self.range
    }

    /// The resolution bisection stops at.
    pub fn resolution(&self) -> f64 {
        self.resolution
    }

    /// Solve every target on the current rayon pool; `on_step` hears of each decision.
    pub fn solve(&self, on_step: &dyn Fn(&Target, &Step)) -> Result<SolveOutput, PlanError> {
        self.solve_with_cost(on_step).map(|(out, _)| out)
    }

    /// [`Solver::solve`], and what it cost.
    pub fn solve_with_cost(&self, on_step: &dyn Fn(&Target, &Step)) -> Result<(SolveOutput, Cost), PlanError> {
        let mut tally = Tally::default();
        let mut results = Vec::new();
        for (target, spec) in &self.targets {
            let mut probes: Vec<Probe> = Vec::new();
            let mut steps = Vec::new();
            // A target's values share their seeds' carries; another target may cut the days.
            let mut carries = Carries { modulus: self.carry_modulus, sources: BTreeMap::new() };
            let verdict = search(self.range.lo, self.range.hi, self.resolution, |value, level| {
                let i = match probes.iter().position(|p| p.value == value) {
                    Some(i) => i,
                    None => {
                        probes.push(Probe::new(self.scenario_for(target, value)?, value, *spec));
                        probes.len() - 1
                    }
                };
                Ok(probes[i].decide(level, target, &mut tally, &mut carries, &mut |step| {
                    on_step(target, &step);
                    steps.push(step);
                }))
            })?;
            let seeds_run = probes.iter().map(|p| p.read as u64).sum();
            let undecided_at = undecided_at(&verdict, &probes);
            let line = verdict_line(&self.range, target, spec, &verdict, &undecided_at, seeds_run);
            results.push(TargetResult {
                target: target.clone(),
                event: target.event_words(),
                test: *spec,
                scout: scout_spec(spec),
                steps,
                verdict,
                undecided_at,
                seeds_run,
                line,
            });
        }
        let out = SolveOutput {
            format: FORMAT.to_owned(),
            scenario: self.base.clone(),
            range: self.range.clone(),
            resolution: self.resolution,
            results,
            requests: tally.requests,
            violations: tally.violations,
            first_violation: tally.first_violation,
        };
        Ok((out, tally.cost))
    }
}

/// What all runs add up to.
#[derive(Default)]
struct Tally {
    requests: u64,
    violations: u64,
    first_violation: Option<String>,
    cost: Cost,
}

/// A target's runs that can be carried up the key, at most one per seed: the one at the
/// lowest value, which carries to every value above it.
struct Carries {
    /// `None`: nothing is carried.
    modulus: Option<u64>,
    sources: BTreeMap<u64, Source>,
}

/// A run the pool never bound, with what carrying it takes.
struct Source {
    value: f64,
    scenario: Arc<PlanScenario>,
    result: SeedResult,
    carry: Carry,
}

impl Carries {
    /// Seed `seed` at `scenario` (the key at `value`) carried up from a run at a lower value.
    fn carry(&self, seed: u64, value: f64, scenario: &PlanScenario) -> Option<SeedResult> {
        let source = self.sources.get(&seed).filter(|s| s.value <= value)?;
        source.carry.carry(&source.result, &source.scenario, scenario)
    }

    /// Keep `result` of `seed` at `value` if the pool never bound it and no lower value's run
    /// is kept.
    fn offer(&mut self, seed: u64, value: f64, scenario: &Arc<PlanScenario>, result: &SeedResult, carry: Carry) {
        if carry.bound() || result.violations > 0 || self.sources.get(&seed).is_some_and(|s| s.value <= value) {
            return;
        }
        let source = Source { value, scenario: Arc::clone(scenario), result: result.clone(), carry };
        self.sources.insert(seed, source);
    }
}

/// The scout's test for the user's `spec`: the band twice as wide (kept inside `(0, 1)`),
/// alpha and beta 0.2 or the user's if larger, the same cap.
pub fn scout_spec(spec: &SprtSpec) -> SprtSpec {
    let (mid, band) = ((spec.p0 + spec.p1) / 2.0, (spec.p1 - spec.p0) / 2.0);
    let round = |p: f64| (p * 1e9).round() / 1e9;
    SprtSpec {
        p0: round((mid - 2.0 * band).max(spec.p0 / 2.0)),
        p1: round((mid + 2.0 * band).min((1.0 + spec.p1) / 2.0)),
        alpha: spec.alpha.max(0.2),
        beta: spec.beta.max(0.2),
        max_trials: spec.max_trials,
    }
}

/// What the search has learned at one value of the key: the seeds run there (`seed`,
/// `seed + 1`, ... in order), how many of them the tests have read, and both tests.
struct Probe {
    value: f64,
    scenario: Arc<PlanScenario>,
    scout: Sprt,
    sure: Sprt,
    /// Each seed's result, and whether it was carried up rather than run.
    runs: Vec<(SeedResult, bool)>,
    /// Seeds read, in order: the same on any number of threads, since a seed is read only
    /// while the test asked about is undecided (a batch's later seeds wait for the next
    /// question, or are never read).
    read: usize,
    /// The end-of-day balances of the seeds read.
    pools: Vec<Vec<u64>>,
}

impl Probe {
    fn new(scenario: PlanScenario, value: f64, spec: SprtSpec) -> Probe {
        let (scout, sure) = (Sprt::new(scout_spec(&spec)), Sprt::new(spec));
        Probe { value, scenario: Arc::new(scenario), scout, sure, runs: Vec::new(), read: 0, pools: Vec::new() }
    }

    /// The decision at `level`: seeds read one by one, in seed order, into both tests until
    /// there is one, run in batches of one per thread when none is waiting; a sure decision
    /// serves a scout's question too. `on_step` hears of each test as it decides; `tally`
    /// counts the seeds read.
    fn decide(
        &mut self,
        level: Level,
        target: &Target,
        tally: &mut Tally,
        carries: &mut Carries,
        on_step: &mut dyn FnMut(Step),
    ) -> Decision {
        loop {
            let decided = match level {
                Level::Scout => self.scout.decision().or(self.sure.decision()),
                Level::Sure => self.sure.decision(),
            };
            if let Some(d) = decided {
                return d;
            }
            if self.read == self.runs.len() {
                self.run_batch(target.stops_when_dry(), carries, &mut tally.cost);
            }
            let (r, carried) = &self.runs[self.read];
            self.read += 1;
            tally.cost.seeds_carried += u64::from(*carried);
            tally.requests += r.requests();
            tally.violations += r.violations;
            if tally.first_violation.is_none() {
                tally.first_violation.clone_from(&r.first_violation);
            }
            let event = target.bad_event(r);
            self.pools.push(r.pool_by_day.clone());
            for (test, level) in [(&mut self.scout, Level::Scout), (&mut self.sure, Level::Sure)] {
                if test.decision().is_none() {
                    if let Some(decision) = test.observe(event) {
                        let used = &self.pools[..test.trials() as usize];
                        on_step(Step {
                            value: self.value,
                            level,
                            decision,
                            seeds: test.trials(),
                            events: test.events(),
                            seeds_run: self.read as u64,
                            pool: PoolBand::of(used.iter().map(Vec::as_slice)),
                        });
                    }
                }
            }
        }
    }

    /// The next seeds: those that can be carried up from a lower value, and then as many to
    /// run as there are threads, run together (both tests have the same cap, and an
    /// undecided test has read fewer seeds than it). A run that can be carried up is offered
    /// to `carries`.
    fn run_batch(&mut self, stop_when_dry: bool, carries: &mut Carries, cost: &mut Cost) {
        let (threads, cap) = (rayon::current_num_threads().max(1), self.sure.spec().max_trials);
        let mut batch: Vec<Option<SeedResult>> = Vec::new();
        let mut to_run = Vec::new();
        let mut next = self.runs.len() as u64;
        while to_run.len() < threads && next < cap {
            let seed = self.scenario.seed + next;
            let carried = carries.carry(seed, self.value, &self.scenario);
            if carried.is_none() {
                to_run.push((batch.len(), seed));
            }
            batch.push(carried);
            next += 1;
        }
        let (scenario, modulus) = (&self.scenario, carries.modulus);
        let ran: Vec<(SeedResult, Option<Carry>)> = to_run
            .par_iter()
            .with_max_len(1)
            .map(|&(_, seed)| match modulus {
                Some(m) => {
                    let (result, carry) = model::run_carried(scenario, seed, stop_when_dry, m);
                    (result, Some(carry))
                }
                None => (model::run_until_dry(scenario, 0, seed, stop_when_dry), None),
            })
            .collect();
        let mut ran_at = vec![None; batch.len()];
        for ((at, seed), (result, carry)) in to_run.into_iter().zip(ran) {
            cost.seeds_run += 1;
            cost.requests_run += result.requests();
            if let Some(carry) = carry {
                carries.offer(seed, self.value, &self.scenario, &result, carry);
            }
            ran_at[at] = Some(result);
        }
        for (carried, ran) in batch.into_iter().zip(ran_at) {
            match (carried, ran) {
                (Some(carried), _) => self.runs.push((carried, true)),
                (None, Some(ran)) => self.runs.push((ran, false)),
                (None, None) => unreachable!("every seed not carried is run"),
            }
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

/// The values of `verdict` whose sure test ended undecided at the cap (see
/// [`TargetResult::undecided_at`]): the ends of a `NoneMeets` are the smallest and largest
/// values tested.
fn undecided_at(verdict: &Verdict, probes: &[Probe]) -> Vec<f64> {
    let undecided = |p: &&Probe| p.sure.decision() == Some(Decision::Undecided);
    let mut values: Vec<f64> = match verdict {
        Verdict::Between { fails_at, fails_decided: false, .. } => vec![*fails_at],
        Verdict::Between { .. } | Verdict::AllMeet => Vec::new(),
        Verdict::NoneMeets => {
            let lo = probes.iter().map(|p| p.value).fold(f64::INFINITY, f64::min);
            let hi = probes.iter().map(|p| p.value).fold(f64::NEG_INFINITY, f64::max);
            probes.iter().filter(undecided).map(|p| p.value).filter(|&v| v == lo || v == hi).collect()
        }
    };
    values.sort_by(f64::total_cmp);
    values.dedup();
    values
}

/// `undecided at 0 and 10 after the 10-seed cap: raise --max-seeds`.
pub fn undecided_words(values: &[f64], spec: &SprtSpec) -> String {
    let values: Vec<String> = values.iter().map(|v| fmt_f64(*v)).collect();
    format!(
        "undecided at {} after the {}-seed cap: raise --max-seeds",
        values.join(" and "),
        thousands(spec.max_trials)
    )
}

/// The user's confidence in words, `95`.
fn confidence_words(spec: &SprtSpec) -> String {
    fmt_f64((100.0 * (1.0 - spec.alpha.max(spec.beta)) * 1e6).round() / 1e6)
}

/// The verdict in one line. Only sure decisions are claimed at the user's confidence: a value
/// that stayed undecided at the cap is named as such, with no confidence.
fn verdict_line(
    range: &SolveRange,
    target: &Target,
    spec: &SprtSpec,
    verdict: &Verdict,
    undecided: &[f64],
    seeds_run: u64,
) -> String {
    let key = &range.key;
    let span = format!("{}..{}", fmt_f64(range.lo), fmt_f64(range.hi));
    let confidence = confidence_words(spec);
    let u = unit(key);
    let answer = match verdict {
        Verdict::Between { meets_at, fails_at, fails_decided } => {
            let (a, b) = (meets_at.min(*fails_at), meets_at.max(*fails_at));
            let (m, f) = (fmt_f64(*meets_at), fmt_f64(*fails_at));
            let between = format!("{key} between {} and {}{u}", fmt_f64(a), fmt_f64(b));
            if *fails_decided {
                format!("{between} (meets at {m}, fails at {f}), {confidence} % confidence")
            } else {
                format!("{between} (meets at {m}, {confidence} % confidence; {})", undecided_words(&[*fails_at], spec))
            }
        }
        Verdict::AllMeet => format!("every {key} in {span} meets it (both ends do), {confidence} % confidence"),
        Verdict::NoneMeets if undecided.is_empty() => {
            format!("no {key} in {span} meets it (neither end does), {confidence} % confidence")
        }
        Verdict::NoneMeets => {
            let failed: Vec<String> = [range.lo, range.hi]
                .iter()
                .filter(|v| !undecided.contains(v))
                .map(|v| format!("fails at {} ({confidence} % confidence), ", fmt_f64(*v)))
                .collect();
            format!("no {key} in {span} is shown to meet it: {}{}", failed.concat(), undecided_words(undecided, spec))
        }
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

/// One decision in a line, for progress: `credit_pct=72 sure fails after 377 seeds (26 with
/// the event)`.
pub fn step_line(key: &str, step: &Step) -> String {
    format!(
        "{key}={} {} {} after {} seeds ({} with the event)",
        fmt_f64(step.value),
        level_word(step.level),
        decision_word(step.decision),
        thousands(step.seeds),
        thousands(step.events)
    )
}

/// A level in one word.
pub fn level_word(level: Level) -> &'static str {
    match level {
        Level::Scout => "scout",
        Level::Sure => "sure",
    }
}

/// The terminal text of a solve: the verdicts first, then each target's steps.
pub fn text(out: &SolveOutput) -> String {
    let mut s = String::new();
    for r in &out.results {
        s.push_str(&r.line);
        s.push('\n');
    }
    for r in &out.results {
        s.push_str(&decisions_text(&out.range.key, "", r));
    }
    s
}

/// A target's bad event and both tests in words.
pub fn test_words(r: &TargetResult) -> String {
    let (t, scout) = (&r.test, &r.scout);
    format!(
        "bad event \"{}\", tested {} against {} (alpha {}, beta {}, at most {} seeds a value); \
         the scout, which steers the search only, {} against {} (alpha {}, beta {})",
        r.event,
        fmt_f64(t.p0),
        fmt_f64(t.p1),
        fmt_f64(t.alpha),
        fmt_f64(t.beta),
        thousands(t.max_trials),
        fmt_f64(scout.p0),
        fmt_f64(scout.p1),
        fmt_f64(scout.alpha),
        fmt_f64(scout.beta),
    )
}

/// A target's test and its decisions, each with its level, after a blank line; the heading
/// starts with `heading` (a frontier's point).
pub fn decisions_text(key: &str, heading: &str, r: &TargetResult) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "\n{heading}{}: {}", r.target.text, test_words(r));
    for step in &r.steps {
        let _ = writeln!(
            s,
            "  {key}={:<10} {:<5} {:<9} {:>6} seeds, {:>6} with the event",
            fmt_f64(step.value),
            level_word(step.level),
            decision_word(step.decision),
            thousands(step.seeds),
            thousands(step.events)
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The search with a scout that meets at `scout_from` and above and a sure test that meets
    /// at `sure_from` and above: the verdict and the (value, level) pairs asked, each once.
    fn run(lo: f64, hi: f64, resolution: f64, meets: impl Fn(f64, Level) -> Decision) -> (Vec<(f64, Level)>, Verdict) {
        let mut asked: Vec<(f64, Level)> = Vec::new();
        let verdict = search(lo, hi, resolution, |v, level| {
            if !asked.contains(&(v, level)) {
                asked.push((v, level));
            }
            Ok(meets(v, level))
        })
        .unwrap();
        (asked, verdict)
    }

    fn threshold(meets: impl Fn(f64) -> bool) -> impl Fn(f64, Level) -> Decision {
        move |v, _| if meets(v) { Decision::Meets } else { Decision::Fails }
    }

    #[test]
    fn the_search_brackets_the_boundary_to_the_resolution() {
        let (asked, v) = run(0.0, 100.0, 0.5, threshold(|x| x >= 22.7));
        assert_eq!(v, Verdict::Between { meets_at: 23.0, fails_at: 22.5, fails_decided: true });
        // The low end, log2(200) = 7.6 midpoints, then the bracket's two values made sure.
        let scouted = asked.iter().filter(|(_, l)| *l == Level::Scout).count();
        assert_eq!(scouted, 1 + 8, "{asked:?}");
        assert_eq!(asked.iter().filter(|(_, l)| *l == Level::Sure).count(), 2, "{asked:?}");
        // The high end, a value that meets (the costly kind), is never tested when one below it meets.
        assert!(asked.iter().all(|(x, _)| *x != 100.0), "{asked:?}");
        // Decreasing: the largest value that meets.
        let (_, v) = run(0.0, 200.0, 5.0, threshold(|x| x <= 72.0));
        assert_eq!(v, Verdict::Between { meets_at: 70.0, fails_at: 75.0, fails_decided: true });
        // A resolution that does not divide the range: the last step ends at the high end.
        let (_, v) = run(0.0, 10.0, 3.0, threshold(|x| x >= 9.5));
        assert_eq!(v, Verdict::Between { meets_at: 10.0, fails_at: 9.0, fails_decided: true });
        // Only the high end meets; every value meets; none does.
        let (_, v) = run(0.0, 10.0, 1.0, threshold(|x| x >= 10.0));
        assert_eq!(v, Verdict::Between { meets_at: 10.0, fails_at: 9.0, fails_decided: true });
        assert_eq!(run(0.0, 1.0, 0.1, threshold(|_| true)).1, Verdict::AllMeet);
        let (asked, v) = run(0.0, 1.0, 0.1, threshold(|_| false));
        assert_eq!(v, Verdict::NoneMeets);
        assert!(asked.contains(&(0.0, Level::Sure)) && asked.contains(&(1.0, Level::Sure)), "{asked:?}");
    }

    #[test]
    fn sure_decisions_overrule_a_scout_that_erred() {
        for scout_from in [0.0, 3.0, 15.0, 22.5, 23.0, 30.0, 99.0, 100.5] {
            let (asked, v) = run(0.0, 100.0, 0.5, |x, level| {
                let from = if level == Level::Scout { scout_from } else { 22.7 };
                if x >= from {
                    Decision::Meets
                } else {
                    Decision::Fails
                }
            });
            assert_eq!(
                v,
                Verdict::Between { meets_at: 23.0, fails_at: 22.5, fails_decided: true },
                "scout from {scout_from}: {asked:?}"
            );
        }
        // A scout that sees the direction reversed.
        let (_, v) = run(0.0, 100.0, 0.5, |x, level| {
            let meets = if level == Level::Scout { x <= 40.0 } else { x >= 22.7 };
            if meets {
                Decision::Meets
            } else {
                Decision::Fails
            }
        });
        assert_eq!(v, Verdict::Between { meets_at: 23.0, fails_at: 22.5, fails_decided: true });
        // A scout that says every value meets, and one that says none does.
        for scout in [true, false] {
            let (_, v) = run(0.0, 100.0, 0.5, |x, level| {
                let meets = if level == Level::Scout { scout } else { x >= 22.7 };
                if meets {
                    Decision::Meets
                } else {
                    Decision::Fails
                }
            });
            assert_eq!(v, Verdict::Between { meets_at: 23.0, fails_at: 22.5, fails_decided: true });
        }
    }

    #[test]
    fn grid_values_carry_no_binary_error() {
        // 0 + 199 * 0.2 is 39.800000000000004 in binary: a credit_pct the schema refuses.
        assert_eq!(0.0 + 199.0 * 0.2, 39.800000000000004);
        for k in 0..=200 {
            let v = grid_value(0.0, 0.2, k);
            assert_eq!(v, (v * 100.0).round() / 100.0, "{k}: {v}");
        }
        assert_eq!(grid_value(10.0, 0.1, 3), 10.3);
        assert_eq!(grid_value(0.0, 5e8, 3), 1.5e9);
    }

    #[test]
    fn an_undecided_value_counts_as_not_meeting() {
        let (_, v) = run(0.0, 4.0, 1.0, |x, _| if x >= 3.0 { Decision::Meets } else { Decision::Undecided });
        assert_eq!(v, Verdict::Between { meets_at: 3.0, fails_at: 2.0, fails_decided: false });
    }

    #[test]
    fn the_scout_test_is_wider_and_looser_and_stays_a_test() {
        let spec = SprtSpec::new(0.04, 0.06, 0.05, 0.05, 2000).unwrap();
        let s = scout_spec(&spec);
        assert_eq!((s.p0, s.p1, s.alpha, s.beta, s.max_trials), (0.03, 0.07, 0.2, 0.2, 2000));
        // A band already wide stays inside (0, 1).
        let s = scout_spec(&SprtSpec::new(0.01, 0.9, 0.3, 0.01, 5).unwrap());
        assert!(s.p0 > 0.0 && s.p0 < s.p1 && s.p1 < 1.0 && s.alpha == 0.3 && s.beta == 0.2, "{s:?}");
        assert!(SprtSpec::new(s.p0, s.p1, s.alpha, s.beta, s.max_trials).is_ok());
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
            ("credit_pct=0..1e400", "\"1e400\" is out of range (not a finite number)"),
            ("credit_pct=-inf..1", "\"-inf\" is out of range (not a finite number)"),
        ] {
            let e = parse_solve(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
