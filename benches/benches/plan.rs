//! The planner: simulated requests per second, and a sweep on 1 and 2 threads.
//!
//! `cargo bench -p ledger-benches --bench plan`. Every request goes through the reference
//! engine with the invariant checker fed after every command. One seed of 10 days is the
//! planner's speed on short runs; one of 90 days at a credit of 72 % is what a solve of the
//! launch fixture runs hundreds of times. The sweep is 4
//! configurations × 4 seeds of the launch fixture cut to 5 days; its 2-thread time over its
//! 1-thread time is the parallel speed-up. Other processes on the machine skew a
//! comparison of two benchmarks run one after the other, so the last one runs the sweep on
//! 1 and then on 2 threads back to back in each iteration and prints the median of the
//! paired ratios, with the load average before and after. The same pairing prices what a
//! solve's run records to be carried up the key (`model::run_carried` against
//! `model::run_until_dry`, one 90-day seed at 72 %).

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ledger_plan::model::{run_carried, run_until_dry};
use ledger_plan::scenario::PlanScenario;
use ledger_plan::{parse_sweep, Plan};

fn launch(days: &str, seeds: &str, sweep: &[&str]) -> Plan {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/scenarios/plan-launch.toml");
    let text = std::fs::read_to_string(path).expect("fixture");
    let sweep = sweep.iter().map(|s| parse_sweep(s).expect("sweep")).collect();
    Plan::new(&text, path, &[("days", days.to_owned()), ("seeds", seeds.to_owned())], sweep).expect("plan")
}

fn requests(p: &Plan) -> u64 {
    p.run(None, None).runs.iter().map(|r| r.requests()).sum()
}

fn plan(c: &mut Criterion) {
    let mut g = c.benchmark_group("plan");
    g.sample_size(10);

    let one = launch("10", "1", &[]);
    let pool1 = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("pool");
    g.throughput(Throughput::Elements(pool1.install(|| requests(&one))));
    g.bench_function("one seed, 5,000 users, 10 days (requests)", |b| b.iter(|| pool1.install(|| requests(&one))));
    // What a solve of plan-launch spends its time on: whole 90-day seeds near the answer,
    // where the pool lives (tables of 1.3 M requests, reused from seed to seed on a thread).
    let long = launch("90", "1", &["credit_pct=72"]);
    g.throughput(Throughput::Elements(pool1.install(|| requests(&long))));
    g.bench_function("one seed, 5,000 users, 90 days, credit 72 % (requests)", |b| {
        b.iter(|| pool1.install(|| requests(&long)))
    });

    let sweep = launch("5", "4", &["credit_pct=10,30", "budget.established=50,100"]);
    let n = pool1.install(|| requests(&sweep));
    g.throughput(Throughput::Elements(n));
    g.bench_function("sweep 4x4, 1 thread", |b| b.iter(|| pool1.install(|| requests(&sweep))));
    let pool2 = rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("pool");
    g.bench_function("sweep 4x4, 2 threads", |b| b.iter(|| pool2.install(|| requests(&sweep))));

    // A paired iteration runs the sweep twice.
    g.throughput(Throughput::Elements(2 * n));
    paired(&mut g, "sweep 4x4, 1 then 2 threads (paired)", &sweep, &pool1, &pool2);
    // The same work cut into twice as many items: a thread left without an item at the end
    // of a sweep idles for at most one item, a smaller share of a sweep with more items.
    let finer = launch("3", "8", &["credit_pct=10,30", "budget.established=50,100"]);
    g.throughput(Throughput::Elements(2 * pool1.install(|| requests(&finer))));
    paired(&mut g, "sweep 4x8 of 3 days, 1 then 2 threads (paired)", &finer, &pool1, &pool2);

    // The carry's record: the pool-binding test of every command and the payments' counts.
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/scenarios/plan-launch.toml");
    let text = std::fs::read_to_string(path).expect("fixture");
    let s = PlanScenario { credit_pct: 72.0, ..PlanScenario::from_toml_str(&text, path).expect("fixture") };
    g.throughput(Throughput::Elements(2 * run_until_dry(&s, 0, 1, true).requests()));
    let (mut ratios, load_before) = (Vec::new(), loadavg());
    g.bench_function("one 90-day seed at 72 %, plain then recorded to carry (paired)", |b| {
        b.iter_custom(|iters| {
            let mut both = Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                pool1.install(|| run_until_dry(&s, 0, 1, true));
                let plain = t.elapsed();
                let t = Instant::now();
                pool1.install(|| run_carried(&s, 1, true, 200));
                let recorded = t.elapsed();
                ratios.push(recorded.as_secs_f64() / plain.as_secs_f64());
                both += plain + recorded;
            }
            both
        })
    });
    report("recorded to carry / plain, one 90-day seed", &mut ratios, &load_before);
    g.finish();
}

/// Print the median of paired time ratios, with the load average around the measurement.
fn report(name: &str, ratios: &mut [f64], load_before: &str) {
    if ratios.is_empty() {
        return;
    }
    ratios.sort_by(f64::total_cmp);
    eprintln!(
        "{name}: median of {} pairs = {:.3} (min {:.3}, max {:.3}); load average before {load_before}, after {}",
        ratios.len(),
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1],
        loadavg()
    );
}

/// Bench `name`: run `plan` on `pool1` then on `pool2` in each iteration, and print the
/// median of the paired time ratios with the load average around the measurement.
fn paired(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    plan: &Plan,
    pool1: &rayon::ThreadPool,
    pool2: &rayon::ThreadPool,
) {
    let mut ratios = Vec::new();
    let load_before = loadavg();
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut both = Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                pool1.install(|| requests(plan));
                let one = t.elapsed();
                let t = Instant::now();
                pool2.install(|| requests(plan));
                let two = t.elapsed();
                ratios.push(one.as_secs_f64() / two.as_secs_f64());
                both += one + two;
            }
            both
        })
    });
    report(&format!("{name}: 1-thread time / 2-thread time"), &mut ratios, &load_before);
}

/// The 1, 5 and 15 minute load averages.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

criterion_group!(benches, plan);
criterion_main!(benches);
