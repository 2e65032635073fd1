//! Carrying a run up to a larger pool ([`ledger_plan::model::Carry`]) gives what running it
//! again gives, field for field: every seed the pool never bound, on the tipping-point
//! scenario (where it binds in about half of them) and on a few days of the launch scenario,
//! to a larger credit, a larger genesis and both, with and without stopping when dry.

use ledger_plan::model::{run_carried, run_until_dry, SeedResult};
use ledger_plan::scenario::PlanScenario;
use rayon::prelude::*;

const TIPPING: &str = include_str!("../../../fixtures/scenarios/plan-tipping.toml");
const LAUNCH: &str = include_str!("../../../fixtures/scenarios/plan-launch.toml");

/// Payments counted by amount modulo 200 suit every credit on a half-point grid.
const MODULUS: u64 = 200;

fn at(s: &PlanScenario, credit_pct: f64, extra_genesis: u64) -> PlanScenario {
    PlanScenario { credit_pct, pool_initial_sats: s.pool_initial_sats + extra_genesis, ..s.clone() }
}

/// Seeds `1..=n` of `s0` carried to each of `to`; returns (carried, bound) counts.
fn check(s0: &PlanScenario, to: &[PlanScenario], n: u64) -> (usize, usize) {
    let outcomes: Vec<bool> = (1..=n)
        .into_par_iter()
        .map(|seed| {
            let (r0, carry) = run_carried(s0, seed, false, MODULUS);
            assert_eq!(r0, run_until_dry(s0, 0, seed, false), "seed {seed}: recording changed the run");
            let dry = r0.depleted_day.is_some();
            if carry.bound() {
                assert!(to.iter().all(|s| carry.carry(&r0, s0, s).is_none()), "seed {seed}: a bound run carried");
                return false;
            }
            assert!(!dry, "seed {seed}: a run the pool never bound ran dry");
            for s in to {
                let carried: Option<SeedResult> = carry.carry(&r0, s0, s);
                for stop_when_dry in [false, true] {
                    let ran = run_until_dry(s, 0, seed, stop_when_dry);
                    assert_eq!(
                        carried.as_ref(),
                        Some(&ran),
                        "seed {seed}: carried from credit {} genesis {} to credit {} genesis {}",
                        s0.credit_pct,
                        s0.pool_initial_sats,
                        s.credit_pct,
                        s.pool_initial_sats
                    );
                }
            }
            // Down is not up: a smaller credit or genesis, a credit the record cannot price,
            // or another change to the scenario is refused.
            for s in [at(s0, s0.credit_pct - 0.5, 0), at(s0, s0.credit_pct + 0.37, 0)] {
                assert!(carry.carry(&r0, s0, &s).is_none(), "seed {seed}: carried to credit {}", s.credit_pct);
            }
            let other = PlanScenario { days: s0.days - 1, ..s0.clone() };
            assert!(carry.carry(&r0, s0, &other).is_none(), "seed {seed}: carried to other days");
            true
        })
        .collect();
    let carried = outcomes.iter().filter(|c| **c).count();
    (carried, outcomes.len() - carried)
}

#[test]
fn a_run_the_pool_never_bound_carries_up_to_what_running_it_again_gives() {
    let tipping = PlanScenario::from_toml_str(TIPPING, "plan-tipping.toml").unwrap();
    let s0 = at(&tipping, 10.0, 0);
    let to = [at(&s0, 10.5, 0), at(&s0, 37.0, 0), at(&s0, 100.0, 0), at(&s0, 10.0, 900), at(&s0, 22.5, 2500)];
    let (carried, bound) = check(&s0, &to, 120);
    eprintln!("tipping point: {carried} seeds carried, {bound} bound by the pool");
    // Neither side vacuous: the scenario is at its tipping point.
    assert!(carried >= 20 && bound >= 20, "{carried} carried, {bound} bound");

    let mut launch = PlanScenario::from_toml_str(LAUNCH, "plan-launch.toml").unwrap();
    launch.days = 3;
    let s0 = at(&launch, 72.0, 0);
    let (carried, bound) = check(&s0, &[at(&s0, 72.5, 0), at(&s0, 80.0, 1000)], 4);
    eprintln!("launch, 3 days: {carried} seeds carried, {bound} bound by the pool");
    assert!(carried >= 1, "{carried} carried, {bound} bound");
}
