//! `requests.per_user_per_day_by_tier`: a tier named there draws its users' requests from its
//! own distribution, on the day the user has that tier; a tier not named draws from
//! `per_user_per_day`; a scenario that names none is the run it was before the key existed.

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

/// The same scenario without the table and with an empty one, or one naming a tier with the
/// common distribution, is the same plan, byte for byte.
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
    let common = scenario(&base).requests.per_user_per_day;
    let common = toml::to_string(&common).unwrap().replace('\n', ", ");
    let common = format!("{{ {} }}", common.trim_end_matches(", "));
    for extra in [
        "[requests.per_user_per_day_by_tier]\n".to_owned(),
        format!("[requests.per_user_per_day_by_tier]\nelite = {common}\n"),
    ] {
        let text = if base.contains("[requests]") {
            base.replacen("[requests]", &format!("{extra}[requests]"), 1)
        } else {
            format!("{base}\n{extra}")
        };
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
}
