//! Concurrent histories with a known answer, for the linearizability checker's bench and tests.
//!
//! [`concurrent`] runs `in_flight` callers against the reference: each call is sent, takes
//! effect at a random later moment (applied to the reference there, in one serial order),
//! and is answered at a random moment after that, so calls overlap as on a real server and the
//! history is linearizable by construction. Some calls fail (their effect may or may not have
//! happened) and are sent again, as an at-least-once caller does.

use ledger_core::{Command, Config, Decision, Ledger, Outcome, PaymentId, Pubkey, RequestId, Sats, Tier, TimeMs};
use ledger_harness::linear::Op;
use ledger_harness::{Call, Reply};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How many users the callers share (few, so that their calls meet on the same budgets).
const USERS: u64 = 8;

fn sats(v: u64) -> Sats {
    Sats::new(v).expect("small amounts")
}

/// Where one caller is.
enum Slot {
    /// The next call to send, and its time when it is sent again.
    Ready(Call, Option<TimeMs>),
    /// Sent at `invoked`, not yet taken effect; `fails` when its answer will be lost.
    Sent { call: Call, invoked: u64, now: TimeMs, fails: bool, applies: bool },
    /// Taken effect (or, failing, maybe not), answered later.
    Applied { call: Call, invoked: u64, now: TimeMs, reply: Reply },
}

/// A linearizable history of `n_calls` calls by `in_flight` callers at a time, and the state
/// it starts from (the users' tiers set).
pub fn concurrent(seed: u64, n_calls: usize, in_flight: usize) -> (Ledger, Vec<Op>) {
    concurrent_with(seed, n_calls, in_flight, 0.02, 1_000_000_000)
}

/// [`concurrent`] with `fail_rate` of the calls failing (half of those after taking effect) and
/// a pool of `pool_sats` at genesis. With the pool of [`concurrent`], which covers every ask,
/// the checker splits the history by identity; a pool the callers drain makes every decide
/// depend on every other, and the search runs over the whole history.
pub fn concurrent_with(
    seed: u64,
    n_calls: usize,
    in_flight: usize,
    fail_rate: f64,
    pool_sats: u64,
) -> (Ledger, Vec<Op>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let config = Config { pool_initial_sats: sats(pool_sats), ..Config::default() };
    let mut ledger = Ledger::new(config);
    for u in 0..USERS {
        let tier = Tier::ALL[(u % 4) as usize];
        let set = Command::SetTier { pubkey: ledger_harness::user_pubkey(u), tier };
        ledger.apply(&set, TimeMs(0), &mut Vec::new()).expect("a tier can always be set");
    }
    let initial = ledger.clone();
    let mut next_request = 0u64;
    let mut new_flow = |rng: &mut ChaCha8Rng| -> Call {
        next_request += 1;
        if rng.gen_bool(0.1) {
            return Call::Credit { payment_id: PaymentId(next_request), paid_sats: sats(rng.gen_range(100..2_000)) };
        }
        let user: Pubkey = ledger_harness::user_pubkey(rng.gen_range(0..USERS));
        Call::Decide { request_id: RequestId(next_request), pubkey: user, estimated_sats: sats(rng.gen_range(1..400)) }
    };
    let mut slots: Vec<Slot> = (0..in_flight).map(|_| Slot::Ready(new_flow(&mut rng), None)).collect();
    let mut clock = 0u64;
    let mut ops = Vec::with_capacity(n_calls);
    // Once `n_calls` are answered nothing new is sent, and the calls in flight finish: a call
    // that took effect must be in the history.
    let in_flight = |slots: &[Slot]| slots.iter().any(|s| !matches!(s, Slot::Ready(..)));
    while ops.len() < n_calls || in_flight(&slots) {
        let k = rng.gen_range(0..slots.len());
        let slot = std::mem::replace(&mut slots[k], Slot::Ready(Call::Expire, None));
        clock += 1;
        slots[k] = match slot {
            Slot::Ready(call, again) if ops.len() >= n_calls => Slot::Ready(call, again),
            Slot::Ready(call, again) => {
                let fails = rng.gen_bool(fail_rate);
                // A failed call took effect half the time.
                let applies = !fails || rng.gen_bool(0.5);
                let now = again.unwrap_or(TimeMs(1_000_000 + clock));
                Slot::Sent { call, invoked: clock, now, fails, applies }
            }
            Slot::Sent { call, invoked, now, fails, applies } => {
                let mut reply = if applies {
                    Reply::from(ledger.apply(&call.to_command(), now, &mut Vec::new()))
                } else {
                    Reply::Failed { error: "never reached the ledger".into() }
                };
                if fails {
                    reply = Reply::Failed { error: "connection lost".into() };
                }
                Slot::Applied { call, invoked, now, reply }
            }
            Slot::Applied { call, invoked, now, reply } => {
                let next = match &reply {
                    // Sent again, with the same time, as an at-least-once caller does.
                    Reply::Failed { .. } => Slot::Ready(call.clone(), Some(now)),
                    Reply::Ok(outcome) => {
                        Slot::Ready(follow_up(&call, outcome, &mut rng).unwrap_or_else(|| new_flow(&mut rng)), None)
                    }
                    Reply::Refused(_) => Slot::Ready(new_flow(&mut rng), None),
                };
                // A flow is one request's calls (or one payment's).
                let flow = match &call {
                    Call::Credit { payment_id, .. } => payment_id.0,
                    other => other.request_id().map_or(0, |r| r.0),
                };
                ops.push(Op { flow: flow as u32, call, now, reply, invoked, completed: clock });
                next
            }
        };
    }
    (initial, ops)
}

/// The call a flow makes after `call` answered `outcome`, if any.
fn follow_up(call: &Call, outcome: &Outcome, rng: &mut ChaCha8Rng) -> Option<Call> {
    let (request_id, pubkey) = match call {
        Call::Decide { request_id, pubkey, .. } | Call::ReservePartial { request_id, pubkey, .. } => {
            (*request_id, *pubkey)
        }
        _ => return None,
    };
    let reserved = match outcome {
        Outcome::Decided { decision: Decision::Free { reserved_sats } } | Outcome::Reserved { reserved_sats } => {
            *reserved_sats
        }
        Outcome::Decided { decision: Decision::Partial { offer_sats, .. } } => {
            return Some(Call::ReservePartial { request_id, pubkey, amount_sats: *offer_sats })
        }
        _ => return None,
    };
    Some(if rng.gen_bool(0.15) {
        Call::Release { request_id, amount_sats: reserved }
    } else {
        let actual = sats(rng.gen_range(0..=reserved.to_u64() + reserved.to_u64() / 4));
        Call::Record { request_id, pubkey, actual_sats: actual, reserved_sats: reserved }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_harness::linear::{check, Verdict, DEFAULT_BUDGET};

    #[test]
    fn ten_thousand_calls_at_32_in_flight_are_linearizable() {
        let (initial, history) = concurrent(7, 10_000, 32);
        assert!(history.iter().any(|o| matches!(o.reply, Reply::Failed { .. })));
        let verdict = check(&initial, &history, DEFAULT_BUDGET).unwrap();
        assert!(matches!(verdict, Verdict::Linearizable { .. }), "{verdict:?}");
    }

    /// How far the whole-history search reaches when the pool is drained (every decide reads
    /// it, so the history cannot be split): `cargo test --release -p ledger-benches --lib --
    /// --ignored --nocapture whole_search_reach`.
    #[test]
    #[ignore]
    fn whole_search_reach() {
        for (n, in_flight) in [(1_000, 4), (1_000, 8), (300, 16), (1_000, 16), (100, 32), (300, 32)] {
            let (initial, history) = concurrent_with(7, n, in_flight, 0.02, 1_000);
            let started = std::time::Instant::now();
            let verdict = check(&initial, &history, DEFAULT_BUDGET).unwrap();
            eprintln!("{n} calls, {in_flight} in flight, pool drained: {verdict:?} in {:.2?}", started.elapsed());
        }
    }

    #[test]
    fn one_answer_changed_is_caught() {
        for (pool, n) in [(1_000_000_000, 10_000), (1_000, 400)] {
            let (initial, mut history) = concurrent_with(8, n, 8, 0.02, pool);
            // A record answered as if its reservation were not there.
            let i = history
                .iter()
                .rposition(|o| matches!(o.call, Call::Record { .. }) && matches!(o.reply, Reply::Ok(_)))
                .expect("records happen");
            history[i].reply = Reply::Refused(ledger_core::Refusal::NotReserved);
            let verdict = check(&initial, &history, DEFAULT_BUDGET).unwrap();
            let Verdict::NotLinearizable(w) = verdict else {
                panic!("pool {pool}: a changed answer must be caught: {verdict:?}")
            };
            assert_eq!(w.stuck, i);
            assert!(w.ops.contains(&i), "{:?}", w.ops);
            if pool > 1_000 {
                // Split by identity, the evidence is a part of the history; on a drained pool
                // every answer can depend on every call before it.
                assert!(w.ops.len() < history.len() / 2, "{:?}", w.ops);
            }
        }
    }
}
