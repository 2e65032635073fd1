//! The frontier (a solve for each value of a second key) and the reports of solves,
//! frontiers and plans: each point is the solve of the scenario with the second key set,
//! the output does not depend on the thread count, bad input is refused before any work, and
//! the HTML pages say the answer first and escape what they were given.

mod common;
use common::CLOSED_FORM;
use ledger_plan::frontier::{self, parse_over, Frontier, FrontierOutput};
use ledger_plan::solve::{parse_solve, SolveOptions, Solver, Verdict};
use ledger_plan::{html, parse_sweep, Plan};

/// The closed-form scenario with a small pool and a tenth of its users, so that the credit
/// decides whether the pool lasts and a solve takes a moment.
fn small() -> String {
    CLOSED_FORM
        .replace("pool_initial_sats = 1000000", "pool_initial_sats = 2000")
        .replace("new = 50\nestablished = 100", "new = 5\nestablished = 10")
}

const TARGET: &str = "pool_p5(day=10) >= 1000";

fn solver(text: &str, range: &str, target: &str) -> Result<Solver, String> {
    let options = SolveOptions { resolution: Some(2.0), ..SolveOptions::default() };
    Solver::new(text, "small.toml", &[], parse_solve(range).map_err(|e| e.to_string())?, &[target.to_owned()], options)
        .map_err(|e| e.to_string())
}

fn frontier(over: &str) -> Result<Frontier, String> {
    let s = solver(&small(), "credit_pct=0..100", TARGET)?;
    Frontier::new(&s, parse_over(over).map_err(|e| e.to_string())?).map_err(|e| e.to_string())
}

fn run(f: &Frontier) -> FrontierOutput {
    let out = f.solve(&|_, _, _| {}).unwrap();
    assert_eq!(out.violations, 0, "{:?}", out.first_violation);
    out
}

#[test]
fn each_point_is_the_solve_with_the_second_key_set() {
    let out = run(&frontier("budget.established=20,50").unwrap());
    assert_eq!(out.points.len(), 2);
    for (p, budget) in out.points.iter().zip(["20", "50"]) {
        // The same solve from a scenario file that says the budget itself.
        let text = small().replace("\nestablished = 50\n", &format!("\nestablished = {budget}\n"));
        assert!(text.contains(&format!("\nestablished = {budget}\n")), "{text}");
        let alone = solver(&text, "credit_pct=0..100", TARGET).unwrap().solve(&|_, _| {}).unwrap();
        assert_eq!(p.value, budget);
        assert_eq!(p.results, alone.results, "budget.established={budget}");
        assert!(matches!(p.results[0].verdict, Verdict::Between { .. }), "{:?}", p.results[0].verdict);
    }
    // A larger budget gives away more, so it needs at least as much credit: the frontier rises.
    let meets = |i: usize| match out.points[i].results[0].verdict {
        Verdict::Between { meets_at, .. } => meets_at,
        ref v => panic!("{v:?}"),
    };
    assert!(meets(1) > meets(0), "{} then {}", meets(0), meets(1));
    // The text is a table: the second key's value, the interval, the seeds, the verdict.
    let text = frontier::text(&out);
    let head = format!("{TARGET}: credit_pct that meets it, for each budget.established (95 % confidence each)");
    assert!(text.starts_with(&head), "{text}");
    for p in &out.points {
        let r = &p.results[0];
        let Verdict::Between { meets_at, fails_at, .. } = r.verdict else { unreachable!() };
        let row = format!("between {} and {} %", meets_at.min(fails_at), meets_at.max(fails_at));
        let line = text.lines().find(|l| l.trim_start().starts_with(&format!("{} ", p.value))).unwrap();
        assert!(line.contains(&row) && line.contains(&format!("meets at {meets_at}, fails at {fails_at}")), "{line}");
    }
}

/// A frontier does not depend on the thread count: its whole output, as text and as JSON
/// (every verdict, decision, seed count, event, balance and the requests decided), is the same
/// on one thread and two, though a batch runs one seed per thread.
#[test]
fn a_frontier_does_not_depend_on_the_thread_count() {
    let f = frontier("budget.established=50,20").unwrap();
    let with = |n| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap();
        let out = pool.install(|| run(&f));
        (serde_json::to_string(&out).unwrap(), frontier::text(&out))
    };
    let (one, two) = (with(1), with(2));
    assert!(one.0 == two.0, "one thread and two differ");
    assert_eq!(one.1, two.1);
    // The order given is the order solved and shown.
    assert!(one.1.find("\n  50 ").unwrap() < one.1.find("\n  20 ").unwrap(), "{}", one.1);
}

#[test]
fn bad_second_keys_and_values_are_refused_before_any_work() {
    for (over, says) in [
        ("credit_pct=10,20", "--over credit_pct: the key solved for"),
        ("budget.established=", "--over budget.established=: no values"),
        ("budget.established", "expected KEY=V1,V2,..."),
        ("budget.established=10,abc", "\"abc\" is not a number"),
        ("budget.established=10,10.0", "10 and 10.0 are the same value"),
        ("budget.platinum=1,2", "unknown field `platinum`"),
        ("payment.gate_paid=0.5,1.5", "--over payment.gate_paid=1.5: payment.gate_paid = 1.5: must be in 0..=1"),
        (
            "budget.trusted=0.5",
            "--over budget.trusted=0.5: 0.5 is not a whole number: budget.trusted counts in whole numbers",
        ),
        ("seeds=1,2", "--over seeds: the number of runs cannot be swept"),
        ("requests.even=0,1", "--over requests.even: not a numeric key"),
        // The days are the horizon, not a key to vary.
        ("days=5,20", "--over days: the days are the horizon"),
    ] {
        let e = frontier(over).unwrap_err();
        assert!(e.contains(says), "{over}: {e:?} should contain {says:?}");
    }
    // A point whose scenario no longer lets the solved range's end be set.
    let s = solver(&small(), "budget.established=0..100", TARGET).unwrap();
    let e = Frontier::new(&s, parse_over("credit_pct=10,120").unwrap()).unwrap_err().to_string();
    assert!(e.contains("credit_pct = 120: percentage over 100"), "{e}");
}

/// A row whose solve stayed undecided at the seed cap says so, and claims no confidence.
#[test]
fn an_undecided_row_says_so() {
    // Every seed gives the same run: a cap of 5 seeds decides no value (8 to fail, 140 to meet).
    let options = SolveOptions { resolution: Some(50.0), max_seeds: 5, ..SolveOptions::default() };
    let range = parse_solve("credit_pct=0..100").unwrap();
    let s = Solver::new(&small(), "small.toml", &[], range, &[TARGET.to_owned()], options).unwrap();
    let out = run(&Frontier::new(&s, parse_over("budget.established=20,50").unwrap()).unwrap());
    let text = frontier::text(&out);
    assert!(text.starts_with(&format!("{TARGET}: credit_pct that meets it, for each budget.established (95 % confidence each, none where undecided)")), "{text}");
    for p in &out.points {
        assert_eq!(p.results[0].verdict, Verdict::NoneMeets);
        let line = text.lines().find(|l| l.trim_start().starts_with(&format!("{} ", p.value))).unwrap();
        assert!(line.contains("none of 0..100 shown to meet"), "{line}");
        assert!(line.contains("undecided at 0 and 100 after the 5-seed cap: raise --max-seeds"), "{line}");
    }
    // The report says the same: no row claims a "none meets" it did not decide.
    let page = html::render_frontier(&out);
    assert!(page.contains("95 % confidence each, none where undecided"), "{page}");
    assert!(page.contains("none of 0..100 shown to meet"), "{page}");
    let solve = s.solve(&|_, _| {}).unwrap();
    let page = html::render_solve(&solve);
    assert!(page.contains(r#"<span class="badge">undecided</span>"#), "{page}");
}

/// The pieces a person looks for, in the order they should come, and nothing that could run.
fn check_page(page: &str, first: &str, then: &[&str]) {
    assert!(page.starts_with("<!doctype html>") && page.trim_end().ends_with("</html>"));
    for bad in ["<script", "http://www.w3.org/1999", "https://", "src=", "href="] {
        assert!(!page.contains(bad), "{bad} in the page");
    }
    assert_eq!(page.matches("<svg").count(), page.matches("</svg>").count());
    assert_eq!(page.matches("<figure").count(), page.matches("</figure>").count());
    assert_eq!(page.matches("<table").count(), page.matches("</table>").count());
    let at = page.find(first).unwrap_or_else(|| panic!("{first:?} missing"));
    assert!(at < page.find("<svg").unwrap(), "{first:?} comes after a chart");
    for piece in then {
        assert!(page.contains(piece), "{piece:?} missing");
    }
}

#[test]
fn reports_say_the_answer_first_with_units_and_the_target() {
    let f = frontier("budget.established=20,50").unwrap();
    let out = run(&f);
    let page = html::render_frontier(&out);
    check_page(
        &page,
        r#"<span class="badge">met at 2 of 2</span>pool_p5(day=10) &gt;= 1000: credit_pct that meets it"#,
        &[
            "budget.established (sats)",
            "credit_pct (%)",
            "pool balance, sats (log scale)",
            ">day</text>",
            "target p5 ≥ 1k sats",
            "<polyline",
        ],
    );
    let solve = solver(&small(), "credit_pct=0..100", TARGET).unwrap().solve(&|_, _| {}).unwrap();
    let page = html::render_solve(&solve);
    check_page(
        &page,
        &format!(r#"<span class="badge">met</span>{}"#, html::esc(&solve.results[0].line)),
        &["values tested", "share of seeds with the bad event", "limit 0.05 (band 0.04–0.06)", "target p5 ≥ 1k sats"],
    );
    // A p_dry target marks its day.
    let dry = solver(&small(), "credit_pct=0..20", "p_dry(day=7) <= 0.05").unwrap().solve(&|_, _| {}).unwrap();
    check_page(&html::render_solve(&dry), r#"class="verdict"#, &["target: dry by day 7 in ≤ 5 % of seeds"]);
}

/// The scenario's line at the top does not show the file's value of a key the page varies
/// (solved, swept or the frontier's second key): no run used it.
#[test]
fn the_page_head_shows_a_varied_key_as_varied() {
    let head = |page: &str| page[page.find("<h1>").unwrap()..page.find("</p>").unwrap()].to_owned();
    assert!(small().contains("credit_pct = 10"));
    let solve = solver(&small(), "credit_pct=0..100", TARGET).unwrap();
    let frontier =
        head(&html::render_frontier(&run(
            &Frontier::new(&solve, parse_over("budget.established=20,50").unwrap()).unwrap()
        )));
    assert!(frontier.contains("credit varied") && frontier.contains("/varied/"), "{frontier}");
    let solved = head(&html::render_solve(&solve.solve(&|_, _| {}).unwrap()));
    assert!(solved.contains("credit varied") && !solved.contains("/varied/"), "{solved}");
    let plan = Plan::new(&small(), "small.toml", &[], vec![parse_sweep("credit_pct=5,40").unwrap()]).unwrap();
    let swept = head(&html::render(&plan.run(None, None)));
    assert!(swept.contains("credit varied") && !swept.contains("credit 10 %"), "{swept}");
    let plain = head(&html::render(&Plan::new(&small(), "small.toml", &[], Vec::new()).unwrap().run(None, None)));
    assert!(plain.contains("credit 10 %") && !plain.contains("varied"), "{plain}");
    assert!(plain.contains(" sats · credit") && plain.contains(" %/day)"), "{plain}");
    // A varied key shows no unit beside "varied".
    let sweeps = vec![
        parse_sweep("pool_initial_sats=1000,2000").unwrap(),
        parse_sweep("population.growth_pct_per_day=0,1").unwrap(),
    ];
    let pools = head(&html::render(&Plan::new(&small(), "small.toml", &[], sweeps).unwrap().run(None, None)));
    assert!(pools.contains("pool varied · ") && pools.contains("(varied)"), "{pools}");
}

#[test]
fn a_hostile_scenario_cannot_put_markup_in_a_report() {
    let evil = r#"name = "</title><script>alert('x')</script><img src=x onerror=alert(1)>""#;
    let text = format!("{evil}\n{}", small());
    let plan = Plan::new(&text, "<b>evil</b>.toml", &[], vec![parse_sweep("credit_pct=5,40").unwrap()]).unwrap();
    let solve = solver(&text, "credit_pct=0..100", TARGET).unwrap();
    let over = Frontier::new(&solve, parse_over("budget.established=20,50").unwrap()).unwrap();
    for page in [
        html::render(&plan.run(None, None)),
        html::render_solve(&solve.solve(&|_, _| {}).unwrap()),
        html::render_frontier(&run(&over)),
    ] {
        assert!(!page.contains("<script") && !page.contains("<img"), "markup got through");
        assert!(
            page.contains("&lt;/title&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"),
            "the name is shown, escaped"
        );
    }
}

#[test]
fn a_pool_dead_on_day_one_shows_its_fall() {
    // Nearly no pool and no credit: dry on day 1 in every seed.
    let text = small()
        .replace("pool_initial_sats = 2000", "pool_initial_sats = 100")
        .replace("credit_pct = 10", "credit_pct = 0");
    let out = Plan::new(&text, "dead.toml", &[], Vec::new()).unwrap().run(None, None);
    assert_eq!(out.summaries[0].depletion_day_p50, Some(1));
    let page = html::render(&out);
    check_page(
        &page,
        "0 of 1 configuration(s) kept the pool from running dry",
        &["dry: median day 1 (100 % of seeds)"],
    );
    // On the logarithmic axis 100 sats sit two decades up, not on the floor with 0.
    assert!(page.contains(">100</text>") && page.contains(">0</text>"), "log ticks");
}

/// The figures of each chart grid of a page, in order: whether each takes a row of its own.
fn grids(page: &str) -> Vec<Vec<bool>> {
    let open = r#"<div class="grid">"#;
    let mut grids = Vec::new();
    for (at, _) in page.match_indices(open) {
        let (mut rest, mut divs, mut figures, mut grid) = (&page[at + open.len()..], 0, 0, Vec::new());
        loop {
            let (i, tag) = ["<div", "</div>", "<figure", "</figure>"]
                .iter()
                .filter_map(|t| rest.find(t).map(|i| (i, *t)))
                .min()
                .expect("the grid is closed");
            match tag {
                "<div" => divs += 1,
                "</div>" if divs == 0 => break,
                "</div>" => divs -= 1,
                "<figure" => {
                    if divs == 0 && figures == 0 {
                        let class = &rest[i..i + rest[i..].find('>').unwrap()];
                        grid.push(class.contains(r#"class="wide""#) || class.contains(" wide\""));
                    }
                    figures += 1;
                }
                _ => figures -= 1,
            }
            rest = &rest[i + tag.len()..];
        }
        grids.push(grid);
    }
    grids
}

/// Charts sit two a row and three never fit, and between the charts that take a row of their
/// own come an even number of others: no row is left with a blank half, at any width.
fn no_row_half_blank(page: &str) {
    assert!(
        page.contains(".grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(max(360px,40%),1fr));"),
        "two a row"
    );
    let grids = grids(page);
    assert!(!grids.is_empty());
    for grid in &grids {
        assert!(grid.split(|&wide| wide).all(|run| run.len() % 2 == 0), "a row half blank: {grid:?}");
    }
}

/// With an odd number of balance charts the last takes the row, drawn wider, on frontier,
/// plan and solve pages alike, for 1 to 6 charts.
#[test]
fn no_chart_row_is_left_half_blank() {
    let two = run(&frontier("budget.established=20,50").unwrap());
    for n in 1..=6 {
        let mut out = two.clone();
        out.over.values = (1..=n).map(|k| (10 * k).to_string()).collect();
        out.points = (0..n)
            .map(|k| {
                let mut p = two.points[k % 2].clone();
                p.value = out.over.values[k].clone();
                p
            })
            .collect();
        let page = html::render_frontier(&out);
        no_row_half_blank(&page);
        // The frontier's own chart across the page, then the n balance charts.
        let charts = &grids(&page)[0];
        assert_eq!(charts.len(), n + 1, "{n}");
        assert_eq!(charts[1..].iter().filter(|&&wide| wide).count(), n % 2, "{n}: {charts:?}");
        let last = &page[page.rfind("<figure").unwrap()..];
        let drawn_wide =
            last.starts_with(r#"<figure class="wide"><svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 900 300""#);
        assert_eq!(drawn_wide, n % 2 == 1, "{n}: {}", &last[..120]);

        let values: Vec<String> = (1..=n).map(|k| (5 * k).to_string()).collect();
        let sweep = parse_sweep(&format!("credit_pct={}", values.join(","))).unwrap();
        let plan = Plan::new(&small(), "small.toml", &[], vec![sweep]).unwrap().run(None, None);
        let page = html::render(&plan);
        no_row_half_blank(&page);
        // The balance charts (the map of depletion comes before the table, out of the grid),
        // then the shares by tier.
        let [balance, tiers] = &grids(&page)[..] else { panic!("two grids") };
        assert_eq!((balance.len(), tiers.len()), (n, n));
        assert_eq!(tiers.last(), Some(&(n % 2 == 1)), "{n}");
    }
    let unswept = Plan::new(&small(), "small.toml", &[], Vec::new()).unwrap().run(None, None);
    no_row_half_blank(&html::render(&unswept));
    let solve = solver(&small(), "credit_pct=0..100", TARGET).unwrap().solve(&|_, _| {}).unwrap();
    no_row_half_blank(&html::render_solve(&solve));
}

/// The frontier's answer table (and the solve's table of values tested) wraps its words rather
/// than run off the page: its text cells may wrap, a flag such as `--max-seeds` stays whole,
/// and the table sits in a box of its own that scrolls if it still does not fit, so that the
/// page never scrolls sideways.
#[test]
fn answer_tables_wrap_inside_the_page() {
    let options = SolveOptions { resolution: Some(50.0), max_seeds: 5, ..SolveOptions::default() };
    let range = parse_solve("credit_pct=0..100").unwrap();
    let s = Solver::new(&small(), "small.toml", &[], range, &[TARGET.to_owned()], options).unwrap();
    let out = run(&Frontier::new(&s, parse_over("budget.established=20,50").unwrap()).unwrap());
    let page = html::render_frontier(&out);
    assert!(page.contains("td.l{white-space:normal"), "a text cell wraps");
    assert!(page.contains(".scroll{overflow-x:auto;max-width:100%}"), "the box scrolls");
    let table = &page[page.find("<table").unwrap()..page.find("</table>").unwrap()];
    assert!(
        page[..page.find("<table").unwrap()].ends_with(r#"<div class="scroll" style="margin-top:6px">"#),
        "in its box"
    );
    for row in table.split("<tr>").skip(2) {
        let cells: Vec<&str> = row.split("<td").skip(1).collect();
        assert_eq!(cells.len(), 4, "{row}");
        for i in [1, 3] {
            assert!(cells[i].starts_with(r#" class="l">"#), "cell {i} may wrap: {row}");
        }
        assert!(cells[3].contains(r#"<span class="nw">--max-seeds;</span>"#), "{row}");
    }
    let solve = html::render_solve(&s.solve(&|_, _| {}).unwrap());
    assert!(solve.contains(r#"<figure class="wide"><div class="scroll"><table"#), "the solve's table in its box");
    // No grid cell grows past its column for what is in it.
    assert!(solve.contains(".grid>*{min-width:0}"));
}

/// A plan of the small scenario over `credit_pct` (0 to 70 by 5: 15 configurations, the
/// lowest of which run dry) and, with `pools`, the starting pool too.
fn many(pools: bool) -> ledger_plan::report::PlanOutput {
    let credits: Vec<String> = (0..15).map(|k| (5 * k).to_string()).collect();
    let mut sweeps = vec![parse_sweep(&format!("credit_pct={}", credits.join(","))).unwrap()];
    if pools {
        sweeps.push(parse_sweep("pool_initial_sats=300,2000").unwrap());
    }
    Plan::new(&small(), "small.toml", &[], sweeps).unwrap().run(None, None)
}

/// The verdict line of a page.
fn headline(page: &str) -> &str {
    let at = page.find(r#"<div class="verdict"#).expect("a verdict");
    &page[at..at + page[at..].find("</div>").unwrap()]
}

/// The headline names the configurations that ran dry, the most often first, five at most and
/// then how many more, as well as those that never did.
#[test]
fn a_plans_headline_names_the_configurations_that_ran_dry() {
    let out = many(false);
    let dry: Vec<_> = out.summaries.iter().filter(|x| x.depletion_probability > 0.0).collect();
    assert!(dry.len() > 5 && dry.len() < out.summaries.len(), "{} dry of {}", dry.len(), out.summaries.len());
    let page = html::render(&out);
    let line = headline(&page);
    assert!(line.contains(&format!("{} ran dry, the most often first: ", dry.len())), "{line}");
    assert!(line.contains(&format!(" and {} more.", dry.len() - 5)), "{line}");
    let mut worst = dry.clone();
    worst.sort_by(|a, b| b.depletion_probability.total_cmp(&a.depletion_probability));
    assert!(line.contains(&format!("{} (100 %", worst[0].label)), "{line}");
    // Five names of those that ran dry, none of those that did not among them.
    let named = line.split("the most often first: ").nth(1).unwrap();
    assert_eq!(named.matches("credit_pct=").count(), 5, "{named}");
    // With a single configuration that ran dry, it is named with its share and median day.
    let dead = small()
        .replace("pool_initial_sats = 2000", "pool_initial_sats = 100")
        .replace("credit_pct = 10", "credit_pct = 0");
    let one = html::render(&Plan::new(&dead, "dead.toml", &[], Vec::new()).unwrap().run(None, None));
    assert!(
        headline(&one).contains("1 ran dry, the most often first: base (100 %, median day 1)."),
        "{}",
        headline(&one)
    );
}

/// With more configurations than charts, the overview comes first (the map of depletion, then
/// the table), and the page draws twelve balance charts, says which and that the rest are in
/// the table: the riskiest, the safest and those nearest the line between running dry and
/// not, in the table's order, the same for the shares by tier.
#[test]
fn many_configurations_put_the_overview_first_and_draw_twelve_charts() {
    let out = many(true);
    assert_eq!(out.summaries.len(), 30);
    let page = html::render(&out);
    let (map, table, charts) = (
        page.find("<h2>Probability of depletion across the sweep</h2>").expect("the map"),
        page.find("<h2>Summary</h2>").unwrap(),
        page.find("<h2>Pool balance by day</h2>").unwrap(),
    );
    assert!(map < table && table < charts, "map {map}, table {table}, charts {charts}");
    assert!(page.contains(r#"<p class="note"><b>12 of 30 configurations drawn</b>: the riskiest ("#), "the note");
    assert!(page.contains("The other 18 are in the table above."), "the rest");
    let [balance, tiers] = &grids(&page)[..] else { panic!("two grids") };
    assert_eq!((balance.len(), tiers.len()), (12, 12));
    no_row_half_blank(&page);
    // Every configuration in the table.
    assert_eq!(page.matches("<tr><td class=\"l\">").count(), 30);
    // The charts drawn: the riskiest and the safest among them, and they straddle the line.
    let titles: Vec<&str> =
        page.split(r#"<text x="4" y="16" class="t">"#).skip(1).map(|t| t.split_once("</text>").unwrap().0).collect();
    let label = |i: usize| out.summaries[i].label.clone();
    let dry = |i: usize| out.summaries[i].depletion_probability > 0.0;
    let drawn: Vec<usize> = (0..30).filter(|&i| titles.iter().any(|t| t.starts_with(&label(i)))).collect();
    assert_eq!(drawn.len(), 12, "{titles:?}");
    assert!(drawn.iter().any(|&i| dry(i)) && drawn.iter().any(|&i| !dry(i)), "{drawn:?}");
    // The same page from the same output.
    assert_eq!(html::render(&out), page);
}

/// A configuration that never ran dry but whose pool's lowest p5 fell below 5 % of its start
/// gets an amber "thin margin" badge in the table and on its chart, the headline names it,
/// the page states the rule, and the table has every configuration's lowest p5.
#[test]
fn a_thin_margin_is_marked_and_its_rule_stated() {
    let mut out = many(false);
    // A configuration that never ran dry, given a wide margin (its p5 at 2,000 sats every
    // day), then made to dip to 90 (4.5 % of 2,000) on day 3.
    let thin = out.summaries.iter().position(|x| x.depletion_probability == 0.0).expect("one never dry");
    let days = out.summaries[thin].pool_p5.len();
    out.summaries[thin].pool_p5 = vec![2000; days];
    let badge = r#"<span class="tag thin">thin margin</span>"#;
    let before = html::render(&out).matches(badge).count();
    out.summaries[thin].pool_p5[2] = 90;
    let page = html::render(&out);
    assert_eq!(page.matches(badge).count(), before + 1, "a badge more");
    let mine = format!("{} {badge}", out.summaries[thin].label);
    let at = page.find(&mine).expect("the badge beside its configuration");
    let row = &page[at..at + page[at..].find("</tr>").unwrap()];
    assert!(row.contains("<td>90 (4.5 %)</td>"), "{row}");
    assert!(page.contains("Thin margin: never ran dry, but the lowest p5 fell below 5 % of the starting pool."));
    assert!(page.contains("<th>lowest p5, sats (of start)</th>"));
    let line = headline(&page);
    assert!(line.contains(" of them with a thin margin (the lowest p5 below 5 % of the starting pool): "), "{line}");
    assert!(line.contains(&out.summaries[thin].label), "{line}");
    assert!(page.contains(&format!("{} · thin margin</text>", out.summaries[thin].label)), "the chart's title");
    assert!(page.contains(">thin margin: p5 below 100 sats</text>"), "the chart's line");
    // All never dry, one thin: the verdict is amber.
    let mut all_safe = out.clone();
    for (i, x) in all_safe.summaries.iter_mut().enumerate() {
        if i != thin {
            (x.depletion_probability, x.depletion_day_min, x.depletion_day_p50) = (0.0, None, None);
            x.pool_p5 = vec![2000; days];
        }
    }
    let all = html::render(&all_safe);
    assert!(
        headline(&all).starts_with(r#"<div class="verdict thin"><span class="badge">thin margin</span>"#),
        "{}",
        headline(&all)
    );
}
