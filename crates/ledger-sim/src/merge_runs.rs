//! `ledger-sim merge-runs`: the `run --json` reports of the shards of one seed range
//! (`run --seeds A..B --shard I/N --json`) combined into the report of the whole range, so
//! that a fleet (a CI matrix, Kubernetes indexed Jobs, Slurm arrays) can split a million seeds.
//!
//! The shards must be of one run: the same engine and scheduler, all steered or none, all
//! deterministic or all concurrent, and the same scenario when the reports record it. They
//! must cover their range without gaps or overlaps, and their sizes must be those of one split
//! (`--shard` slices differ by at most one seed, the larger first). A report that says which
//! shard it is (`"shard": {"index": I, "count": N, "seeds": "A..B"}`) is checked to be one of
//! a complete set; without that, a missing first or last shard cannot be told from a smaller
//! range. Among shards, reports of `run --seeds A..B` without `--shard` fill what the shards
//! left (the rest of a shard a signal stopped, which its stderr says how to run, or a lost
//! shard run again) when the reports record their scenario: a seed runs alike in any run of
//! the same engine, scheduler and scenario.
//!
//! A report of a run a signal stopped (`interrupted_by`) never merges into a report that looks
//! whole: when no other report covers the seeds it left, or the signal cut its shrinking
//! short, the merged report keeps the mark and `merge-runs` ends as `run` did (the seeds not
//! run and the command that runs them said, exit 128 + N); a shard cut short before another
//! is refused, naming it.
//!
//! Steps, requests, coverage and `seeds_reaching` add up, refused when a sum overflows;
//! each invariant's counterexample is the one of the lowest seed that broke it, and its list of
//! breaking seeds is the union; `never_reached` follows from `seeds_reaching`. Steering adds
//! up mark by mark (its warm-up seeds are every shard's), and each mark's favoured options are
//! the latest shard's. The trace hash is the shards' hashes put together in seed order
//! (`concat_trace_hashes`): the hash one run over the whole range prints; concurrent runs,
//! which have none (`"trace_hash": null, "deterministic": false`, or in reports of an older
//! `run` the text [`OLD_CONCURRENT_HASH`]), merge to none.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use ledger_simulator::report::MAX_BREAKING;
use serde_json::{json, Map, Value};

/// `ledger-sim merge-runs` arguments.
#[derive(clap::Args, Debug)]
pub struct MergeRunsArgs {
    /// `run --json` outputs of `run --seeds A..B --shard I/N`, and of `run --seeds A..B` (ranges
    /// run apart, or what shards left: the rest of a shard a signal stopped).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Also write the verdict as JUnit XML.
    #[arg(long, value_name = "FILE.xml")]
    pub junit: Option<PathBuf>,
    /// The merged report is always one JSON object, as `run --json` prints it: taken for
    /// symmetry with `run` and `merge`, and changes nothing.
    #[arg(long)]
    pub json: bool,
}

/// What a concurrent run of an older `run` wrote for its trace hash, which it has not; it now
/// writes `null`, and `"deterministic": false`. Reports on disk still merge.
const OLD_CONCURRENT_HASH: &str = "concurrent (not deterministic)";

struct Part {
    name: String,
    seeds: (u64, u64),
    /// Which shard of which range the report says it is (`run --shard I/N`), if it does.
    shard: Option<Shard>,
    /// The signal that stopped its run (`interrupted_by`), if one did.
    signal: Option<i32>,
    report: Map<String, Value>,
}

impl Part {
    /// Whether an invariant broke in its seeds (a run under `--fail-fast` stops at the first).
    fn broke(&self) -> bool {
        self.report["violations"].as_array().is_some_and(|v| !v.is_empty())
    }

    /// What runs the seeds `rest` it did not, and what becomes of that run's report.
    fn rest_command(&self, rest: (u64, u64)) -> String {
        let options =
            if self.shard.is_some() { "the shard's other options, without `--shard`" } else { "its other options" };
        format!(
            "`ledger-sim run --seeds {}..{}` ({options}) runs them, and its report merges with these",
            rest.0, rest.1
        )
    }
}

/// `run --shard I/N` of the range `whole`, as a `--json` report records it.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Shard {
    index: u64,
    count: u64,
    whole: (u64, u64),
}

impl Shard {
    fn parse(name: &str, v: &Value) -> anyhow::Result<Shard> {
        let (index, count) = (v["index"].as_u64(), v["count"].as_u64());
        let whole = v["seeds"].as_str().and_then(parse_range);
        let (Some(index), Some(count), Some(whole)) = (index, count, whole) else {
            anyhow::bail!("{name}: shard {v} is not {{\"index\": I, \"count\": N, \"seeds\": \"A..B\"}}")
        };
        let shard = Shard { index, count, whole };
        anyhow::ensure!((1..=count).contains(&index), "{name}: {shard} does not exist");
        anyhow::ensure!(
            whole.1 - whole.0 >= count,
            "{name}: {shard}: the range has fewer seeds than shards, which `run --shard` refuses"
        );
        Ok(shard)
    }

    /// The seeds `run --shard I/N` gives this shard: contiguous slices, the remainder spread
    /// over the first ones (as `run` cuts them).
    fn slice(self) -> (u64, u64) {
        self.slice_of(self.index)
    }

    /// The shard of the same split that runs `seed` (of its range), and its seeds.
    fn slice_at(self, seed: u64) -> (u64, (u64, u64)) {
        // The first `len % n` slices have a seed more than the others (`len / n` >= 1).
        let (len, n) = (self.whole.1 - self.whole.0, self.count);
        let (small, larger) = (len / n, len % n);
        let offset = seed.saturating_sub(self.whole.0);
        let index = match offset / (small + 1) {
            k if k < larger => k + 1,
            _ => larger + (offset - larger * (small + 1)) / small + 1,
        };
        let index = index.min(n);
        (index, self.slice_of(index))
    }

    /// The seeds of shard `index` of the same split.
    fn slice_of(self, index: u64) -> (u64, u64) {
        let (len, n) = (self.whole.1 - self.whole.0, self.count);
        let at = |k: u64| self.whole.0 + k * (len / n) + k.min(len % n);
        (at(index - 1), at(index))
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "shard {}/{} of {}..{}", self.index, self.count, self.whole.0, self.whole.1)
    }
}

fn parse_range(s: &str) -> Option<(u64, u64)> {
    s.split_once("..").and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?))).filter(|(a, b)| a < b)
}

fn read(path: &Path) -> anyhow::Result<Part> {
    let name = path.display().to_string();
    let text = crate::input::read_text(path)?;
    let value: Value = serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{name}: not a run report: {e}"))?;
    let Value::Object(report) = value else { anyhow::bail!("{name}: not a run report (not a JSON object)") };
    for key in ["engine", "scheduler", "seeds", "steps", "requests", "violations", "coverage", "trace_hash"] {
        anyhow::ensure!(report.contains_key(key), "{name}: not a run report (no {key:?})");
    }
    let seeds = report["seeds"].as_str().unwrap_or_default();
    let empty = seeds.split_once("..").is_some_and(|(a, b)| a == b && a.parse::<u64>().is_ok());
    anyhow::ensure!(
        !empty,
        "{name}: seeds {seeds:?} covers no seed (a run stopped before its first, by a signal): leave it out"
    );
    let seeds = parse_range(seeds).ok_or_else(|| anyhow::anyhow!("{name}: seeds {seeds:?} is not a range A..B"))?;
    let shard = report.get("shard").map(|s| Shard::parse(&name, s)).transpose()?;
    let signal =
        match report.get("interrupted_by") {
            None | Some(Value::Null) => None,
            Some(v) => {
                let named = |n: &i32| v.as_str().is_some_and(|v| signal_hook::low_level::signal_name(*n) == Some(v));
                let signal = (1..=64).find(named);
                Some(signal.ok_or_else(|| {
                    anyhow::anyhow!("{name}: interrupted_by {v} is not a signal's name (\"SIGTERM\")")
                })?)
            }
        };
    let part = Part { name, seeds, shard, signal, report };
    trace_hash(&part)?;
    Ok(part)
}

/// A shard's trace hash: `Some` for a deterministic run, `None` for a concurrent one, which has
/// none (`null`, or the text of an older `run`); refused when it is neither, or when
/// `deterministic` (absent from older reports) says otherwise.
fn trace_hash(p: &Part) -> anyhow::Result<Option<u64>> {
    let v = &p.report["trace_hash"];
    let hash = match v {
        Value::Null => None,
        Value::String(h) if h == OLD_CONCURRENT_HASH => None,
        Value::String(h) if u64::from_str_radix(h, 16).is_ok() => u64::from_str_radix(h, 16).ok(),
        _ => anyhow::bail!("{}: trace_hash {v} is neither a hex number nor null", p.name),
    };
    match p.report.get("deterministic") {
        None => {}
        Some(Value::Bool(d)) => {
            anyhow::ensure!(*d == hash.is_some(), "{}: deterministic is {d} but trace_hash is {v}", p.name)
        }
        Some(d) => anyhow::bail!("{}: deterministic {d} is neither true nor false", p.name),
    }
    Ok(hash)
}

fn u64_of(name: &str, v: &Value, what: &str) -> anyhow::Result<u64> {
    match v.as_i64() {
        Some(n) if n < 0 => anyhow::bail!("{name}: {what} is negative ({n}): a count is a whole number from 0"),
        _ => v.as_u64().ok_or_else(|| anyhow::anyhow!("{name}: {what} is not a whole number")),
    }
}

/// Refuses a key of the counts `v` that names no coverage mark: a report no run of this build
/// wrote (edited, or of another version), whose sums would count what nothing measured.
fn check_marks(name: &str, v: &Value, what: &str) -> anyhow::Result<()> {
    if let Value::Object(counts) = v {
        for k in counts.keys() {
            anyhow::ensure!(
                ledger_simulator::coverage::Mark::ALL.iter().any(|m| m.name() == k),
                "{name}: {what} counts {k:?}, which is no coverage mark a run writes (an edited report, or one of \
                 another version)"
            );
        }
    }
    Ok(())
}

/// `sum + v[what]`, refused when `v` is not a count or the sum does not fit a `u64`.
fn add(sum: u64, name: &str, v: &Value, what: &str) -> anyhow::Result<u64> {
    let n = u64_of(name, v, what)?;
    sum.checked_add(n).ok_or_else(|| {
        anyhow::anyhow!(
            "{name}: {what} {n} overflows the sum of the other shards' ({sum}): the counts cannot be merged"
        )
    })
}

/// Adds every count of the object `v` into `sum`, key by key.
/// A finding's `seeds_unlisted`: 0 when absent (as a run writes it when every seed is listed).
fn unlisted(v: &Value, name: &str) -> anyhow::Result<u64> {
    match v.get("seeds_unlisted") {
        None => Ok(0),
        Some(n) => {
            n.as_u64().ok_or_else(|| anyhow::anyhow!("{name}: seeds_unlisted {n} is not a whole number of seeds"))
        }
    }
}

fn add_counts(sum: &mut BTreeMap<String, u64>, name: &str, v: &Value, what: &str) -> anyhow::Result<()> {
    let Value::Object(counts) = v else { anyhow::bail!("{name}: {what} is not an object") };
    for (k, v) in counts {
        let total = sum.entry(k.clone()).or_default();
        *total = add(*total, name, v, &format!("{what}.{k}"))?;
    }
    Ok(())
}

/// What makes a report the shard of one run rather than another, as `(what, value)` pairs.
fn identity(p: &Part) -> Vec<(&'static str, Value)> {
    let hash_kind = match trace_hash(p) {
        Ok(None) => "concurrent (no trace hash)",
        _ => "deterministic (a trace hash)",
    };
    let steered = if p.report.contains_key("steering") { "--steer" } else { "no --steer" };
    vec![
        ("engine", p.report["engine"].clone()),
        ("scheduler", p.report["scheduler"].clone()),
        ("steering", json!(steered)),
        ("run kind", json!(hash_kind)),
        ("scenario", p.report.get("scenario").cloned().unwrap_or_else(|| json!("not recorded"))),
    ]
}

/// The first few paths at which `a` and `b` differ, with both values.
fn differences(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    if out.len() >= 4 || a == b {
        return;
    }
    if let (Value::Object(x), Value::Object(y)) = (a, b) {
        let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
        for k in keys {
            let (u, v) = (x.get(k).unwrap_or(&Value::Null), y.get(k).unwrap_or(&Value::Null));
            differences(&format!("{path}.{k}"), u, v, out);
        }
        return;
    }
    out.push(format!("{path} {a} vs {b}"));
}

fn check_same_run(parts: &[Part]) -> anyhow::Result<()> {
    let first = &parts[0];
    let want = identity(first);
    for p in &parts[1..] {
        for ((what, a), (_, b)) in want.iter().zip(identity(p)) {
            if *a == b {
                continue;
            }
            let mut diff = Vec::new();
            differences(what, a, &b, &mut diff);
            let detail = if diff.is_empty() { format!("{what} {a} vs {b}") } else { diff.join(", ") };
            anyhow::bail!(
                "{} and {} are shards of different runs ({detail}): merge the shards of one run",
                first.name,
                p.name
            );
        }
    }
    Ok(())
}

/// The reports, in seed order, must tile their range as `run --shard I/N` cuts one: no gap,
/// no overlap. Reports that say which shard they are are checked as a set
/// ([`check_shard_set`]); others, as ranges that tile, and as the sizes of one split when
/// they do not record their scenario either (a last shard that broke an invariant may have
/// stopped early under `--fail-fast`).
fn check_tiling(parts: &[Part]) -> anyhow::Result<()> {
    if parts.iter().any(|p| p.shard.is_some()) {
        return check_shard_set(parts);
    }
    for w in parts.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        anyhow::ensure!(
            a.seeds.1 == b.seeds.0,
            "{} covers seeds {}..{} and {} starts at {}: {}",
            a.name,
            a.seeds.0,
            a.seeds.1,
            b.name,
            b.seeds.0,
            if a.seeds.1 > b.seeds.0 { "they overlap (a shard given twice?)" } else { "a shard is missing" }
        );
    }
    // Reports that do not say which shard they are: adjacent ranges run apart
    // (`--seeds 0..1000` here, `--seeds 1000..5000` there) merge as they tile.
    if parts.iter().all(|p| !p.report.contains_key("scenario")) {
        return check_split_sizes(parts);
    }
    Ok(())
}

/// For reports of an older `run` that record neither their scenario nor their shard: sizes as
/// one `--shard I/N` split cuts them, the only sign left that they are of one run.
fn check_split_sizes(parts: &[Part]) -> anyhow::Result<()> {
    let size = |p: &Part| p.seeds.1 - p.seeds.0;
    let last_may_be_cut =
        parts.last().is_some_and(|p| p.report["violations"].as_array().is_some_and(|v| !v.is_empty()));
    let judged = &parts[..parts.len() - usize::from(last_may_be_cut)];
    for w in judged.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        let fits = size(a) >= size(b) && size(a) - size(b) <= 1 && size(&judged[0]) - size(b) <= 1;
        anyhow::ensure!(
            fits,
            "{} has {} seeds and {} has {}: the shards of one `run --shard I/N` differ by at most one seed, \
             the larger first (shards of different splits of the range?)",
            a.name,
            size(a),
            b.name,
            size(b)
        );
    }
    Ok(())
}

/// With reports that say which shard of how many of which range they are: one split, every
/// shard at most once, each where `--shard` puts it, and every seed of the range in one
/// report; a shard missing, or cut short, is named. Reports of `run --seeds A..B` without
/// `--shard` fill what shards left (the rest of a shard a signal stopped, which its stderr
/// says how to run, or a missing shard run again), when the reports record their scenario:
/// a seed runs the same in any run of the same engine, scheduler and scenario (checked by
/// [`check_same_run`]), and shards are no more than ranges.
fn check_shard_set(parts: &[Part]) -> anyhow::Result<()> {
    let (first, one) = parts.iter().find_map(|p| Some((p, p.shard?))).expect("a shard set has a shard");
    let mut seen: BTreeMap<u64, &str> = BTreeMap::new();
    for p in parts {
        let Some(s) = p.shard else {
            anyhow::ensure!(
                first.report.contains_key("scenario"),
                "{} says which shard it is and {} does not, and they do not record their scenario: {} cannot be \
                 told to be of the same run (a report of `run --seeds A..B` fills a gap of shards when the reports \
                 record it)",
                first.name,
                p.name,
                p.name
            );
            anyhow::ensure!(
                one.whole.0 <= p.seeds.0 && p.seeds.1 <= one.whole.1,
                "{} covers seeds {}..{}, outside {}..{}, the range of the shards ({} is {one}): reports of different runs",
                p.name,
                p.seeds.0,
                p.seeds.1,
                one.whole.0,
                one.whole.1,
                first.name
            );
            continue;
        };
        let inside = one.whole.0 <= s.whole.0 && s.whole.1 <= one.whole.1;
        let why = if s.whole != one.whole && inside {
            "shards of different runs (the rest of a shard a signal stopped is run with `--seeds` alone, without \
             `--shard`: its report then fills the gap)"
        } else if s.whole != one.whole {
            "shards of different runs"
        } else {
            "the shard counts differ (shards of different splits of one range: merge the shards of one `--shard I/N`)"
        };
        anyhow::ensure!(
            (s.count, s.whole) == (one.count, one.whole),
            "{} is {s} but {} is {one}: {why}",
            p.name,
            first.name
        );
        if let Some(other) = seen.insert(s.index, &p.name) {
            anyhow::bail!("{other} and {} are both shard {}/{}", p.name, s.index, s.count);
        }
        let slice = s.slice();
        anyhow::ensure!(
            p.seeds.0 == slice.0 && p.seeds.1 <= slice.1,
            "{} covers seeds {}..{} but {s} is {}..{}",
            p.name,
            p.seeds.0,
            p.seeds.1,
            slice.0,
            slice.1
        );
    }
    // The reports in seed order, with what lies between them (and before the first, and after
    // the last) that none covers.
    let mut gaps = Vec::new();
    let mut at = one.whole.0;
    let mut before: Option<&Part> = None;
    for p in parts {
        if let Some(b) = before.filter(|_| p.seeds.0 < at) {
            anyhow::bail!(
                "{} covers seeds {}..{} and {} covers seeds {}..{}: they overlap (a report given twice, or a rest \
                 run over more than its shard left?)",
                b.name,
                b.seeds.0,
                b.seeds.1,
                p.name,
                p.seeds.0,
                p.seeds.1
            );
        }
        if p.seeds.0 > at {
            gaps.push(describe_gap(one, (at, p.seeds.0), before, Some(p)));
        }
        (at, before) = (p.seeds.1, Some(p));
    }
    // The last report may stop inside the last shard's slice: when a signal stopped its run
    // (the merged report is then cut short too, see [`stops`]), or when it broke an invariant
    // (a run under `--fail-fast` stops at the first).
    let last_slice = one.slice_of(one.count);
    let cut_last = before.is_some_and(|p| (p.signal.is_some() || p.broke()) && p.seeds.1 > last_slice.0);
    if at < one.whole.1 && !cut_last {
        gaps.push(describe_gap(one, (at, one.whole.1), before, None));
    }
    anyhow::ensure!(gaps.is_empty(), "{}", gaps.join("; "));
    Ok(())
}

/// What no report covers of the seeds `gap` of the split `split`, between the reports
/// `before` and `after` (each absent at an end of the range): the seeds a shard cut short
/// left, the seeds of a shard in no report, and the shards missing.
fn describe_gap(split: Shard, gap: (u64, u64), before: Option<&Part>, after: Option<&Part>) -> String {
    let mut said = Vec::new();
    // The report before the gap, when it stopped inside a shard's slice: a shard cut short,
    // or a run of the rest that a signal stopped too.
    let cut = before
        .filter(|p| p.shard.is_some() || p.signal.is_some())
        .map(|p| (p, split.slice_at(p.seeds.1 - 1)))
        .filter(|(p, (_, slice))| p.seeds.1 < slice.1);
    if let Some((p, (i, slice))) = cut {
        let rest = (p.seeds.1, slice.1.min(gap.1));
        let covers = match p.shard {
            Some(s) => {
                format!("{} ({s}) covers seeds {}..{} of its {}..{}", p.name, p.seeds.0, p.seeds.1, slice.0, slice.1)
            }
            None => format!("{} covers seeds {}..{}, in shard {i}/{}", p.name, p.seeds.0, p.seeds.1, split.count),
        };
        let why = match p.signal {
            Some(sig) => format!(", as {} stopped it: {}", crate::interrupt::name(sig), p.rest_command(rest)),
            None if p.broke() => format!(", as it stopped at a violation (`--fail-fast`): {}", p.rest_command(rest)),
            None => ", and its report says neither that a signal stopped it (`interrupted_by`) nor that it broke an \
                     invariant (`--fail-fast`)"
                .to_owned(),
        };
        said.push(format!("{covers}: seeds {}..{} were not run{why}", rest.0, rest.1));
    }
    // The shards whose slices the gap touches, `lo..=hi`: those at its ends may lie partly in
    // it (the first one is the cut shard's when there is one, said above), the others are
    // missing.
    let (mut lo, mut hi) = (split.slice_at(gap.0).0, split.slice_at(gap.1 - 1).0);
    let in_gap = |i: u64| {
        let slice = split.slice_of(i);
        let (from, to) = (slice.0.max(gap.0), slice.1.min(gap.1));
        ((from, to) != slice).then(|| format!("seeds {from}..{to} of shard {i}/{} are in no report", split.count))
    };
    if let Some(partly) = in_gap(lo) {
        if cut.is_none() {
            said.push(partly);
        }
        lo += 1;
    }
    let tail = if lo <= hi { in_gap(hi) } else { None };
    if tail.is_some() {
        hi -= 1;
    }
    // Where the gap is, unless a statement already names the report before it.
    let mut placed = cut.is_some();
    let whole = format!("{}..{}", split.whole.0, split.whole.1);
    if lo <= hi {
        let n = split.count;
        let list = if hi - lo < 8 {
            (lo..=hi).map(|i| format!("{i}/{n}")).collect::<Vec<_>>().join(", ")
        } else {
            format!("{lo}/{n} to {hi}/{n} ({} shards)", hi - lo + 1)
        };
        let seeds = format!("seeds {}..{}", split.slice_of(lo).0, split.slice_of(hi).1);
        said.push(match (before, after) {
            (Some(b), Some(a)) if said.is_empty() => {
                placed = true;
                format!(
                    "{} covers seeds {}..{} and {} starts at {}: a shard is missing, shard(s) {list} of {whole} ({seeds})",
                    b.name, b.seeds.0, b.seeds.1, a.name, a.seeds.0
                )
            }
            _ => format!("shard(s) {list} of {whole} missing ({seeds})"),
        });
    }
    said.extend(tail);
    let mut text = said.join(", and ");
    match (before, after) {
        _ if placed => {}
        (None, Some(a)) => text += &format!(", before {} (the first report)", a.name),
        (Some(b), None) => text += &format!(", after {} (the last report)", b.name),
        (Some(b), Some(a)) => text += &format!(", between {} and {}", b.name, a.name),
        (None, None) => {}
    }
    text
}

/// The shards' trace hashes folded in seed order; `None` for a concurrent run's shards, which
/// have none to fold.
fn fold_hashes(parts: &[Part]) -> anyhow::Result<Option<String>> {
    let mut hash = ledger_simulator::report::EMPTY_TRACE_HASH;
    for p in parts {
        // Same run kind for all (checked): a concurrent run's shards have no hash to fold.
        let Some(h) = trace_hash(p)? else { return Ok(None) };
        hash = ledger_simulator::report::concat_trace_hashes(hash, h, p.seeds.1 - p.seeds.0);
    }
    Ok(Some(format!("{hash:016x}")))
}

/// The `steering` sections of steered shards merged: counts add up, each mark's favoured
/// options are those of the latest shard that aimed at it.
fn merge_steering(parts: &[Part]) -> anyhow::Result<Value> {
    let first = &parts[0].report["steering"];
    let (mut aimed, mut warmup) = (0u64, 0u64);
    let mut boosted: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut favoured: Map<String, Value> = Map::new();
    for p in parts {
        let s = &p.report["steering"];
        for key in ["block", "window_blocks"] {
            anyhow::ensure!(
                s[key] == first[key],
                "{} steered with {key} {} but {} with {}: shards of different runs",
                p.name,
                s[key],
                parts[0].name,
                first[key]
            );
        }
        aimed = add(aimed, &p.name, &s["aimed_seeds"], "steering.aimed_seeds")?;
        warmup = add(warmup, &p.name, &s["warmup_seeds"], "steering.warmup_seeds")?;
        let Value::Object(marks) = &s["boosted"] else {
            anyhow::bail!("{}: steering.boosted is not an object", p.name)
        };
        for (mark, b) in marks {
            let (a, r) = boosted.entry(mark.clone()).or_default();
            *a = add(*a, &p.name, &b["aimed_seeds"], &format!("steering.boosted.{mark}.aimed_seeds"))?;
            *r = add(*r, &p.name, &b["reached"], &format!("steering.boosted.{mark}.reached"))?;
        }
        if let Some(Value::Object(f)) = s.get("favoured") {
            favoured.extend(f.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
    let boosted: Map<String, Value> =
        boosted.into_iter().map(|(k, (a, r))| (k, json!({ "aimed_seeds": a, "reached": r }))).collect();
    Ok(json!({
        "block": first["block"],
        "window_blocks": first["window_blocks"],
        "aimed_seeds": aimed,
        "warmup_seeds": warmup,
        "boosted": boosted,
        "favoured": favoured,
    }))
}

/// How a signal that stopped one of the runs merged shows in the merged report.
enum Stop {
    /// It left the seeds `rest`, at the end of the range, which no report covers.
    Seeds((u64, u64)),
    /// It came once every seed of its run had run, while their counterexamples were shrunk.
    Shrinking,
    /// The last of ranges run apart: whether it left seeds, and which, the report does not
    /// say (its run's stderr did).
    Unknown,
}

/// The signals that stopped runs merged whose mark the merged report keeps, with what each
/// did: one that left seeds no other report covers, or that cut shrinking short. A signal
/// that stopped a run whose seeds left the next report covers (the rest, run as its stderr
/// said) leaves no mark: every seed has run.
fn stops(parts: &[Part]) -> Vec<(&Part, i32, Stop)> {
    let whole = parts.iter().find_map(|p| p.shard).map(|s| s.whole);
    let mut stops = Vec::new();
    for (k, p) in parts.iter().enumerate() {
        let Some(signal) = p.signal else { continue };
        let last = k + 1 == parts.len();
        let stop = match (p.shard, whole) {
            // A shard that ran its whole slice was stopped while shrinking.
            (Some(s), _) if p.seeds.1 == s.slice().1 => Stop::Shrinking,
            // The next report covers the seeds after it (the tiling is checked).
            _ if !last => continue,
            (_, Some(whole)) if p.seeds.1 < whole.1 => Stop::Seeds((p.seeds.1, whole.1)),
            (_, Some(_)) => Stop::Shrinking,
            (_, None) => Stop::Unknown,
        };
        stops.push((p, signal, stop));
    }
    stops
}

/// What the command line says of a run merged that a signal stopped, and how `merge-runs`
/// then ends, as the run did: by that signal (exit 128 + its number), the merged report
/// printed, covering a range from the first seed.
fn stopped(parts: &[Part], stops: &[(&Part, i32, Stop)]) -> Option<(crate::interrupt::Interrupted, Vec<String>)> {
    let ran = (parts[0].seeds.0, parts[parts.len() - 1].seeds.1);
    let mut said = Vec::new();
    for (p, signal, stop) in stops {
        let (name, by) = (&p.name, crate::interrupt::name(*signal));
        let which = p.shard.map(|s| format!(" ({s})")).unwrap_or_default();
        let (a, b) = p.seeds;
        said.push(match stop {
            Stop::Seeds(rest) => format!(
                "{name}{which} was stopped by {by} after seeds {a}..{b}: seeds {}..{} were not run; {}",
                rest.0,
                rest.1,
                p.rest_command(*rest)
            ),
            Stop::Shrinking => format!(
                "{name}{which} was stopped by {by} once its seeds {a}..{b} had run, while their counterexamples were \
                 shrunk: one whose shrinking it cut short is written as far as it got (a run of its seed alone, \
                 `--seeds S..S+1`, shrinks it again)"
            ),
            Stop::Unknown => format!(
                "{name}, the last report, was stopped by {by} after seeds {a}..{b}: the seeds its run was asked for \
                 after {b} were not run{} (its stderr said which); `ledger-sim run --seeds {b}..B` (its other \
                 options) runs them, and its report merges with these",
                if p.broke() {
                    ", or, if it had run them all, the shrinking of its counterexamples was cut short"
                } else {
                    ""
                }
            ),
        });
    }
    // The signal that left seeds, if one did: the merged run is cut short by it.
    let (_, signal, stop) = stops.iter().find(|(_, _, s)| matches!(s, Stop::Seeds(_))).or(stops.first())?;
    let asked = match stop {
        Stop::Seeds(rest) => Some((ran.0, rest.1)),
        _ => None,
    };
    let while_shrinking = stops.iter().all(|(_, _, s)| matches!(s, Stop::Shrinking));
    Some((crate::interrupt::Interrupted { signal: *signal, ran, asked, while_shrinking, sharded: false }, said))
}

/// A merged report, whether no invariant broke, and the signal that stopped the merged run
/// (one of the runs merged) with what the command line says of it, if one did.
pub struct Merged {
    pub report: Value,
    pub ok: bool,
    stopped: Option<(crate::interrupt::Interrupted, Vec<String>)>,
}

/// The merged report, whether no invariant broke, and whether a signal stopped it.
pub fn merge(files: &[PathBuf]) -> anyhow::Result<Merged> {
    let mut parts = files.iter().map(|f| read(f)).collect::<anyhow::Result<Vec<_>>>()?;
    parts.sort_by_key(|p| p.seeds);
    check_same_run(&parts)?;
    check_tiling(&parts)?;
    let stopped = stopped(&parts, &stops(&parts));
    let first = &parts[0];
    let (mut steps, mut requests) = (0u64, 0u64);
    let mut coverage: BTreeMap<String, u64> = BTreeMap::new();
    let mut violations: BTreeMap<String, Value> = BTreeMap::new();
    // How many seeds reached each mark, when every shard says (an in-memory run's report).
    let mut seeds_reaching: Option<BTreeMap<String, u64>> = Some(BTreeMap::new());
    for p in &parts {
        match (&mut seeds_reaching, p.report.get("seeds_reaching")) {
            (Some(sum), Some(marks)) => {
                check_marks(&p.name, marks, "seeds_reaching")?;
                add_counts(sum, &p.name, marks, "seeds_reaching")?
            }
            _ => seeds_reaching = None,
        }
        steps = add(steps, &p.name, &p.report["steps"], "steps")?;
        requests = add(requests, &p.name, &p.report["requests"], "requests")?;
        check_marks(&p.name, &p.report["coverage"], "coverage")?;
        add_counts(&mut coverage, &p.name, &p.report["coverage"], "coverage")?;
        let Value::Array(vs) = &p.report["violations"] else { anyhow::bail!("{}: violations is not a list", p.name) };
        for v in vs {
            let inv = v["invariant"].as_str().unwrap_or_default().to_owned();
            anyhow::ensure!(
                is_finding(&inv),
                "{}: a violation of invariant {}, which is none of I1 to I8 nor another finding a run reports ({}) \
                 (an edited report, or one of another version)",
                p.name,
                v["invariant"],
                OTHER_FINDINGS
                    .iter()
                    .copied()
                    .chain(ledger_exec::FailureKind::ALL.map(|k| k.id()))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            match violations.get_mut(&inv) {
                // Parts are in seed order: the first one to break it keeps its counterexample.
                None => {
                    violations.insert(inv, v.clone());
                }
                Some(kept) => {
                    let more = v["seeds"].as_array().cloned().unwrap_or_default();
                    if let Some(Value::Array(seeds)) = kept.get_mut("seeds") {
                        seeds.extend(more);
                    }
                    let unlisted = unlisted(kept, &p.name)?.checked_add(unlisted(v, &p.name)?);
                    kept["seeds_unlisted"] =
                        json!(unlisted
                            .ok_or_else(|| anyhow::anyhow!("{}: seeds_unlisted overflows when added", p.name))?);
                }
            }
        }
    }
    // As one run lists them: the first MAX_BREAKING seeds, the rest counted.
    for v in violations.values_mut() {
        let cut = match v.get_mut("seeds") {
            Some(Value::Array(seeds)) if seeds.len() > MAX_BREAKING => seeds.split_off(MAX_BREAKING).len() as u64,
            _ => 0,
        };
        let total = unlisted(v, "the merged report")? + cut;
        match v.as_object_mut() {
            Some(o) if total > 0 => {
                o.insert("seeds_unlisted".to_owned(), json!(total));
            }
            Some(o) => {
                o.remove("seeds_unlisted");
            }
            None => {}
        }
    }
    let ok = violations.is_empty();
    let trace_hash = fold_hashes(&parts)?;
    let mut merged = json!({
        "engine": first.report["engine"],
        "scheduler": first.report["scheduler"],
        "seeds": format!("{}..{}", parts[0].seeds.0, parts[parts.len() - 1].seeds.1),
        "steps": steps,
        "requests": requests,
        "violations": violations.into_values().collect::<Vec<_>>(),
        "coverage": coverage,
        "trace_hash": trace_hash,
        "deterministic": trace_hash.is_some(),
        "shards": parts.len(),
    });
    if let Some(scenario) = first.report.get("scenario") {
        merged["scenario"] = scenario.clone();
    }
    if let Some(marks) = seeds_reaching {
        let never: Vec<&String> = marks.iter().filter(|(_, n)| **n == 0).map(|(k, _)| k).collect();
        merged["never_reached"] = json!(never);
        merged["seeds_reaching"] = json!(marks);
    }
    if first.report.contains_key("steering") {
        merged["steering"] = merge_steering(&parts)?;
    }
    if let Some((stop, _)) = &stopped {
        merged["interrupted_by"] = json!(crate::interrupt::name(stop.signal));
    }
    Ok(Merged { report: merged, ok, stopped })
}

/// The findings a run reports besides a broken invariant and an exec implementation's own
/// failure ([`ledger_exec::FailureKind`]): a divergence from the reference, and a concurrent
/// run's call given up (`engine_error`) or deadlock the server broke.
const OTHER_FINDINGS: [&str; 3] = ["divergence", "engine_error", "deadlock"];

/// Whether `id` names what a run reports: an invariant, or another finding of a run (a shard
/// report's findings are merged, never refused as unknown).
fn is_finding(id: &str) -> bool {
    ledger_harness::Invariant::ALL.iter().any(|i| i.id() == id)
        || OTHER_FINDINGS.contains(&id)
        || ledger_exec::FailureKind::ALL.iter().any(|k| k.id() == id)
}

/// `ledger-sim merge-runs`: prints the merged report as JSON; true when no invariant broke. A
/// merged run that a signal stopped (one of the runs merged, whose seeds left no report covers
/// or whose shrinking it cut short) ends as the run did: `interrupted_by` in the report, what
/// was not run said on stderr, and the error [`crate::interrupt::Interrupted`] (exit 128 + N).
pub fn merge_runs_cmd(args: MergeRunsArgs) -> anyhow::Result<bool> {
    if let Some(path) = &args.junit {
        args.files.iter().for_each(|f| crate::input::will_read(f));
        crate::input::check_output("--junit", path)?;
    }
    let Merged { report: merged, ok, stopped } = merge(&args.files)?;
    if let Some(path) = &args.junit {
        let reports: Vec<ledger_simulator::report::ViolationReport> =
            serde_json::from_value(merged["violations"].clone())?;
        let engine = merged["engine"].as_str().unwrap_or_default();
        let checked = ledger_harness::Invariant::judged_for(engine);
        let seeds = merged["seeds"].as_str().unwrap_or_default();
        // What the runs could not judge, as their coverage counted it (I8's undecided seeds).
        let mut unjudged = ledger_simulator::coverage::Coverage::default();
        if let Some(n) = merged["coverage"]["linearizability_undecided"].as_u64() {
            unjudged.0.insert("linearizability_undecided", n);
        }
        let deterministic = merged["deterministic"].as_bool().unwrap_or(true);
        let shards = format!("from {} shard(s)", merged["shards"].as_u64().unwrap_or(args.files.len() as u64));
        let suite = crate::junit::suite_name("merge-runs", engine, deterministic, seeds, Some(&shards));
        crate::junit::write(path, &crate::junit::render_judged(&suite, seeds, &checked, &reports, &unjudged))?;
    }
    let text = serde_json::to_string_pretty(&merged)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")
        .and_then(|()| out.flush())
        .map_err(|e| anyhow::anyhow!("writing the merged report: {e}"))?;
    match stopped {
        Some((stopped, said)) => {
            said.iter().for_each(|line| ledger_exec::say!("ledger-sim: merge-runs: {line}"));
            Err(stopped.into())
        }
        None => Ok(ok),
    }
}

#[cfg(test)]
mod tests {
    use super::Shard;

    /// `slice_at` finds the shard whose slice holds a seed, as a search over the slices does,
    /// for splits with and without a remainder, and with slices of one seed.
    #[test]
    fn slice_at_is_the_slice_holding_the_seed() {
        for (whole, count) in [((0, 40), 4), ((100, 300), 4), ((0, 41), 4), ((7, 20), 3), ((5, 12), 7), ((0, 100), 9)] {
            let split = Shard { index: 1, count, whole };
            for seed in whole.0..whole.1 {
                let want = (1..=count).find(|&i| split.slice_of(i).0 <= seed && seed < split.slice_of(i).1);
                assert_eq!(Some(split.slice_at(seed).0), want, "seed {seed} of {whole:?} in {count}");
            }
        }
    }
}
