//! The frontier: one key solved for each value of a second key, e.g. the credit needed for
//! each trusted budget.
//!
//! `plan S.toml --target T --solve credit_pct=0..100 --over budget.trusted=50,100,200` is a
//! solve ([`crate::solve`]) repeated with `budget.trusted` set to each value in turn, in the
//! order given. Each point is an ordinary solve: the same seeds, the same sequential test, the
//! same bisection, so its interval means what a single solve's does and the output does not
//! depend on the thread count. It is not a joint confidence statement: each interval holds
//! with its own confidence, and the curve through them is drawn, not tested.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::report::{thousands, Axis};
use super::scenario::{fmt_f64, PlanError, PlanScenario};
use super::solve::{decisions_text, undecided_words, unit, Cost, SolveRange, Solver, Step, TargetResult, Verdict};
use super::target::Target;

/// The output format version.
pub const FORMAT: &str = "ledger-sim-frontier/1";

/// Parse `--over KEY=V1,V2,...`: the second key and its values, as written.
pub fn parse_over(s: &str) -> Result<Axis, PlanError> {
    let fail = |why: &str| PlanError::Over(format!("{s}: {why}"));
    let (key, values) = s.split_once('=').ok_or_else(|| fail("expected KEY=V1,V2,..., e.g. budget.trusted=50,100"))?;
    let values: Vec<String> = values.split(',').map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()).collect();
    if values.is_empty() {
        return Err(fail("no values"));
    }
    for v in &values {
        match v.parse::<f64>() {
            Ok(x) if x.is_finite() => {}
            Ok(x) if x.is_infinite() => return Err(fail(&format!("{v:?} is out of range (not a finite number)"))),
            _ => return Err(fail(&format!("{v:?} is not a number"))),
        }
    }
    Ok(Axis { key: key.trim().to_owned(), values })
}

/// A frontier ready to run: one solver per value of the second key.
#[derive(Clone, Debug)]
pub struct Frontier {
    base: PlanScenario,
    over: Axis,
    points: Vec<Solver>,
}

/// One value of the second key and what the solve found there.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FrontierPoint {
    /// The second key's value, as written.
    pub value: String,
    /// The scenario's starting pool at this point, sats (the charts start from it).
    pub pool_initial_sats: u64,
    /// One per target, in the order given.
    pub results: Vec<TargetResult>,
    /// Requests decided in this point's runs.
    pub requests: u64,
}

/// The output of a frontier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FrontierOutput {
    /// [`FORMAT`].
    pub format: String,
    /// The scenario with command-line overrides, before either key is set.
    pub scenario: PlanScenario,
    /// The key solved for and its range.
    pub range: SolveRange,
    /// The resolution of each solve.
    pub resolution: f64,
    /// The second key and its values, in the order solved.
    pub over: Axis,
    /// One per value of the second key.
    pub points: Vec<FrontierPoint>,
    /// Requests decided over all runs.
    pub requests: u64,
    /// Invariant violations over all runs (must be 0).
    pub violations: u64,
    /// The first violation, if any.
    pub first_violation: Option<String>,
}

impl Frontier {
    /// A frontier of `solver`'s key over the values of `over`. Every error is found here,
    /// before any work: the solved key given again, a value given twice, a key the scenario
    /// does not have, a value the key cannot take (or with which a target or an end of the
    /// solved range no longer fits).
    pub fn new(solver: &Solver, over: Axis) -> Result<Frontier, PlanError> {
        let key = &over.key;
        if over.values.is_empty() {
            return Err(PlanError::Over(format!("{key}: no values")));
        }
        if key == "days" {
            return Err(PlanError::Over(format!(
                "{key}: the days are the horizon, not a key to vary (a target's day would replace \
                 them); set them with --days"
            )));
        }
        if key == solver.key() {
            return Err(PlanError::Over(format!(
                "{key}: the key solved for; the frontier takes a second key (--over budget.trusted=50,100)"
            )));
        }
        let numbers: Vec<f64> = over
            .values
            .iter()
            .map(|v| v.parse::<f64>().map_err(|_| PlanError::Over(format!("{key}={v}: not a number"))))
            .collect::<Result<_, _>>()?;
        for (i, x) in numbers.iter().enumerate() {
            if let Some(j) = numbers[..i].iter().position(|y| y == x) {
                return Err(PlanError::Over(format!(
                    "{key}: {} and {} are the same value; give each once",
                    over.values[j], over.values[i]
                )));
            }
        }
        let points = over.values.iter().map(|v| solver.with_setting(key, v)).collect::<Result<Vec<_>, _>>()?;
        Ok(Frontier { base: solver.base.clone(), over, points })
    }

    /// About how many bytes the largest run holds (see [`crate::Plan::bytes_per_run`]).
    pub fn bytes_per_run(&self) -> u64 {
        self.points.iter().map(Solver::bytes_per_run).max().unwrap_or(0)
    }

    /// The key solved for.
    pub fn key(&self) -> &str {
        self.points[0].key()
    }

    /// The second key.
    pub fn over(&self) -> &Axis {
        &self.over
    }

    /// Solve at every value of the second key, in order, on the current rayon pool; `on_step`
    /// hears of each value tested, with the second key's value.
    pub fn solve(&self, on_step: &dyn Fn(&str, &Target, &Step)) -> Result<FrontierOutput, PlanError> {
        self.solve_with_cost(on_step).map(|(out, _)| out)
    }

    /// [`Frontier::solve`], and what it cost over all its points.
    pub fn solve_with_cost(&self, on_step: &dyn Fn(&str, &Target, &Step)) -> Result<(FrontierOutput, Cost), PlanError> {
        let mut cost = Cost::default();
        let first = self.points.first().expect("a frontier has a point");
        let mut out = FrontierOutput {
            format: FORMAT.to_owned(),
            scenario: self.base.clone(),
            range: first.range().clone(),
            resolution: first.resolution(),
            over: self.over.clone(),
            points: Vec::new(),
            requests: 0,
            violations: 0,
            first_violation: None,
        };
        for (value, solver) in self.over.values.iter().zip(&self.points) {
            let (one, one_cost) = solver.solve_with_cost(&|target, step| on_step(value, target, step))?;
            cost += one_cost;
            out.requests += one.requests;
            out.violations += one.violations;
            if out.first_violation.is_none() {
                out.first_violation = one.first_violation;
            }
            out.points.push(FrontierPoint {
                value: value.clone(),
                pool_initial_sats: solver.base.pool_initial_sats,
                results: one.results,
                requests: one.requests,
            });
        }
        Ok((out, cost))
    }
}

/// A verdict as an interval of the solved key, in a few words: `between 22 and 22.5 %`.
pub fn interval_words(range: &SolveRange, verdict: &Verdict) -> String {
    let span = format!("{}..{}", fmt_f64(range.lo), fmt_f64(range.hi));
    match verdict {
        Verdict::Between { meets_at, fails_at, .. } => format!(
            "between {} and {}{}",
            fmt_f64(meets_at.min(*fails_at)),
            fmt_f64(meets_at.max(*fails_at)),
            unit(&range.key)
        ),
        Verdict::AllMeet => format!("all of {span} meet"),
        Verdict::NoneMeets => format!("none of {span} meets"),
    }
}

/// A target's verdict as an interval, like [`interval_words`], but a range in which no value
/// was shown to meet because a value stayed undecided at the cap says so: `none of 0..10 shown
/// to meet`.
pub fn result_interval_words(range: &SolveRange, r: &TargetResult) -> String {
    match r.verdict {
        Verdict::NoneMeets if !r.undecided_at.is_empty() => {
            format!("none of {}..{} shown to meet", fmt_f64(range.lo), fmt_f64(range.hi))
        }
        ref v => interval_words(range, v),
    }
}

/// How the verdict was reached, in a few words: `meets at 22.5, fails at 22`, or, where a value
/// stayed undecided at the cap, `undecided at 0 and 10 after the 10-seed cap: raise
/// --max-seeds`.
fn how_words(r: &TargetResult) -> String {
    let undecided = undecided_words(&r.undecided_at, &r.test);
    match r.verdict {
        Verdict::Between { meets_at, fails_at, fails_decided } => {
            let not = if fails_decided { format!("fails at {}", fmt_f64(fails_at)) } else { undecided };
            format!("meets at {}, {not}", fmt_f64(meets_at))
        }
        Verdict::AllMeet => "both ends meet".to_owned(),
        Verdict::NoneMeets if r.undecided_at.is_empty() => "neither end meets".to_owned(),
        Verdict::NoneMeets if r.undecided_at.len() == 1 => format!("one end fails, {undecided}"),
        Verdict::NoneMeets => undecided,
    }
}

/// The terminal text of a frontier: for each target, a table of the second key's values and
/// the interval of the solved key at each, then every value tested.
pub fn text(out: &FrontierOutput) -> String {
    let mut s = String::new();
    let key = &out.range.key;
    let over = &out.over.key;
    let rows: Vec<Vec<[String; 4]>> = (0..out.points.first().map_or(0, |p| p.results.len()))
        .map(|t| {
            out.points
                .iter()
                .map(|p| {
                    let r = &p.results[t];
                    [p.value.clone(), result_interval_words(&out.range, r), thousands(r.seeds_run), how_words(r)]
                })
                .collect()
        })
        .collect();
    for (t, rows) in rows.iter().enumerate() {
        let r = &out.points[0].results[t];
        let confidence = fmt_f64((100.0 * (1.0 - r.test.alpha.max(r.test.beta)) * 1e6).round() / 1e6);
        if t > 0 {
            let _ = writeln!(s);
        }
        // Undecided values are never claimed at the user's confidence.
        let except = if out.points.iter().any(|p| !p.results[t].undecided_at.is_empty()) {
            ", none where undecided"
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "{}: {key} that meets it, for each {over} ({confidence} % confidence each{except})",
            r.target.text
        );
        let w0 = rows.iter().map(|c| c[0].len()).chain([over.len()]).max().unwrap_or(0);
        let w1 = rows.iter().map(|c| c[1].len()).chain([key.len()]).max().unwrap_or(0);
        let w2 = rows.iter().map(|c| c[2].len()).chain([5]).max().unwrap_or(0);
        let _ = writeln!(s, "  {over:<w0$}  {key:<w1$}  {:>w2$}  verdict", "seeds");
        for c in rows {
            let _ = writeln!(s, "  {:<w0$}  {:<w1$}  {:>w2$}  {}", c[0], c[1], c[2], c[3]);
        }
    }
    for p in &out.points {
        for r in &p.results {
            s.push_str(&decisions_text(key, &format!("{over}={}, ", p.value), r));
        }
    }
    s
}
