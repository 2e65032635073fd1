//! `ledger-plan`: capacity planning, the library behind `ledger-sim plan` and `ledger-sim merge`.
//!
//! `plan` runs many simulated days of traffic ([`scenario::PlanScenario`]) on the reference
//! engine under chosen budgets and credit percentages, K seeds per configuration, over a
//! grid of `--sweep KEY=V1,V2,...` values, and reports the pool's balance as a confidence
//! band, the chance and day of depletion, who is served free, partial or gated, and the
//! money that moved, with every invariant checked after every command.
//!
//! Work is a list of `(configuration, seed)` items in a fixed order. Each item is one
//! [`model::run`] with its own `ChaCha8Rng`, so results do not depend on the number of
//! threads; `--shard I/N` runs items `i` with `i % N == I - 1`, and `merge` puts shards
//! back together into the same bytes a single run writes. A sweep over the credit or the
//! genesis may carry an item up from the same seed's run at a lower value instead of running
//! it ([`model::Carry`], [`Plan::run_with_cost`]): the same result, so the same bytes.
//!
//! `plan --target T --solve KEY=LO..HI` ([`solve`]) answers a planning question directly:
//! the smallest (or largest) value of the key that meets the target ([`target`]), found by
//! bisection with Wald's sequential test ([`sprt`]) deciding each value on as many seeds as
//! it needs.
//!
//! `--solve` with `--over KEY2=V1,V2,...` ([`frontier`]) repeats the solve for each value of a
//! second key: the frontier, e.g. the credit needed for each trusted budget.
//!
//! It is not a load test of a real service, and it does not explore interleavings (that is
//! `ledger-sim run`).
//!
//! ```
//! use ledger_plan::{parse_sweep, Plan};
//!
//! // Ten days of 200 users, two seeds per configuration, at two credit percentages.
//! let scenario = "days = 10\nseeds = 2\n[population]\nestablished = 200\n";
//! let sweep = vec![parse_sweep("credit_pct=10,40").unwrap()];
//! let plan = Plan::new(scenario, "example.toml", &[], sweep).unwrap();
//! let out = plan.run(None, None);
//! assert_eq!(out.summaries.len(), 2);
//! assert!(out.summaries.iter().all(|s| s.violations == 0));
//! // More credit keeps more sats in the pool.
//! let last_day = |i: usize| *out.summaries[i].pool_p50.last().unwrap();
//! assert!(last_day(1) >= last_day(0));
//! ```
#![deny(missing_docs)]
#![warn(unreachable_pub)]

pub mod fit;
pub mod frontier;
pub mod history;
pub mod html;
pub mod model;
pub mod report;
pub mod scenario;
pub mod solve;
pub mod sprt;
pub mod target;
pub mod validity;

use std::collections::BTreeMap;

use rayon::prelude::*;

use self::model::{Carry, Cost, SeedResult, CARRIED_KEYS};
use self::report::{Axis, ConfigInfo, PlanOutput, Shard, FORMAT};
use self::scenario::{from_table, set_number, PlanError, PlanScenario};

/// The most configurations a sweep grid may have: each holds its scenario, and a grid of three
/// keys of a thousand values (a billion) would fill the memory before the first run.
pub const MAX_CONFIGS: usize = 100_000;

/// About how many bytes the result of one run holds until the plan is printed: its balances by
/// day (two `u64`, 16 B) and, with `--json`, the same as pretty JSON text (each number on a
/// line of its own: 10 B plus its digits, about 16 B for a 6-digit balance), plus about 1 KiB
/// for the rest of the record and its text. Measured on 2026-11-29 (release build; 2,000 seeds
/// of one user who sends nothing, so a result is its balances; peak RSS by `/usr/bin/time -f
/// %M` at 1, 1,825 and 3,650 days): 16.0 B per run-day printing a table, 42.0 B with `--json`;
/// 400 B per result for the rest, 1.1 kB with `--json`.
pub fn bytes_per_result(days: u32) -> u64 {
    u64::from(days) * (16 + 2 * 16) + 1024
}

/// A parsed plan: the base scenario and one scenario per point of the sweep grid.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The scenario file with command-line overrides, without the sweep.
    pub base: PlanScenario,
    /// The sweep axes.
    pub sweep: Vec<Axis>,
    /// The grid.
    pub configs: Vec<ConfigInfo>,
    /// The scenario of each configuration.
    pub scenarios: Vec<PlanScenario>,
}

/// The scenario TOML `text` as a document with top-level `overrides` such as
/// `("seeds", "100")` applied, after checking the file itself (so its errors name its lines).
fn document(text: &str, origin: &str, overrides: &[(&str, String)]) -> Result<toml::Table, PlanError> {
    // The scenario as read, defaults included, so that a sweep or a solve can set a parameter
    // of a distribution the file leaves at its default (`cost.estimate_sats.median`).
    let parsed = PlanScenario::from_toml_str(text, origin)?;
    let mut doc = toml::Table::try_from(&parsed)
        .map_err(|e| PlanError::Toml { origin: origin.to_owned(), message: e.to_string() })?;
    for (key, value) in overrides {
        let v: i64 = value.parse().map_err(|_| PlanError::Sweep(format!("{key}={value}: not a whole number")))?;
        doc.insert((*key).to_owned(), toml::Value::Integer(v));
    }
    Ok(doc)
}

/// The scenario `text` (read from `origin`) with each `--set KEY=V` of `settings` applied in
/// order, as TOML: what a plan, a solve or a frontier then reads as its scenario, so that a
/// question can be asked of a changed scenario without editing its file (`--set
/// population.trusted=800`). Each setting is checked as it is applied, named as given.
pub fn with_settings(text: &str, origin: &str, settings: &[String]) -> Result<String, PlanError> {
    if settings.is_empty() {
        return Ok(text.to_owned());
    }
    let mut doc = document(text, origin, &[])?;
    let mut given: Vec<(&str, &str)> = Vec::new();
    for setting in settings {
        let (key, value) = setting
            .split_once('=')
            .ok_or_else(|| PlanError::Set(format!("{setting}: expected KEY=VALUE, e.g. population.trusted=800")))?;
        let (key, value) = (key.trim(), value.trim());
        if matches!(key, "seeds" | "days") {
            return Err(PlanError::Set(format!("{setting}: give --{key} {value}")));
        }
        // The same key twice is a mistake or a leftover: neither should win unsaid.
        if let Some((_, first)) = given.iter().find(|(k, _)| *k == key) {
            return Err(PlanError::Set(format!("{key} is given twice (={first}, then ={value}): give it once")));
        }
        given.push((key, value));
        if key == "seed" {
            // The first seed: not swept (it says which runs, not what is run), but set.
            let v: i64 = value.parse().map_err(|_| {
                PlanError::Set(format!("{setting}: the first seed is a whole number in 0..=9223372036854775807"))
            })?;
            doc.insert("seed".to_owned(), toml::Value::Integer(v));
        } else {
            set_number(&mut doc, key, value).map_err(|e| match e {
                PlanError::Sweep(why) => PlanError::Set(why),
                e => e,
            })?;
        }
        from_table(doc.clone(), &format!("--set {setting}"))?;
    }
    let scenario = from_table(doc, "--set")?;
    toml::to_string(&scenario).map_err(|e| PlanError::Set(format!("the scenario cannot be written back: {e}")))
}

/// Parse `--sweep KEY=V1,V2,...`.
pub fn parse_sweep(s: &str) -> Result<Axis, PlanError> {
    let (key, values) = s.split_once('=').ok_or_else(|| PlanError::Sweep(format!("{s}: expected KEY=V1,V2,...")))?;
    let values: Vec<String> = values.split(',').map(|v| v.trim().to_owned()).collect();
    if values.iter().all(String::is_empty) {
        return Err(PlanError::Sweep(format!("{s}: no values")));
    }
    if values.iter().any(String::is_empty) {
        return Err(PlanError::Sweep(format!("{s}: an empty value (two commas, or one at an end)")));
    }
    // The same number written twice (`10,1e1,10.0`) would run the same configuration twice.
    for (i, v) in values.iter().enumerate() {
        let same = |w: &String| w == v || matches!((w.parse::<f64>(), v.parse::<f64>()), (Ok(a), Ok(b)) if a == b);
        if let Some(first) = values[..i].iter().find(|w| same(w)) {
            return Err(PlanError::Sweep(format!("{s}: {v} is {first} again; give each value once")));
        }
    }
    Ok(Axis { key: key.trim().to_owned(), values })
}

/// Parse `I/N` (1-based).
pub fn parse_shard(s: &str) -> Result<Shard, String> {
    let (i, n) = s.split_once('/').ok_or_else(|| format!("expected I/N, got {s:?}"))?;
    let index: u32 = i.parse().map_err(|_| format!("bad shard index {i:?}"))?;
    let count: u32 = n.parse().map_err(|_| format!("bad shard count {n:?}"))?;
    if count == 0 || index == 0 || index > count {
        return Err(format!("shard {s}: need 1 <= I <= N"));
    }
    Ok(Shard { index, count })
}

impl Plan {
    /// A plan from scenario TOML (`origin` names it in errors), top-level overrides such as
    /// `("seeds", "100")`, and sweep axes.
    pub fn new(text: &str, origin: &str, overrides: &[(&str, String)], sweep: Vec<Axis>) -> Result<Plan, PlanError> {
        let doc = document(text, origin, overrides)?;
        for (i, axis) in sweep.iter().enumerate() {
            if sweep[..i].iter().any(|a| a.key == axis.key) {
                return Err(PlanError::Sweep(format!(
                    "{} is swept twice: give all its values in one --sweep ({}=V1,V2,...)",
                    axis.key, axis.key
                )));
            }
        }
        if let Some(axis) = sweep.iter().find(|a| a.key == "days") {
            return Err(PlanError::Sweep(format!(
                "{}=...: days cannot be swept: the table and the report compare configurations day by day over \
                 the same days; run one plan per --days",
                axis.key
            )));
        }
        let base = from_table(doc.clone(), "command line")?;
        // Each value on its own first, named as it was given (`--sweep budget.gold=1,2`, not
        // the first configuration of the grid it is in).
        for axis in &sweep {
            let given = format!("--sweep {}={}", axis.key, axis.values.join(","));
            for value in &axis.values {
                let mut d = doc.clone();
                set_number(&mut d, &axis.key, value)?;
                from_table(d, &given)?;
            }
        }
        let mut configs = Vec::new();
        let mut scenarios = Vec::new();
        let n = sweep
            .iter()
            .try_fold(1usize, |n, a| n.checked_mul(a.values.len()))
            .filter(|&n| n <= MAX_CONFIGS)
            .ok_or_else(|| {
                let sizes: Vec<String> = sweep.iter().map(|a| a.values.len().to_string()).collect();
                PlanError::Sweep(format!(
                    "a grid of {} configurations is more than the {MAX_CONFIGS} a plan may have: sweep fewer values, \
                     or fewer keys at once",
                    sizes.join(" x ")
                ))
            })?;
        for index in 0..n {
            // Row-major: the first axis varies slowest.
            let mut at = vec![0; sweep.len()];
            let mut rest = index;
            for (k, axis) in sweep.iter().enumerate().rev() {
                at[k] = rest % axis.values.len();
                rest /= axis.values.len();
            }
            let mut d = doc.clone();
            let mut parts = Vec::new();
            for (axis, &i) in sweep.iter().zip(&at) {
                set_number(&mut d, &axis.key, &axis.values[i])?;
                parts.push(format!("{}={}", axis.key, axis.values[i]));
            }
            let label = if parts.is_empty() { "base".to_owned() } else { parts.join(" ") };
            scenarios.push(from_table(d, &format!("--sweep {label}"))?);
            configs.push(ConfigInfo { index, label, at });
        }
        Ok(Plan { base, sweep, configs, scenarios })
    }

    /// About how many bytes one run of the largest configuration holds at its end: the
    /// reference ledger keeps every request it ever decided (a repeat must get the first
    /// answer), and the checker a book for each, so memory grows with users x requests per
    /// day x days. An estimate from measured runs, to refuse a plan that cannot fit before
    /// any work, not a bound.
    pub fn bytes_per_run(&self) -> u64 {
        self.scenarios.iter().map(model::bytes_needed).max().unwrap_or(0)
    }

    /// About how many bytes the results of every item hold until the plan is printed (see
    /// [`bytes_per_result`]).
    pub fn bytes_of_results(&self) -> u64 {
        (self.n_items() as u64).saturating_mul(bytes_per_result(self.base.days))
    }

    /// Number of `(configuration, seed)` items.
    pub fn n_items(&self) -> usize {
        self.configs.len() * self.base.seeds as usize
    }

    /// Item `i`: its configuration and seed.
    pub fn item(&self, i: usize) -> (usize, u64) {
        let k = self.base.seeds as usize;
        (i / k, self.base.seed + (i % k) as u64)
    }

    /// Run the items of `shard` (all of them for `None`) on the current rayon pool, every
    /// one of them.
    pub fn run(&self, shard: Option<Shard>, progress: Option<&indicatif::ProgressBar>) -> PlanOutput {
        self.run_with_cost(shard, progress, false).0
    }

    /// [`Plan::run`], and what it cost. With `carry`, a sweep over `credit_pct` or
    /// `pool_initial_sats` runs each seed at the lowest of those values first, and carries the
    /// run up to the higher ones where the pool never bound it ([`model::Carry`]) instead of
    /// running them: the same output, byte for byte, with fewer runs.
    pub fn run_with_cost(
        &self,
        shard: Option<Shard>,
        progress: Option<&indicatif::ProgressBar>,
        carry: bool,
    ) -> (PlanOutput, Cost) {
        let items: Vec<usize> = (0..self.n_items())
            .filter(|i| shard.is_none_or(|s| i % s.count as usize == (s.index - 1) as usize))
            .collect();
        if let Some(p) = progress {
            p.set_length(items.len() as u64);
        }
        if let Some(modulus) = self.carry_modulus().filter(|_| carry) {
            return self.run_carrying(shard, items, modulus, progress);
        }
        let runs: Vec<SeedResult> = items
            .par_iter()
            .with_max_len(1)
            .map(|&i| {
                let (config, seed) = self.item(i);
                let r = model::run(&self.scenarios[config], config, seed);
                if let Some(p) = progress {
                    p.inc(1);
                }
                r
            })
            .collect();
        let requests_run = runs.iter().map(SeedResult::requests).sum();
        (self.output(shard, runs), Cost { seeds_run: items.len() as u64, requests_run, seeds_carried: 0 })
    }

    /// The modulus of the carries of this sweep ([`model::Carry`]): `None` when it sweeps
    /// neither `credit_pct` nor `pool_initial_sats`, or when a record would be too large
    /// ([`model::carry_modulus`], over every credit of the grid).
    fn carry_modulus(&self) -> Option<u64> {
        if !self.sweep.iter().any(|a| CARRIED_KEYS.contains(&a.key.as_str())) {
            return None;
        }
        let rates = self.scenarios.iter().map(|s| u64::from(s.credit_bps().to_u16()));
        model::carry_modulus(rates, self.base.days)
    }

    /// [`Plan::run_with_cost`] carrying runs up: the items fall into groups whose
    /// configurations differ only in the carried keys, for one seed; a group runs on one
    /// thread, its items in increasing order of credit and genesis, each carried up from an
    /// earlier run of the group where it can be and run otherwise.
    fn run_carrying(
        &self,
        shard: Option<Shard>,
        items: Vec<usize>,
        modulus: u64,
        progress: Option<&indicatif::ProgressBar>,
    ) -> (PlanOutput, Cost) {
        let carried_axis: Vec<bool> = self.sweep.iter().map(|a| CARRIED_KEYS.contains(&a.key.as_str())).collect();
        let mut groups: BTreeMap<(Vec<usize>, u64), Vec<usize>> = BTreeMap::new();
        for &i in &items {
            let (config, seed) = self.item(i);
            let at = self.configs[config].at.iter().zip(&carried_axis).map(|(&k, &c)| if c { 0 } else { k }).collect();
            groups.entry((at, seed)).or_default().push(i);
        }
        let order = |i: &usize| {
            let s = &self.scenarios[self.item(*i).0];
            (s.credit_bps().to_u16(), s.pool_initial_sats, *i)
        };
        let groups: Vec<Vec<usize>> = groups
            .into_values()
            .map(|mut g| {
                g.sort_by_key(order);
                g
            })
            .collect();
        let done: Vec<Vec<(usize, SeedResult, bool)>> = groups
            .par_iter()
            .with_max_len(1)
            .map(|group| {
                let mut sources: Vec<(usize, SeedResult, Carry)> = Vec::new();
                let mut out = Vec::with_capacity(group.len());
                for &i in group {
                    let (config, seed) = self.item(i);
                    let s = &self.scenarios[config];
                    let carried = sources.iter().find_map(|(c0, r0, carry)| carry.carry(r0, &self.scenarios[*c0], s));
                    let (mut result, was_carried) = match carried {
                        Some(r) => (r, true),
                        None => {
                            let (r, carry) = model::run_carried(s, seed, false, modulus);
                            if !carry.bound() && r.violations == 0 {
                                sources.push((config, r.clone(), carry));
                            }
                            (r, false)
                        }
                    };
                    result.config = config;
                    if let Some(p) = progress {
                        p.inc(1);
                    }
                    out.push((i, result, was_carried));
                }
                out
            })
            .collect();
        let mut all: Vec<(usize, SeedResult, bool)> = done.into_iter().flatten().collect();
        all.sort_by_key(|(i, _, _)| *i);
        let mut cost = Cost::default();
        for (_, r, carried) in &all {
            if *carried {
                cost.seeds_carried += 1;
            } else {
                cost.seeds_run += 1;
                cost.requests_run += r.requests();
            }
        }
        let runs = all.into_iter().map(|(_, r, _)| r).collect();
        (self.output(shard, runs), cost)
    }

    fn output(&self, shard: Option<Shard>, runs: Vec<SeedResult>) -> PlanOutput {
        let summaries = report::summarize_all(&self.configs, &runs);
        PlanOutput {
            format: FORMAT.to_owned(),
            scenario: self.base.clone(),
            sweep: self.sweep.clone(),
            configs: self.configs.clone(),
            shard,
            summaries,
            runs,
        }
    }
}

/// Combine shard outputs into the output of the whole plan.
pub fn merge(parts: Vec<PlanOutput>) -> anyhow::Result<PlanOutput> {
    merge_named(parts.into_iter().enumerate().map(|(i, p)| (format!("input {}", i + 1), p)).collect())
}

/// [`merge`] of outputs named (by their files) in its errors, which say exactly what does not
/// match: the format, the scenario (the first key that differs), the sweep, the grid, the shard
/// counts, a run outside its shard or its grid, a run given twice, a run missing.
pub fn merge_named(parts: Vec<(String, PlanOutput)>) -> anyhow::Result<PlanOutput> {
    for (name, p) in &parts {
        // A file edited by hand: `--shard` takes only 1 <= I <= N.
        if let Some(Shard { index, count }) = p.shard {
            anyhow::ensure!(
                count >= 1 && (1..=count).contains(&index),
                "{name}: shard {index}/{count}: a shard I/N has 1 <= I <= N"
            );
        }
    }
    let mut parts = parts.into_iter();
    let (first_name, first) = parts.next().ok_or_else(|| anyhow::anyhow!("merge needs at least one file"))?;
    anyhow::ensure!(first.format == FORMAT, "{first_name}: unknown format {:?} (expected {FORMAT})", first.format);
    // The other files must say the same as the first, so checking the first checks them all.
    check_plan_of(&first_name, &first)?;
    let k = first.scenario.seeds as u64;
    let base_seed = first.scenario.seed;
    let n_configs = first.configs.len();
    let mut runs = Vec::new();
    let days = first.scenario.days;
    // Per configuration, over its runs so far: requests decided, and invariant violations. A
    // summary adds them up; a file edited by hand must not wrap them around.
    let mut sums = vec![(0u64, 0u64); n_configs];
    let mut take = |name: &str, p: PlanOutput| -> anyhow::Result<()> {
        for r in &p.runs {
            let in_grid = r.config < n_configs && r.seed >= base_seed && r.seed - base_seed < k;
            anyhow::ensure!(
                in_grid,
                "{name}: run (config {}, seed {}) is outside the plan's {n_configs} configuration(s) x seeds {base_seed}..{}",
                r.config,
                r.seed,
                base_seed + k
            );
            anyhow::ensure!(
                (r.violations > 0) == r.first_violation.is_some(),
                "{name}: run (config {}, seed {}) has {} violation(s) but {} first violation",
                r.config,
                r.seed,
                r.violations,
                if r.first_violation.is_some() { "a" } else { "no" }
            );
            let (requests, violations) = &mut sums[r.config];
            let overflow = |what: &str| {
                anyhow::anyhow!(
                    "{name}: run (config {}, seed {}): its {what} and its configuration's other runs' add up to more \
                     than 2^64 - 1, which no run of the plan can give",
                    r.config,
                    r.seed
                )
            };
            *requests = r
                .served
                .iter()
                .flatten()
                .try_fold(*requests, |sum, &n| sum.checked_add(n))
                .ok_or_else(|| overflow("requests"))?;
            *violations = violations.checked_add(r.violations).ok_or_else(|| overflow("violations"))?;
            // A run of the plan covers each of its days once; a file edited or cut by hand
            // would shift every percentile of the merged report.
            let covered = [("pool_by_day", r.pool_by_day.len()), ("reserved_by_day", r.reserved_by_day.len())];
            for (field, len) in covered {
                anyhow::ensure!(
                    len == days as usize,
                    "{name}: run (config {}, seed {}) has {len} {field} entries, not one per day of the plan's {days}",
                    r.config,
                    r.seed
                );
            }
            if let Some(day) = r.depleted_day {
                anyhow::ensure!(
                    (1..=days).contains(&day),
                    "{name}: run (config {}, seed {}) ran dry on day {day}, outside the plan's days 1..={days}",
                    r.config,
                    r.seed
                );
            }
        }
        if let Some(shard) = p.shard {
            for r in &p.runs {
                let item = r.config as u64 * k + (r.seed - base_seed);
                anyhow::ensure!(
                    item % u64::from(shard.count) == u64::from(shard.index - 1),
                    "{name}: run (config {}, seed {}) does not belong to shard {}/{}",
                    r.config,
                    r.seed,
                    shard.index,
                    shard.count
                );
            }
        }
        runs.extend(p.runs);
        Ok(())
    };
    let first_shard = first.shard;
    let (scenario, sweep, configs, format) =
        (first.scenario.clone(), first.sweep.clone(), first.configs.clone(), first.format.clone());
    take(&first_name, first)?;
    for (name, p) in parts {
        anyhow::ensure!(p.format == format, "{name}: format {} differs from {first_name}'s {format}", p.format);
        if p.scenario != scenario {
            let (a, b) = (serde_json::to_value(&scenario)?, serde_json::to_value(&p.scenario)?);
            let key = first_difference(&a, &b, "");
            anyhow::bail!("{name} and {first_name} come from different scenarios ({key})");
        }
        anyhow::ensure!(p.sweep == sweep, "{name} and {first_name} come from different sweeps");
        anyhow::ensure!(p.configs == configs, "{name} and {first_name} have different grids");
        match (first_shard, p.shard) {
            (Some(a), Some(b)) if a.count != b.count => anyhow::bail!(
                "{name} is shard {}/{} but {first_name} is shard {}/{}: the shards of one plan share their count",
                b.index,
                b.count,
                a.index,
                a.count
            ),
            (Some(a), Some(b)) if a.index == b.index => {
                anyhow::bail!("{name} and {first_name} are both shard {}/{}: a shard was given twice", a.index, a.count)
            }
            (None, _) | (_, None) => {
                anyhow::bail!("{name} and {first_name}: merge takes the shards of one plan (`plan --shard I/N --json`), not whole runs")
            }
            _ => {}
        }
        take(&name, p)?;
    }
    runs.sort_by_key(|r| (r.config, r.seed));
    for w in runs.windows(2) {
        anyhow::ensure!(
            (w[0].config, w[0].seed) != (w[1].config, w[1].seed),
            "run (config {}, seed {}) appears twice: a shard was given twice",
            w[0].config,
            w[0].seed
        );
    }
    let expected = configs.len() * k as usize;
    if runs.len() != expected {
        let shards = first_shard.map_or(1, |s| s.count);
        anyhow::bail!("{} of {expected} runs present: a shard is missing (the plan has {shards})", runs.len());
    }
    let first = PlanOutput { format, scenario, sweep, configs, shard: None, summaries: Vec::new(), runs: Vec::new() };
    let summaries = report::summarize_all(&first.configs, &runs);
    Ok(PlanOutput {
        format: first.format,
        scenario: first.scenario,
        sweep: first.sweep,
        configs: first.configs,
        shard: None,
        summaries,
        runs,
    })
}

/// Checks what the shard `p` (the file `name`) says of its plan as `plan` checks a scenario
/// file and its sweeps: the scenario's every range (`plan` refuses a `name` with a control
/// character, a `credit_pct` of 500, 0 seeds or days), the sweep's keys and values, and the
/// grid they make, which must be the shard's.
fn check_plan_of(name: &str, p: &PlanOutput) -> anyhow::Result<()> {
    p.scenario.validate(name, None)?;
    for axis in &p.sweep {
        // Refused here, not in an error that would print them raw.
        anyhow::ensure!(
            !format!("{}{}", axis.key, axis.values.concat()).chars().any(char::is_control),
            "{name}: sweep {:?}={:?}: a control character",
            axis.key,
            axis.values
        );
    }
    let in_file = |e: PlanError| anyhow::anyhow!("{name}: {e}");
    let sweep = p
        .sweep
        .iter()
        .map(|a| parse_sweep(&format!("{}={}", a.key, a.values.join(","))))
        .collect::<Result<Vec<_>, _>>()
        .map_err(in_file)?;
    anyhow::ensure!(sweep == p.sweep, "{name}: sweep {:?} is not one `--sweep` gives", p.sweep);
    let text = toml::to_string(&p.scenario).map_err(|e| anyhow::anyhow!("{name}: the scenario: {e}"))?;
    let plan = Plan::new(&text, name, &[], sweep).map_err(in_file)?;
    anyhow::ensure!(
        plan.configs == p.configs,
        "{name}: its configurations are not the grid its sweep makes ({} configuration(s) given, {} in the grid)",
        p.configs.len(),
        plan.configs.len()
    );
    Ok(())
}

/// The dotted path of the first field where `a` and `b` differ.
fn first_difference(a: &serde_json::Value, b: &serde_json::Value, at: &str) -> String {
    match (a, b) {
        (serde_json::Value::Object(x), serde_json::Value::Object(y)) => {
            for (key, va) in x {
                let path = if at.is_empty() { key.clone() } else { format!("{at}.{key}") };
                match y.get(key) {
                    Some(vb) if vb == va => {}
                    Some(vb) => return first_difference(va, vb, &path),
                    None => return format!("{path}: in one only"),
                }
            }
            y.keys().find(|k| !x.contains_key(*k)).map_or_else(|| at.to_owned(), |k| format!("{at}.{k}: in one only"))
        }
        _ => format!("{at}: {b} vs {a}"),
    }
}
