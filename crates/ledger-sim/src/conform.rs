//! `ledger-sim conform --exec COMMAND`: the conformance vectors through the engine protocol
//! ([`ledger_exec::conform`]).

use std::io::Write;
use std::path::PathBuf;

/// Arguments of `conform`.
#[derive(clap::Args, Debug)]
pub struct ConformArgs {
    /// The implementation (of the reference API).
    #[command(flatten)]
    pub child: crate::child_args::ChildArgs,
    /// The directory of vectors (`*.jsonl`). Without it, the vectors built into this binary:
    /// the repository's `fixtures/conformance/*.jsonl` when it was built.
    #[arg(long)]
    pub vectors: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The `conform` subcommand: `Ok(true)` when every case passes.
pub fn conform_cmd(args: &ConformArgs) -> anyhow::Result<bool> {
    let exec = args.child.exec()?;
    let (files, from) = match &args.vectors {
        Some(dir) => {
            let files = ledger_harness::conformance::read_dir(dir).map_err(|e| anyhow::anyhow!("--vectors {e}"))?;
            if files.is_empty() {
                anyhow::bail!("--vectors {}: no conformance vectors (*.jsonl) here", dir.display());
            }
            (files, dir.display().to_string())
        }
        None => (built_in()?, "built in".to_owned()),
    };
    let config = files[0].1.first().map(|s| s.header.config).unwrap_or_default();
    let (mut child, _db) = ledger_pg_runs::start_exec(&exec, &config)?;
    let report = ledger_exec::conform::conform(&mut child, &files)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let failures: Vec<serde_json::Value> = report
            .failures
            .iter()
            .map(|f| serde_json::json!({"file": f.file, "case": f.case, "line": f.line, "detail": f.detail}))
            .collect();
        let v = serde_json::json!({
            "implementation": child.hello().name,
            "vectors": from,
            "cases": report.cases,
            "steps": report.steps,
            "failed": report.failures.len(),
            "failures": failures,
        });
        crate::child_args::write_json(&mut out, &v)?;
    } else {
        writeln!(
            out,
            "conform {} ({:?}, vectors {}): {} cases, {} steps, {} failed",
            args.child.command,
            child.hello().name,
            from,
            report.cases,
            report.steps,
            report.failures.len()
        )?;
        for f in &report.failures {
            // The case's name is the vectors' and the detail may quote the implementation:
            // control characters are shown as escapes.
            let line = format!("FAIL {}:{} {}: {}", f.file, f.line, f.case, f.detail);
            writeln!(out, "{}", ledger_harness::text::printable(&line))?;
        }
    }
    // The implementation goes before its database.
    drop(child);
    drop(_db);
    Ok(report.failures.is_empty())
}

/// The repository's conformance vectors, built into the binary so that `conform` runs from any
/// directory (and from an installed `ledger-sim`), in the order `--vectors` reads a directory.
const BUILT_IN: [(&str, &[u8]); 9] = [
    ("commands.jsonl", include_bytes!("../../../fixtures/conformance/commands.jsonl")),
    ("credit-rounding.jsonl", include_bytes!("../../../fixtures/conformance/credit-rounding.jsonl")),
    ("daily-window.jsonl", include_bytes!("../../../fixtures/conformance/daily-window.jsonl")),
    ("deadlines.jsonl", include_bytes!("../../../fixtures/conformance/deadlines.jsonl")),
    ("idempotency.jsonl", include_bytes!("../../../fixtures/conformance/idempotency.jsonl")),
    ("limits.jsonl", include_bytes!("../../../fixtures/conformance/limits.jsonl")),
    ("random.jsonl", include_bytes!("../../../fixtures/conformance/random.jsonl")),
    ("tier-changes.jsonl", include_bytes!("../../../fixtures/conformance/tier-changes.jsonl")),
    ("unknown-identities.jsonl", include_bytes!("../../../fixtures/conformance/unknown-identities.jsonl")),
];

fn built_in() -> anyhow::Result<Vec<(String, Vec<ledger_harness::conformance::Segment>)>> {
    BUILT_IN
        .iter()
        .map(|(name, bytes)| {
            let segments = ledger_harness::conformance::read_bytes(bytes)
                .map_err(|e| anyhow::anyhow!("the built-in vectors {name}: {e}"))?;
            Ok(((*name).to_owned(), segments))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    /// Every `*.jsonl` of `fixtures/conformance` is built in, and nothing else: a vector file
    /// added to the directory and not to [`super::BUILT_IN`] fails here.
    #[test]
    fn the_built_in_vectors_are_the_directory() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/conformance");
        let from_dir = ledger_harness::conformance::read_dir(&dir).expect("the repository's vectors");
        let built_in = super::built_in().expect("the built-in vectors read");
        let names = |v: &[(String, Vec<ledger_harness::conformance::Segment>)]| {
            v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>()
        };
        assert_eq!(names(&built_in), names(&from_dir));
        assert!(built_in == from_dir, "the built-in vectors differ from the directory's");
    }
}
