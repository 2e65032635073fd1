//! Every value a scenario's distributions draw is in the range its key documents
//! ([`ledger_plan::scenario`]), even where the distribution itself reaches beyond it (a
//! log-normal given no `max`): runs neither panic nor write a history `--fit` cannot read, and
//! memory is sized for the draws as clamped.

use std::collections::BTreeMap;

use ledger_plan::history::{self, HistoryRow, MAX_ACTUAL_SATS};
use ledger_plan::model;
use ledger_plan::scenario::{PlanScenario, MAX_PER_USER_PER_DAY};
use ledger_plan::Plan;

fn scenario(text: &str) -> PlanScenario {
    PlanScenario::from_toml_str(text, "s.toml").unwrap()
}

/// 30 users who each send 1,000 requests of a billion sats, whose actual cost is a
/// log-normal percentage around 1,000 % with no `max`: half of the draws lie beyond 1000 %,
/// some of them far beyond `Sats::MAX`.
const HUGE_ACTUAL: &str = r#"
days = 1
seeds = 1
[population]
new = 30
established = 0
trusted = 0
elite = 0
[requests]
per_user_per_day = { dist = "fixed", value = 1000 }
[cost]
estimate_sats = { dist = "fixed", value = 1000000000 }
actual_pct = { dist = "lognormal", median = 1000, sigma = 5 }
"#;

#[test]
fn an_actual_pct_without_max_stays_at_1000_percent_and_its_history_reads_back() {
    let s = scenario(HUGE_ACTUAL);
    let mut rows = Vec::new();
    let run = model::run_with_history(&s, s.seed, &mut rows);
    assert_eq!(run.violations, 0, "{:?}", run.first_violation);
    assert_eq!(rows.len(), 30_000);
    let actual: Vec<u64> = rows.iter().filter_map(|r| r.actual_sats).collect();
    assert!(actual.iter().all(|&a| a <= MAX_ACTUAL_SATS), "an actual cost above 1000 % of the estimate");
    let at_cap = actual.iter().filter(|&&a| a == MAX_ACTUAL_SATS).count();
    assert!(at_cap * 3 > actual.len(), "{at_cap} of {} at the cap: about half are beyond it", actual.len());
    let text = history::write(&rows);
    assert_eq!(history::read(text.as_bytes(), "h.csv").unwrap(), rows, "what the run writes reads back");
}

/// Rich elite users against a pool the size of the largest genesis: the run's books stay
/// balanced (I3 holds) with actual costs clamped at 1000 %.
#[test]
fn an_actual_pct_without_max_breaks_no_invariant_for_rich_users() {
    let text = HUGE_ACTUAL
        .replace("new = 30", "new = 0")
        .replace("elite = 0", "elite = 25\n[budget]\nelite = 1000000000000")
        .replace("seeds = 1", "seeds = 20\nseed = 14\npool_initial_sats = 1000000000000000");
    let out = Plan::new(&text, "s.toml", &[], Vec::new()).unwrap().run(None, None);
    for run in &out.runs {
        assert_eq!(run.violations, 0, "seed {}: {:?}", run.seed, run.first_violation);
    }
}

/// Requests per user per day: a log-normal around 10,000 with no `max` gives no user more
/// than 10,000 in a day.
const HUGE_COUNT: &str = r#"
days = 2
seeds = 1
[population]
new = 6
established = 0
trusted = 0
elite = 0
[requests]
per_user_per_day = { dist = "lognormal", median = 10000, sigma = 5 }
"#;

#[test]
fn a_per_user_per_day_without_max_stays_at_10000() {
    let s = scenario(HUGE_COUNT);
    let mut rows: Vec<HistoryRow> = Vec::new();
    let run = model::run_with_history(&s, s.seed, &mut rows);
    assert_eq!(run.violations, 0, "{:?}", run.first_violation);
    let mut per_user_day: BTreeMap<(String, u64), u64> = BTreeMap::new();
    for r in &rows {
        *per_user_day.entry((r.user.clone(), (r.time_ms - s.start_ms) / 86_400_000)).or_default() += 1;
    }
    let most = per_user_day.values().copied().max().unwrap();
    assert_eq!(most, MAX_PER_USER_PER_DAY, "{per_user_day:?}");
}

/// The memory a run is sized for is that of the draws as clamped: a log-normal without `max`
/// is sized as one with `max` at the key's end, not by the mean of the unclamped tail
/// (e^12.5 times the median at sigma 5).
#[test]
fn memory_is_estimated_on_the_clamped_distribution() {
    let bytes = |text: &str| Plan::new(text, "s.toml", &[], Vec::new()).unwrap().bytes_per_run();
    let huge = HUGE_COUNT.replace("new = 6", "new = 47").replace("days = 2", "days = 3");
    let capped = huge.replace("sigma = 5 }", "sigma = 5, max = 10000 }");
    assert_eq!(bytes(&huge), bytes(&capped));
    // Half the draws are at 10,000 and the rest mostly far below: about 5,800 a day each.
    let requests = 47.0 * 3.0 * 5_800.0;
    let b = bytes(&huge) as f64;
    assert!(b > requests * 100.0 && b < requests * 300.0, "{b} bytes for about {requests} requests");
}
