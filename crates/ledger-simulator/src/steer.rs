//! Coverage that steers (`run --steer`): the coverage marks of earlier seeds choose the swarm
//! mix of later ones, so that rare marks get more seeds.
//!
//! The swarm's per-seed choices are [`Knob`]s, each with a few options (jobs or sessions alone,
//! each fault off, a hot set, one tier, an almost empty pool, the configuration's edges). A
//! seed's [`Draw`] records the option each knob took. Seeds come in blocks of [`BLOCK`]: the
//! first block, and every even seed, are *plain* (the swarm as without steering); an odd seed
//! of a later block is *aimed* at one of the marks the plain seeds of the [`WINDOW`] blocks
//! before its own reached least, and draws its mix from a [`Bias`]: each knob's options
//! weighted by how often plain seeds with that option reached the mark (a mark no plain seed
//! reached favours the options drawn least).
//!
//! Determinism: plain seeds depend on nothing but their number; an aimed seed depends on its
//! number and the plain seeds of the blocks before it, which any run can compute. So a seed's
//! run is a function of its number alone, whatever the range, the shard or the thread count:
//! `--seed N --steer` runs seed N exactly as `--seeds 0..1000 --steer` did (first running
//! the plain seeds of its window, at most `WINDOW * BLOCK / 2`).

use std::collections::BTreeMap;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::coverage::{Coverage, Mark};
use crate::fault::Fault;

/// Seeds per block: the marks of a block's plain seeds steer the blocks after it.
pub const BLOCK: u64 = 32;
/// Blocks of plain seeds an aimed seed's bias is learned from.
pub const WINDOW: u64 = 4;
/// The most marks one block aims at.
pub const MAX_TARGETS: usize = 4;
/// The most options a knob has.
pub const MAX_OPTIONS: usize = 5;

/// One choice the swarm makes per seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Knob {
    /// Jobs alone, sessions alone, or both.
    Kinds,
    /// This fault kind switched off, kept (its rate scaled), or (aimed seeds only) weighted up.
    FaultOff(Fault),
    /// Traffic piled on a hot set of users.
    HotSet,
    /// Every known user in one tier.
    OneTier,
    /// An almost empty pool.
    LowPool,
    /// A credit rate at an edge.
    CreditEdge,
    /// Budgets scaled to an edge.
    BudgetEdge,
    /// A reservation TTL at an edge.
    TtlEdge,
}

/// Number of knobs.
pub const N_KNOBS: usize = 7 + Fault::ALL.len();

/// The option each knob took in one seed, by [`Knob::index`].
pub type Draw = [u8; N_KNOBS];

impl Knob {
    /// Every knob, by index.
    pub fn all() -> Vec<Knob> {
        let mut v = vec![Knob::Kinds];
        v.extend(Fault::ALL.iter().map(|&f| Knob::FaultOff(f)));
        v.extend([Knob::HotSet, Knob::OneTier, Knob::LowPool, Knob::CreditEdge, Knob::BudgetEdge, Knob::TtlEdge]);
        v
    }

    /// Its position in a [`Draw`].
    pub fn index(self) -> usize {
        let n = Fault::ALL.len();
        match self {
            Knob::Kinds => 0,
            Knob::FaultOff(f) => 1 + Fault::ALL.iter().position(|&g| g == f).expect("every fault is in ALL"),
            Knob::HotSet => 1 + n,
            Knob::OneTier => 2 + n,
            Knob::LowPool => 3 + n,
            Knob::CreditEdge => 4 + n,
            Knob::BudgetEdge => 5 + n,
            Knob::TtlEdge => 6 + n,
        }
    }

    /// Its options' names, in the order the draw numbers them.
    pub fn options(self) -> &'static [&'static str] {
        match self {
            Knob::Kinds => &["jobs_only", "sessions_only", "both"],
            // `high` (its rate scaled 4 to 16 times, not 1/4 to 4) only for an aimed seed.
            Knob::FaultOff(_) => &["on", "off", "high"],
            Knob::HotSet | Knob::OneTier | Knob::LowPool | Knob::CreditEdge => &["off", "on"],
            Knob::BudgetEdge => &["off", "x0.1", "x10", "x1000", "x0"],
            Knob::TtlEdge => &["off", "1ms", "250ms", "2500ms", "60s"],
        }
    }

    /// Its name in reports.
    pub fn name(self) -> String {
        match self {
            Knob::Kinds => "kinds".to_owned(),
            Knob::FaultOff(f) => f.key().to_owned(),
            Knob::HotSet => "hot_set".to_owned(),
            Knob::OneTier => "one_tier".to_owned(),
            Knob::LowPool => "low_pool".to_owned(),
            Knob::CreditEdge => "credit_edge".to_owned(),
            Knob::BudgetEdge => "budget".to_owned(),
            Knob::TtlEdge => "ttl".to_owned(),
        }
    }
}

/// Integer weights of each knob's options: what an aimed seed draws its mix from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bias(pub [[u32; MAX_OPTIONS]; N_KNOBS]);

impl Bias {
    /// Draws `knob`'s option with these weights.
    pub fn pick(&self, rng: &mut ChaCha8Rng, knob: Knob) -> usize {
        let w = &self.0[knob.index()][..knob.options().len()];
        let mut x = rng.gen_range(0..w.iter().sum::<u32>());
        for (i, wi) in w.iter().enumerate() {
            if x < *wi {
                return i;
            }
            x -= wi;
        }
        unreachable!("x is below the sum of the weights")
    }

    /// The options this bias favours most against an even draw, strongest first:
    /// `low_pool=on` when it is the likeliest option of its knob by a clear margin.
    pub fn favours(&self) -> Vec<String> {
        let mut out: Vec<(u64, String)> = Vec::new();
        for k in Knob::all() {
            let n = k.options().len();
            let w = &self.0[k.index()][..n];
            let sum: u32 = w.iter().sum();
            let (best, &wb) = w.iter().enumerate().max_by_key(|&(i, w)| (*w, std::cmp::Reverse(i))).expect("options");
            // Share of the best option, in thousandths, against an even share.
            let share = u64::from(wb) * 1_000 / u64::from(sum);
            if share * n as u64 >= 1_500 {
                out.push((share * n as u64, format!("{}={}", k.name(), k.options()[best])));
            }
        }
        out.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        out.into_iter().map(|x| x.1).collect()
    }
}

// A mark is one bit of a `u64`.
const _: () = assert!(Mark::ALL.len() <= 64);

/// The marks a run's coverage reached, one bit per [`Mark::ALL`] position.
pub fn mark_bits(c: &Coverage) -> u64 {
    Mark::ALL
        .iter()
        .enumerate()
        .filter(|(_, m)| c.0.get(m.name()).is_some_and(|n| *n > 0))
        .fold(0, |b, (i, _)| b | 1 << i)
}

/// Whether `seed` runs the plain swarm under steering.
pub fn is_plain(seed: u64) -> bool {
    seed < BLOCK || seed % 2 == 0
}

/// The block of `seed`.
pub fn block_of(seed: u64) -> u64 {
    seed / BLOCK
}

/// The first seed of the window that steers `block`.
pub fn window_start(block: u64) -> u64 {
    block.saturating_sub(WINDOW) * BLOCK
}

/// The marks one block aims at, each with its bias; the rarer a mark, the more of the block's
/// aimed seeds it gets.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Rarest first.
    pub targets: Vec<(Mark, Bias)>,
}

impl Plan {
    /// What `seed` is aimed at, `None` for a plain seed (or a block with no rare mark).
    pub fn aim(&self, seed: u64) -> Option<&(Mark, Bias)> {
        if is_plain(seed) || self.targets.is_empty() {
            return None;
        }
        // The rarest of n targets gets n shares, the next n - 1, ...: seeds 2k+1 take turns.
        let n = self.targets.len() as u64;
        let mut turn = (seed / 2) % (n * (n + 1) / 2);
        for (i, t) in self.targets.iter().enumerate() {
            let share = n - i as u64;
            if turn < share {
                return Some(t);
            }
            turn -= share;
        }
        unreachable!("turn is below the sum of the shares")
    }
}

/// A mark's aimed seeds, for the report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Boost {
    /// Seeds aimed at it.
    pub aimed_seeds: u64,
    /// Of those, how many reached it.
    pub reached: u64,
}

/// What steering did over a run, for the report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SteerReport {
    /// Seeds per block.
    pub block: u64,
    /// Blocks of plain seeds a bias is learned from.
    pub window_blocks: u64,
    /// Seeds run aimed at a mark.
    pub aimed_seeds: u64,
    /// Plain seeds before the range run only to learn the first blocks' biases.
    pub warmup_seeds: u64,
    /// Every mark aimed at, with its seeds.
    pub boosted: BTreeMap<&'static str, Boost>,
    /// For each mark aimed at, the options its latest bias favoured most.
    pub favoured: BTreeMap<&'static str, Vec<String>>,
}

/// The steering state of a run: the plain seeds' draws and marks in the current window.
#[derive(Clone, Debug, Default)]
pub struct Steering {
    plain: BTreeMap<u64, (Draw, u64)>,
    /// What it did so far.
    pub report: SteerReport,
}

impl Steering {
    /// Nothing seen yet.
    pub fn new() -> Steering {
        Steering {
            plain: BTreeMap::new(),
            report: SteerReport { block: BLOCK, window_blocks: WINDOW, ..SteerReport::default() },
        }
    }

    /// Whether plain `seed` was seen.
    pub fn knows(&self, seed: u64) -> bool {
        self.plain.contains_key(&seed)
    }

    /// Records a plain seed.
    pub fn saw_plain(&mut self, seed: u64, draw: Draw, coverage: &Coverage) {
        debug_assert!(is_plain(seed));
        self.plain.insert(seed, (draw, mark_bits(coverage)));
    }

    /// Records an aimed seed.
    pub fn saw_aimed(&mut self, mark: Mark, bias: &Bias, coverage: &Coverage) {
        self.report.aimed_seeds += 1;
        let b = self.report.boosted.entry(mark.name()).or_default();
        b.aimed_seeds += 1;
        b.reached += u64::from(coverage.0.get(mark.name()).is_some_and(|n| *n > 0));
        self.report.favoured.insert(mark.name(), bias.favours().into_iter().take(4).collect());
    }

    /// Forgets the plain seeds no block from `block` on needs.
    pub fn forget_before(&mut self, block: u64) {
        let keep = window_start(block);
        self.plain = self.plain.split_off(&keep);
    }

    /// The plan of `block`, from the plain seeds of its window (all of which must be known).
    pub fn plan(&self, block: u64) -> Plan {
        let (from, to) = (window_start(block), block * BLOCK);
        let seen: Vec<&(Draw, u64)> = self.plain.range(from..to).map(|(_, v)| v).collect();
        if seen.is_empty() {
            return Plan::default();
        }
        let n = seen.len() as u64;
        let mut rare: Vec<(u64, usize, Mark)> = Mark::ALL
            .iter()
            .enumerate()
            .filter(|(_, m)| m.expected_in_memory())
            .map(|(i, &m)| (seen.iter().filter(|s| s.1 & (1 << i) != 0).count() as u64, i, m))
            // Rare: reached by fewer than a third of the window's plain seeds.
            .filter(|(hits, _, _)| hits * 3 < n)
            .collect();
        rare.sort();
        let targets = rare.into_iter().take(MAX_TARGETS).map(|(_, i, m)| (m, bias_for(&seen, i))).collect();
        Plan { targets }
    }
}

/// Each knob's options weighted by the smoothed share of plain seeds with that option that
/// reached mark `bit`: `(hits + 1/2) / (seeds + 1)`, scaled so the best option weighs 100,
/// no option under 4 (every option stays possible); an option no plain seed drew (a fault
/// weighted up) weighs as much as the best.
fn bias_for(seen: &[&(Draw, u64)], bit: usize) -> Bias {
    let mut w = [[0u32; MAX_OPTIONS]; N_KNOBS];
    for k in Knob::all() {
        let i = k.index();
        let n_opt = k.options().len();
        let mut rate = [None; MAX_OPTIONS];
        for (o, r) in rate.iter_mut().enumerate().take(n_opt) {
            let with: Vec<&&(Draw, u64)> = seen.iter().filter(|s| usize::from(s.0[i]) == o).collect();
            let hits = with.iter().filter(|s| s.1 & (1 << bit) != 0).count();
            *r = (!with.is_empty()).then(|| (hits as f64 + 0.5) / (with.len() as f64 + 1.0));
        }
        let best = rate.iter().take(n_opt).flatten().copied().fold(0.0, f64::max);
        let rate = rate.map(|r| r.unwrap_or(best));
        for o in 0..n_opt {
            // Exact in any floating point: small integers and one division each.
            w[i][o] = ((rate[o] / best * 100.0).round() as u32).max(4);
        }
    }
    Bias(w)
}
