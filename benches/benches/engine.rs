//! The reference engine: decide + record lifecycles for 10,000 identities, on one core.
//!
//! `cargo bench -p ledger-benches --bench engine`. Throughput is in commands (two per
//! lifecycle); the baseline in the same run is a bare `FxHashMap` insert + get per
//! lifecycle, the floor of any engine that keeps requests in a hash map.

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ledger_core::{Command, Config, Ledger, RequestId, Sats, Tier, TimeMs};
use rustc_hash::FxHashMap;

const N_IDENTITIES: u64 = 10_000;
const N_LIFECYCLES: u64 = 100_000;
const T0: TimeMs = TimeMs(1_700_000_000_000);

fn ledger(preallocated: bool) -> Ledger {
    let defaults = Config::default();
    let config = Config {
        pool_initial_sats: Sats::new(1 << 50).unwrap(),
        budget_sats: ledger_core::Budgets { elite: Sats::new(1 << 40).unwrap(), ..defaults.budget_sats },
        ..defaults
    };
    let mut ledger = if preallocated {
        Ledger::with_capacity(config, N_IDENTITIES as usize, N_LIFECYCLES as usize)
    } else {
        Ledger::new(config)
    };
    let mut journal = Vec::new();
    for u in 0..N_IDENTITIES {
        ledger
            .apply(&Command::SetTier { pubkey: ledger_harness::user_pubkey(u), tier: Tier::Elite }, T0, &mut journal)
            .unwrap();
    }
    ledger
}

/// Request ids as a service that hashes its requests would have them: scattered over u64.
fn scattered(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn run(ledger: Ledger) -> Ledger {
    run_with(ledger, |i| i)
}

fn run_scattered(ledger: Ledger) -> Ledger {
    run_with(ledger, scattered)
}

fn run_with(mut ledger: Ledger, id: impl Fn(u64) -> u64) -> Ledger {
    let mut journal = Vec::with_capacity(4);
    let est = Sats::new(10).unwrap();
    let actual = Sats::new(8).unwrap();
    for i in 0..N_LIFECYCLES {
        let request_id = RequestId(id(i));
        let pubkey = ledger_harness::user_pubkey(i % N_IDENTITIES);
        let now = T0.plus_ms(i);
        journal.clear();
        let d = ledger.apply(&Command::Decide { request_id, pubkey, estimated_sats: est }, now, &mut journal);
        let r = ledger.apply(&Command::Record { request_id, actual_sats: actual }, now, &mut journal);
        // Every lifecycle must succeed, or the bench measures refusals.
        assert!(black_box(d).is_ok() && black_box(r).is_ok());
    }
    ledger
}

fn lifecycles(c: &mut Criterion) {
    let mut g = c.benchmark_group("reference");
    g.throughput(Throughput::Elements(2 * N_LIFECYCLES));
    let preallocated = ledger(true);
    g.bench_function("decide+record x100k, 10k identities, preallocated", |b| {
        b.iter_batched(|| preallocated.clone(), run, BatchSize::LargeInput)
    });
    g.bench_function("decide+record x100k, 10k identities, scattered request ids", |b| {
        b.iter_batched(|| preallocated.clone(), run_scattered, BatchSize::LargeInput)
    });
    let base = ledger(false);
    g.bench_function("decide+record x100k, 10k identities, growing", |b| {
        b.iter_batched(|| base.clone(), run, BatchSize::LargeInput)
    });
    g.bench_function("baseline: FxHashMap insert+get x100k", |b| {
        b.iter_batched(
            FxHashMap::<u64, [u64; 8]>::default,
            |mut m| {
                for i in 0..N_LIFECYCLES {
                    m.insert(i, [i; 8]);
                    black_box(m.get(&(i % N_IDENTITIES)));
                }
                m
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, lifecycles);
criterion_main!(benches);
