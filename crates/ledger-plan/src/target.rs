//! Targets: what a planner wants of a configuration, as a probability of a bad event per seed.
//!
//! A target is written `METRIC(ARGS) OP VALUE`:
//!
//! | target | met when | bad event of a seed | its largest allowed chance |
//! |---|---|---|---|
//! | `p_dry(day=90) <= 0.05` | the pool runs dry by day 90 in at most 5 % of seeds | dry by day 90 | 0.05 |
//! | `pool_p5(day=90) >= 10000` | the day-90 pool balance's 5th percentile is at least 10,000 sats | pool below 10,000 | 0.05 |
//! | `peak_locked_p95 <= 5000` | the 95th percentile of the peak sats locked in reservations is at most 5,000 | peak above 5,000 | 0.05 |
//! | `free_p10(tier=new) >= 0.2` | in 90 % of seeds at least 20 % of `new` users' requests are free | share below 0.2 | 0.10 |
//!
//! `day` defaults to the scenario's last day. A quantile target `M_pQ >= X` is
//! `P(M < X) <= Q %` and `M_pQ <= X` is `P(M > X) <= 1 - Q %`; `p_dry >= q` is
//! `P(not dry) <= 1 - q`. So every target is one Bernoulli trial per seed, which the
//! sequential test of [`crate::sprt`] decides.
//!
//! A seed in which a tier made no request has no free share. For `free_pQ(tier=T)` it counts
//! as the bad event, whichever way the target points: the target is about `T`'s requests, and
//! a seed without one is no evidence that they are served, so a tier that never asks (none
//! in the population and none promoted into it) fails the target rather than meeting it
//! vacuously. A target in sats against a negative value (`pool_p5 >= -100`), and an argument
//! given twice (`p_dry(day=7,day=3)`), are refused: the one is vacuous, the other ambiguous.

use ledger_core::Tier;
use serde::{Deserialize, Serialize};

use super::model::{SeedResult, FREE};
use super::scenario::{fmt_f64, PlanError};

/// A metric of one seed.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "metric")]
pub enum Metric {
    /// Whether the pool ran dry (a request gated because it was empty) by `day`.
    PDry {
        /// 1-based.
        day: u32,
    },
    /// The pool's balance at the end of `day`, sats.
    Pool {
        /// 1-based.
        day: u32,
        /// The percentile, 1..=99.
        pct: u32,
    },
    /// The most sats locked in reservations at once.
    PeakLocked {
        /// The percentile, 1..=99.
        pct: u32,
    },
    /// The share of a tier's requests decided free.
    Free {
        /// The tier.
        tier: Tier,
        /// The percentile, 1..=99.
        pct: u32,
    },
}

/// `<=` or `>=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// `<=`
    #[serde(rename = "<=")]
    AtMost,
    /// `>=`
    #[serde(rename = ">=")]
    AtLeast,
}

/// A parsed target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Target {
    /// As written.
    pub text: String,
    /// What is measured.
    pub metric: Metric,
    /// The direction.
    pub op: Op,
    /// The value.
    pub value: f64,
}

fn bad(text: &str, why: impl std::fmt::Display) -> PlanError {
    PlanError::Target(format!("{text:?}: {why}"))
}

/// A metric counted in sats is never below 0, so a negative value makes the target vacuous:
/// always met with `>=`, never with `<=`. Either way the solve would answer a question nobody
/// asked, so the target is refused.
fn never_negative(text: &str, name: &str, op: Op, value: f64) -> Result<(), PlanError> {
    if value >= 0.0 {
        return Ok(());
    }
    let always = match op {
        Op::AtLeast => "always met",
        Op::AtMost => "never met",
    };
    let value = fmt_f64(value);
    Err(bad(text, format!("{name} counts sats, never fewer than 0, so against {value} it is {always}; give 0 or more")))
}

/// The metric names, for messages.
const METRICS: &str = "p_dry(day=D), pool_pQ(day=D), peak_locked_pQ, free_pQ(tier=T)";

impl Target {
    /// Parse `METRIC(ARGS) OP VALUE` for a scenario of `days` days (the default `day`, and
    /// the last one a target can name).
    pub fn parse(text: &str, days: u32) -> Result<Target, PlanError> {
        let (lhs, op, rhs) = if let Some((l, r)) = text.split_once("<=") {
            (l, Op::AtMost, r)
        } else if let Some((l, r)) = text.split_once(">=") {
            (l, Op::AtLeast, r)
        } else {
            return Err(bad(text, "expected METRIC <= VALUE or METRIC >= VALUE, e.g. 'p_dry(day=90) <= 0.05'"));
        };
        let value: f64 =
            rhs.trim().replace('_', "").parse().map_err(|_| bad(text, format!("{:?} is not a number", rhs.trim())))?;
        if !value.is_finite() {
            return Err(bad(text, "the value must be finite"));
        }
        let lhs = lhs.trim();
        let (name, args) = match lhs.split_once('(') {
            Some((name, rest)) => {
                let args = rest.strip_suffix(')').ok_or_else(|| bad(text, "missing ')'"))?;
                (name.trim(), args)
            }
            None => (lhs, ""),
        };
        let mut day = None;
        let mut tier = None;
        for arg in args.split(',').map(str::trim).filter(|a| !a.is_empty()) {
            let (k, v) = arg.split_once('=').ok_or_else(|| bad(text, format!("{arg:?}: expected NAME=VALUE")))?;
            match k.trim() {
                "day" if day.is_some() => return Err(bad(text, "day is given twice; give it once")),
                "tier" if tier.is_some() => return Err(bad(text, "tier is given twice; give it once")),
                "day" => {
                    let d: u32 =
                        v.trim().parse().map_err(|_| bad(text, format!("day={}: not a day number", v.trim())))?;
                    if d == 0 || d > days {
                        return Err(bad(
                            text,
                            format!("day {d} is not in 1..={days}, the scenario's days (--days sets them)"),
                        ));
                    }
                    day = Some(d);
                }
                "tier" => {
                    let t = Tier::ALL.into_iter().find(|t| t.to_string() == v.trim()).ok_or_else(|| {
                        bad(text, format!("tier={}: one of new, established, trusted, elite", v.trim()))
                    })?;
                    tier = Some(t);
                }
                other => return Err(bad(text, format!("unknown argument {other:?} (day, tier)"))),
            }
        }
        let pct_of = |prefix: &str| -> Option<Result<u32, PlanError>> {
            let q = name.strip_prefix(prefix)?;
            Some(match q.parse::<u32>() {
                Ok(q) if (1..=99).contains(&q) => Ok(q),
                _ => Err(bad(text, format!("{name}: the percentile after {prefix} must be 1..=99"))),
            })
        };
        let takes = |allowed_day: bool, allowed_tier: bool| -> Result<(), PlanError> {
            if day.is_some() && !allowed_day {
                return Err(bad(text, format!("{name} takes no day")));
            }
            if tier.is_some() && !allowed_tier {
                return Err(bad(text, format!("{name} takes no tier")));
            }
            Ok(())
        };
        let metric = if name == "p_dry" {
            takes(true, false)?;
            if !(0.0..=1.0).contains(&value) {
                return Err(bad(text, "a probability must be in 0..=1"));
            }
            Metric::PDry { day: day.unwrap_or(days) }
        } else if let Some(pct) = pct_of("pool_p") {
            takes(true, false)?;
            never_negative(text, name, op, value)?;
            Metric::Pool { day: day.unwrap_or(days), pct: pct? }
        } else if let Some(pct) = pct_of("peak_locked_p") {
            takes(false, false)?;
            never_negative(text, name, op, value)?;
            Metric::PeakLocked { pct: pct? }
        } else if let Some(pct) = pct_of("free_p") {
            takes(false, true)?;
            if !(0.0..=1.0).contains(&value) {
                return Err(bad(text, "a share must be in 0..=1"));
            }
            let tier = tier.ok_or_else(|| bad(text, "free_pQ needs a tier: free_p10(tier=new)"))?;
            Metric::Free { tier, pct: pct? }
        } else {
            return Err(bad(text, format!("unknown metric {name:?} (one of {METRICS})")));
        };
        Ok(Target { text: text.trim().to_owned(), metric, op, value })
    }

    /// The largest chance of the bad event for which the target is met.
    pub fn limit(&self) -> f64 {
        match (self.metric, self.op) {
            (Metric::PDry { .. }, Op::AtMost) => self.value,
            (Metric::PDry { .. }, Op::AtLeast) => 1.0 - self.value,
            (Metric::Pool { pct, .. } | Metric::PeakLocked { pct } | Metric::Free { pct, .. }, op) => {
                let q = f64::from(pct) / 100.0;
                match op {
                    Op::AtLeast => q,
                    Op::AtMost => 1.0 - q,
                }
            }
        }
    }

    /// Whether the bad event happened in `run`.
    pub fn bad_event(&self, run: &SeedResult) -> bool {
        let m = match self.metric {
            Metric::PDry { day } => {
                let dry = run.depleted_day.is_some_and(|d| d <= day);
                return dry == (self.op == Op::AtMost);
            }
            Metric::Pool { day, .. } => {
                // A run that stopped before `day` never does for this metric ([`Self::stops_when_dry`]).
                run.pool_by_day[day as usize - 1] as f64
            }
            Metric::PeakLocked { .. } => run.reserved_peak_sats as f64,
            Metric::Free { tier, .. } => {
                let served = run.served[tier.index()];
                let n: u64 = served.iter().sum();
                if n == 0 {
                    // No request from the tier: no share, so nothing shows the target met.
                    return true;
                }
                served[FREE] as f64 / n as f64
            }
        };
        match self.op {
            Op::AtLeast => m < self.value,
            Op::AtMost => m > self.value,
        }
    }

    /// Whether a run can stop on the first day the pool ran dry: only for `p_dry`, whose
    /// event is settled then.
    pub fn stops_when_dry(&self) -> bool {
        matches!(self.metric, Metric::PDry { .. })
    }

    /// The last day a run needs to settle the event, when it is not the scenario's last.
    pub fn last_day(&self) -> Option<u32> {
        match self.metric {
            Metric::PDry { day } | Metric::Pool { day, .. } => Some(day),
            Metric::PeakLocked { .. } | Metric::Free { .. } => None,
        }
    }

    /// The bad event in words, for reports.
    pub fn event_words(&self) -> String {
        let v = fmt_f64(self.value);
        let cmp = |op: Op| if op == Op::AtLeast { "below" } else { "above" };
        match self.metric {
            Metric::PDry { day } if self.op == Op::AtMost => format!("pool dry by day {day}"),
            Metric::PDry { day } => format!("pool not dry by day {day}"),
            Metric::Pool { day, .. } => format!("pool on day {day} {} {v} sats", cmp(self.op)),
            Metric::PeakLocked { .. } => format!("peak locked {} {v} sats", cmp(self.op)),
            Metric::Free { tier, .. } => format!("free share of {tier} {} {v} or no {tier} request", cmp(self.op)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: &str) -> String {
        Target::parse(s, 90).unwrap_err().to_string()
    }

    #[test]
    fn targets_parse_into_a_bad_event_and_its_limit() {
        let t = Target::parse("p_dry(day=30) <= 0.05", 90).unwrap();
        assert_eq!((t.metric, t.limit()), (Metric::PDry { day: 30 }, 0.05));
        let t = Target::parse("p_dry <= 0.1", 90).unwrap();
        assert_eq!(t.metric, Metric::PDry { day: 90 });
        let t = Target::parse(" pool_p5(day=10) >= 10_000 ", 90).unwrap();
        assert_eq!((t.metric, t.value, t.limit()), (Metric::Pool { day: 10, pct: 5 }, 10_000.0, 0.05));
        let t = Target::parse("peak_locked_p95 <= 5000", 90).unwrap();
        assert!((t.limit() - 0.05).abs() < 1e-12);
        let t = Target::parse("free_p10(tier=new) >= 0.2", 90).unwrap();
        assert_eq!(t.metric, Metric::Free { tier: Tier::New, pct: 10 });
    }

    #[test]
    fn garbage_is_named() {
        assert!(err("p_dry").contains("expected METRIC <= VALUE"));
        assert!(err("p_dry <= x").contains("\"x\" is not a number"));
        assert!(err("p_dry <= 1.5").contains("a probability must be in 0..=1"));
        assert!(err("p_dry(day=91) <= 0.05").contains("day 91 is not in 1..=90"));
        assert!(err("p_dry(day=0) <= 0.05").contains("day 0 is not in 1..=90"));
        assert!(err("p_dry(day=9 <= 0.05").contains("missing ')'"));
        assert!(err("p_dry(week=9) <= 0.05").contains("unknown argument \"week\""));
        assert!(err("p_wet <= 0.05").contains("unknown metric \"p_wet\""));
        assert!(err("pool_p0 >= 5").contains("1..=99"));
        assert!(err("pool_pfive >= 5").contains("1..=99"));
        assert!(err("free_p10 >= 0.2").contains("needs a tier"));
        assert!(err("free_p10(tier=gold) >= 0.2").contains("one of new"));
        assert!(err("peak_locked_p95(day=3) <= 5").contains("takes no day"));
        assert!(err("p_dry <= inf").contains("finite"));
        // An argument given twice is ambiguous, not "the last wins".
        assert!(err("p_dry(day=7,day=3) <= 0.3").contains("day is given twice"));
        assert!(err("free_p10(tier=new,tier=elite) >= 0.1").contains("tier is given twice"));
        // Sats are never negative: against a negative value a target is vacuous.
        let e = err("pool_p5(day=7) >= -100");
        assert!(e.contains("counts sats, never fewer than 0") && e.contains("always met"), "{e}");
        assert!(err("peak_locked_p95 <= -5").contains("never met"));
        assert!(Target::parse("pool_p5(day=7) >= 0", 90).is_ok());
        // Nothing panics, whatever is written.
        for s in [
            "",
            "<=",
            ">=",
            "(((<=1",
            "p_dry(day=)<=0.1",
            "p_dry(day=4294967296) <= 0.1",
            "p_dry(=3)<=0.1",
            "pool_p5(day=1,day=2)>=1",
            "free_p10(tier=new,tier=elite)>=0.1",
            "pool_p5)(>=1",
            "p_dry >= 0.5 <= 3",
            "pööl_p5 >= 1",
            "pool_p99999999999999999999 >= 1",
            "peak_locked_p <= 1",
            "p_dry <= -0",
        ] {
            let _ = Target::parse(s, 90);
        }
    }
}
