//! Throughput of [`SharedLedger`] on 2 threads against one global `Mutex<Ledger>` (the reference
//! engine behind a single lock), on the hot path: `decide` (free, so the pool is debited) then
//! `record`, each thread for its own identities.
//!
//! Run: `cargo bench -p ledger-concurrent --bench shared_throughput`.

use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ledger_concurrent::SharedLedger;
use ledger_core::{Budgets, Command, Config, Ledger, Pubkey, RequestId, Sats, Tier, TimeMs};

const N_THREADS: u64 = 2;
const N_USERS_PER_THREAD: u64 = 64;
const NOW: TimeMs = TimeMs(1_000);

fn sats(v: u64) -> Sats {
    Sats::new(v).expect("in range")
}

/// Budgets and a pool that never run out, so every request takes the free path.
fn config() -> Config {
    let big = sats(1 << 50);
    Config {
        budget_sats: Budgets { new: big, established: big, trusted: big, elite: big },
        pool_initial_sats: big,
        ..Config::default()
    }
}

/// The commands thread `thread_idx` runs for its `i`-th request.
fn commands(thread_idx: u64, i: u64) -> [Command; 2] {
    let request_id = RequestId((thread_idx << 40) | i);
    let pubkey = ledger_harness::user_pubkey(thread_idx * N_USERS_PER_THREAD + i % N_USERS_PER_THREAD);
    [
        Command::Decide { request_id, pubkey, estimated_sats: sats(10) },
        Command::Record { request_id, actual_sats: sats(7) },
    ]
}

/// Runs `iters` requests split over [`N_THREADS`] threads against `apply`; the time it took.
fn run(iters: u64, apply: impl Fn(&Command, &mut Vec<ledger_core::Movement>) + Sync) -> Duration {
    let per_thread = iters.div_ceil(N_THREADS);
    let barrier = Barrier::new(usize::try_from(N_THREADS).expect("small"));
    let apply = &apply;
    let barrier = &barrier;
    thread::scope(|scope| {
        let workers: Vec<_> = (0..N_THREADS)
            .map(|thread_idx| {
                scope.spawn(move || {
                    let mut journal = Vec::with_capacity(4);
                    barrier.wait();
                    let start = Instant::now();
                    for i in 0..per_thread {
                        for command in &commands(thread_idx, i) {
                            apply(command, &mut journal);
                            journal.clear();
                        }
                    }
                    start.elapsed()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("worker")).max().expect("threads")
    })
}

fn users() -> impl Iterator<Item = Pubkey> {
    (0..N_THREADS * N_USERS_PER_THREAD).map(ledger_harness::user_pubkey)
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("decide_record_2_threads");
    group.throughput(Throughput::Elements(1));
    group.bench_function("shared_ledger", |b| {
        b.iter_custom(|iters| {
            let ledger = SharedLedger::new(config());
            users().for_each(|p| drop(ledger.set_tier(p, Tier::Trusted, NOW)));
            run(iters, |command, journal| {
                ledger.apply(command, NOW, journal).expect("accepted");
            })
        });
    });
    group.bench_function("global_mutex_ledger", |b| {
        b.iter_custom(|iters| {
            let mut ledger = Ledger::new(config());
            let mut journal = Vec::new();
            for p in users() {
                let set = Command::SetTier { pubkey: p, tier: Tier::Trusted };
                ledger.apply(&set, NOW, &mut journal).expect("accepted");
            }
            let ledger = Arc::new(Mutex::new(ledger));
            run(iters, |command, journal| {
                let mut ledger = ledger.lock().expect("not poisoned");
                ledger.apply(command, NOW, journal).expect("accepted");
            })
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
