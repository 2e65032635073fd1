//! Shrinking: remove flows, events and faults from a failing history while the same
//! invariant still breaks, so a counterexample is a few steps a person can read.

use std::sync::atomic::{AtomicBool, Ordering};

use ledger_core::Config;
use ledger_harness::{Engine, Invariant};
use rustc_hash::FxHashSet;

use crate::fault::Fault;
use crate::gen::replay;
use crate::history::{Event, History};

/// How a counterexample was made shorter than the seed that found it: what a report says of
/// it, so that one only cut is not called shrunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reduction {
    /// The shrinker took flows, events or faults out while it still broke, or found that
    /// none could go (a report of before this field is read as shrunk, as it said).
    #[default]
    Shrunk,
    /// Only cut after the event of its first violation: the shrinker did not get to it (its
    /// replays or its time were spent, a signal stopped it, or the engine cannot be shrunk
    /// on).
    Cut,
    /// Neither: the whole seed, or calls of a concurrent run, which have no trace to shrink.
    None,
}

/// A shrunk history and what it took.
#[derive(Debug, Clone)]
pub struct Shrunk {
    /// The smallest history found that still breaks the invariant.
    pub history: History,
    /// Replays spent.
    pub n_replays: usize,
    /// Whether it was shrunk, or only cut when the replays ran out first.
    pub reduction: Reduction,
}

struct Shrinker<'a, E: Engine, F: Fn(Config) -> E> {
    make: &'a F,
    invariant: Invariant,
    n_replays: usize,
    max_replays: usize,
    stop: Option<&'a AtomicBool>,
}

impl<E: Engine, F: Fn(Config) -> E> Shrinker<'_, E, F> {
    /// Does `h` still break the invariant? Returns the event index where it first broke.
    fn fails(&mut self, h: &History) -> Option<Option<usize>> {
        self.n_replays += 1;
        let r = replay(self.make, h, false);
        r.first_event.get(&self.invariant).copied()
    }

    fn budget_left(&self) -> bool {
        self.n_replays < self.max_replays && !self.stop.is_some_and(|stop| stop.load(Ordering::Relaxed))
    }

    /// Try removing chunks of items (flows or events), halving the chunk size (ddmin-like).
    fn chunks(
        &mut self,
        h: &mut History,
        n_items: impl Fn(&History) -> usize,
        remove: impl Fn(&History, usize, usize) -> History,
    ) -> bool {
        let mut progress = false;
        let mut chunk = n_items(h).div_ceil(2).max(1);
        loop {
            let mut start = 0;
            while start < n_items(h) && self.budget_left() {
                let candidate = remove(h, start, chunk);
                if self.fails(&candidate).is_some() {
                    *h = candidate;
                    progress = true;
                } else {
                    start += chunk;
                }
            }
            if chunk == 1 || !self.budget_left() {
                return progress;
            }
            chunk = chunk.div_ceil(2);
        }
    }
}

/// Shrink `history`, which breaks `invariant` on the engine `make` builds.
pub fn shrink<E: Engine, F: Fn(Config) -> E>(
    make: &F,
    history: &History,
    invariant: Invariant,
    max_replays: usize,
) -> Shrunk {
    shrink_until(make, history, invariant, max_replays, None)
}

/// As [`shrink`], but once `stop` is set (a signal to the run) the shrinker stops as if its
/// replays were spent: the history is the smallest found so far, which still breaks the
/// invariant (the seed's whole history cut after its first break at the least).
pub fn shrink_until<E: Engine, F: Fn(Config) -> E>(
    make: &F,
    history: &History,
    invariant: Invariant,
    max_replays: usize,
    stop: Option<&AtomicBool>,
) -> Shrunk {
    let mut s = Shrinker { make, invariant, n_replays: 0, max_replays, stop };
    let mut h = history.clone();
    let mut reduction = Reduction::None;
    // The schedule after the first break only hides it: cut it (the drain still runs).
    if let Some(Some(at)) = s.fails(&h) {
        let mut cut = h.clone();
        cut.events.truncate(at + 1);
        if s.fails(&cut).is_some() {
            if cut.events.len() < h.events.len() {
                reduction = Reduction::Cut;
            }
            h = cut;
        }
    }
    loop {
        let mut progress = s.chunks(&mut h, |h| h.flows.len(), without_flows);
        progress |= s.chunks(
            &mut h,
            |h| h.events.len(),
            |h, start, len| {
                let mut c = h.clone();
                let end = (start + len).min(c.events.len());
                c.events.drain(start..end);
                c
            },
        );
        progress |= drop_faults(&mut s, &mut h);
        // Something went, or nothing could with replays to spare: the shrinker did its work.
        if progress || s.budget_left() {
            reduction = Reduction::Shrunk;
        }
        if !progress || !s.budget_left() {
            break;
        }
    }
    // Users no flow names play no part.
    let named: FxHashSet<u32> = h.flows.iter().map(|f| f.user).collect();
    h.users.retain(|u, _| named.contains(u));
    Shrunk { history: h, n_replays: s.n_replays, reduction }
}

fn without_flows(h: &History, start: usize, len: usize) -> History {
    let end = (start + len).min(h.flows.len());
    let gone: FxHashSet<u32> = h.flows[start..end].iter().map(|f| f.id).collect();
    let mut c = h.clone();
    c.flows.drain(start..end);
    c.events.retain(|ev| match *ev {
        Event::Start(id) | Event::Step(id) | Event::Ghost(id, _) => !gone.contains(&id),
        Event::Jump(_) => true,
    });
    c
}

fn drop_faults<E: Engine, F: Fn(Config) -> E>(s: &mut Shrinker<'_, E, F>, h: &mut History) -> bool {
    let mut progress = false;
    for i in 0..h.flows.len() {
        for &fault in Fault::ALL {
            if !s.budget_left() {
                return progress;
            }
            let mut c = h.clone();
            let had = c.flows[i].take_fault(fault);
            if had && s.fails(&c).is_some() {
                *h = c;
                progress = true;
            }
        }
    }
    progress
}
