//! `ledger-sim plan`: a closed form, shards against a single run, thread-count
//! independence, scenario errors, and snapshots of the fixture scenarios' reports.

mod common;
use common::CLOSED_FORM;
use ledger_plan::report::{self, PlanOutput, Shard};
use ledger_plan::scenario::PlanScenario;
use ledger_plan::{html, merge, parse_sweep, Plan};

fn fixture(name: &str) -> String {
    let path = format!("{}/../../fixtures/scenarios/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn plan(text: &str, overrides: &[(&str, &str)], sweeps: &[&str]) -> Plan {
    let overrides: Vec<(&str, String)> = overrides.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    let sweep = sweeps.iter().map(|s| parse_sweep(s).unwrap()).collect();
    Plan::new(text, "test.toml", &overrides, sweep).unwrap()
}

fn json(out: &PlanOutput) -> String {
    serde_json::to_string_pretty(out).unwrap()
}

#[test]
fn pool_trajectory_matches_the_closed_form() {
    let out = plan(CLOSED_FORM, &[], &[]).run(None, None);
    let run = &out.runs[0];
    // Each established user sends 4 requests of 15 sats a day against a budget of 50: three
    // are free (45 absorbed), the fourth is offered a partial of 5 and charged 10, pays, and
    // the pool absorbs the 5. Credit floor(10 * 10 %) = 1. Each new user (budget 0) is gated
    // 4 times, pays 15 each time, credit floor(15 * 10 %) = 1 each.
    let (n_new, n_est, per_day) = (50u64, 100u64, 4u64);
    let absorbed_per_day = n_est * 50;
    let credit = |paid: u64| paid * 1000 / 10_000;
    let credits_per_day = n_est * credit(10) + n_new * per_day * credit(15);
    let expected: Vec<u64> = (1..=10).map(|d| 1_000_000 - d * (absorbed_per_day - credits_per_day)).collect();
    assert_eq!(absorbed_per_day - credits_per_day, 4_700);
    assert_eq!(run.pool_by_day, expected);
    assert_eq!(run.absorbed_sats, 10 * absorbed_per_day);
    assert_eq!(run.credited_sats, 10 * credits_per_day);
    assert_eq!(run.paid_sats, 10 * (n_new * per_day * 15 + n_est * 10));
    assert_eq!(run.served[0], [0, 0, 10 * n_new * per_day]);
    assert_eq!(run.served[1], [10 * n_est * 3, 10 * n_est, 0]);
    assert_eq!(run.reserved_by_day, vec![0; 10]);
    assert_eq!(run.depleted_day, None);
    assert_eq!(run.violations, 0, "{:?}", run.first_violation);
}

fn small_sweep() -> Plan {
    plan(
        &fixture("plan-promo.toml"),
        &[("seeds", "3"), ("days", "4")],
        &["credit_pct=10,30", "budget.established=20,50"],
    )
}

#[test]
fn merged_shards_equal_a_single_run_byte_for_byte() {
    let p = small_sweep();
    assert_eq!(p.n_items(), 12);
    let single = json(&p.run(None, None));
    let mut parts = Vec::new();
    for index in [2, 3, 1] {
        let shard = p.run(Some(Shard { index, count: 3 }), None);
        assert_eq!(shard.runs.len(), 4);
        // Through the bytes a shard writes, as `merge` reads them from files.
        parts.push(serde_json::from_str::<PlanOutput>(&json(&shard)).unwrap());
    }
    let merged = json(&merge(parts).unwrap());
    assert!(merged == single, "merge(shards) differs from the single run");
    // A missing or repeated shard is an error, not a smaller report.
    let one = p.run(Some(Shard { index: 1, count: 3 }), None);
    assert!(merge(vec![one.clone()]).unwrap_err().to_string().contains("a shard is missing"));
    assert!(merge(vec![one.clone(), one]).unwrap_err().to_string().contains("given twice"));
}

/// A sweep over the credit and the genesis carries runs up where the pool never bound them
/// (`Plan::run_with_cost` with `carry`): the same output, byte for byte, alone and in shards
/// merged, with fewer runs. Launch at a healthy credit (carried) beside the tipping point's
/// small pool (mostly bound, so most seeds run).
#[test]
fn a_sweep_carrying_runs_up_gives_what_running_every_seed_gives() {
    let launch = plan(
        &fixture("plan-launch.toml"),
        &[("days", "4"), ("seeds", "3")],
        &["credit_pct=80,72,75.5", "budget.trusted=100,200", "pool_initial_sats=10000,20000"],
    );
    let tipping =
        plan(&fixture("plan-tipping.toml"), &[("seeds", "40")], &["pool_initial_sats=14500,16000", "credit_pct=10,20"]);
    for (name, p, least_carried) in [("launch", &launch, 20), ("tipping", &tipping, 5)] {
        let every = json(&p.run(None, None));
        let (carried, cost) = p.run_with_cost(None, None, true);
        assert!(json(&carried) == every, "{name}: carrying changed the plan");
        assert!(cost.seeds_carried >= least_carried, "{name}: {cost:?}");
        assert_eq!(cost.seeds_run + cost.seeds_carried, p.n_items() as u64, "{name}: {cost:?}");
        let parts = (1..=3).map(|index| {
            let shard = p.run_with_cost(Some(Shard { index, count: 3 }), None, true).0;
            serde_json::from_str::<PlanOutput>(&json(&shard)).unwrap()
        });
        assert!(json(&merge(parts.collect()).unwrap()) == every, "{name}: carried shards merged differ");
        eprintln!("{name}: {cost:?} of {} items", p.n_items());
    }
}

/// A thread keeps its last run's ledger and checker for the next run (`model::SPARE`): what a
/// run gives must not depend on what the thread ran before, larger or smaller, dry or not.
#[test]
fn a_run_on_a_used_thread_equals_one_on_a_fresh_thread() {
    let fresh = || rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let large = plan(&fixture("plan-launch.toml"), &[("seeds", "2"), ("days", "3")], &["credit_pct=0,80"]);
    let small = small_sweep();
    let large_alone = fresh().install(|| json(&large.run(None, None)));
    let small_alone = fresh().install(|| json(&small.run(None, None)));
    let used = fresh();
    let small_after_large = used.install(|| {
        large.run(None, None);
        json(&small.run(None, None))
    });
    let large_after_small = used.install(|| json(&large.run(None, None)));
    assert!(small_after_large == small_alone, "a small plan after a large one differs from it alone");
    assert!(large_after_small == large_alone, "a large plan after a small one differs from it alone");
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let p = small_sweep();
    let with = |n| rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap().install(|| json(&p.run(None, None)));
    assert_eq!(with(1), with(2));
}

#[test]
fn fixtures_run_clean_and_their_reports_are_stable() {
    for name in ["plan-launch", "plan-steady", "plan-promo"] {
        let text = fixture(&format!("{name}.toml"));
        PlanScenario::from_toml_str(&text, name).unwrap();
        let out = plan(&text, &[("seeds", "2"), ("days", "3")], &[]).run(None, None);
        assert!(out.summaries.iter().all(|s| s.violations == 0), "{name}: {:?}", out.summaries[0].first_violation);
        let page = html::render(&out);
        assert!(page.starts_with("<!doctype html>") && !page.contains("http://") || page.contains("xmlns"));
        assert!(!page.contains("<script"), "the report needs no script");
        insta::assert_snapshot!(format!("{name}-table"), report::table(&out));
        insta::assert_snapshot!(format!("{name}-csv"), report::csv(&out));
    }
}

fn error(text: &str) -> String {
    PlanScenario::from_toml_str(text, "s.toml").unwrap_err().to_string()
}

#[test]
fn unknown_keys_and_bad_values_name_the_key_and_line() {
    insta::assert_snapshot!(error("days = 3\n[budget]\ntrusted = 10\nplatinum = 5\n"), @r"
    s.toml: TOML parse error at line 4, column 1
      |
    4 | platinum = 5
      | ^^^^^^^^
    unknown field `platinum`, expected one of `new`, `established`, `trusted`, `elite`
    ");
    insta::assert_snapshot!(error("days = 3\n\n[payment]\ngate_paid = 1.5\n"), @"s.toml:4: payment.gate_paid = 1.5: must be in 0..=1");
    // No bound is printed as hundreds of digits.
    let e = error("[cost]\nestimate_sats = { dist = \"lognormal\", median = 0, sigma = 1 }\n");
    assert_eq!(e, "s.toml:2: cost.estimate_sats.median = 0: must be above 0 and at most 1000000000");
    let e = error("[cost]\nestimate_sats = { dist = \"lognormal\", median = -1e-300, sigma = 1 }\n");
    assert!(e.ends_with("median = -1e-300: must be above 0 and at most 1000000000"), "{e}");
    insta::assert_snapshot!(error("credit_pct = 12.345\n"), @"s.toml:1: credit_pct = 12.345: at most two decimals (a basis point) are allowed");
    insta::assert_snapshot!(
        error("[cost]\nestimate_sats = { dist = \"poisson\", mean = 3, sigma = 1 }\n"),
        @r#"s.toml:2: cost.estimate_sats.sigma = 1: not a parameter of dist = "poisson""#
    );
    insta::assert_snapshot!(error("days = 0\n"), @"s.toml:1: days = 0: must be in 1..=3650");
    insta::assert_snapshot!(
        error("[tiers]\npromote_per_day = { elite = 0.1 }\n"),
        @"s.toml:2: tiers.promote_per_day.elite = 0.1: elite is the highest tier"
    );
}

/// A sweep may set a parameter of a distribution the file leaves at its default.
#[test]
fn a_defaulted_distribution_can_be_swept() {
    let text = fixture("plan-tipping.toml");
    assert!(!text.contains("estimate_sats"), "the fixture leaves the estimate at its default");
    let p = plan(&text, &[("seeds", "1"), ("days", "2")], &["cost.estimate_sats.median=5,50"]);
    let medians: Vec<Option<f64>> = p.scenarios.iter().map(|s| s.cost.estimate_sats.median).collect();
    assert_eq!(medians, [Some(5.0), Some(50.0)]);
    assert_eq!(p.scenarios[0].cost.estimate_sats.sigma, p.base.cost.estimate_sats.sigma, "the rest stays the default");
}

#[test]
fn sweeps_name_bad_keys_and_values() {
    let bad = |s: &str| {
        let sweep = vec![parse_sweep(s).unwrap()];
        Plan::new("days = 30\n", "s.toml", &[], sweep).unwrap_err().to_string()
    };
    assert!(bad("budget.platinum=1,2").contains("unknown field `platinum`"), "{}", bad("budget.platinum=1,2"));
    // Named as given, whichever value is refused.
    assert_eq!(
        bad("payment.gate_paid=0.5,2"),
        "--sweep payment.gate_paid=0.5,2: payment.gate_paid = 2: must be in 0..=1"
    );
    assert_eq!(
        bad("budget.gold=1,2"),
        "--sweep budget.gold=1,2: unknown field `gold`, expected one of `new`, `established`, `trusted`, `elite` in \
         `budget`"
    );
    assert_eq!(bad("seeds=1,2"), "--sweep seeds: the number of runs cannot be swept");
    let not_numeric = bad("requests.even=1");
    assert_eq!(not_numeric, "--sweep requests.even: not a numeric key");
    let p = plan("days = 30\n", &[("seeds", "1")], &["credit_pct=5,12.5", "budget.trusted=100,400"]);
    let labels: Vec<&str> = p.configs.iter().map(|c| c.label.as_str()).collect();
    assert_eq!(
        labels,
        [
            "credit_pct=5 budget.trusted=100",
            "credit_pct=5 budget.trusted=400",
            "credit_pct=12.5 budget.trusted=100",
            "credit_pct=12.5 budget.trusted=400"
        ]
    );
    assert_eq!(p.scenarios[2].config().credit_bps.to_u16(), 1250);
    assert_eq!(p.scenarios[3].budget.trusted, 400);
}

/// Work that outlasts its reservation: the reservation expires before the record, so the
/// caller's record is refused and the pool's share is paid outside the pool (an overrun on
/// the caller's books). The planner used to panic here ("record of an outstanding
/// reservation"); driving the simulator's caller, it runs on and no invariant breaks.
#[test]
fn work_longer_than_the_reservation_ttl_is_an_expiry_not_a_crash() {
    // Requests at 3 h, 9 h, 15 h and 21 h; work takes 4 h. The last one of each day (the
    // partial, 5 sats) is still working when the day's `expire` runs at 24 h.
    let text = CLOSED_FORM.replace("work_ms = 0", "work_ms = 14400000");
    let out = plan(&text, &[("reservation_ttl_ms", "600000"), ("days", "2")], &[]).run(None, None);
    let run = &out.runs[0];
    assert_eq!(run.violations, 0, "{:?}", run.first_violation);
    assert_eq!(run.served[1], [2 * 100 * 3, 2 * 100, 0]);
    // The three free requests absorb 45 a day per user; the partial's 5 expire.
    assert_eq!(run.absorbed_sats, 2 * 100 * 45);
    // Sampled just before the day's `expire`: each user's 5 are still reserved.
    assert_eq!(run.reserved_by_day, vec![100 * 5; 2]);
}

/// `merge` says exactly what does not match, naming the inputs.
#[test]
fn merge_errors_name_what_does_not_match() {
    let p = small_sweep();
    let shard = |index, count| p.run(Some(Shard { index, count }), None);
    let named = |parts: Vec<PlanOutput>| {
        let parts = parts.into_iter().enumerate().map(|(i, o)| (format!("s{}.json", i + 1), o)).collect();
        ledger_plan::merge_named(parts).unwrap_err().to_string()
    };
    let e = named(vec![shard(1, 3), shard(2, 2)]);
    assert!(e.contains("s2.json is shard 2/2 but s1.json is shard 1/3"), "{e}");
    let other = plan(
        &fixture("plan-promo.toml"),
        &[("seeds", "2"), ("days", "4")],
        &["credit_pct=10,30", "budget.established=20,50"],
    );
    let e = named(vec![shard(1, 2), other.run(Some(Shard { index: 2, count: 2 }), None)]);
    assert!(e.contains("different scenarios (seeds: 2 vs 3)"), "{e}");
    // A hand-edited shard: a run moved to another shard's seed.
    let mut edited = shard(2, 2);
    edited.runs[0].seed = edited.runs[1].seed;
    let e = named(vec![shard(1, 2), edited]);
    assert!(e.contains("does not belong to shard 2/2") || e.contains("appears twice"), "{e}");
    let e = named(vec![shard(1, 2), p.run(None, None)]);
    assert!(e.contains("merge takes the shards of one plan"), "{e}");
    // A run cut or stretched by hand, or dry on a day the plan does not have.
    let mut cut = shard(2, 2);
    cut.runs[0].pool_by_day.clear();
    let e = named(vec![shard(1, 2), cut]);
    assert!(e.contains("s2.json: run (config") && e.contains("0 pool_by_day entries"), "{e}");
    let mut late = shard(2, 2);
    late.runs[1].depleted_day = Some(4_000_000_000);
    let e = named(vec![shard(1, 2), late]);
    assert!(e.contains("ran dry on day 4000000000, outside the plan's days 1..=4"), "{e}");
}

/// A shard's `I/N` edited by hand to what `--shard` refuses (a count of 0 divided by zero)
/// is an error naming the file, whichever file it is in.
#[test]
fn merge_refuses_a_shard_count_or_index_out_of_range() {
    let p = small_sweep();
    for (index, count) in [(1, 0), (0, 2), (3, 2), (0, 0)] {
        for edited_first in [true, false] {
            let mut edited = p.run(Some(Shard { index: 2, count: 2 }), None);
            edited.shard = Some(Shard { index, count });
            let other = p.run(Some(Shard { index: 1, count: 2 }), None);
            let parts = if edited_first {
                vec![("s2.json".to_owned(), edited), ("s1.json".to_owned(), other)]
            } else {
                vec![("s1.json".to_owned(), other), ("s2.json".to_owned(), edited)]
            };
            let e = ledger_plan::merge_named(parts).unwrap_err().to_string();
            assert_eq!(e, format!("s2.json: shard {index}/{count}: a shard I/N has 1 <= I <= N"));
        }
    }
}

/// About how wide a text of an SVG is: DejaVu Sans (the common fallback) gives a digit 0.636
/// of the font's size, 0.696 in bold.
fn text_width(text: &str, size: f64, bold: bool) -> f64 {
    text.chars().count() as f64 * size * if bold { 0.696 } else { 0.636 }
}

/// The value of attribute `name` in the tag `tag`.
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let at = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    Some(&tag[at..at + tag[at..].find('"')?])
}

fn num(tag: &str, name: &str) -> f64 {
    attr(tag, name).unwrap_or_else(|| panic!("{name} in {tag}")).parse().unwrap()
}

/// Each text of an SVG (not turned) with its left and right ends, its font's size and weight.
fn texts(svg: &str) -> Vec<(String, f64, f64)> {
    let mut out = Vec::new();
    for piece in svg.split("<text").skip(1) {
        let (tag, rest) = piece.split_once('>').unwrap();
        if tag.contains("transform=") || tag.contains("textLength=") {
            continue;
        }
        let content = rest.split_once("</text>").unwrap().0.replace("&amp;", "&");
        let class = attr(tag, "class").unwrap_or("");
        let size = attr(tag, "font-size").map_or(if class == "t" { 12.0 } else { 10.0 }, |s| s.parse().unwrap());
        let bold = class == "t" || tag.contains("font-weight=");
        let w = text_width(&content, size, bold);
        let x = num(tag, "x");
        let (x0, x1) = match attr(tag, "text-anchor") {
            Some("middle") => (x - w / 2.0, x + w / 2.0),
            Some("end") => (x - w, x),
            _ => (x, x + w),
        };
        out.push((content, x0, x1));
    }
    out
}

/// The SVGs of a page whose opening tag contains `marker`.
fn svgs<'a>(page: &'a str, marker: &str) -> Vec<&'a str> {
    page.match_indices("<svg")
        .map(|(at, _)| &page[at..at + page[at..].find("</svg>").unwrap()])
        .filter(|svg| svg[..svg.find('>').unwrap()].contains(marker))
        .collect()
}

/// The width of an SVG's view box.
fn view_width(svg: &str) -> f64 {
    attr(&svg[..svg.find('>').unwrap()], "viewBox").unwrap().split(' ').nth(2).unwrap().parse().unwrap()
}

/// A page of a swept plan of the tipping point with pools of a million sats and more: requests
/// per seed that are not whole, balances on the heat-map in thousands and millions.
fn swept_page() -> String {
    let out = plan(
        &fixture("plan-tipping.toml"),
        &[("seeds", "3"), ("days", "2")],
        &["credit_pct=10,20,30", "pool_initial_sats=1000000,25000000"],
    )
    .run(None, None);
    html::render(&out)
}

/// The label of each bar of the tiers' charts says the requests per seed with thousands
/// separators and at most one decimal ("trusted (58.3 req.)", not 58.333333), and the margin
/// left of the bars holds it whole.
#[test]
fn tier_labels_are_rounded_and_fit_their_margin() {
    let page = swept_page();
    let charts: Vec<&str> = svgs(&page, "viewBox").into_iter().filter(|svg| svg.contains(" req.)</text>")).collect();
    assert_eq!(charts.len(), 6, "six tier charts");
    let mut labels = 0;
    for svg in charts {
        for (text, x0, x1) in texts(svg) {
            let Some(n) = text.strip_suffix(" req.)").and_then(|t| t.rsplit_once(" (")).map(|(_, n)| n) else {
                continue;
            };
            labels += 1;
            let (whole, decimals) = n.split_once('.').unwrap_or((n, ""));
            assert!(decimals.len() <= 1, "{text}: more than one decimal");
            let groups: Vec<&str> = whole.split(',').collect();
            assert!(
                groups[0].len() <= 3
                    && groups[1..].iter().all(|g| g.len() == 3)
                    && n.replace([',', '.'], "").bytes().all(|b| b.is_ascii_digit()),
                "{text}: not a number with thousands separators"
            );
            assert!(x0 >= 0.0 && x1 <= view_width(svg), "{text} runs off the chart: {x0:.1}..{x1:.1}");
        }
    }
    assert_eq!(labels, 24, "four tiers a chart");
}

/// Each cell of the depletion heat-map holds its texts (the probability and the median
/// balance on the last day) within its width, and no text runs off the map, for maps of 1 to 3
/// rows and columns.
#[test]
fn heat_map_texts_fit_their_cells() {
    let text = fixture("plan-tipping.toml");
    for sweeps in [
        vec!["credit_pct=10,20,30", "pool_initial_sats=1000000,25000000"],
        vec!["pool_initial_sats=999000"],
        vec!["budget.established=10,25", "pool_initial_sats=1000000", "credit_pct=10,20"],
    ] {
        let page = html::render(&plan(&text, &[("seeds", "2"), ("days", "2")], &sweeps).run(None, None));
        let maps = svgs(&page, r#" width=""#);
        assert!(!maps.is_empty(), "{sweeps:?}: no heat-map");
        let mut cells = 0;
        for svg in maps {
            let w = view_width(svg);
            let all = texts(svg);
            for (t, x0, x1) in &all {
                assert!(*x0 >= 0.0 && *x1 <= w, "{sweeps:?}: {t:?} runs off the map ({x0:.1}..{x1:.1} of {w})");
            }
            for piece in svg.split("<rect").skip(1) {
                let tag = piece.split_once('>').unwrap().0;
                let (x, cw) = (num(tag, "x"), num(tag, "width"));
                let after = piece.split_once("</rect>").unwrap().1;
                let after = &after[..after.find("<rect").unwrap_or(after.len())];
                // The cell's two texts (then, at the end of a row, the next row's value).
                let inside = texts(after);
                assert!(inside.len() >= 2, "{after}");
                for (t, x0, x1) in inside.iter().take(2) {
                    assert!(
                        *x0 >= x && *x1 <= x + cw,
                        "{sweeps:?}: {t:?} spills out of its cell ({x0:.1}..{x1:.1} of {x}..{})",
                        x + cw
                    );
                }
                cells += 1;
            }
        }
        assert!(cells >= 1, "{sweeps:?}");
    }
}

/// The summary table may wrap the configuration's label, and scrolls in a box of its own
/// rather than make the page scroll sideways.
#[test]
fn the_summary_table_wraps_its_labels_in_a_box_of_its_own() {
    let page = swept_page();
    assert!(page.contains(r#"<div class="scroll"><table>"#), "the table in its box");
    assert!(page.contains(".scroll{overflow-x:auto;max-width:100%}"), "the box scrolls");
    assert!(page.contains("td.l{white-space:normal"), "a cell of class l wraps");
    assert!(page.contains(r#"<tr><td class="l">credit_pct=10 pool_initial_sats=1000000</td>"#), "the label wraps");
}

/// `merge` checks what it is handed rather than trusting it: the sums a summary makes cannot
/// wrap around, the scenario is one `plan` would run (the checks of a scenario file), the
/// grid is the one its sweep makes, and each run is one the plan has. Each error names the
/// file.
#[test]
fn merge_checks_the_scenario_grid_and_runs_of_each_file() {
    let p = small_sweep();
    let shard = |index| p.run(Some(Shard { index, count: 2 }), None);
    let merged = |edit: &dyn Fn(&mut PlanOutput)| {
        let mut s2 = shard(2);
        edit(&mut s2);
        ledger_plan::merge_named(vec![("s1.json".to_owned(), shard(1)), ("s2.json".to_owned(), s2)])
    };
    let error = |edit: &dyn Fn(&mut PlanOutput)| merged(edit).unwrap_err().to_string();
    let both = |edit: &dyn Fn(&mut PlanOutput)| {
        let (mut s1, mut s2) = (shard(1), shard(2));
        edit(&mut s1);
        edit(&mut s2);
        ledger_plan::merge_named(vec![("s1.json".to_owned(), s1), ("s2.json".to_owned(), s2)]).unwrap_err().to_string()
    };
    assert!(merged(&|_| {}).is_ok());

    // Violations of 2^63 in a run of each shard of one configuration: 2^64, which wrapped to 0.
    let e = both(&|s| {
        let r = s.runs.iter_mut().find(|r| r.config == 0).unwrap();
        r.violations = 1 << 63;
        r.first_violation = Some("I3".to_owned());
    });
    assert_eq!(
        e,
        format!(
            "s2.json: run (config 0, seed {}): its violations and its configuration's other runs' add up to more \
             than 2^64 - 1, which no run of the plan can give",
            shard(2).runs.iter().find(|r| r.config == 0).unwrap().seed
        )
    );
    let e = error(&|s| {
        for r in s.runs.iter_mut().filter(|r| r.config == 1) {
            r.violations = u64::MAX;
            r.first_violation = Some("I3".to_owned());
        }
    });
    assert!(e.starts_with("s2.json: run (config 1, seed ") && e.contains("its violations"), "{e}");
    let e = error(&|s| s.runs[0].served[3][2] = u64::MAX);
    assert!(e.starts_with("s2.json: run (config ") && e.contains("its requests"), "{e}");
    let e = error(&|s| s.runs[0].first_violation = Some("I3".to_owned()));
    assert!(e.contains("has 0 violation(s) but a first violation"), "{e}");

    // The scenario, as `plan` checks a scenario file (both files edited alike, or they differ).
    let e = both(&|s| s.scenario.name = "\u{1b}[2Jowned".to_owned());
    assert_eq!(e, r#"s1.json: name = "\u{1b}[2Jowned": a control character ('\u{1b}') in a label"#);
    let e = both(&|s| s.scenario.credit_pct = 500.0);
    assert!(e.starts_with("s1.json: credit_pct = 500: "), "{e}");
    let e = both(&|s| s.scenario.seeds = 0);
    assert_eq!(e, "s1.json: seeds = 0: must be in 1..=100000");
    let e = both(&|s| s.scenario.days = 0);
    assert_eq!(e, "s1.json: days = 0: must be in 1..=3650");
    let e = both(&|s| s.scenario.seed = u64::MAX);
    assert_eq!(e, "s1.json: seed = 18446744073709551615: must be in 0..=9223372036854775807");

    // The sweep and the grid it makes.
    let e = both(&|s| s.sweep[0].values[1] = "500".to_owned());
    assert!(e.starts_with("s1.json: --sweep credit_pct=10,500: credit_pct = 500: "), "{e}");
    let e = both(&|s| s.configs[1].label = "\u{1b}]0;x\u{7}".to_owned());
    assert_eq!(
        e,
        "s1.json: its configurations are not the grid its sweep makes (4 configuration(s) given, 4 in the grid)"
    );
    let e = both(&|s| s.configs[1].at = vec![7, 7]);
    assert!(e.contains("its configurations are not the grid its sweep makes"), "{e}");
    let e = both(&|s| s.sweep[0].key = "credit_pct\u{1b}".to_owned());
    assert!(e.starts_with("s1.json: sweep \"credit_pct\\u{1b}\"="), "{e}");

    // A whole run (no shard) is checked as a shard is: a run outside the grid is not dropped.
    let mut whole = p.run(None, None);
    whole.runs[0].config = 9;
    let e = ledger_plan::merge_named(vec![("all.json".to_owned(), whole)]).unwrap_err().to_string();
    assert!(e.starts_with("all.json: run (config 9, seed 7) is outside the plan's 4 configuration(s)"), "{e}");
}
