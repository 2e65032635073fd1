//! `SharedLedger` against the reference: the same outcomes, journal and balance sheet for the same
//! commands one at a time, and the invariants after many threads ran at once.
#![cfg(not(ledger_loom))]

use std::sync::Arc;
use std::thread;

use ledger_concurrent::SharedLedger;
use ledger_core::{Command, Config, Ledger, Outcome, PaymentId, RequestId, Sats, Tier, TimeMs, Totals};

/// A small deterministic generator, so the test needs no dependency and replays exactly.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn sats(v: u64) -> Sats {
    Sats::new(v).unwrap()
}

fn small_config() -> Config {
    Config { pool_initial_sats: sats(500), reservation_ttl_ms: 1_000, ..Config::default() }
}

/// A random command over a few users, requests and payments, so ids repeat and collide.
fn command(rng: &mut XorShift) -> Command {
    let pubkey = ledger_harness::user_pubkey(rng.below(6));
    let request_id = RequestId(rng.below(40));
    match rng.below(10) {
        0 => Command::SetTier { pubkey, tier: Tier::ALL[rng.below(4) as usize] },
        1..=3 => Command::Decide { request_id, pubkey, estimated_sats: sats(rng.below(120)) },
        4 => Command::ReservePartial { request_id, pubkey, amount_sats: sats(rng.below(80)) },
        5 => Command::Release { request_id },
        6 | 7 => Command::Record { request_id, actual_sats: sats(rng.below(150)) },
        8 => Command::Credit { payment_id: PaymentId(rng.below(10)), paid_sats: sats(rng.below(2_000)) },
        _ => Command::Expire,
    }
}

#[test]
fn one_at_a_time_it_is_the_reference() {
    // How often each kind of outcome came up, so the comparison is known to cover them all.
    let mut seen = std::collections::BTreeMap::<&str, u64>::new();
    for seed in 1..=20u64 {
        let mut rng = XorShift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let config = small_config();
        let mut reference = Ledger::new(config);
        let shared = SharedLedger::with_shards(config, 4);
        let mut now = TimeMs(1_000_000);
        for step_idx in 0..3_000 {
            let max_step_ms = if rng.below(50) == 0 { 90_000_000 } else { 400 };
            now = now.plus_ms(rng.below(max_step_ms));
            let command = command(&mut rng);
            let (mut want_journal, mut got_journal) = (Vec::new(), Vec::new());
            let want = reference.apply(&command, now, &mut want_journal);
            let got = shared.apply(&command, now, &mut got_journal);
            let at = format!("seed {seed} step {step_idx}: {command:?}");
            assert_eq!(got, want, "{at}");
            let kind = match &want {
                Ok(Outcome::Decided { decision }) => match decision {
                    ledger_core::Decision::Free { .. } => "free",
                    ledger_core::Decision::Partial { .. } => "partial",
                    ledger_core::Decision::Gate { .. } => "gate",
                },
                Ok(Outcome::Reserved { .. }) => "reserved",
                Ok(Outcome::Recorded { .. }) => "recorded",
                Ok(Outcome::Released { .. }) => "released",
                Ok(Outcome::Expired { released }) if !released.is_empty() => "expired",
                Ok(_) => "other",
                Err(_) => "refused",
            };
            *seen.entry(kind).or_default() += 1;
            assert_eq!(got_journal, want_journal, "{at}");
            assert_eq!(shared.totals(), reference.totals(), "{at}");
        }
        assert_eq!(shared.n_requests(), reference.n_requests());
    }
    for kind in ["free", "partial", "gate", "reserved", "recorded", "released", "expired", "refused"] {
        assert!(seen.get(kind).copied().unwrap_or(0) > 0, "no {kind} outcome: {seen:?}");
    }
}

fn check_balance_sheet(config: &Config, t: &Totals) {
    let held =
        [t.pool_sats, t.reserved_sats, t.absorbed_sats].into_iter().try_fold(Sats::ZERO, Sats::checked_add).unwrap();
    assert_eq!(
        config.pool_initial_sats.checked_add(t.credited_sats),
        Some(held),
        "I2: initial + credits = pool + reserved + absorbed: {t:?}"
    );
}

#[test]
fn many_threads_keep_the_invariants() {
    let config = small_config();
    let shared = Arc::new(SharedLedger::new(config));
    let n_threads = 4u64;
    let n_users_per_thread = 8u64;
    let now = TimeMs(5_000);
    for user_idx in 0..n_threads * n_users_per_thread {
        shared.set_tier(ledger_harness::user_pubkey(user_idx), Tier::Trusted, now);
    }
    let workers: Vec<_> = (0..n_threads)
        .map(|thread_idx| {
            let shared = Arc::clone(&shared);
            thread::spawn(move || {
                let mut rng = XorShift(thread_idx * 7919 + 1);
                let mut journal = Vec::new();
                for i in 0..5_000u64 {
                    let user_idx = thread_idx * n_users_per_thread + rng.below(n_users_per_thread);
                    let pubkey = ledger_harness::user_pubkey(user_idx);
                    let request_id = RequestId((thread_idx << 32) | i);
                    let estimated = sats(1 + rng.below(60));
                    match shared.decide(request_id, pubkey, estimated, now, &mut journal) {
                        Ok(Outcome::Decided { decision }) => {
                            if let ledger_core::Decision::Partial { offer_sats, .. } = decision {
                                let _ = shared.reserve_partial(request_id, pubkey, offer_sats, now, &mut journal);
                            }
                        }
                        other => panic!("decide: {other:?}"),
                    }
                    if rng.below(4) == 0 {
                        let _ = shared.release(request_id, &mut journal);
                    } else {
                        let _ = shared.record(request_id, sats(rng.below(70)), now, &mut journal);
                    }
                    if rng.below(10) == 0 {
                        let payment_id = PaymentId(rng.below(2_000));
                        shared.credit(payment_id, sats(300), &mut journal).unwrap();
                    }
                    if i % 500 == 0 {
                        check_balance_sheet(&config, &shared.totals());
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    let totals = shared.totals();
    check_balance_sheet(&config, &totals);
    assert_eq!(totals.reserved_sats, Sats::ZERO, "I6: every request closed");
    let budget = config.budget(Tier::Trusted);
    for user_idx in 0..n_threads * n_users_per_thread {
        let identity = shared.identity(&ledger_harness::user_pubkey(user_idx)).unwrap();
        assert!(identity.sats_absorbed_today <= budget, "I4: {identity:?}");
    }
}

/// A refused `reserve_partial` delivered again after the pool was refilled stays refused, as in
/// the reference (the caller re-quoted and moved on).
#[test]
fn a_refused_reservation_stays_refused_on_repeat() {
    let config = small_config();
    let mut reference = Ledger::new(config);
    let shared = SharedLedger::with_shards(config, 4);
    let pubkey = ledger_harness::user_pubkey(1);
    let now = TimeMs(10);
    let commands = [
        Command::SetTier { pubkey, tier: Tier::Elite },
        Command::Decide { request_id: RequestId(1), pubkey, estimated_sats: sats(400) },
        Command::Decide { request_id: RequestId(2), pubkey, estimated_sats: sats(600) },
        Command::ReservePartial { request_id: RequestId(2), pubkey, amount_sats: sats(300) },
        Command::Credit { payment_id: PaymentId(1), paid_sats: sats(5_000) },
        Command::ReservePartial { request_id: RequestId(2), pubkey, amount_sats: sats(300) },
        Command::ReservePartial { request_id: RequestId(2), pubkey, amount_sats: sats(100) },
    ];
    for command in &commands {
        let (mut want_journal, mut got_journal) = (Vec::new(), Vec::new());
        let want = reference.apply(command, now, &mut want_journal);
        let got = shared.apply(command, now, &mut got_journal);
        assert_eq!(got, want, "{command:?}");
        assert_eq!(got_journal, want_journal, "{command:?}");
    }
    assert_eq!(shared.totals(), reference.totals());
}

/// Contention by design: four threads on the same six elite identities, with a budget and a pool
/// no request can exhaust, so every request is free and every command of every thread contends
/// for six identity locks and the one pool. The rules then promise every answer (free, and the
/// record settles as asked), and the books must add up exactly: each identity's absorption is
/// the sum of what was recorded for it, the grants are the records, nothing stays reserved.
#[test]
fn a_hot_set_of_rich_identities_adds_up_exactly() {
    let budget = sats(1_000_000_000);
    let config = Config {
        pool_initial_sats: sats(1_000_000_000_000),
        budget_sats: ledger_core::Budgets { elite: budget, ..Config::default().budget_sats },
        ..Config::default()
    };
    let shared = Arc::new(SharedLedger::with_shards(config, 4));
    let now = TimeMs(5_000);
    let hot: Vec<_> = (0..6).map(ledger_harness::user_pubkey).collect();
    for pubkey in &hot {
        shared.set_tier(*pubkey, Tier::Elite, now);
    }
    let workers: Vec<_> = (0..4u64)
        .map(|thread_idx| {
            let (shared, hot) = (Arc::clone(&shared), hot.clone());
            thread::spawn(move || {
                let mut rng = XorShift(thread_idx * 104_729 + 3);
                let mut absorbed = vec![0u64; hot.len()];
                let mut n_records = 0u64;
                let mut journal = Vec::new();
                for i in 0..5_000u64 {
                    let who = rng.below(hot.len() as u64) as usize;
                    let request_id = RequestId((thread_idx << 32) | i);
                    let estimated = 1 + rng.below(20);
                    let decided = shared.decide(request_id, hot[who], sats(estimated), now, &mut journal);
                    let free = Outcome::Decided { decision: ledger_core::Decision::Free { reserved_sats: sats(estimated) } };
                    assert_eq!(decided, Ok(free), "the rules answer free: budget and pool cover everything");
                    if rng.below(4) == 0 {
                        assert!(matches!(shared.release(request_id, &mut journal), Ok(Outcome::Released { .. })));
                    } else {
                        let actual = rng.below(25);
                        let recorded = shared.record(request_id, sats(actual), now, &mut journal);
                        let settled = actual.min(estimated);
                        assert!(
                            matches!(recorded, Ok(Outcome::Recorded { absorbed_sats, .. }) if absorbed_sats == sats(settled)),
                            "{recorded:?}"
                        );
                        absorbed[who] += settled;
                        n_records += 1;
                    }
                }
                (absorbed, n_records)
            })
        })
        .collect();
    let mut absorbed = vec![0u64; hot.len()];
    let mut n_records = 0;
    for worker in workers {
        let (mine, records) = worker.join().unwrap();
        absorbed.iter_mut().zip(mine).for_each(|(total, a)| *total += a);
        n_records += records;
    }
    let totals = shared.totals();
    check_balance_sheet(&config, &totals);
    assert_eq!(totals.reserved_sats, Sats::ZERO, "I6: every request closed");
    assert_eq!(totals.n_grants, n_records, "I5: one grant per record");
    assert_eq!(totals.absorbed_sats, sats(absorbed.iter().sum()), "I5: grants sum to the absorption");
    for (pubkey, absorbed) in hot.iter().zip(absorbed) {
        let identity = shared.identity(pubkey).unwrap();
        assert_eq!(identity.reserved_sats, Sats::ZERO, "{identity:?}");
        assert_eq!(
            identity.sats_absorbed_today,
            sats(absorbed),
            "I4: the window holds what was recorded: {identity:?}"
        );
    }
}

/// Many threads on a few shared identities, every call recorded with when it was sent and
/// answered on one clock: some serial order consistent with real time gives every answer on the
/// reference (linearizability, `ledger_harness::linear`). Once with a pool that covers every ask
/// (the checker splits the history by identity), once with a pool the threads drain (every
/// decide reads it, and the whole history is searched at once).
#[test]
fn many_threads_answer_as_some_serial_order_does() {
    use ledger_harness::linear::{check, Op, Verdict, DEFAULT_BUDGET};
    use ledger_harness::{Call, Reply};
    use std::sync::atomic::{AtomicU64, Ordering};

    for (pool_sats, n_threads, flows_per_thread) in [(100_000_000u64, 4u64, 1_000u64), (400, 4, 60)] {
        let config = Config { pool_initial_sats: sats(pool_sats), ..small_config() };
        let shared = Arc::new(SharedLedger::with_shards(config, 4));
        let now = TimeMs(5_000);
        let mut initial = Ledger::new(config);
        for user_idx in 0..3 {
            let tier = [Tier::Trusted, Tier::Elite, Tier::Established][user_idx as usize];
            shared.set_tier(ledger_harness::user_pubkey(user_idx), tier, now);
            let set = Command::SetTier { pubkey: ledger_harness::user_pubkey(user_idx), tier };
            initial.apply(&set, now, &mut Vec::new()).unwrap();
        }
        let clock = Arc::new(AtomicU64::new(0));
        let workers: Vec<_> = (0..n_threads)
            .map(|thread_idx| {
                let (shared, clock) = (Arc::clone(&shared), Arc::clone(&clock));
                thread::spawn(move || {
                    let mut rng = XorShift(thread_idx * 104_729 + 11);
                    let mut ops = Vec::new();
                    let mut call = |flow: u64, call: Call| -> Reply {
                        let invoked = clock.fetch_add(1, Ordering::SeqCst);
                        let reply = Reply::from(shared.apply(&call.to_command(), now, &mut Vec::new()));
                        let completed = clock.fetch_add(1, Ordering::SeqCst);
                        let flow = u32::try_from(flow).unwrap();
                        ops.push(Op { flow, call, now, reply: reply.clone(), invoked, completed });
                        reply
                    };
                    for i in 0..flows_per_thread {
                        let flow = thread_idx * flows_per_thread + i;
                        let request_id = RequestId(flow);
                        let pubkey = ledger_harness::user_pubkey(rng.below(3));
                        if rng.below(8) == 0 {
                            call(flow, Call::Credit { payment_id: PaymentId(flow), paid_sats: sats(rng.below(3_000)) });
                            continue;
                        }
                        let estimated_sats = sats(1 + rng.below(90));
                        let reserved = match call(flow, Call::Decide { request_id, pubkey, estimated_sats }) {
                            Reply::Ok(Outcome::Decided { decision: ledger_core::Decision::Free { reserved_sats } }) => {
                                reserved_sats
                            }
                            Reply::Ok(Outcome::Decided {
                                decision: ledger_core::Decision::Partial { offer_sats, .. },
                            }) => {
                                match call(flow, Call::ReservePartial { request_id, pubkey, amount_sats: offer_sats }) {
                                    Reply::Ok(Outcome::Reserved { reserved_sats }) => reserved_sats,
                                    _ => continue,
                                }
                            }
                            _ => continue,
                        };
                        if rng.below(4) == 0 {
                            call(flow, Call::Release { request_id, amount_sats: reserved });
                        } else {
                            let actual_sats = sats(rng.below(120));
                            call(flow, Call::Record { request_id, pubkey, actual_sats, reserved_sats: reserved });
                        }
                    }
                    ops
                })
            })
            .collect();
        let mut history: Vec<Op> = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
        history.sort_by_key(|o| o.completed);
        let verdict = check(&initial, &history, DEFAULT_BUDGET).expect("a well-formed history");
        assert!(
            matches!(verdict, Verdict::Linearizable { .. }),
            "pool {pool_sats}: {} calls: {verdict:?}",
            history.len()
        );
    }
}
