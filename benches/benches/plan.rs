//! The planner: simulated requests per second, and a sweep on 1 and 2 threads.
//!
//! `cargo bench -p ledger-benches --bench plan`. Every request goes through the reference
//! engine with the invariant checker fed after every command. The sweep is 4
//! configurations × 4 seeds of the launch fixture cut to 5 days; its 2-thread time over its
//! 1-thread time is the parallel speed-up.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ledger_sim::plan::{parse_sweep, Plan};

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

    let sweep = launch("5", "4", &["credit_pct=10,30", "budget.established=50,100"]);
    let n = pool1.install(|| requests(&sweep));
    g.throughput(Throughput::Elements(n));
    g.bench_function("sweep 4x4, 1 thread", |b| b.iter(|| pool1.install(|| requests(&sweep))));
    let pool2 = rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("pool");
    g.bench_function("sweep 4x4, 2 threads", |b| b.iter(|| pool2.install(|| requests(&sweep))));
    g.finish();
}

criterion_group!(benches, plan);
criterion_main!(benches);
