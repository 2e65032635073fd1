//! The simulator: scheduler steps per second with invariant checks after every step.
//!
//! `cargo bench -p ledger-benches --bench sim`. One seed of the default scenario (10,000
//! users, 2,000 requests in flight) cut to 100,000 steps, on the reference engine and on
//! the seed model.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ledger_harness::{ReferenceEngine, SeedEngine};
use ledger_simulator::gen::{run_seed, SchedulerKind};
use ledger_simulator::scenario::Scenario;

fn steps(c: &mut Criterion) {
    let s = Scenario { n_steps: 100_000, ..Scenario::default() };
    let mut g = c.benchmark_group("sim");
    g.sample_size(10);
    g.throughput(Throughput::Elements(s.n_steps));
    g.bench_function("reference, 100k steps, 10k users", |b| {
        b.iter(|| run_seed(ReferenceEngine::new, "reference", &s, 1, SchedulerKind::Random).0.trace_hash)
    });
    g.bench_function("seed, 100k steps, 10k users", |b| {
        b.iter(|| run_seed(SeedEngine::new, "seed", &s, 1, SchedulerKind::Random).0.trace_hash)
    });
    g.bench_function("reference pct, 100k steps, 10k users", |b| {
        b.iter(|| run_seed(ReferenceEngine::new, "reference", &s, 1, SchedulerKind::Pct).0.trace_hash)
    });
    g.finish();
}

criterion_group!(benches, steps);
criterion_main!(benches);
