//! The `run` scenario: population, traffic, costs, fault rates and the ledger's config.
//!
//! A scenario is TOML. Every key has a default; a file that sets no key at all (empty, or only
//! comments) is refused, as a truncated file or a mistake (the defaults are what a run without
//! a scenario runs). Unknown keys and out-of-range values are errors that name the key and,
//! when it is in the file, its line.

use ledger_core::{Config, Tier};

pub use crate::fault::{Fault, Faults};
use serde::{Deserialize, Serialize};

/// Share of the population in each tier, plus users with no identity at all.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TierMix {
    /// Weight of `new`.
    pub new: f64,
    /// Weight of `established`.
    pub established: f64,
    /// Weight of `trusted`.
    pub trusted: f64,
    /// Weight of `elite`.
    pub elite: f64,
    /// Weight of users the trust service does not know.
    pub unknown: f64,
}

impl Default for TierMix {
    fn default() -> TierMix {
        TierMix { new: 0.3, established: 0.35, trusted: 0.2, elite: 0.1, unknown: 0.05 }
    }
}

impl TierMix {
    /// The weights in [`Tier::ALL`] order, then unknown.
    pub fn weights(&self) -> [f64; 5] {
        [self.new, self.established, self.trusted, self.elite, self.unknown]
    }
}

/// A workload for `ledger-sim run`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scenario {
    /// Number of users.
    pub n_users: u32,
    /// Scheduler steps in the fault phase (the drain comes after).
    pub n_steps: u64,
    /// At most this many flows in flight at once.
    pub max_in_flight: u32,
    /// Virtual milliseconds per scheduler step.
    pub step_ms: u64,
    /// Population by tier.
    pub tiers: TierMix,
    /// Share of flows that are synchronous sessions (the rest are jobs).
    pub session_share: f64,
    /// Smallest estimated cost.
    pub estimate_min_sats: u64,
    /// Largest estimated cost.
    pub estimate_max_sats: u64,
    /// Smallest actual cost, in percent of the estimate.
    pub actual_min_pct: u32,
    /// Largest actual cost, in percent of the estimate.
    pub actual_max_pct: u32,
    /// Draw a per-seed mix (swarm testing) on top of this scenario.
    pub swarm: bool,
    /// Fault rates.
    pub faults: Faults,
    /// The ledger's configuration.
    pub ledger: Config,
}

/// The longest step: with at most [`MAX_STEPS`] steps, a run's clock stays far below 2^63 ms.
pub const MAX_STEP_MS: u64 = 86_400_000;

/// The longest reservation TTL a simulation takes: 365 days. A run ends with a jump of the TTL
/// plus one past every deadline, and its edge probes jump the clock to a deadline at most a
/// TTL ahead: bounded, neither can overflow, and every schedule a run draws ends by
/// [`MAX_SCHEDULE_MS`] (asserted below), so that replay reads every trace a run writes and the
/// clock stays in SPEC's `0..=2^63-1` through the drain.
pub const MAX_TTL_MS: u64 = 365 * ledger_core::DAY_MS;

/// The furthest a trace's schedule may take the clock past [`EPOCH`](crate::exec::EPOCH), by
/// every event's step and every clock jump: 2^62 ms. The rest of SPEC's `0..=2^63-1` is the
/// drain's (its steps, and its jump of the TTL plus one).
pub const MAX_SCHEDULE_MS: u64 = 1 << 62;

// A run's schedule ends by MAX_SCHEDULE_MS: each of at most MAX_STEPS scheduler steps adds at
// most three events (an edge probe's jump, start and step), each a step of at most
// MAX_STEP_MS, and at most one jump: a random one of less than two days, or a probe's, to a
// daily window's end (at most a day and a millisecond ahead) or to a deadline (at most the
// TTL and a millisecond ahead).
const _: () = assert!(2 * ledger_core::DAY_MS <= MAX_TTL_MS + 1);
const _: () = assert!(MAX_STEPS * (MAX_TTL_MS + 1 + 3 * MAX_STEP_MS) <= MAX_SCHEDULE_MS);

/// The largest `estimate_max_sats` a scenario takes.
pub const MAX_ESTIMATE_SATS: u64 = 1_000_000_000;

/// The largest `actual_max_pct` a scenario takes: an actual cost of at most 100 times the
/// estimate.
pub const MAX_ACTUAL_PCT: u32 = 10_000;

/// The largest estimated or actual cost a flow of a run carries: a drawn flow's estimate is at
/// most [`MAX_ESTIMATE_SATS`] and its actual cost at most [`MAX_ACTUAL_PCT`] of that (1e11);
/// an edge probe (`gen.rs`) estimates up to 1000 times the largest estimate and may cost one
/// sat more. A trace's flows are held to it.
pub const MAX_FLOW_SATS: u64 = MAX_ESTIMATE_SATS * 1_000 + 1;

/// The largest genesis pool a simulation takes: what a run can credit on top stays far below
/// `Sats::MAX`.
pub const MAX_POOL_INITIAL_SATS: u64 = 1_000_000_000_000_000;

impl Default for Scenario {
    fn default() -> Scenario {
        Scenario {
            n_users: 10_000,
            n_steps: 200_000,
            max_in_flight: 2_000,
            step_ms: 250,
            tiers: TierMix::default(),
            session_share: 0.4,
            estimate_min_sats: 1,
            estimate_max_sats: 400,
            actual_min_pct: 40,
            actual_max_pct: 130,
            swarm: true,
            faults: Faults::default(),
            ledger: Config::default(),
        }
    }
}

/// A scenario that cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The TOML did not parse or match the schema (the message names the key and line).
    #[error("{path}: {message}")]
    Toml {
        /// The file.
        path: String,
        /// What toml said.
        message: String,
    },
    /// A file that sets no key: empty, or only white space, comments and empty tables.
    #[error(
        "{path}: the scenario is empty (it sets no key: only white space, comments or empty tables); a file \
         emptied by mistake (`run --scenario s.toml > s.toml` empties s.toml before the run reads it) would \
         run the 10000-user default; to run the default scenario, run without --scenario"
    )]
    Empty {
        /// The file.
        path: String,
    },
    /// A value of the `[ledger]` table that the ledger's configuration refuses, at its line.
    #[error("{path}{line}: ledger.{message}", line = line.map(|l| format!(":{l}")).unwrap_or_default())]
    Ledger {
        /// The file.
        path: String,
        /// The 1-based line of the key, when it is found.
        line: Option<usize>,
        /// What the configuration said (it starts with the key).
        message: String,
    },
    /// A value out of its range.
    #[error("{path}{line}: {key} = {value}: {reason}", line = line.map(|l| format!(":{l}")).unwrap_or_default())]
    Range {
        /// The file.
        path: String,
        /// The 1-based line of the key in the file, when it is there.
        line: Option<usize>,
        /// The key.
        key: &'static str,
        /// The value.
        value: String,
        /// The allowed range.
        reason: &'static str,
    },
}

/// The largest population a run takes: `n_users` users are held in memory (about 400 bytes
/// each).
pub const MAX_USERS: u32 = 10_000_000;

/// The most scheduler steps a seed takes: each is kept in the seed's history (16 bytes) so
/// that a violation can be replayed and shrunk.
pub const MAX_STEPS: u64 = 100_000_000;

impl Scenario {
    /// Parse and validate a scenario; `path` names it in errors.
    pub fn from_toml_str(text: &str, path: &str) -> Result<Scenario, ScenarioError> {
        if sets_no_key(text) {
            return Err(ScenarioError::Empty { path: path.to_owned() });
        }
        let s: Scenario = toml::from_str(text).map_err(|e| {
            ledger_error(text, path, &e)
                .unwrap_or_else(|| ScenarioError::Toml { path: path.to_owned(), message: e.to_string() })
        })?;
        s.validate(path).map_err(|e| match e {
            ScenarioError::Range { path, line: None, key, value, reason } => {
                ScenarioError::Range { line: line_of(text, key), path, key, value, reason }
            }
            e => e,
        })?;
        Ok(s)
    }

    /// Check every range; `path` names the scenario in errors. The sizes are bounded so that
    /// a run either fits in memory or is refused up front, never aborted by a failed
    /// allocation.
    pub fn validate(&self, path: &str) -> Result<(), ScenarioError> {
        let err = |key, value: String, reason| {
            Err(ScenarioError::Range { path: path.to_owned(), line: None, key, value, reason })
        };
        if !(1..=MAX_USERS).contains(&self.n_users) {
            return err(
                "n_users",
                self.n_users.to_string(),
                "must be in 1..=10000000 (the population is held in memory)",
            );
        }
        // No steps would check nothing and pass: a typo in CI would go green.
        if !(1..=MAX_STEPS).contains(&self.n_steps) {
            return err(
                "n_steps",
                self.n_steps.to_string(),
                "must be in 1..=100000000 (every step of a seed is kept for its replay; run more seeds instead)",
            );
        }
        if self.max_in_flight == 0 {
            return err("max_in_flight", self.max_in_flight.to_string(), "must be at least 1");
        }
        if self.estimate_min_sats == 0 || self.estimate_min_sats > self.estimate_max_sats {
            return err("estimate_min_sats", self.estimate_min_sats.to_string(), "must be in 1..=estimate_max_sats");
        }
        if self.estimate_max_sats > MAX_ESTIMATE_SATS {
            return err("estimate_max_sats", self.estimate_max_sats.to_string(), "must be at most 1e9");
        }
        if self.actual_min_pct > self.actual_max_pct || self.actual_max_pct > MAX_ACTUAL_PCT {
            return err("actual_min_pct", self.actual_min_pct.to_string(), "must be <= actual_max_pct <= 10000");
        }
        if !(0.0..=1.0).contains(&self.session_share) {
            return err("session_share", self.session_share.to_string(), "must be in 0..=1");
        }
        for &fault in Fault::ALL {
            let v = self.faults.rate(fault);
            if !(0.0..=1.0).contains(&v) {
                return Err(ScenarioError::Range {
                    path: path.to_owned(),
                    line: None,
                    key: fault.scenario_key(),
                    value: v.to_string(),
                    reason: "a rate must be in 0..=1",
                });
            }
        }
        let w = self.tiers.weights();
        let sum: f64 = w.iter().sum();
        // A sum that overflows to infinity cannot be drawn from.
        if w.iter().any(|x| !(x.is_finite() && *x >= 0.0)) || !(sum > 0.0 && sum < f64::MAX) {
            return err("tiers", format!("{w:?}"), "weights must be non-negative with a positive, finite sum");
        }
        if self.step_ms > MAX_STEP_MS {
            return err(
                "step_ms",
                self.step_ms.to_string(),
                "must be at most 86400000 (a day a step; the clock of a run must stay in SPEC's 0..=2^63-1)",
            );
        }
        if self.ledger.reservation_ttl_ms > MAX_TTL_MS {
            return err(
                "ledger.reservation_ttl_ms",
                self.ledger.reservation_ttl_ms.to_string(),
                "must be at most 31536000000 (365 days) in a simulation (edge probes jump the clock to a deadline and \
                 the drain jumps the TTL plus one past every deadline: a run's clock must stay in SPEC's 0..=2^63-1)",
            );
        }
        if self.ledger.pool_initial_sats.to_u64() > MAX_POOL_INITIAL_SATS {
            return err(
                "ledger.pool_initial_sats",
                self.ledger.pool_initial_sats.to_u64().to_string(),
                "must be at most 1e15 in a simulation (credits on top of more would reach Sats::MAX, where the \
                 ledger refuses them as an overflow)",
            );
        }
        Ok(())
    }

    /// A small scenario for many-seed runs in tests and CI.
    pub fn small() -> Scenario {
        Scenario { n_users: 40, n_steps: 600, max_in_flight: 24, ..Scenario::default() }
    }
}

/// Whether the TOML `text` sets no key at all: it is empty, or holds only white space,
/// comments and empty tables. Text that does not parse sets something (its parser says what is
/// wrong with it).
pub fn sets_no_key(text: &str) -> bool {
    fn empty(t: &toml::Table) -> bool {
        t.values().all(|v| matches!(v, toml::Value::Table(t) if empty(t)))
    }
    toml::from_str::<toml::Table>(text).is_ok_and(|t| empty(&t))
}

/// The keys of the `[ledger]` table whose values the ledger's configuration checks as a whole
/// (after every key is read): its errors start with the key, and toml places them at the
/// table's header.
const LEDGER_CHECKED: [&str; 3] = ["credit_pct", "credit_bps", "reservation_ttl_ms"];

/// A toml error `e` that the ledger's configuration raised, placed at the line of the key it
/// names rather than the `[ledger]` header.
fn ledger_error(text: &str, path: &str, e: &toml::de::Error) -> Option<ScenarioError> {
    let message = e.message().trim();
    let key = LEDGER_CHECKED.iter().filter_map(|k| message.find(k).map(|at| (at, *k))).min()?.1;
    let at = e.span()?.start;
    // The line the error is on, whole: the table's header, or `ledger = { ... }`.
    let start = text.get(..at)?.rfind('\n').map_or(0, |i| i + 1);
    let header = text.get(start..)?.lines().next()?.trim_start();
    if !(header.starts_with("[ledger") || header.starts_with("ledger")) {
        return None;
    }
    let line = line_of(text, &format!("ledger.{key}")).or_else(|| Some(text[..at].lines().count().max(1)));
    Some(ScenarioError::Ledger { path: path.to_owned(), line, message: message.to_owned() })
}

/// The 1-based line of the dotted `key` in the TOML `text`: where it is set, else the header
/// of the deepest table holding it that the file names.
fn line_of(text: &str, key: &str) -> Option<usize> {
    let mut table = String::new();
    let mut best: Option<(usize, usize)> = None;
    let mut consider = |name: &str, line: usize| {
        if (key == name || key.starts_with(&format!("{name}."))) && best.is_none_or(|(len, _)| name.len() > len) {
            best = Some((name.len(), line));
        }
    };
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if let Some(h) = line.strip_prefix('[') {
            table = h.trim_end_matches(']').trim().replace(' ', "");
            consider(&table, i + 1);
            continue;
        }
        let Some((k, _)) = line.split_once('=') else { continue };
        let k = k.trim().replace(' ', "");
        let full = if table.is_empty() { k } else { format!("{table}.{k}") };
        consider(&full, i + 1);
    }
    best.map(|(_, line)| line)
}

/// The tier a user starts with, `None` for a user the trust service does not know.
pub type StartTier = Option<Tier>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scenario_that_sets_no_key_is_refused_as_empty() {
        for text in ["", " \n\t\n", "# n_users = 40\n", "[ledger]\n[faults]\n# crash = 0\n"] {
            let e = Scenario::from_toml_str(text, "s.toml").unwrap_err().to_string();
            assert!(e.starts_with("s.toml: the scenario is empty"), "{text:?}: {e}");
        }
        assert_eq!(Scenario::from_toml_str("n_users = 40", "s.toml").unwrap().n_users, 40);
    }

    #[test]
    fn a_bad_ledger_key_is_named_at_its_own_line() {
        let e = |text: &str| Scenario::from_toml_str(text, "s.toml").unwrap_err().to_string();
        assert_eq!(
            e("n_users = 4\n[ledger]\npool_initial_sats = 5\ncredit_pct = 12.345\n"),
            "s.toml:4: ledger.credit_pct=\"12.345\": at most two decimals (a basis point) are allowed"
        );
        assert_eq!(
            e("n_users = 4\nledger = { reservation_ttl_ms = 0 }\n"),
            "s.toml:2: ledger.reservation_ttl_ms: must be at least 1"
        );
        assert_eq!(
            e("n_steps = 1\n\n[tiers]\nnew = -1.0\n").lines().next().unwrap().split(" = ").next(),
            Some("s.toml:3: tiers")
        );
    }

    #[test]
    fn a_reservation_ttl_beyond_the_bound_is_refused_naming_the_key() {
        let at = |ttl: u64| format!("[ledger]\nreservation_ttl_ms = {ttl}\n");
        let s = Scenario::from_toml_str(&at(MAX_TTL_MS), "s.toml").unwrap();
        assert_eq!(s.ledger.reservation_ttl_ms, MAX_TTL_MS);
        // 2^61, where a run's edge probes took its clock past 2^62, and TOML's largest integer,
        // where its drain took the clock out of SPEC's range of times.
        for ttl in [MAX_TTL_MS + 1, 1 << 61, i64::MAX as u64] {
            let e = Scenario::from_toml_str(&at(ttl), "s.toml").unwrap_err().to_string();
            assert!(
                e.starts_with(&format!(
                    "s.toml:2: ledger.reservation_ttl_ms = {ttl}: must be at most 31536000000 (365 days)"
                )),
                "{e}"
            );
        }
    }

    /// At the longest TTL, with clock jumps (half of them edge probes to a deadline a TTL
    /// ahead), a run keeps its schedule within the bound replay reads and its clock in SPEC's
    /// range: the reference holds, and every trace reads back.
    #[test]
    fn a_run_at_the_longest_ttl_writes_traces_replay_reads() {
        let mut s = Scenario::small();
        (s.n_users, s.n_steps) = (10, 1_000);
        s.faults.clock_jump = 0.05;
        s.faults.crash = 0.2;
        s.ledger.reservation_ttl_ms = MAX_TTL_MS;
        s.validate("s").unwrap();
        let mut probed = false;
        for seed in 0..10 {
            let (r, h) = crate::gen::run_seed(
                ledger_harness::ReferenceEngine::new,
                "reference",
                &s,
                seed,
                crate::gen::SchedulerKind::Random,
            );
            assert!(r.violations.is_empty(), "seed {seed}: {:?}", r.violations);
            probed |= h.config.reservation_ttl_ms == MAX_TTL_MS
                && h.events
                    .iter()
                    .any(|ev| matches!(ev, crate::history::Event::Jump(ms) if *ms > 2 * ledger_core::DAY_MS));
            let mut bytes = Vec::new();
            h.write_jsonl(&mut bytes).unwrap();
            let back = crate::history::History::read_jsonl(&bytes[..], "t.jsonl").unwrap();
            assert_eq!(back, h);
        }
        assert!(probed, "no seed probed a deadline a TTL ahead");
    }
}
