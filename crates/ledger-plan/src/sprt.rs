//! Wald's sequential probability ratio test for a Bernoulli probability, the decision the
//! solver makes at each value of a key.
//!
//! Every seed of a configuration is one Bernoulli trial: the bad event of a target happened
//! (the pool ran dry by day 90) or not. The question is whether its probability `p` is at most
//! a threshold. Adding seeds until an interval clears the threshold is optional stopping,
//! which voids a fixed-n confidence interval; the SPRT is built for it. It tests
//! `H0: p = p0` (meets) against `H1: p = p1` (fails) with `p0 < threshold < p1`, the
//! indifference band: after each trial it adds the trial's log-likelihood ratio and stops
//! when the sum leaves `(ln(beta / (1 - alpha)), ln((1 - beta) / alpha))`. Whatever the
//! number of trials it takes, it says "fails" with probability at most about `alpha` when
//! `p <= p0`, and "meets" with probability at most about `beta` when `p >= p1` (Wald's
//! bounds, which ignore the overshoot past the boundary and so err on the safe side). Inside
//! the band either answer is acceptable. It is not a confidence interval for `p`.
//!
//! A cap on the trials truncates the test: a test that reaches it without crossing a boundary
//! is [`Decision::Undecided`], which callers must not read as "meets".

use serde::{Deserialize, Serialize};

use super::scenario::fmt_f64;

/// What a test concluded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// `p <= p0` accepted: the target is met.
    Meets,
    /// `p >= p1` accepted: the target is not met.
    Fails,
    /// The cap was reached between the boundaries: `p` is likely inside the band.
    Undecided,
}

/// The parameters of a test: the band and the two error rates.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SprtSpec {
    /// The probability under which the target is met.
    pub p0: f64,
    /// The probability over which it is not.
    pub p1: f64,
    /// The largest chance of "fails" when `p <= p0`.
    pub alpha: f64,
    /// The largest chance of "meets" when `p >= p1`.
    pub beta: f64,
    /// The most trials one test takes.
    pub max_trials: u64,
}

impl SprtSpec {
    /// A spec, checked: `0 < p0 < p1 < 1`, `alpha` and `beta` in `(0, 0.5)`, a cap of at
    /// least one trial.
    pub fn new(p0: f64, p1: f64, alpha: f64, beta: f64, max_trials: u64) -> Result<SprtSpec, String> {
        if !(p0 > 0.0 && p0 < p1 && p1 < 1.0) {
            // To nine decimals, as the band is written; compactly when it is far out.
            let show = |p: f64| fmt_f64(Some((p * 1e9).round() / 1e9).filter(|r| r.is_finite()).unwrap_or(p));
            return Err(format!("the indifference band {}..{} must satisfy 0 < low < high < 1", show(p0), show(p1)));
        }
        for (name, v) in [("alpha", alpha), ("beta", beta)] {
            if !(v > 0.0 && v < 0.5) {
                return Err(format!("{name} = {}: must be above 0 and below 0.5", fmt_f64(v)));
            }
        }
        if max_trials == 0 {
            return Err("the seed cap must be at least 1".to_owned());
        }
        Ok(SprtSpec { p0, p1, alpha, beta, max_trials })
    }

    /// The fewest trials after which the test can decide `Meets`: as many trials without the
    /// event as take the log-likelihood ratio from 0 down to its lower boundary. A cap below it
    /// never decides that a value meets (140 at 0.04 against 0.06, alpha and beta 0.05).
    pub fn trials_to_meet(&self) -> u64 {
        let t = Sprt::new(*self);
        // Both logarithms are negative; the quotient is a count a few ulps off a whole number
        // at worst, hence the nudge before the ceiling.
        ((t.lower / t.step_none) - 1e-9).ceil().max(1.0) as u64
    }
}

/// A test in progress.
#[derive(Clone, Debug)]
pub struct Sprt {
    spec: SprtSpec,
    /// The log-likelihood ratio of `H1` over `H0` so far.
    llr: f64,
    trials: u64,
    events: u64,
    /// What a trial with and without the event adds to `llr`.
    step_event: f64,
    step_none: f64,
    /// Stop with "fails" at or above this, with "meets" at or below `lower`.
    upper: f64,
    lower: f64,
    decision: Option<Decision>,
}

impl Sprt {
    /// A test that has seen no trial.
    pub fn new(spec: SprtSpec) -> Sprt {
        let SprtSpec { p0, p1, alpha, beta, .. } = spec;
        Sprt {
            spec,
            llr: 0.0,
            trials: 0,
            events: 0,
            step_event: (p1 / p0).ln(),
            step_none: ((1.0 - p1) / (1.0 - p0)).ln(),
            upper: ((1.0 - beta) / alpha).ln(),
            lower: (beta / (1.0 - alpha)).ln(),
            decision: None,
        }
    }

    /// Add one trial (`event`: the bad event happened) and return the decision once there
    /// is one. A trial after the decision is a bug in the caller.
    pub fn observe(&mut self, event: bool) -> Option<Decision> {
        assert!(self.decision.is_none(), "a trial after the test decided");
        self.trials += 1;
        if event {
            self.events += 1;
            self.llr += self.step_event;
        } else {
            self.llr += self.step_none;
        }
        self.decision = if self.llr >= self.upper {
            Some(Decision::Fails)
        } else if self.llr <= self.lower {
            Some(Decision::Meets)
        } else if self.trials >= self.spec.max_trials {
            Some(Decision::Undecided)
        } else {
            None
        };
        self.decision
    }

    /// The decision, once made.
    pub fn decision(&self) -> Option<Decision> {
        self.decision
    }

    /// The test's parameters.
    pub fn spec(&self) -> SprtSpec {
        self.spec
    }

    /// Trials seen.
    pub fn trials(&self) -> u64 {
        self.trials
    }

    /// Trials in which the event happened.
    pub fn events(&self) -> u64 {
        self.events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SprtSpec {
        SprtSpec::new(0.04, 0.06, 0.05, 0.05, 100_000).unwrap()
    }

    #[test]
    fn no_events_meet_after_the_trials_the_boundaries_imply() {
        // ln(19) / -ln(0.94 / 0.96) = 139.8: the 140th trial without the event decides.
        let mut t = Sprt::new(spec());
        for _ in 0..139 {
            assert_eq!(t.observe(false), None);
        }
        assert_eq!(t.observe(false), Some(Decision::Meets));
        assert_eq!(t.trials(), 140);
    }

    #[test]
    fn the_trials_to_meet_are_those_no_events_take() {
        for (p0, p1, alpha, beta) in [(0.04, 0.06, 0.05, 0.05), (0.03, 0.07, 0.2, 0.2), (0.2, 0.4, 0.01, 0.1)] {
            let spec = SprtSpec::new(p0, p1, alpha, beta, 100_000).unwrap();
            let mut t = Sprt::new(spec);
            let n = (1..).find(|_| t.observe(false).is_some()).unwrap();
            assert_eq!((spec.trials_to_meet(), t.decision()), (n, Some(Decision::Meets)), "{spec:?}");
        }
        assert_eq!(spec().trials_to_meet(), 140);
    }

    #[test]
    fn all_events_fail_fast() {
        // ln(19) / ln(1.5) = 7.3.
        let mut t = Sprt::new(spec());
        let n = (1..).find(|_| t.observe(true).is_some()).unwrap();
        assert_eq!((n, t.decision()), (8, Some(Decision::Fails)));
    }

    #[test]
    fn a_cap_reached_between_the_boundaries_is_undecided() {
        let mut t = Sprt::new(SprtSpec { max_trials: 3, ..spec() });
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(true), None);
        assert_eq!(t.observe(false), Some(Decision::Undecided));
    }

    #[test]
    fn bad_specs_are_refused() {
        assert!(SprtSpec::new(0.06, 0.04, 0.05, 0.05, 10).is_err());
        assert!(SprtSpec::new(0.0, 0.04, 0.05, 0.05, 10).is_err());
        assert!(SprtSpec::new(0.04, 0.06, 0.5, 0.05, 10).is_err());
        assert!(SprtSpec::new(0.04, 0.06, 0.05, 0.05, 0).is_err());
    }
}
