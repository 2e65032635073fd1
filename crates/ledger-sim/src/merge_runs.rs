//! `ledger-sim merge-runs`: the `run --json` reports of the shards of one seed range
//! (`run --seeds A..B --shard I/N --json`) combined into the report of the whole range, so
//! that a fleet (a CI matrix, Kubernetes indexed Jobs, Slurm arrays) can split a million seeds.
//!
//! The shards must come from the same engine and scheduler and cover their range without
//! gaps or overlaps; steps, requests and coverage add up; each invariant's counterexample is
//! the one of the lowest seed that broke it, and its list of breaking seeds is the union;
//! `seeds_reaching` adds up and `never_reached` follows from it (a shard's `steering` is not
//! merged). The
//! trace hash is the fold of the shards' hashes in seed order: a function of the shards, not
//! the hash one run over the whole range prints.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

/// `ledger-sim merge-runs` arguments.
#[derive(clap::Args, Debug)]
pub struct MergeRunsArgs {
    /// `run --json` outputs of `run --seeds A..B --shard I/N`.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Also write the verdict as JUnit XML.
    #[arg(long, value_name = "FILE.xml")]
    pub junit: Option<PathBuf>,
}

struct Part {
    name: String,
    seeds: (u64, u64),
    report: Map<String, Value>,
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
    let (a, b) = seeds
        .split_once("..")
        .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
        .filter(|(a, b)| a < b)
        .ok_or_else(|| anyhow::anyhow!("{name}: seeds {seeds:?} is not a range A..B"))?;
    Ok(Part { name, seeds: (a, b), report })
}

fn u64_of(part: &Part, key: &str) -> anyhow::Result<u64> {
    part.report[key].as_u64().ok_or_else(|| anyhow::anyhow!("{}: {key} is not a whole number", part.name))
}

/// The merged report, and whether no invariant broke.
pub fn merge(files: &[PathBuf]) -> anyhow::Result<(Value, bool)> {
    let mut parts = files.iter().map(|f| read(f)).collect::<anyhow::Result<Vec<_>>>()?;
    parts.sort_by_key(|p| p.seeds);
    let first = &parts[0];
    for p in &parts[1..] {
        for key in ["engine", "scheduler"] {
            anyhow::ensure!(
                p.report[key] == first.report[key],
                "{} ran {key} {} but {} ran {}: merge the shards of one run",
                p.name,
                p.report[key],
                first.name,
                first.report[key]
            );
        }
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
    let (mut steps, mut requests) = (0u64, 0u64);
    let mut coverage: BTreeMap<String, u64> = BTreeMap::new();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut violations: BTreeMap<String, Value> = BTreeMap::new();
    // How many seeds reached each mark, when every shard says (an in-memory run's report).
    let mut seeds_reaching: Option<BTreeMap<String, u64>> = Some(BTreeMap::new());
    for p in &parts {
        match (&mut seeds_reaching, &p.report.get("seeds_reaching")) {
            (Some(sum), Some(Value::Object(marks))) => {
                for (k, v) in marks {
                    *sum.entry(k.clone()).or_default() += v.as_u64().unwrap_or(0);
                }
            }
            _ => seeds_reaching = None,
        }
        steps += u64_of(p, "steps")?;
        requests += u64_of(p, "requests")?;
        let Value::Object(cov) = &p.report["coverage"] else { anyhow::bail!("{}: coverage is not an object", p.name) };
        for (k, v) in cov {
            *coverage.entry(k.clone()).or_default() += v.as_u64().unwrap_or(0);
        }
        let h = p.report["trace_hash"].as_str().and_then(|h| u64::from_str_radix(h, 16).ok());
        let h = h.ok_or_else(|| anyhow::anyhow!("{}: trace_hash is not a hex number", p.name))?;
        hash = (hash ^ h).wrapping_mul(0x0000_0100_0000_01b3);
        let Value::Array(vs) = &p.report["violations"] else { anyhow::bail!("{}: violations is not a list", p.name) };
        for v in vs {
            let inv = v["invariant"].as_str().unwrap_or_default().to_owned();
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
                }
            }
        }
    }
    let ok = violations.is_empty();
    let mut merged = json!({
        "engine": first.report["engine"],
        "scheduler": first.report["scheduler"],
        "seeds": format!("{}..{}", parts[0].seeds.0, parts[parts.len() - 1].seeds.1),
        "steps": steps,
        "requests": requests,
        "violations": violations.into_values().collect::<Vec<_>>(),
        "coverage": coverage,
        "trace_hash": format!("{hash:016x}"),
        "shards": parts.len(),
    });
    if let Some(marks) = seeds_reaching {
        let never: Vec<&String> = marks.iter().filter(|(_, n)| **n == 0).map(|(k, _)| k).collect();
        merged["never_reached"] = json!(never);
        merged["seeds_reaching"] = json!(marks);
    }
    Ok((merged, ok))
}

/// `ledger-sim merge-runs`: prints the merged report as JSON; true when no invariant broke.
pub fn merge_runs_cmd(args: MergeRunsArgs) -> anyhow::Result<bool> {
    let (merged, ok) = merge(&args.files)?;
    if let Some(path) = &args.junit {
        let reports: Vec<ledger_simulator::report::ViolationReport> =
            serde_json::from_value(merged["violations"].clone())?;
        let engine = merged["engine"].as_str().unwrap_or_default();
        let checked = ledger_harness::Invariant::judged_for(engine);
        let seeds = merged["seeds"].as_str().unwrap_or_default();
        crate::junit::write(path, &crate::junit::render(engine, seeds, &checked, &reports))?;
    }
    println!("{}", serde_json::to_string_pretty(&merged)?);
    Ok(ok)
}
