//! Goodness of fit: the planner's samplers draw from the distributions the scenario names.
//!
//! Poisson draws are binned and compared with the Poisson probabilities by a chi-square test,
//! at means on both sides of every switch a sampler might make (12, where `rand_distr` moves
//! from multiplying uniforms to rejection, and 30, where the planner once switched to a
//! rounded normal); negative binomial draws (a Poisson of a gamma-distributed mean) likewise
//! against the negative binomial probabilities, from counts almost all zero to a near-Poisson;
//! log-normal draws by a Kolmogorov-Smirnov test against the log-normal CDF.
//! Each test runs at a 0.1 % level on a fixed seed, so it is deterministic; a last test shows
//! the chi-square test has the power to see the old rounded-normal approximation.

use ledger_plan::model::Sampler;
use ledger_plan::scenario::{Dist, ACTUAL_PCT_RANGE, ESTIMATE_SATS_RANGE, PER_USER_PER_DAY_RANGE};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use statrs::distribution::{ChiSquared, ContinuousCDF, Discrete, DiscreteCDF, LogNormal, NegativeBinomial, Poisson};

/// The level of every test here.
const ALPHA: f64 = 0.001;

/// The chi-square statistic of `draws` against Poisson(`mean`), and its degrees of freedom.
fn chi_square_poisson(draws: &[f64], mean: f64) -> (f64, usize) {
    chi_square_discrete(draws, &Poisson::new(mean).unwrap())
}

/// The chi-square statistic of `draws` against the distribution `p` on the whole numbers, and
/// its degrees of freedom. Bins are single values from the left, each holding at least 5
/// expected draws; the last bin takes the right tail, and a left remainder joins the first bin.
fn chi_square_discrete(draws: &[f64], p: &(impl Discrete<u64, f64> + DiscreteCDF<u64, f64>)) -> (f64, usize) {
    let n = draws.len() as f64;
    let mut counts = std::collections::BTreeMap::<u64, u64>::new();
    for &x in draws {
        assert!(x >= 0.0 && x.fract() == 0.0, "a count is a whole number: {x}");
        *counts.entry(x as u64).or_default() += 1;
    }
    // Bin edges: [lo, hi) in k, built left to right.
    let mut bins: Vec<(u64, u64, f64)> = Vec::new();
    let mut lo = 0u64;
    let mut k = 0u64;
    let mut mass = 0.0;
    while 1.0 - p.cdf(k) > 5.0 / n {
        mass += p.pmf(k);
        k += 1;
        if mass * n >= 5.0 {
            bins.push((lo, k, mass));
            lo = k;
            mass = 0.0;
        }
    }
    // The tail from `lo` on (it includes whatever mass was left in the open bin).
    bins.push((lo, u64::MAX, 1.0 - if lo == 0 { 0.0 } else { p.cdf(lo - 1) }));
    let mut stat = 0.0;
    for &(a, b, prob) in &bins {
        let observed: u64 = counts.range(a..b).map(|(_, c)| c).sum();
        let expected = prob * n;
        stat += (observed as f64 - expected).powi(2) / expected;
    }
    (stat, bins.len() - 1)
}

fn chi_square_critical(df: usize) -> f64 {
    ChiSquared::new(df as f64).unwrap().inverse_cdf(1.0 - ALPHA)
}

/// `n` draws of `dist` on a range that clamps none of them.
fn draws(dist: &Dist, n: usize, seed: u64) -> Vec<f64> {
    draws_in(dist, (0.0, f64::MAX), n, seed)
}

/// `n` draws of `dist` made for a key whose range is `range`.
fn draws_in(dist: &Dist, range: (f64, f64), n: usize, seed: u64) -> Vec<f64> {
    let sampler = Sampler::new(dist, range);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| sampler.draw(&mut rng)).collect()
}

#[test]
fn poisson_draws_fit_the_poisson_distribution_at_every_mean() {
    for (i, mean) in [0.3, 2.0, 3.0, 11.5, 12.5, 29.0, 31.0, 45.0, 200.0, 1000.0].into_iter().enumerate() {
        let x = draws(&Dist::poisson(mean), 200_000, 7 + i as u64);
        let (stat, df) = chi_square_poisson(&x, mean);
        let critical = chi_square_critical(df);
        eprintln!("poisson mean {mean}: chi-square {stat:.1} on {df} df (critical {critical:.1})");
        assert!(df >= 1, "mean {mean}: too few bins");
        assert!(stat < critical, "mean {mean}: chi-square {stat:.1} on {df} df is above {critical:.1}");
    }
}

#[test]
fn a_poisson_mean_of_zero_draws_zero() {
    assert!(draws(&Dist::poisson(0.0), 1000, 1).iter().all(|&x| x == 0.0));
    assert!(draws(&Dist::negbinomial(0.0, 2.0), 1000, 1).iter().all(|&x| x == 0.0));
}

/// `statrs`'s negative binomial counts failures before the `r`-th success at probability
/// `p`: its mean `r (1 - p) / p` is the scenario's `mean` at `p = shape / (shape + mean)`.
#[test]
fn negbinomial_draws_fit_the_negbinomial_distribution() {
    for (i, (mean, shape)) in
        [(0.5, 0.05), (0.5, 0.3), (3.0, 1.0), (3.0, 20.0), (20.0, 0.8), (150.0, 5.0), (1000.0, 1e6)]
            .into_iter()
            .enumerate()
    {
        let x = draws(&Dist::negbinomial(mean, shape), 200_000, 31 + i as u64);
        let d = NegativeBinomial::new(shape, shape / (shape + mean)).unwrap();
        let (stat, df) = chi_square_discrete(&x, &d);
        let critical = chi_square_critical(df);
        eprintln!("negbinomial mean {mean} shape {shape}: chi-square {stat:.1} on {df} df (critical {critical:.1})");
        assert!(df >= 1, "mean {mean} shape {shape}: too few bins");
        assert!(stat < critical, "mean {mean} shape {shape}: chi-square {stat:.1} on {df} df is above {critical:.1}");
        let drawn = x.iter().sum::<f64>() / x.len() as f64;
        let se = (mean * (1.0 + mean / shape) / x.len() as f64).sqrt();
        assert!((drawn - mean).abs() < 4.0 * se, "mean {mean} shape {shape}: drew {drawn} on average");
    }
    // A Poisson of the same mean is told apart from a negative binomial of shape 20 (variance
    // 3.45 against 3).
    let x = draws(&Dist::negbinomial(3.0, 20.0), 200_000, 5);
    let (stat, df) = chi_square_poisson(&x, 3.0);
    assert!(stat > chi_square_critical(df), "a negative binomial passed for a Poisson: chi-square {stat:.1}");
}

#[test]
fn the_chi_square_test_sees_the_rounded_normal_it_replaced() {
    // The planner's old sampler above a mean of 30: N(mean, mean) rounded. Its skew is 0
    // where the Poisson's is 1/sqrt(mean), which 200,000 draws show plainly at mean 31.
    use rand_distr::Distribution;
    let mean = 31.0;
    let normal = rand_distr::Normal::new(mean, f64::sqrt(mean)).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let x: Vec<f64> = (0..200_000).map(|_| normal.sample(&mut rng).round().max(0.0)).collect();
    let (stat, df) = chi_square_poisson(&x, mean);
    let critical = chi_square_critical(df);
    eprintln!("rounded normal at mean {mean}: chi-square {stat:.1} on {df} df (critical {critical:.1})");
    assert!(stat > critical, "the rounded normal passed: chi-square {stat:.1} on {df} df, critical {critical:.1}");
}

/// The Kolmogorov-Smirnov distance between the draws and a continuous CDF.
fn ks_distance(mut x: Vec<f64>, cdf: impl Fn(f64) -> f64) -> f64 {
    x.sort_by(f64::total_cmp);
    let n = x.len() as f64;
    let mut d = 0.0f64;
    for (i, &v) in x.iter().enumerate() {
        let f = cdf(v);
        d = d.max(f - i as f64 / n).max((i + 1) as f64 / n - f);
    }
    d
}

/// The KS critical distance at [`ALPHA`] for `n` draws (the asymptotic form, fine for
/// thousands of draws).
fn ks_critical(n: usize) -> f64 {
    (-(ALPHA / 2.0).ln() / 2.0).sqrt() / (n as f64).sqrt()
}

#[test]
fn lognormal_draws_fit_the_lognormal_distribution() {
    for (i, (median, sigma)) in [(30.0, 0.8), (1.0, 0.1), (100.0, 1.5), (25.0, 3.0)].into_iter().enumerate() {
        let n = 50_000;
        let x = draws(&Dist::lognormal(median, sigma, None), n, 100 + i as u64);
        let dist = LogNormal::new(f64::ln(median), sigma).unwrap();
        let d = ks_distance(x, |v| dist.cdf(v));
        assert!(d < ks_critical(n), "median {median} sigma {sigma}: KS distance {d:.5} >= {:.5}", ks_critical(n));
    }
}

#[test]
fn a_clamped_lognormal_piles_its_tail_on_the_bound() {
    // Below the bound the draws follow the log-normal; the share at the bound is its tail.
    let (median, sigma, max) = (30.0, 0.8, 60.0);
    let n = 50_000;
    let x = draws(&Dist::lognormal(median, sigma, Some(max)), n, 5);
    assert!(x.iter().all(|&v| v <= max));
    let dist = LogNormal::new(f64::ln(median), sigma).unwrap();
    let d = ks_distance(x.iter().copied().filter(|&v| v < max).collect(), |v| dist.cdf(v) / dist.cdf(max));
    let below = x.iter().filter(|&&v| v < max).count();
    assert!(d < ks_critical(below), "KS distance {d:.5} below the bound");
    let tail = 1.0 - dist.cdf(max);
    let at_max = (n - below) as f64 / n as f64;
    // Within 4 binomial standard errors.
    let se = (tail * (1.0 - tail) / n as f64).sqrt();
    assert!((at_max - tail).abs() < 4.0 * se, "share at the bound {at_max:.4}, expected {tail:.4}");
}

/// A draw never leaves its key's range: a log-normal without `max` stops at the range's end
/// (where half of a median-1000 log-normal lies for `cost.actual_pct`), a Poisson above it too,
/// and one below `cost.estimate_sats`'s 1 is 1. Within the range, the draws are those of
/// the distribution, unclamped.
#[test]
fn draws_stay_in_their_keys_range() {
    let n = 20_000;
    let cases = [
        (Dist::lognormal(1000.0, 5.0, None), ACTUAL_PCT_RANGE, 0.5),
        (Dist::lognormal(10_000.0, 5.0, None), PER_USER_PER_DAY_RANGE, 0.5),
        (Dist::lognormal(1e9, 5.0, None), ESTIMATE_SATS_RANGE, 0.5),
        (Dist::poisson(1000.0), ACTUAL_PCT_RANGE, 0.49),
    ];
    for (i, (dist, (lo, hi), share_at_hi)) in cases.into_iter().enumerate() {
        let x = draws_in(&dist, (lo, hi), n, 40 + i as u64);
        assert!(x.iter().all(|v| (lo..=hi).contains(v)), "{dist:?}: a draw outside {lo}..={hi}");
        let at_hi = x.iter().filter(|&&v| v == hi).count() as f64 / n as f64;
        assert!((at_hi - share_at_hi).abs() < 0.03, "{dist:?}: {at_hi} of the draws at {hi}");
        // The same stream unclamped: each draw within the range is the same draw.
        let free = draws(&dist, n, 40 + i as u64);
        let same = |(a, b): (&f64, &f64)| a == b || (*a == hi && *b > hi) || (*a == lo && *b < lo);
        assert!(x.iter().zip(&free).all(same), "{dist:?}");
    }
    let tiny = draws_in(&Dist::lognormal(0.01, 0.5, None), ESTIMATE_SATS_RANGE, 1000, 3);
    assert!(tiny.iter().all(|&v| v == 1.0), "estimates below 1 are 1");
}
