//! Model validity: the planner against the full simulator.
//!
//! One small scenario, N seeds through each path: the planner ([`ledger_plan::model::run`]:
//! `Ledger::apply` in time order, credits counted when a request arrives, no interleaving)
//! and the simulator's interleaving executor on the reference engine
//! ([`ledger_plan::validity::run_simulated`]: flows one call at a time under a random
//! scheduler, every invoice paid after its delay and credited by a call of its own). The
//! samples are independent (the simulated path draws from another stream of each seed). For
//! each metric the test computes a 99 % confidence interval of the difference between the two
//! paths and requires it to contain 0:
//!
//! - P(dry) by the last day, a binomial per path: Newcombe's hybrid score interval (built
//!   from the two Wilson intervals);
//! - the shares of requests decided free, partial and gated (each seed's share, a mean per
//!   path) and the sats absorbed (mean per seed): Welch's t interval.
//!
//! Five comparisons at 99 % each hold the chance of a false alarm under 5 % (Bonferroni).
//! The scenario's pool is set so that about half the seeds run dry, so that P(dry) is neither
//! 0 nor 1 and its comparison means something (asserted). `--nocapture` prints the numbers.

use ledger_plan::model::{run, FREE, GATED, PARTIAL};
use ledger_plan::scenario::PlanScenario;
use ledger_plan::validity::run_simulated;
use rayon::prelude::*;
use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

/// Seven days of 70 users at the default costs, payment rates and budgets, with a pool that
/// runs dry in about 40 % of seeds.
const SCENARIO: &str = include_str!("../../../fixtures/scenarios/plan-tipping.toml");

/// Seeds per path.
const N_SEEDS: u64 = 2000;

/// Two-sided confidence of each interval.
const CONFIDENCE: f64 = 0.99;

/// One seed's metrics, from either path.
#[derive(Clone, Copy, Debug)]
struct Metrics {
    dry: bool,
    /// Free, partial and gated shares of the seed's requests.
    shares: [f64; 3],
    absorbed_sats: f64,
}

fn metrics(served: &[[u64; 3]; 4], dry_day: Option<u32>, days: u32, absorbed_sats: u64) -> Metrics {
    let mut by_kind = [0u64; 3];
    for tier in served {
        for (k, n) in tier.iter().enumerate() {
            by_kind[k] += n;
        }
    }
    let total = by_kind.iter().sum::<u64>().max(1) as f64;
    Metrics {
        dry: dry_day.is_some_and(|d| d <= days),
        shares: by_kind.map(|n| n as f64 / total),
        absorbed_sats: absorbed_sats as f64,
    }
}

fn z() -> f64 {
    Normal::new(0.0, 1.0).unwrap().inverse_cdf(0.5 + CONFIDENCE / 2.0)
}

/// Wilson's score interval for `k` successes in `n`.
fn wilson(k: u64, n: u64) -> (f64, f64) {
    let (z, n) = (z(), n as f64);
    let p = k as f64 / n;
    let centre = (p + z * z / (2.0 * n)) / (1.0 + z * z / n);
    let half = z / (1.0 + z * z / n) * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt();
    (centre - half, centre + half)
}

/// Newcombe's hybrid score interval for `p1 - p2` (his method 10).
fn newcombe(k1: u64, n1: u64, k2: u64, n2: u64) -> (f64, f64) {
    let (p1, p2) = (k1 as f64 / n1 as f64, k2 as f64 / n2 as f64);
    let ((l1, u1), (l2, u2)) = (wilson(k1, n1), wilson(k2, n2));
    let d = p1 - p2;
    (d - ((p1 - l1).powi(2) + (u2 - p2).powi(2)).sqrt(), d + ((u1 - p1).powi(2) + (p2 - l2).powi(2)).sqrt())
}

/// Mean and variance (n - 1) of a sample.
fn mean_var(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    (mean, xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0))
}

/// The t interval of one sample's mean.
fn t_interval(xs: &[f64]) -> (f64, f64) {
    let (mean, var) = mean_var(xs);
    let n = xs.len() as f64;
    let t = StudentsT::new(0.0, 1.0, n - 1.0).unwrap().inverse_cdf(0.5 + CONFIDENCE / 2.0);
    let half = t * (var / n).sqrt();
    (mean - half, mean + half)
}

/// Welch's interval for the difference of two means.
fn welch(a: &[f64], b: &[f64]) -> (f64, f64) {
    let ((ma, va), (mb, vb)) = (mean_var(a), mean_var(b));
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (sa, sb) = (va / na, vb / nb);
    let se = (sa + sb).sqrt();
    if se == 0.0 {
        return (ma - mb, ma - mb);
    }
    let df = (sa + sb).powi(2) / (sa * sa / (na - 1.0) + sb * sb / (nb - 1.0));
    let t = StudentsT::new(0.0, 1.0, df).unwrap().inverse_cdf(0.5 + CONFIDENCE / 2.0);
    (ma - mb - t * se, ma - mb + t * se)
}

#[test]
fn the_planner_and_the_simulator_agree_on_a_small_scenario() {
    let s = PlanScenario::from_toml_str(SCENARIO, "validity.toml").unwrap();
    let started = std::time::Instant::now();
    let planned: Vec<Metrics> = (0..N_SEEDS)
        .into_par_iter()
        .map(|seed| {
            let r = run(&s, 0, seed);
            assert_eq!(r.violations, 0, "planner, seed {seed}: {:?}", r.first_violation);
            metrics(&r.served, r.depleted_day, s.days, r.absorbed_sats)
        })
        .collect();
    let planner_secs = started.elapsed().as_secs_f64();
    let started = std::time::Instant::now();
    let simulated: Vec<Metrics> = (0..N_SEEDS)
        .into_par_iter()
        .map(|seed| {
            let r = run_simulated(&s, seed);
            assert!(r.violations.is_empty(), "simulator, seed {seed}: {:?}", r.violations);
            metrics(&r.served, r.depleted_day, s.days, r.absorbed_sats)
        })
        .collect();
    let simulator_secs = started.elapsed().as_secs_f64();
    println!(
        "{N_SEEDS} seeds a path: planner {planner_secs:.2} s, simulator {simulator_secs:.2} s; \
         {:.0} % intervals",
        CONFIDENCE * 100.0
    );
    println!("{:<14} {:>28} {:>28} {:>26}  agree", "metric", "planner", "simulator", "difference");

    let mut disagree = Vec::new();
    let mut row = |name: &str, p: String, q: String, (lo, hi): (f64, f64), scale: f64| {
        let ok = lo <= 0.0 && 0.0 <= hi;
        println!("{name:<14} {p:>28} {q:>28} {:>26}  {}", format!("[{:.3}, {:.3}]", lo * scale, hi * scale), ok);
        if !ok {
            disagree.push(name.to_owned());
        }
    };

    let k_plan = planned.iter().filter(|m| m.dry).count() as u64;
    let k_sim = simulated.iter().filter(|m| m.dry).count() as u64;
    let show_p = |k: u64| {
        let (lo, hi) = wilson(k, N_SEEDS);
        format!("{:.3} [{lo:.3}, {hi:.3}]", k as f64 / N_SEEDS as f64)
    };
    row("P(dry)", show_p(k_plan), show_p(k_sim), newcombe(k_plan, N_SEEDS, k_sim, N_SEEDS), 1.0);
    for (k, name) in [(FREE, "free share"), (PARTIAL, "partial share"), (GATED, "gated share")] {
        let a: Vec<f64> = planned.iter().map(|m| m.shares[k]).collect();
        let b: Vec<f64> = simulated.iter().map(|m| m.shares[k]).collect();
        let show = |xs: &[f64]| {
            let (lo, hi) = t_interval(xs);
            format!("{:.4} [{lo:.4}, {hi:.4}]", mean_var(xs).0)
        };
        row(name, show(&a), show(&b), welch(&a, &b), 1.0);
    }
    let a: Vec<f64> = planned.iter().map(|m| m.absorbed_sats).collect();
    let b: Vec<f64> = simulated.iter().map(|m| m.absorbed_sats).collect();
    let show = |xs: &[f64]| {
        let (lo, hi) = t_interval(xs);
        format!("{:.0} [{lo:.0}, {hi:.0}]", mean_var(xs).0)
    };
    row("absorbed sats", show(&a), show(&b), welch(&a, &b), 1.0);

    assert!(disagree.is_empty(), "the planner and the simulator disagree on {disagree:?} (see the table above)");
    // The comparison of P(dry) says something only if the pool is at its edge.
    let p_plan = k_plan as f64 / N_SEEDS as f64;
    assert!((0.1..=0.9).contains(&p_plan), "the scenario must run dry in some seeds but not all: P(dry) = {p_plan}");
}
