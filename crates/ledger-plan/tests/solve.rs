//! The solver: the sequential test's error rates over many repetitions on a source of known
//! probability, a solve on the planner against a brute-force answer, and bad input refused
//! before any work.

mod common;
use common::CLOSED_FORM;
use ledger_plan::model;
use ledger_plan::scenario::PlanScenario;
use ledger_plan::solve::{parse_solve, Level, SolveOptions, Solver, Verdict};
use ledger_plan::sprt::{Decision, Sprt, SprtSpec};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Wrong decisions of the SPRT (4 % against 6 %, alpha = beta = 5 %) over `reps` repetitions
/// on a Bernoulli source with probability `p`, and the mean number of trials.
fn error_rate(p: f64, reps: u64, seed: u64) -> (f64, f64) {
    let spec = SprtSpec::new(0.04, 0.06, 0.05, 0.05, 1_000_000).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut wrong, mut trials) = (0u64, 0u64);
    for _ in 0..reps {
        let mut t = Sprt::new(spec);
        let d = loop {
            if let Some(d) = t.observe(rng.gen::<f64>() < p) {
                break d;
            }
        };
        trials += t.trials();
        let is_wrong = match d {
            Decision::Fails => p <= spec.p0,
            Decision::Meets => p >= spec.p1,
            Decision::Undecided => panic!("a cap of a million trials is never reached"),
        };
        wrong += u64::from(is_wrong);
    }
    (wrong as f64 / reps as f64, trials as f64 / reps as f64)
}

/// The decision is wrong at most `alpha` (or `beta`) of the time, within sampling error,
/// however long each repetition runs: the test is valid under optional stopping. At the
/// edges of the band (4 % and 6 %) the bound is tight; further out (3 %, 7 %) it holds
/// with room.
#[test]
fn the_sequential_test_errs_at_most_at_its_nominal_rate() {
    let reps = 4000u64;
    let nominal = 0.05;
    // Three standard errors of a rate of 5 % over `reps` repetitions.
    let slack = 3.0 * (nominal * (1.0 - nominal) / reps as f64).sqrt();
    for (i, p) in [0.03, 0.04, 0.06, 0.07].into_iter().enumerate() {
        let (rate, mean_trials) = error_rate(p, reps, 11 + i as u64);
        eprintln!(
            "p = {p}: wrong decisions {:.2} % over {reps} repetitions, {mean_trials:.0} trials on average",
            100.0 * rate
        );
        assert!(rate <= nominal + slack, "p = {p}: {rate:.4} wrong, above {nominal} + {slack:.4}");
    }
    // Far from the band the test is both right and quick.
    let (rate, mean_trials) = error_rate(0.5, 500, 3);
    assert_eq!(rate, 0.0);
    // ln 19 / (ln 1.5 + ln(0.94 / 0.96)) * 2 = 15.3 trials.
    assert!(mean_trials < 20.0, "{mean_trials}");
}

/// The closed-form scenario with a small pool: every seed gives the same run, so the truth at
/// each credit percentage is one run away.
fn small() -> String {
    CLOSED_FORM.replace("pool_initial_sats = 1000000", "pool_initial_sats = 20000")
}

fn solver(range: &str, targets: &[&str], options: SolveOptions) -> Result<Solver, String> {
    let targets: Vec<String> = targets.iter().map(|t| (*t).to_owned()).collect();
    let range = parse_solve(range).map_err(|e| e.to_string())?;
    Solver::new(&small(), "small.toml", &[], range, &targets, options).map_err(|e| e.to_string())
}

/// Solve `target` over `range` (resolution 0.5) and compare with the truth on every value of
/// the grid, one run each: the verdict must be the two neighbours the truth changes between.
fn check_against_brute_force(range: &str, target: &str, meets: impl Fn(&model::SeedResult) -> bool) {
    let s = solver(range, &[target], SolveOptions { resolution: Some(0.5), ..SolveOptions::default() }).unwrap();
    let r = parse_solve(range).unwrap();
    let grid: Vec<f64> = (0..).map(|k| r.lo + 0.5 * f64::from(k)).take_while(|&v| v <= r.hi).collect();
    let truth: Vec<bool> = grid.iter().map(|&v| meets(&model::run(&s.scenario_at(v).unwrap(), 0, 1))).collect();
    let first = truth.iter().position(|&m| m).expect("some value meets");
    assert!(first > 0, "the boundary is inside the range");
    assert!(truth[first..].iter().all(|&m| m), "{target}: the truth is monotone over {range}");
    let out = s.solve(&|_, _| {}).unwrap();
    assert_eq!(out.violations, 0, "{:?}", out.first_violation);
    let res = &out.results[0];
    let expected = Verdict::Between { meets_at: grid[first], fails_at: grid[first - 1], fails_decided: true };
    assert_eq!(res.verdict, expected, "{target} over {range}");
    // Every seed gives the same answer, so a value that fails takes the fewest seeds the test
    // allows (sure: ln 19 / ln 1.5 = 7.3; the scout: ln 4 / ln(7 / 3) = 1.6), and one that
    // meets the most (sure: ln 19 / -ln(0.94 / 0.96) = 139.8; the scout: ln 4 / -ln(0.93 / 0.97) = 32.9).
    for step in &res.steps {
        let expected = match (step.level, step.decision) {
            (Level::Sure, Decision::Meets) => 140,
            (Level::Sure, _) => 8,
            (Level::Scout, Decision::Meets) => 33,
            (Level::Scout, _) => 2,
        };
        assert_eq!(step.seeds, expected, "{step:?}");
    }
    // The verdict rests on sure decisions at both of its values.
    for v in [grid[first], grid[first - 1]] {
        assert!(res.steps.iter().any(|s| s.value == v && s.level == Level::Sure), "{v}: {:?}", res.steps);
    }
    let (m, f) = (grid[first], grid[first - 1]);
    let line = format!("{target}: credit_pct between {f} and {m} % (meets at {m}, fails at {f}), 95 % confidence;");
    assert!(res.line.starts_with(&line), "{} vs {line}", res.line);
    // The same solve on one thread gives the same answer from the same seeds.
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let again = one.install(|| s.solve(&|_, _| {}).unwrap());
    assert_eq!(again, out, "one thread and two differ");
    // Running every seed instead of carrying runs up the key gives the same solve.
    let options = SolveOptions { resolution: Some(0.5), carry: false, ..SolveOptions::default() };
    let every = solver(range, &[target], options).unwrap().solve(&|_, _| {}).unwrap();
    assert_eq!(every, out, "carrying runs up changed the solve");
}

/// Carrying runs up the key changes what a solve costs, never what it finds: the tipping
/// point's solves for the credit and for the genesis, with carries and without, give the same
/// output, and the carries take the place of runs.
#[test]
fn carrying_runs_up_the_key_saves_runs_and_changes_nothing() {
    const TIPPING: &str = include_str!("../../../fixtures/scenarios/plan-tipping.toml");
    for (range, target) in [
        ("credit_pct=0..100", "p_dry(day=7) <= 0.05"),
        ("credit_pct=0..100", "free_p10(tier=trusted) >= 0.9"),
        ("pool_initial_sats=0..100000", "p_dry(day=7) <= 0.05"),
        ("pool_initial_sats=0..100000", "pool_p5(day=7) >= 20000"),
    ] {
        let solve = |carry: bool| {
            let options = SolveOptions { carry, ..SolveOptions::default() };
            let targets = [target.to_owned()];
            let s = Solver::new(TIPPING, "plan-tipping.toml", &[], parse_solve(range).unwrap(), &targets, options);
            s.unwrap().solve_with_cost(&|_, _| {}).unwrap()
        };
        let ((carried, with), (ran, without)) = (solve(true), solve(false));
        assert_eq!(carried, ran, "{range} {target}: carrying changed the solve");
        assert_eq!(without.seeds_carried, 0);
        assert!(with.seeds_carried > 0, "{range} {target}: nothing carried: {with:?}");
        assert!(with.seeds_run < without.seeds_run, "{range} {target}: {with:?} against {without:?}");
        eprintln!("{range} {target}: {with:?} against {without:?}");
    }
}

#[test]
fn a_solve_finds_the_boundary_a_brute_force_search_finds() {
    // The pool's balance on the last day grows with the credit.
    check_against_brute_force("credit_pct=0..100", "pool_p5(day=10) >= 1000", |r| r.pool_by_day[9] >= 1000);
    // Running dry is monotone in the credit only over part of the range here: above 20 % the
    // pool still drains to a few sats, and whether a request then finds it empty or offered a
    // partial of its last sats depends on the remainder.
    check_against_brute_force("credit_pct=0..20", "p_dry(day=10) <= 0.05", |r| r.depleted_day.is_none());
}

#[test]
fn bad_input_is_refused_before_any_work() {
    let d = SolveOptions::default;
    let e = |range: &str, target: &str, o: SolveOptions| solver(range, &[target], o).unwrap_err();
    let t = "p_dry <= 0.05";
    for (got, want) in [
        (e("credit_pct=0..150", t, d()), "--solve credit_pct=0..150: credit_pct = 150: percentage over 100"),
        (e("budget.platinum=0..10", t, d()), "unknown field `platinum`"),
        (e("seeds=1..10", t, d()), "the number of runs cannot be swept"),
        (e("requests.even=0..1", t, d()), "--solve requests.even: not a numeric key"),
        (e("budget.trusted=0.5..10", t, d()), "0.5 is not a whole number: budget.trusted counts in whole numbers"),
        (e("credit_pct=0..100", "p_dry(day=11) <= 0.05", d()), "day 11 is not in 1..=10"),
        (e("credit_pct=0..100", "garbage", d()), "--target \"garbage\": expected METRIC <= VALUE"),
        // A chance of 0 or 1 leaves no band to test in, whichever way it is written.
        (e("credit_pct=0..100", "p_dry <= 0", d()), "\"p_dry <= 0\": a chance of exactly 0 or 1 cannot be tested"),
        (e("credit_pct=0..100", "p_dry <= 1", d()), "give a limit strictly between 0 and 1"),
        (e("credit_pct=0..100", "p_dry >= 1", SolveOptions { band: Some(0.01), ..d() }), "exactly 0 or 1"),
        (e("credit_pct=0..100", t, SolveOptions { band: Some(0.05), ..d() }), "0 < low < high < 1"),
        // A band too narrow to write is refused as asked, not as the empty band it rounds to.
        (e("credit_pct=0..100", t, SolveOptions { band: Some(1e-12), ..d() }), "--band 1e-12 is narrower than a billionth"),
        (e("credit_pct=0..100", t, SolveOptions { band: Some(-0.01), ..d() }), "--band -0.01: the indifference band"),
        // The days are the horizon: a target's day would overwrite them at every value.
        (e("days=1..10", "p_dry(day=7) <= 0.3", d()), "--solve days: the days are the horizon"),
        (e("days=1..10", "p_dry(day=7) <= 0.3", d()), "set them with --days"),
        (e("credit_pct=0..100", t, SolveOptions { alpha: 0.7, ..d() }), "alpha = 0.7"),
        (e("credit_pct=0..100", t, SolveOptions { max_seeds: 0, ..d() }), "seed cap"),
        (e("credit_pct=0..100", t, SolveOptions { resolution: Some(-1.0), ..d() }), "--resolution -1"),
        (e("credit_pct=0..100", t, SolveOptions { resolution: Some(1e-12), ..d() }), "finer than a billionth"),
        (
            e("credit_pct=0..100", t, SolveOptions { resolution: Some(0.333), ..d() }),
            "--resolution 0.333 gives values the key cannot take: --solve credit_pct=0.333: credit_pct = 0.333: at most two decimals",
        ),
        (e("budget.trusted=0..100", t, SolveOptions { resolution: Some(0.5), ..d() }), "0.5 is not a whole number: budget.trusted counts in whole numbers"),
    ] {
        assert!(got.contains(want), "{got:?} should contain {want:?}");
    }
    let none = parse_solve("credit_pct=0..100").unwrap();
    let no_targets = Solver::new(&small(), "small.toml", &[], none, &[], d()).unwrap_err().to_string();
    assert!(no_targets.contains("give at least one --target"), "{no_targets}");
    // A whole-number key gets a whole-number resolution.
    assert!(solver("budget.trusted=0..1000", &[t], d()).is_ok());
    // `--seeds` would be ignored: the test decides how many seeds each value takes.
    let seeds = [("seeds", "5".to_owned())];
    let range = parse_solve("credit_pct=0..100").unwrap();
    let e = Solver::new(&small(), "small.toml", &seeds, range, &[t.to_owned()], d()).unwrap_err().to_string();
    assert!(e.contains("--seeds 5 does not apply") && e.contains("--max-seeds"), "{e}");
    PlanScenario::from_toml_str(&small(), "small.toml").unwrap();
}

/// A number far out of range is written compactly in errors and words (as `1e300`, not 301
/// digits), wherever it is given: the range, the options, a target, a sweep, a scenario file.
#[test]
fn huge_and_tiny_numbers_are_written_compactly() {
    let d = SolveOptions::default;
    let e = |range: &str, target: &str, o: SolveOptions| solver(range, &[target], o).unwrap_err();
    let t = "p_dry <= 0.05";
    let sweep =
        |s: &str| ledger_plan::Plan::new(&small(), "small.toml", &[], vec![ledger_plan::parse_sweep(s).unwrap()]);
    let file = |text: &str| PlanScenario::from_toml_str(text, "s.toml").unwrap_err().to_string();
    for (got, want) in [
        (
            e("pool_initial_sats=0..1e300", t, d()),
            "--solve pool_initial_sats=0..1e300: 1e300 is too large: pool_initial_sats counts in whole numbers, 0 or more",
        ),
        (
            e("pool_initial_sats=0..1000", t, SolveOptions { resolution: Some(1e-300), ..d() }),
            "--solve pool_initial_sats: --resolution 1e-300 is finer than a billionth",
        ),
        (
            e("pool_initial_sats=0.5..1e300", t, d()),
            "--solve pool_initial_sats=0.5..1e300: 0.5 is not a whole number: pool_initial_sats counts in whole numbers, 0 or more",
        ),
        (
            e("credit_pct=0..100", t, SolveOptions { beta: 1e300, ..d() }),
            "--target \"p_dry <= 0.05\" (limit 0.05, band 0.01): beta = 1e300: must be above 0 and below 0.5",
        ),
        (
            e("credit_pct=0..100", t, SolveOptions { band: Some(1e300), ..d() }),
            "--target \"p_dry <= 0.05\" (limit 0.05, band 1e300): the indifference band -1e300..1e300 must satisfy \
             0 < low < high < 1",
        ),
        (
            e("credit_pct=0..100", "p_dry <= 1e-300", d()),
            "--target \"p_dry <= 1e-300\" (limit 1e-300, band 2e-301): the indifference band 0..0 must satisfy \
             0 < low < high < 1",
        ),
        (
            e("credit_pct=0..100", "pool_p5 >= -1e300", d()),
            "--target \"pool_p5 >= -1e300\": pool_p5 counts sats, never fewer than 0, so against -1e300 it is \
             always met; give 0 or more",
        ),
        (
            sweep("pool_initial_sats=1e300").unwrap_err().to_string(),
            "--sweep pool_initial_sats=1e300: 1e300 is too large: pool_initial_sats counts in whole numbers, 0 or more",
        ),
        (
            file("[tiers]\npromote_per_day = { elite = 1e-300 }\n"),
            "s.toml:2: tiers.promote_per_day.elite = 1e-300: elite is the highest tier",
        ),
    ] {
        assert_eq!(got, want);
    }
    let e = file("pool_initial_sats = 1e300\n");
    assert!(e.ends_with("^^^^^\n1e300 is too large: this key counts in whole numbers, 0 or more\n"), "{e}");
    // A short number is quoted as toml wrote it: `3.0` says it is a float.
    let e = file("days = 3.0\n");
    assert!(e.ends_with("3.0 is written as a fraction: give 3: this key counts in whole numbers, 0 or more\n"), "{e}");
    let target = ledger_plan::target::Target::parse("pool_p5 >= 1e300", 10).unwrap();
    assert_eq!(target.event_words(), "pool on day 10 below 1e300 sats");
}

/// The default resolution is a step the key takes: a 200th of a narrow credit range has three
/// decimals, and a credit has at most two, so it rounds up to 1, 2 or 5 times a power of ten.
#[test]
fn the_default_resolution_is_a_step_the_key_takes() {
    let t = &["p_dry(day=7) <= 0.3"];
    for (range, step) in [
        ("credit_pct=10..13", 0.02),
        ("credit_pct=0..5", 0.05),
        ("credit_pct=0..3.5", 0.02),
        ("credit_pct=0..100", 0.5),
        ("credit_pct=0..2", 0.01),
        ("budget.trusted=0..1000", 5.0),
        ("payment.gate_paid=0..1", 0.005),
    ] {
        let s = solver(range, t, SolveOptions::default()).unwrap_or_else(|e| panic!("{range}: {e}"));
        assert_eq!(s.resolution(), step, "{range}");
    }
}

/// A value that stayed undecided at the seed cap is never claimed at the user's confidence: a
/// verdict resting on one names it, in the line, the JSON and the frontier's rows.
#[test]
fn a_verdict_on_undecided_values_claims_no_confidence() {
    // Every seed gives the same run, so a value that fails takes 8 seeds to decide and one that
    // meets 140: a cap of 5 decides neither.
    let options = SolveOptions { resolution: Some(10.0), max_seeds: 5, ..SolveOptions::default() };
    let s = solver("credit_pct=0..20", &["p_dry(day=10) <= 0.05"], options).unwrap();
    let out = s.solve(&|_, _| {}).unwrap();
    let r = &out.results[0];
    assert_eq!(r.verdict, Verdict::NoneMeets);
    assert_eq!(r.undecided_at, vec![0.0, 20.0]);
    let want = "p_dry(day=10) <= 0.05: no credit_pct in 0..20 is shown to meet it: undecided at 0 and 20 \
                after the 5-seed cap: raise --max-seeds;";
    assert!(r.line.starts_with(want), "{}", r.line);
    assert!(!r.line.contains("confidence"), "{}", r.line);
    let json = serde_json::to_value(r).unwrap();
    assert_eq!(json["verdict"]["kind"], "none_meets");
    assert_eq!(json["undecided_at"], serde_json::json!([0.0, 20.0]));
    // A decided verdict has nothing undecided and keeps its confidence.
    let decided = solver("credit_pct=0..20", &["p_dry(day=10) <= 0.05"], SolveOptions { max_seeds: 2000, ..options });
    let out = decided.unwrap().solve(&|_, _| {}).unwrap();
    assert_eq!(out.results[0].undecided_at, Vec::<f64>::new(), "{}", out.results[0].line);
}

/// A tier that never makes a request has no free share: its seeds count as not meeting a
/// `free_pQ` target, so a target on it is not met vacuously.
#[test]
fn a_tier_without_requests_does_not_meet_a_free_share_target() {
    // The scenario has no elite users and promotes no one.
    assert!(small().contains("elite = 0") && small().contains("promote_per_day = {}"));
    let options = SolveOptions { resolution: Some(50.0), ..SolveOptions::default() };
    let out =
        solver("credit_pct=0..100", &["free_p10(tier=elite) >= 0.99"], options).unwrap().solve(&|_, _| {}).unwrap();
    let r = &out.results[0];
    assert_eq!(r.verdict, Verdict::NoneMeets, "{}", r.line);
    assert!(r.undecided_at.is_empty(), "{}", r.line);
    assert_eq!(r.event, "free share of elite below 0.99 or no elite request");
}
