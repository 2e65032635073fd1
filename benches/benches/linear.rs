//! The linearizability checker on concurrent histories with a known answer
//! (`ledger_benches::histories`): 10,000 calls at 32 in flight, 2 % of them failing, with a pool
//! that covers every ask (the checker splits the history by identity), and 1,000 calls at 8 in
//! flight on a pool the callers drain (the whole history searched at once; past about 8 in flight
//! that search runs out of its budget, see `histories::tests::whole_search_reach`).

use criterion::{criterion_group, criterion_main, Criterion};
use ledger_benches::histories;
use ledger_harness::linear::{check, Verdict, DEFAULT_BUDGET};

fn linear(c: &mut Criterion) {
    let mut g = c.benchmark_group("linear");
    g.sample_size(10);
    for (name, (initial, history)) in [
        ("10000 calls, 32 in flight, split by identity", histories::concurrent(7, 10_000, 32)),
        ("1000 calls, 8 in flight, pool drained", histories::concurrent_with(7, 1_000, 8, 0.02, 1_000)),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let verdict = check(&initial, &history, DEFAULT_BUDGET).expect("a well-formed history");
                assert!(matches!(verdict, Verdict::Linearizable { .. }), "{verdict:?}");
            })
        });
    }
    g.finish();
}

criterion_group!(benches, linear);
criterion_main!(benches);
