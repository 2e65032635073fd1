//! Linearizability: could the answers of a concurrent history have come from one serial order,
//! consistent with real time, on the reference?
//!
//! A concurrent run records every call with the instant it was sent and the instant its answer
//! came back, on one clock all its callers share ([`Op`]). The history is *linearizable* when
//! some total order of the calls (a) puts a call before every call sent after it was answered,
//! and (b) replayed one call at a time on the reference [`Ledger`], from the run's initial
//! state, gives every call exactly the answer it got. That is what "every answer is the one the
//! rules give" (I8) means when calls overlap: each call took effect at one instant between its
//! sending and its answer, atomically.
//!
//! A call that failed ([`Reply::Failed`]: a killed connection, a timeout) may or may not have
//! taken effect, and if it did, at any instant after it was sent (a statement still running on
//! the server when its caller gave up commits later): the search may place it anywhere after its
//! invocation, with whatever answer the reference gives, or nowhere.
//!
//! The search is the Wing-Gong algorithm with Lowe's memoisation, as Porcupine implements it
//! (Lowe, "Testing for linearizability", 2017; Horn and Kroening, "Faster linearizability
//! checking via P-compositionality", 2015): the calls and returns in time order in a linked
//! list; a call may be placed next when it is minimal (no return of an unplaced call comes
//! before it in the list); placing it applies it to the reference and requires its answer; a
//! return of an unplaced call means the last placement was wrong, so the search backtracks.
//! Configurations already explored (the set of placed calls and the reference's state, both
//! hashed to 64 bits each) are not explored again; that memo holds at most [`MEMO_CAP`]
//! configurations and is emptied when full (it only saves work: a configuration explored again
//! fails again). Each attempt applies the call to the one reference state the search keeps and
//! takes it back when it does not fit or when the search backtracks ([`Ledger::apply_undoable`]):
//! each placed call keeps only the few records it could change, so the search's memory is linear
//! in the history and an attempt costs what the call touches, not a copy of the reference (a
//! copy per attempt, and one per 64 placed calls kept for backtracking, made a 10,000-flow
//! history take 700 MB and its time grow with the square of its length).
//!
//! The search is exponential in the worst case (overlapping calls whose answers match in many
//! orders, in a history that is not linearizable). It stops after a budget of attempts and then
//! says it could not decide ([`Verdict::Undecided`]), never that the history is wrong.
//!
//! A history with no such order is reported with a small sub-history that has none either
//! ([`Witness`]): the calls of the flows around the call the search could never place, reduced
//! one flow and then one call at a time while the sub-history still has no order. The
//! sub-history is the evidence to read; the verdict is the whole history's.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::hash::Hasher;

use rustc_hash::{FxHashSet, FxHasher};
use serde::{Deserialize, Serialize};

use ledger_core::{Decision, Ledger, Outcome, PaymentId, Pubkey, RequestId, Sats, Tier, TimeMs, Undo};

use crate::engine::{Call, Reply};
use crate::users::Named;

/// Configurations the memo of a search holds at most; when full it is emptied. About 36 MB: a
/// search within [`DEFAULT_BUDGET`] never fills it; the search of a longer history ([`run_budget`])
/// may, and then explores some configurations again.
pub const MEMO_CAP: usize = 1_800_000;

/// Attempts the search makes before it gives up on a history of any size (a run's default).
pub const DEFAULT_BUDGET: u64 = 400_000;

/// Attempts a run's search may make per call of a history longer than [`DEFAULT_BUDGET`]
/// allows for ([`run_budget`]).
pub const BUDGET_PER_CALL: u64 = 4;

/// The attempts a run gives the search of a history of `n_calls` calls: [`DEFAULT_BUDGET`], or
/// [`BUDGET_PER_CALL`] a call when that is more. A search places each call at least once, so a
/// fixed budget would give up on any history longer than it whatever its answers; an attempt
/// costs what its call touches, so this keeps the search's time linear in the history.
pub fn run_budget(n_calls: usize) -> u64 {
    DEFAULT_BUDGET.max(BUDGET_PER_CALL.saturating_mul(n_calls as u64))
}

/// Attempts each check of a candidate sub-history may make while a witness is reduced.
const SHRINK_BUDGET: u64 = 5_000;

/// Checks of candidate sub-histories a reduction may make in all.
const SHRINK_CHECKS: usize = 100;

/// One call of a concurrent history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// The caller flow that sent it (`u32::MAX` for a run's final sweep): a witness is reduced
    /// one flow at a time.
    pub flow: u32,
    /// What was sent.
    pub call: Call,
    /// The time the call carried.
    pub now: TimeMs,
    /// Its answer; [`Reply::Failed`] when it has none (it may or may not have taken effect).
    pub reply: Reply,
    /// When it was sent, on the clock every caller of the run shares (only the order matters).
    pub invoked: u64,
    /// When its answer came back, on the same clock. Ignored for a failed call.
    pub completed: u64,
}

impl Op {
    fn answered(&self) -> bool {
        !matches!(self.reply, Reply::Failed { .. })
    }
}

/// What the search concluded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Some serial order consistent with real time gives every answer.
    Linearizable {
        /// Placements attempted.
        explored: u64,
        /// The parts searched one by one: 1 for the whole history, more when it was split by
        /// identity.
        parts: usize,
    },
    /// No serial order does.
    NotLinearizable(Box<Witness>),
    /// The budget ran out before the search could tell.
    Undecided {
        /// Placements attempted.
        explored: u64,
    },
}

/// The evidence that a history has no serial order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Witness {
    /// The calls (indices into the history checked) of the smallest sub-history found that has
    /// no serial order either, in the order they were sent.
    pub ops: Vec<usize>,
    /// The call the search could not place when it got furthest.
    pub stuck: usize,
    /// What the reference answers that call at that point.
    pub expected: Reply,
    /// Calls placed at that point.
    pub depth: usize,
    /// Placements the whole history's search attempted.
    pub explored: u64,
}

/// A history the checker cannot read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadHistory {
    /// An answered call that came back before it was sent.
    #[error("call {index} ({call}) was answered at {completed}, before it was sent at {invoked}")]
    AnsweredBeforeSent {
        /// Its index in the history.
        index: usize,
        /// Its name.
        call: &'static str,
        /// When it was sent.
        invoked: u64,
        /// When it was answered.
        completed: u64,
    },
}

/// Checks `history`, which started from `initial` (the reference after the run's setup).
/// `budget` bounds the placements the search attempts ([`run_budget`] for a run).
pub fn check(initial: &Ledger, history: &[Op], budget: u64) -> Result<Verdict, BadHistory> {
    check_with_memo(initial, history, budget, MEMO_CAP)
}

/// [`check`] with a memo of at most `memo_cap` configurations.
fn check_with_memo(initial: &Ledger, history: &[Op], budget: u64, memo_cap: usize) -> Result<Verdict, BadHistory> {
    for (index, op) in history.iter().enumerate() {
        if op.answered() && op.completed < op.invoked {
            return Err(BadHistory::AnsweredBeforeSent {
                index,
                call: op.call.name(),
                invoked: op.invoked,
                completed: op.completed,
            });
        }
    }
    let (work, origin) = merged(history);
    let parts = match partitions(initial, &work) {
        Some(parts) => parts,
        None => {
            let all = (0..work.len()).collect();
            vec![(work, all)]
        }
    };
    let mut explored = 0u64;
    let n_parts = parts.len();
    for (part, in_work) in parts {
        let all: Vec<usize> = (0..part.len()).collect();
        match search(initial, &part, &all, budget - explored, memo_cap) {
            Search::Ordered { explored: e } => explored += e,
            Search::OutOfBudget { explored: e } => return Ok(Verdict::Undecided { explored: explored + e }),
            Search::Stuck { explored: e, deepest } => {
                let to_history = |i: usize| origin[in_work[i]];
                let mut ops: Vec<usize> =
                    reduce(initial, &part, &deepest, memo_cap).into_iter().map(to_history).collect();
                ops.sort_by_key(|&i| (history[i].invoked, i));
                return Ok(Verdict::NotLinearizable(Box::new(Witness {
                    ops,
                    stuck: to_history(deepest.op),
                    expected: deepest.expected,
                    depth: deepest.depth,
                    explored: explored + e,
                })));
            }
        }
    }
    Ok(Verdict::Linearizable { explored, parts: n_parts })
}

/// The history split into parts that can be checked one by one, each a history of its own
/// with the index in `work` of each of its calls; `None` when it cannot be split.
///
/// The reference is a product of independent objects, one per identity (its requests and
/// their reservations) and the payments, *as long as no answer reads what they share*: the
/// pool. `decide` and `reserve_partial` read it only through `min(remaining, pool)`; when
/// the pool covers, in every order, the whole ask of each of them (genesis minus everything
/// any call of the history can have debited is at least the largest ask), no answer depends
/// on the pool (and an ask reads the pool only up to the remaining budget, so the largest budget
/// bounds what it can read), and a serial order of the whole history exists exactly when one exists for
/// each identity's calls (Herlihy and Wing's locality; Horn and Kroening's P-compositionality).
/// Amounts far below the overflow limits keep the credits and records independent too. A
/// sweep (`expire`) reads every identity: it is allowed only after every other call has been
/// answered (a run's final sweep), and each part gets it with the releases of its own requests.
fn partitions(initial: &Ledger, work: &[Op]) -> Option<Vec<(Vec<Op>, Vec<usize>)>> {
    // What the pool can have lost in any order: every debit an answer shows, and every ask
    // of a call that never answered.
    let mut debits: u128 = 0;
    let mut largest_ask: u128 = 0;
    let mut inflow: u128 = 0;
    let last_answer = work.iter().filter(|o| o.answered() && o.call != Call::Expire).map(|o| o.completed).max();
    for op in work {
        match (&op.call, &op.reply) {
            (Call::Decide { estimated_sats: ask, .. } | Call::ReservePartial { amount_sats: ask, .. }, reply) => {
                largest_ask = largest_ask.max(u128::from(ask.to_u64()));
                debits += match reply {
                    Reply::Ok(Outcome::Decided { decision: Decision::Free { reserved_sats } })
                    | Reply::Ok(Outcome::Reserved { reserved_sats }) => u128::from(reserved_sats.to_u64()),
                    Reply::Failed { .. } => u128::from(ask.to_u64()),
                    _ => 0,
                };
            }
            (Call::Credit { paid_sats, .. }, _) => inflow += u128::from(paid_sats.to_u64()),
            (Call::Record { actual_sats, .. }, _) => inflow += u128::from(actual_sats.to_u64()),
            (Call::Expire, _) if last_answer.is_some_and(|t| op.invoked <= t) => return None,
            _ => {}
        }
    }
    // An ask reads the pool only up to the identity's remaining budget: no budget, no read.
    let budget = Tier::ALL.iter().map(|&t| initial.config().budget(t).to_u64()).max().unwrap_or(0);
    let largest_ask = largest_ask.min(u128::from(budget));
    let pool = u128::from(initial.totals().pool_sats.to_u64());
    let totals = initial.totals();
    let held = u128::from(totals.credited_sats.to_u64()) + u128::from(totals.overrun_sats.to_u64());
    if pool < debits + largest_ask || pool + held + inflow >= u128::from(Sats::MAX.to_u64()) / 4 {
        return None;
    }
    // Each request's identity, from the calls that name one.
    let mut owner: BTreeMap<RequestId, Pubkey> = BTreeMap::new();
    for op in work {
        if let Call::Decide { request_id, pubkey, .. } | Call::ReservePartial { request_id, pubkey, .. } = &op.call {
            if *owner.entry(*request_id).or_insert(*pubkey) != *pubkey {
                return None;
            }
        }
    }
    // Part keys: an identity, a request nobody decided, or the payments.
    #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    enum Key {
        Identity(Pubkey),
        Orphan(RequestId),
        Payments,
    }
    let request_key = |r: RequestId| owner.get(&r).map_or(Key::Orphan(r), |p| Key::Identity(*p));
    let key_of = |op: &Op| -> Option<Key> {
        match &op.call {
            Call::SetTier { pubkey, .. } => Some(Key::Identity(*pubkey)),
            Call::Credit { .. } => Some(Key::Payments),
            Call::Expire => None,
            call => Some(request_key(call.request_id().expect("every other call names its request"))),
        }
    };
    let mut parts: BTreeMap<Key, (Vec<Op>, Vec<usize>)> = BTreeMap::new();
    for (i, op) in work.iter().enumerate() {
        if let Some(k) = key_of(op) {
            let part = parts.entry(k).or_default();
            part.0.push(op.clone());
            part.1.push(i);
        }
    }
    // The final sweeps, in every part, each answering the releases of that part's requests.
    for (i, op) in work.iter().enumerate().filter(|(_, o)| o.call == Call::Expire) {
        for (key, (ops, in_work)) in parts.iter_mut() {
            let mut mine = op.clone();
            if let Reply::Ok(Outcome::Expired { released }) = &mut mine.reply {
                released.retain(|(r, _)| request_key(*r) == *key);
            }
            ops.push(mine);
            in_work.push(i);
        }
    }
    Some(parts.into_values().collect())
}

/// A witness as text: the sub-history, one call a line, with the call that could not be placed
/// and what the reference answers it there.
pub fn describe(history: &[Op], witness: &Witness) -> String {
    let stuck = &history[witness.stuck];
    let mut s = format!(
        "no serial order consistent with real time gives these answers: after {} call(s) placed, {} of flow {} \
         (sent at {}, answered at {}) answered {}, where the reference answers {}; the smallest sub-history \
         found with no serial order has {} call(s):",
        witness.depth,
        show_call(&stuck.call),
        stuck.flow,
        stuck.invoked,
        stuck.completed,
        show_reply(&stuck.reply),
        show_reply(&witness.expected),
        witness.ops.len()
    );
    // A long sub-history is shown around the call that could not be placed: the calls sent
    // nearest to it, which are the ones it raced (all of them are in the trace).
    let shown: Vec<usize> = if witness.ops.len() <= WITNESS_SHOWN {
        witness.ops.clone()
    } else {
        let mut nearest = witness.ops.clone();
        nearest.sort_by_key(|&i| (i.abs_diff(witness.stuck), i));
        nearest.truncate(WITNESS_SHOWN);
        nearest.sort_unstable();
        nearest
    };
    for &i in &shown {
        let op = &history[i];
        let window = if op.answered() {
            format!("[{}, {}]", op.invoked, op.completed)
        } else {
            format!("[{}, never answered]", op.invoked)
        };
        let _ = write!(s, " {window} flow {}: {} -> {};", op.flow, show_call(&op.call), show_reply(&op.reply));
    }
    s.pop();
    if shown.len() < witness.ops.len() {
        let _ = write!(
            s,
            "; shown: the {} sent nearest to it, of {} (every call of the seed is in its trace)",
            shown.len(),
            witness.ops.len()
        );
    }
    s
}

/// The calls of a sub-history with no serial order that [`describe`] lists at most.
const WITNESS_SHOWN: usize = 30;

/// A call as the witness shows it: `decide(request 1, user#1, 10 sats)`.
fn show_call(call: &Call) -> String {
    match call {
        Call::SetTier { pubkey, tier } => format!("set_tier({}, {tier})", Named(*pubkey)),
        Call::Decide { request_id, pubkey, estimated_sats } => {
            format!("decide(request {}, {}, {estimated_sats} sats)", request_id.0, Named(*pubkey))
        }
        Call::ReservePartial { request_id, pubkey, amount_sats } => {
            format!("reserve_partial(request {}, {}, {amount_sats} sats)", request_id.0, Named(*pubkey))
        }
        Call::Release { request_id, .. } => format!("release(request {})", request_id.0),
        Call::Record { request_id, actual_sats, .. } => {
            format!("record(request {}, actual {actual_sats} sats)", request_id.0)
        }
        Call::Credit { payment_id, paid_sats } => format!("credit(payment {}, paid {paid_sats} sats)", payment_id.0),
        Call::Expire => "expire".to_owned(),
    }
}

/// An answer as the witness shows it: `free, reserved 10 sats`, `refused not_reserved`.
fn show_reply(reply: &Reply) -> String {
    match reply {
        Reply::Ok(Outcome::TierSet { .. }) => "tier set".to_owned(),
        Reply::Ok(Outcome::Decided { decision: Decision::Free { reserved_sats } }) => {
            format!("free, reserved {reserved_sats} sats")
        }
        Reply::Ok(Outcome::Decided { decision: Decision::Partial { offer_sats, charge_sats } }) => {
            format!("partial, offer {offer_sats} sats, charge {charge_sats} sats")
        }
        Reply::Ok(Outcome::Decided { decision: Decision::Gate { reason, charge_sats } }) => {
            format!("gate ({reason:?}), charge {charge_sats} sats")
        }
        Reply::Ok(Outcome::Reserved { reserved_sats }) => format!("reserved {reserved_sats} sats"),
        Reply::Ok(Outcome::Released { returned_sats }) => format!("released {returned_sats} sats"),
        Reply::Ok(Outcome::Recorded { absorbed_sats, returned_sats, overrun_sats }) => {
            format!(
                "recorded, absorbed {absorbed_sats} sats, returned {returned_sats} sats, overrun {overrun_sats} sats"
            )
        }
        Reply::Ok(Outcome::Credited { credited_sats }) => format!("credited {credited_sats} sats"),
        Reply::Ok(Outcome::Expired { released }) => format!("expired {} reservation(s)", released.len()),
        Reply::Refused(refusal) => {
            let name = serde_json::to_value(refusal).ok().and_then(|v| v["refusal"].as_str().map(str::to_owned));
            format!("refused {}", name.unwrap_or_else(|| format!("{refusal:?}")))
        }
        Reply::Failed { error } => format!("failed ({error})"),
    }
}

/// Where the search got furthest before it had to give up a call.
#[derive(Clone, Debug)]
struct Deepest {
    depth: usize,
    op: usize,
    expected: Reply,
}

enum Search {
    Ordered { explored: u64 },
    Stuck { explored: u64, deepest: Deepest },
    OutOfBudget { explored: u64 },
}

/// One entry of the time-ordered list: the call or the return of `op` (an index into the
/// sub-history's `ops`).
#[derive(Clone, Copy)]
struct Entry {
    op: usize,
    ret: bool,
    time: u64,
}

/// A placed call: how many of the candidates of the configuration it was placed from were
/// tried (the candidates themselves are computed again on the way back: the list is then as it
/// was), the hashes before it, and what takes it back off the reference.
struct Frame {
    op: u32,
    tried: u32,
    placed_hash: u64,
    state_hash: u64,
    undo: Undo,
}

/// The doubly linked list of entries, with the head at 0 and the tail at `n + 1`.
struct List {
    entries: Vec<Entry>,
    next: Vec<usize>,
    prev: Vec<usize>,
    call_at: Vec<usize>,
    ret_at: Vec<usize>,
}

const HEAD: usize = 0;

impl List {
    fn new(ops: &[&Op]) -> List {
        let mut entries = Vec::with_capacity(2 * ops.len());
        for (i, op) in ops.iter().enumerate() {
            entries.push(Entry { op: i, ret: false, time: op.invoked });
            // A call that never answered may take effect at any later time.
            let ret_time = if op.answered() { op.completed } else { u64::MAX };
            entries.push(Entry { op: i, ret: true, time: ret_time });
        }
        // Calls before returns at the same instant: calls that touch in time overlap.
        entries.sort_by_key(|e| (e.time, e.ret, e.op));
        let n = entries.len();
        let mut list = List {
            entries: Vec::with_capacity(n + 2),
            next: (0..n + 2).map(|i| i + 1).collect(),
            prev: (0..n + 2).map(|i| i.saturating_sub(1)).collect(),
            call_at: vec![0; ops.len()],
            ret_at: vec![0; ops.len()],
        };
        list.entries.push(Entry { op: usize::MAX, ret: false, time: 0 });
        for (k, e) in entries.into_iter().enumerate() {
            if e.ret {
                list.ret_at[e.op] = k + 1;
            } else {
                list.call_at[e.op] = k + 1;
            }
            list.entries.push(e);
        }
        list.entries.push(Entry { op: usize::MAX, ret: true, time: u64::MAX });
        list
    }

    fn tail(&self) -> usize {
        self.entries.len() - 1
    }

    fn unlink(&mut self, k: usize) {
        let (p, n) = (self.prev[k], self.next[k]);
        self.next[p] = n;
        self.prev[n] = p;
    }

    fn relink(&mut self, k: usize) {
        let (p, n) = (self.prev[k], self.next[k]);
        self.next[p] = k;
        self.prev[n] = k;
    }

    /// Takes `op`'s call and return out of the list.
    fn lift(&mut self, op: usize) {
        self.unlink(self.call_at[op]);
        self.unlink(self.ret_at[op]);
    }

    /// Puts them back (in the reverse order of [`List::lift`]).
    fn unlift(&mut self, op: usize) {
        self.relink(self.ret_at[op]);
        self.relink(self.call_at[op]);
    }
}

/// The reference's answer to `op` on `state`, and what takes `op` back off `state`.
fn apply_undoable(state: &mut Ledger, op: &Op) -> (Reply, Undo) {
    let mut journal = Vec::new();
    let (result, undo) = state.apply_undoable(&op.call.to_command(), op.now, &mut journal);
    (Reply::from(result), undo)
}

/// A 64-bit mix (splitmix64's finaliser), so that XORed hashes do not cancel by structure.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Feeds `Debug` text into a hasher, so that any record of the ledger can be hashed.
struct HashText<'a>(&'a mut FxHasher);

impl fmt::Write for HashText<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.write(s.as_bytes());
        Ok(())
    }
}

fn hash_of(tag: u8, key: &dyn fmt::Debug, value: &dyn fmt::Debug) -> u64 {
    let mut h = FxHasher::default();
    h.write_u8(tag);
    let _ = write!(HashText(&mut h), "{key:?}={value:?}");
    mix(h.finish())
}

/// What of the reference's state a call can change: its request (and that request's identity),
/// the identity it names, its payment; or everything (the sweep).
struct Touched {
    request: Option<RequestId>,
    pubkeys: Vec<Pubkey>,
    payment: Option<PaymentId>,
    everything: bool,
}

fn touched(call: &Call, state: &Ledger) -> Touched {
    let mut t = Touched { request: call.request_id(), pubkeys: Vec::new(), payment: None, everything: false };
    match call {
        Call::SetTier { pubkey, .. } | Call::Decide { pubkey, .. } | Call::ReservePartial { pubkey, .. } => {
            t.pubkeys.push(*pubkey)
        }
        Call::Credit { payment_id, .. } => t.payment = Some(*payment_id),
        Call::Expire => t.everything = true,
        Call::Record { .. } | Call::Release { .. } => {}
    }
    if let Some(r) = t.request.and_then(|r| state.request(r)) {
        if !t.pubkeys.contains(&r.pubkey) {
            t.pubkeys.push(r.pubkey);
        }
    }
    t
}

/// The parts of the state hash: every key the history can touch.
struct Keys {
    requests: Vec<RequestId>,
    pubkeys: Vec<Pubkey>,
    payments: Vec<PaymentId>,
}

impl Keys {
    /// Every record a call of `ops` can change: its request, the identity it names or its
    /// request was decided for, its payment. The others never change in the search, and
    /// leaving them out of the hash leaves it a function of the state.
    fn of(initial: &Ledger, ops: &[&Op]) -> Keys {
        let mut k = Keys { requests: Vec::new(), pubkeys: Vec::new(), payments: Vec::new() };
        for op in ops {
            if let Some(r) = op.call.request_id() {
                k.requests.push(r);
                k.pubkeys.extend(initial.request(r).map(|record| record.pubkey));
            }
            match &op.call {
                Call::SetTier { pubkey, .. } | Call::Decide { pubkey, .. } | Call::ReservePartial { pubkey, .. } => {
                    k.pubkeys.push(*pubkey)
                }
                Call::Credit { payment_id, .. } => k.payments.push(*payment_id),
                _ => {}
            }
        }
        k.requests.sort_unstable();
        k.requests.dedup();
        k.pubkeys.sort_unstable();
        k.pubkeys.dedup();
        k.payments.sort_unstable();
        k.payments.dedup();
        // Held while the search runs: without the room the repeats took.
        k.requests.shrink_to_fit();
        k.pubkeys.shrink_to_fit();
        k.payments.shrink_to_fit();
        k
    }

    /// The hash of everything but the totals: XOR over every key of its record's hash.
    fn parts(&self, state: &Ledger) -> u64 {
        let mut h = 0;
        for &r in &self.requests {
            h ^= request_hash(state, r);
        }
        for p in &self.pubkeys {
            h ^= identity_hash(state, p);
        }
        for &p in &self.payments {
            h ^= payment_hash(state, p);
        }
        h
    }
}

fn request_hash(state: &Ledger, r: RequestId) -> u64 {
    hash_of(1, &r, &state.request(r))
}

fn identity_hash(state: &Ledger, p: &Pubkey) -> u64 {
    hash_of(2, p, &state.identity(p))
}

fn payment_hash(state: &Ledger, p: PaymentId) -> u64 {
    hash_of(3, &p, &state.payment(p))
}

fn totals_hash(state: &Ledger) -> u64 {
    hash_of(4, &"totals", &state.totals())
}

/// The part of the state hash that a call touching `t` can change, in `state`: the state hash
/// after the call is the one before it with this part of the state before it XORed out and this
/// part of the state after it XORed in.
fn touched_hash(keys: &Keys, t: &Touched, state: &Ledger) -> u64 {
    if t.everything {
        return keys.parts(state) ^ totals_hash(state);
    }
    let mut h = totals_hash(state);
    if let Some(r) = t.request {
        h ^= request_hash(state, r);
    }
    for p in &t.pubkeys {
        h ^= identity_hash(state, p);
    }
    if let Some(p) = t.payment {
        h ^= payment_hash(state, p);
    }
    h
}

/// The history worth searching, with the index in `history` of each of its calls: a failed call
/// that its flow sent again, identically, and got an answer for, is left out. Every command is
/// idempotent by its ids, so the failed attempt and the answered one are one effect: the
/// answered attempt's answer, given at any instant from the failed attempt's sending (when the
/// failed one took effect and the answered one repeated it) to its own answer, so the answered
/// attempt's window starts at the first attempt's sending. Not for `set_tier` and `expire`,
/// whose repeats answer differently, nor across a change of the call's time.
fn merged(history: &[Op]) -> (Vec<Op>, Vec<usize>) {
    let mut start: Vec<u64> = history.iter().map(|o| o.invoked).collect();
    let mut keep = vec![true; history.len()];
    for (i, f) in history.iter().enumerate() {
        if f.answered() || matches!(f.call, Call::SetTier { .. } | Call::Expire) {
            continue;
        }
        let again = history[i + 1..]
            .iter()
            .position(|r| r.flow == f.flow && r.call == f.call && r.now == f.now && r.invoked > f.invoked);
        if let Some(k) = again {
            keep[i] = false;
            start[i + 1 + k] = start[i + 1 + k].min(start[i]);
        }
    }
    let origin: Vec<usize> = (0..history.len()).filter(|&i| keep[i]).collect();
    let work = origin.iter().map(|&i| Op { invoked: start[i], ..history[i].clone() }).collect();
    (work, origin)
}

/// The search over the calls `subset` (indices into `history`) of `history`.
fn search(initial: &Ledger, history: &[Op], subset: &[usize], budget: u64, memo_cap: usize) -> Search {
    let ops: Vec<&Op> = subset.iter().map(|&i| &history[i]).collect();
    let keys = Keys::of(initial, &ops);
    let mut list = List::new(&ops);
    let placed_key: Vec<u64> = subset.iter().map(|&i| mix(i as u64 ^ 0x5851_f42d_4c95_7f2d)).collect();
    let mut state = initial.clone();
    let mut state_hash = keys.parts(&state) ^ totals_hash(&state);
    let mut placed_hash = 0u64;
    let mut seen: FxHashSet<(u64, u64)> = FxHashSet::default();
    // As deep as the search can go, allocated once: no growth, no slack.
    let mut stack: Vec<Frame> = Vec::with_capacity(ops.len());
    let mut deepest: Option<Deepest> = None;
    let mut explored = 0u64;
    // The configuration being explored: its candidates and the next one to try.
    let mut cands = Vec::new();
    let mut blocker = candidates(&list, &ops, &mut cands);
    let mut tried = 0usize;
    loop {
        let Some(blocked_by) = blocker else {
            // Every answered call is placed; the rest may not have taken effect.
            return Search::Ordered { explored };
        };
        if let Some(&op) = cands.get(tried) {
            tried += 1;
            if explored == budget {
                return Search::OutOfBudget { explored };
            }
            explored += 1;
            let touches = touched(&ops[op].call, &state);
            let touched_before = touched_hash(&keys, &touches, &state);
            let (reply, undo) = apply_undoable(&mut state, ops[op]);
            if ops[op].answered() && reply != ops[op].reply {
                state.undo(undo);
                continue;
            }
            let new_placed = placed_hash ^ placed_key[op];
            let new_state = state_hash ^ touched_before ^ touched_hash(&keys, &touches, &state);
            if seen.len() >= memo_cap {
                seen.clear();
            }
            if !seen.insert((new_placed, new_state)) {
                state.undo(undo);
                continue;
            }
            let placed = u32::try_from(op).expect("fewer than 2^32 calls");
            stack.push(Frame { op: placed, tried: tried as u32, placed_hash, state_hash, undo });
            placed_hash = new_placed;
            state_hash = new_state;
            list.lift(op);
            blocker = candidates(&list, &ops, &mut cands);
            tried = 0;
            continue;
        }
        // No candidate leads anywhere: `blocked_by` can never be placed after what is placed.
        if deepest.as_ref().is_none_or(|d| stack.len() > d.depth) {
            let (expected, undo) = apply_undoable(&mut state, ops[blocked_by]);
            state.undo(undo);
            deepest = Some(Deepest { depth: stack.len(), op: subset[blocked_by], expected });
        }
        let Some(frame) = stack.pop() else {
            return Search::Stuck { explored, deepest: deepest.expect("set just above") };
        };
        list.unlift(frame.op as usize);
        state.undo(frame.undo);
        placed_hash = frame.placed_hash;
        state_hash = frame.state_hash;
        // The list is as it was when the frame's call was placed: so are its candidates.
        candidates(&list, &ops, &mut cands);
        tried = frame.tried as usize;
        blocker = Some(frame.op as usize);
    }
}

/// The calls that may be placed next, into `cands`: every call in the list before the first
/// return of an answered call, the answered ones first, earliest answer first (a call that
/// never answered is placed only when nothing else fits). Returns the call of that first return, or `None` when every
/// answered call is placed.
fn candidates(list: &List, ops: &[&Op], cands: &mut Vec<usize>) -> Option<usize> {
    cands.clear();
    let mut unanswered = Vec::new();
    let mut k = list.next[HEAD];
    while k != list.tail() {
        let Entry { op, ret, .. } = list.entries[k];
        if ret {
            if ops[op].answered() {
                // Earliest answer first: calls mostly take effect in about the order they
                // are answered (Lowe's just-in-time linearisation), and the first to answer
                // must be placed before any call sent after it.
                cands.sort_by_key(|&c| (ops[c].completed, c));
                cands.extend(unanswered);
                return Some(op);
            }
            // Returns of unanswered calls are all at the end, after every answered one.
            return None;
        }
        if ops[op].answered() {
            cands.push(op);
        } else {
            unanswered.push(op);
        }
        k = list.next[k];
    }
    None
}

/// A small sub-history around the stuck call that has no serial order either, for the same
/// reason: the stuck call's flow, or the flows whose calls overlap it, then fewer flows, then
/// fewer calls. Falls back to the whole history when no smaller one is shown within the budgets.
fn reduce(initial: &Ledger, history: &[Op], deepest: &Deepest, memo_cap: usize) -> Vec<usize> {
    let stuck = deepest.op;
    let mut checks = 0usize;
    // A sub-history shows the same thing when the same call is the one that cannot be placed
    // and the reference answers it the same there: without the decide it races, a record
    // answered `not_reserved` is wrong too, but as an `unknown_request`, which is another story.
    let mut fails = |subset: &[usize]| {
        checks += 1;
        checks <= SHRINK_CHECKS
            && matches!(search(initial, history, subset, SHRINK_BUDGET, memo_cap),
                Search::Stuck { deepest: d, .. } if d.op == stuck && d.expected == deepest.expected)
    };
    let flow = history[stuck].flow;
    // Calls sent after the stuck one was answered come after it in every order: without them
    // the search fails at the same call (tried once; kept only if it shows the same thing).
    let answered_at = history[stuck].completed;
    let before: Vec<usize> = (0..history.len()).filter(|&i| history[i].invoked <= answered_at).collect();
    let history_len = history.len();
    let scope: Vec<usize> =
        if before.len() < history_len && fails(&before) { before } else { (0..history_len).collect() };
    let of_flows = |flows: &[u32]| -> Vec<usize> {
        scope.iter().copied().filter(|&i| flows.contains(&history[i].flow)).collect::<Vec<_>>()
    };
    // The stuck call's flow, then with the flows that overlap it in time, then everything.
    let mine = of_flows(&[flow]);
    let (lo, hi) = mine.iter().fold((u64::MAX, 0u64), |(lo, hi), &i| {
        let op = &history[i];
        (lo.min(op.invoked), hi.max(if op.answered() { op.completed } else { u64::MAX }))
    });
    let mut near: Vec<u32> = history
        .iter()
        .filter(|op| op.invoked <= hi && (!op.answered() || op.completed >= lo))
        .map(|op| op.flow)
        .collect();
    near.sort_unstable();
    near.dedup();
    let mut flows: Vec<u32> = if fails(&mine) {
        vec![flow]
    } else if fails(&of_flows(&near)) {
        near
    } else {
        let mut all: Vec<u32> = scope.iter().map(|&i| history[i].flow).collect();
        all.sort_unstable();
        all.dedup();
        all
    };
    // One flow at a time (never the stuck call's own).
    let mut k = 0;
    while k < flows.len() {
        if flows[k] != flow && flows.len() > 1 {
            let mut fewer = flows.clone();
            fewer.remove(k);
            if fails(&of_flows(&fewer)) {
                flows = fewer;
                continue;
            }
        }
        k += 1;
    }
    // One call at a time (never the stuck call).
    let mut ops = of_flows(&flows);
    let mut k = 0;
    while k < ops.len() {
        if ops[k] != stuck {
            let mut fewer = ops.clone();
            fewer.remove(k);
            if fails(&fewer) {
                ops = fewer;
                continue;
            }
        }
        k += 1;
    }
    ops.sort_by_key(|&i| (history[i].invoked, i));
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_core::{Config, Refusal};

    fn sats(v: u64) -> Sats {
        Sats::new(v).unwrap()
    }

    /// The reference's answer to `op` on `state`.
    fn apply(state: &mut Ledger, op: &Op) -> Reply {
        Reply::from(state.apply(&op.call.to_command(), op.now, &mut Vec::new()))
    }

    fn user() -> Pubkey {
        crate::users::user_pubkey(1)
    }

    fn initial(pool: u64) -> Ledger {
        let config = Config { pool_initial_sats: sats(pool), ..Config::default() };
        let mut l = Ledger::new(config);
        l.apply(&ledger_core::Command::SetTier { pubkey: user(), tier: Tier::Trusted }, TimeMs(0), &mut Vec::new())
            .unwrap();
        l
    }

    fn op(flow: u32, call: Call, reply: Reply, invoked: u64, completed: u64) -> Op {
        Op { flow, call, now: TimeMs(1_000), reply, invoked, completed }
    }

    /// A sub-history of hundreds of calls is shown by the 30 sent nearest to the call that
    /// could not be placed, saying how many there were: never a line of every call.
    #[test]
    fn a_long_witness_is_shown_around_the_call_it_could_not_place() {
        let history: Vec<Op> = (0..500u64)
            .map(|i| op(i as u32, decide(i + 1, 10), Reply::Failed { error: "x".into() }, 2 * i, 2 * i + 1))
            .collect();
        let witness = Witness {
            ops: (0..500).collect(),
            stuck: 400,
            expected: Reply::Failed { error: "y".into() },
            depth: 399,
            explored: 1,
        };
        let text = describe(&history, &witness);
        assert!(text.contains("has 500 call(s):"), "{text}");
        assert!(text.ends_with("; shown: the 30 sent nearest to it, of 500 (every call of the seed is in its trace)"));
        assert!(
            text.contains("flow 400: decide(request 401") && text.contains("flow 385:") && text.contains("flow 414:")
        );
        assert!(!text.contains("flow 384:") && !text.contains("flow 415:") && !text.contains("flow 0:"), "{text}");
        let short = Witness { ops: (395..405).collect(), ..witness };
        let text = describe(&history, &short);
        assert!(!text.contains("shown:") && text.contains("flow 395:") && text.contains("flow 404:"), "{text}");
    }

    fn decide(r: u64, est: u64) -> Call {
        Call::Decide { request_id: RequestId(r), pubkey: user(), estimated_sats: sats(est) }
    }

    fn record(r: u64, actual: u64) -> Call {
        Call::Record {
            request_id: RequestId(r),
            pubkey: user(),
            actual_sats: sats(actual),
            reserved_sats: sats(actual),
        }
    }

    /// The reference's own answers, in a serial history, for building expectations.
    fn serial(l: &Ledger, calls: &[Call]) -> Vec<Reply> {
        let mut l = l.clone();
        calls.iter().map(|c| apply(&mut l, &op(0, c.clone(), Reply::Failed { error: String::new() }, 0, 0))).collect()
    }

    #[test]
    fn a_serial_history_of_the_references_answers_is_linearizable() {
        let l = initial(1_000);
        let calls = [decide(1, 10), record(1, 8), decide(2, 20), record(2, 20)];
        let replies = serial(&l, &calls);
        let h: Vec<Op> = calls
            .iter()
            .zip(replies)
            .enumerate()
            .map(|(i, (c, r))| op(i as u32, c.clone(), r, 2 * i as u64, 2 * i as u64 + 1))
            .collect();
        assert!(matches!(check(&l, &h, DEFAULT_BUDGET).unwrap(), Verdict::Linearizable { .. }));
    }

    #[test]
    fn overlapping_calls_may_take_effect_in_the_order_their_answers_need() {
        // The record is sent before the decide it records, but they overlap: the decide
        // must have taken effect first.
        let l = initial(1_000);
        let replies = serial(&l, &[decide(1, 10), record(1, 10)]);
        let h = vec![op(0, record(1, 10), replies[1].clone(), 0, 3), op(0, decide(1, 10), replies[0].clone(), 1, 2)];
        assert!(matches!(check(&l, &h, DEFAULT_BUDGET).unwrap(), Verdict::Linearizable { .. }));
    }

    #[test]
    fn the_not_reserved_answer_to_a_record_racing_its_decide_has_no_serial_order() {
        // The anomaly of the old `ledger_record`: the record overlaps its free decide and
        // answers not_reserved. Before the decide the reference answers unknown_request, after
        // it the record succeeds.
        let l = initial(1_000);
        let free = serial(&l, &[decide(1, 10)])[0].clone();
        assert!(matches!(free, Reply::Ok(Outcome::Decided { decision: Decision::Free { .. } })), "{free:?}");
        let h = vec![
            op(1, decide(1, 10), free, 0, 3),
            op(1, record(1, 10), Reply::Refused(Refusal::NotReserved), 1, 2),
            op(2, decide(2, 5), serial(&l, &[decide(2, 5)])[0].clone(), 4, 5),
        ];
        let Verdict::NotLinearizable(w) = check(&l, &h, DEFAULT_BUDGET).unwrap() else { panic!("must be caught") };
        assert_eq!(w.stuck, 1);
        // The unrelated decide is not part of the evidence.
        assert_eq!(w.ops, vec![0, 1]);
        let text = describe(&h, &w);
        assert!(text.contains("not_reserved"), "{text}");
    }

    #[test]
    fn real_time_order_is_kept() {
        // Two decides that do not overlap: the second saw the pool the first left. Swapping
        // their answers makes the history wrong although the answers would fit the other order.
        let l = initial(15);
        let replies = serial(&l, &[decide(1, 10), decide(2, 10)]);
        assert_ne!(replies[0], replies[1]);
        let ok = vec![op(1, decide(1, 10), replies[0].clone(), 0, 1), op(2, decide(2, 10), replies[1].clone(), 2, 3)];
        assert!(matches!(check(&l, &ok, DEFAULT_BUDGET).unwrap(), Verdict::Linearizable { .. }));
        let swapped = {
            let mut l2 = l.clone();
            let second_first = apply(&mut l2, &ok[1]);
            let first_second = apply(&mut l2, &ok[0]);
            vec![op(1, decide(1, 10), first_second, 0, 1), op(2, decide(2, 10), second_first, 2, 3)]
        };
        assert!(matches!(check(&l, &swapped, DEFAULT_BUDGET).unwrap(), Verdict::NotLinearizable(_)));
        // Overlapping, the same answers are fine.
        let mut overlapping = swapped.clone();
        overlapping[0].completed = 10;
        assert!(matches!(check(&l, &overlapping, DEFAULT_BUDGET).unwrap(), Verdict::Linearizable { .. }));
    }

    #[test]
    fn a_failed_call_may_have_taken_effect_or_not() {
        let l = initial(1_000);
        let replies = serial(&l, &[decide(1, 10), record(1, 10)]);
        let failed = Reply::Failed { error: "connection killed".into() };
        // Took effect: the retry's record answers as a repeat would.
        let took = vec![
            op(1, decide(1, 10), replies[0].clone(), 0, 1),
            op(1, record(1, 10), failed.clone(), 2, 3),
            op(1, record(1, 10), replies[1].clone(), 4, 5),
        ];
        assert!(matches!(check(&l, &took, DEFAULT_BUDGET).unwrap(), Verdict::Linearizable { .. }));
        // Never took effect, and nothing after it: also fine.
        let never = vec![op(1, decide(1, 10), replies[0].clone(), 0, 1), op(1, record(1, 10), failed, 2, 3)];
        assert!(matches!(check(&l, &never, DEFAULT_BUDGET).unwrap(), Verdict::Linearizable { .. }));
    }

    #[test]
    fn an_answer_before_its_call_is_refused() {
        let l = initial(1_000);
        let h = vec![op(1, decide(1, 10), serial(&l, &[decide(1, 10)])[0].clone(), 5, 4)];
        assert!(matches!(check(&l, &h, DEFAULT_BUDGET), Err(BadHistory::AnsweredBeforeSent { index: 0, .. })));
    }

    #[test]
    fn a_budget_too_small_says_undecided_not_wrong() {
        let l = initial(1_000);
        let replies = serial(&l, &[decide(1, 10), decide(2, 10)]);
        let h = vec![op(1, decide(1, 10), replies[0].clone(), 0, 9), op(2, decide(2, 10), replies[1].clone(), 1, 8)];
        assert!(matches!(check(&l, &h, 1).unwrap(), Verdict::Undecided { explored: 1 }));
    }

    #[test]
    fn a_run_gives_a_long_history_attempts_in_proportion_to_its_length() {
        assert_eq!(run_budget(0), DEFAULT_BUDGET);
        assert_eq!(run_budget(100_000), DEFAULT_BUDGET);
        assert_eq!(run_budget(416_634), 4 * 416_634);
    }

    /// Decides and records of three users on a pool they drain, applied one at a time, each
    /// answered within a window around its turn that overlaps its neighbours': linearizable by
    /// construction, and searched as a whole (the pool decides the answers).
    fn overlapping(seed: u64, n: u64) -> (Ledger, Vec<Op>) {
        let l = initial(400);
        let mut l2 = l.clone();
        for k in 2..4 {
            let set = ledger_core::Command::SetTier { pubkey: crate::users::user_pubkey(k), tier: Tier::Elite };
            l2.apply(&set, TimeMs(0), &mut Vec::new()).unwrap();
        }
        let mut x = seed;
        let mut rnd = move |m: u64| {
            x = mix(x.wrapping_add(0x9e37_79b9_7f4a_7c15));
            x % m
        };
        let mut state = l2.clone();
        let mut h = Vec::new();
        for i in 0..n {
            let r = i / 2 + 1;
            let pubkey = crate::users::user_pubkey(1 + r % 3);
            let call = if i % 2 == 0 {
                Call::Decide { request_id: RequestId(r), pubkey, estimated_sats: sats(20 + rnd(60)) }
            } else {
                Call::Record { request_id: RequestId(r), pubkey, actual_sats: sats(rnd(50)), reserved_sats: sats(0) }
            };
            let mut o = op(r as u32, call, Reply::Failed { error: String::new() }, 0, 0);
            o.reply = apply(&mut state, &o);
            // Its turn is at 100 i; its window reaches up to two turns either side.
            (o.invoked, o.completed) = (100 * i + 200 - rnd(200), 100 * i + 200 + rnd(200));
            h.push(o);
        }
        h.sort_by_key(|o| o.invoked);
        (l2, h)
    }

    /// The memo only saves work: emptied as often as it fills, even at every configuration,
    /// the search reaches the same verdict, or runs out of its budget trying (never the other
    /// verdict).
    #[test]
    fn an_emptied_memo_changes_no_verdict() {
        for seed in 0..16 {
            let (l, mut h) = overlapping(seed, 40);
            let verdict = |h: &[Op], cap| check_with_memo(&l, h, 40_000, cap).unwrap();
            let full = verdict(&h, MEMO_CAP);
            assert!(matches!(full, Verdict::Linearizable { .. }), "{full:?}");
            for cap in [1, 7, 64] {
                let got = verdict(&h, cap);
                let decided = cap == 64 || !matches!(got, Verdict::Undecided { .. });
                assert!(!decided || matches!(got, Verdict::Linearizable { .. }), "seed {seed}, memo of {cap}: {got:?}");
            }
            // One answer changed: the same call is the one that cannot be placed.
            let i = (seed as usize * 7) % h.len();
            h[i].reply = match h[i].reply {
                Reply::Refused(_) => {
                    Reply::Ok(Outcome::Decided { decision: Decision::Free { reserved_sats: sats(1) } })
                }
                _ => Reply::Refused(Refusal::NotReserved),
            };
            let Verdict::NotLinearizable(w) = verdict(&h, MEMO_CAP) else { panic!("seed {seed}: must be caught") };
            for cap in [1, 7, 64] {
                match verdict(&h, cap) {
                    Verdict::NotLinearizable(v) => {
                        assert_eq!((v.stuck, &v.expected), (w.stuck, &w.expected), "seed {seed}, memo of {cap}")
                    }
                    Verdict::Undecided { .. } if cap < 64 => {}
                    got => panic!("seed {seed}, memo of {cap}: {got:?}"),
                }
            }
        }
    }
}
