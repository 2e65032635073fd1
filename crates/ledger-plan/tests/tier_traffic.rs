//! `requests.per_user_per_day_by_tier` and `cost.estimate_sats_by_tier`: a tier named there
//! draws its users' requests (their estimates) from its own distribution, on the day the user
//! has that tier (when the request arrives); a tier not named draws from `per_user_per_day`
//! (`estimate_sats`); a scenario that names none is the run it was before the keys existed.

use ledger_plan::history::HistoryRow;
use ledger_plan::model;
use ledger_plan::scenario::PlanScenario;
use ledger_plan::Plan;

fn scenario(text: &str) -> PlanScenario {
    PlanScenario::from_toml_str(text, "s.toml").unwrap()
}

/// 100 new and 50 trusted users who never change tier, a fixed number of requests a day each.
const TWO_TIERS: &str = r#"
days = 3
seeds = 1
[population]
new = 100
established = 0
trusted = 50
elite = 0
[requests]
per_user_per_day = { dist = "fixed", value = 2 }
[tiers]
promote_per_day = { new = 0, established = 0, trusted = 0, elite = 0 }
decay_per_day = { new = 0, established = 0, trusted = 0, elite = 0 }
"#;

fn requests_by_tier(s: &PlanScenario) -> [usize; 4] {
    let mut rows: Vec<HistoryRow> = Vec::new();
    let run = model::run_with_history(s, s.seed, &mut rows);
    assert_eq!(run.violations, 0, "{:?}", run.first_violation);
    let mut n = [0; 4];
    for r in &rows {
        n[r.tier.index()] += 1;
    }
    n
}

#[test]
fn a_tier_named_draws_from_its_own_distribution_and_the_others_from_the_common_one() {
    let common = requests_by_tier(&scenario(TWO_TIERS));
    assert_eq!(common, [100 * 2 * 3, 0, 50 * 2 * 3, 0]);
    let own = scenario(&format!(
        "{TWO_TIERS}[requests.per_user_per_day_by_tier]\ntrusted = {{ dist = \"fixed\", value = 7 }}\n"
    ));
    assert_eq!(requests_by_tier(&own), [100 * 2 * 3, 0, 50 * 7 * 3, 0]);
}

/// A user promoted draws from its new tier's distribution from the next day on.
#[test]
fn a_user_draws_from_the_tier_it_has_that_day() {
    let text = TWO_TIERS
        .replace("trusted = 50", "trusted = 0")
        .replace("promote_per_day = { new = 0,", "promote_per_day = { new = 1,")
        .replace("days = 3", "days = 2");
    let s = scenario(&format!(
        "{text}[requests.per_user_per_day_by_tier]\nestablished = {{ dist = \"fixed\", value = 5 }}\n"
    ));
    // Day 0 as new (2 each), promoted at its end, day 1 as established (5 each).
    assert_eq!(requests_by_tier(&s), [100 * 2, 100 * 5, 0, 0]);
}

fn estimates_by_tier(s: &PlanScenario) -> [Vec<u64>; 4] {
    let mut rows: Vec<HistoryRow> = Vec::new();
    let run = model::run_with_history(s, s.seed, &mut rows);
    assert_eq!(run.violations, 0, "{:?}", run.first_violation);
    let mut out: [Vec<u64>; 4] = Default::default();
    for r in &rows {
        out[r.tier.index()].push(r.estimate_sats);
    }
    out.iter_mut().for_each(|v| v.dedup());
    out
}

#[test]
fn a_tiers_requests_draw_their_estimates_from_its_own_distribution() {
    let text = format!(
        "{TWO_TIERS}[cost]\nestimate_sats = {{ dist = \"fixed\", value = 20 }}\n\
         [cost.estimate_sats_by_tier]\ntrusted = {{ dist = \"fixed\", value = 300 }}\n"
    );
    assert_eq!(estimates_by_tier(&scenario(&text)), [vec![20], vec![], vec![300], vec![]]);
    // Promoted at the end of day 0, a new user's requests of day 1 are established ones.
    let text = text
        .replace("trusted = 50", "trusted = 0")
        .replace("promote_per_day = { new = 0,", "promote_per_day = { new = 1,")
        .replace("days = 3", "days = 2")
        .replace("trusted = { dist = \"fixed\", value = 300 }", "established = { dist = \"fixed\", value = 7 }");
    assert_eq!(estimates_by_tier(&scenario(&text)), [vec![20], vec![7], vec![], vec![]]);
}

/// The same scenario without the table and with an empty one, or one naming a tier with the
/// common distribution, is the same plan, byte for byte; so for the estimates.
#[test]
fn naming_no_tier_or_the_common_distribution_changes_nothing() {
    let base =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/scenarios/plan-tipping.toml"))
            .unwrap();
    let json = |text: &str| {
        let out = Plan::new(text, "s.toml", &[], Vec::new()).unwrap().run(None, None);
        serde_json::to_string(&out.runs).unwrap()
    };
    let plain = json(&base);
    let inline = |d: &ledger_plan::scenario::Dist| {
        let d = toml::to_string(d).unwrap().replace('\n', ", ");
        format!("{{ {} }}", d.trim_end_matches(", "))
    };
    let s = scenario(&base);
    let (requests, estimates) = (inline(&s.requests.per_user_per_day), inline(&s.cost.estimate_sats));
    for extra in [
        "[requests.per_user_per_day_by_tier]\n".to_owned(),
        format!("[requests.per_user_per_day_by_tier]\nelite = {requests}\n"),
        "[cost.estimate_sats_by_tier]\n".to_owned(),
        format!("[cost.estimate_sats_by_tier]\nnew = {estimates}\ntrusted = {estimates}\n"),
    ] {
        // Before the first table, so that it cannot be read as part of another.
        let first = base.find("\n[").expect("a table") + 1;
        let text = format!("{}{extra}{}", &base[..first], &base[first..]);
        assert_eq!(json(&text), plain, "with {extra}");
    }
}

#[test]
fn a_tier_distribution_out_of_range_or_an_unknown_tier_is_refused_by_name() {
    let err =
        |extra: &str| PlanScenario::from_toml_str(&format!("{TWO_TIERS}{extra}"), "s.toml").unwrap_err().to_string();
    let e = err("[requests.per_user_per_day_by_tier]\ntrusted = { dist = \"fixed\", value = 10001 }\n");
    assert!(e.contains("requests.per_user_per_day_by_tier.trusted.value = 10001: must be in 0..=10000"), "{e}");
    let e = err("[requests.per_user_per_day_by_tier]\ngold = { dist = \"fixed\", value = 1 }\n");
    assert!(e.contains("gold"), "{e}");
    let e = err("[cost.estimate_sats_by_tier]\ntrusted = { dist = \"fixed\", value = 0 }\n");
    assert!(e.contains("s.toml:15: cost.estimate_sats_by_tier.trusted.value = 0: must be in 1..=1000000000"), "{e}");
    let e = err("[cost.estimate_sats_by_tier]\nelite = { dist = \"lognormal\", median = 30, sigma = -1 }\n");
    assert!(e.contains("cost.estimate_sats_by_tier.elite.sigma = -1: must be in 0..=5"), "{e}");
}
