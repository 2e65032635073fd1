//! Writes the conformance vectors to `fixtures/conformance/` (or the directory given).
//!
//! ```text
//! cargo run -p ledger-harness --example gen_conformance            # regenerate
//! cargo run -p ledger-harness --example gen_conformance -- --check # exit 1 if stale
//! ```
//!
//! Output is deterministic: regenerating gives identical bytes, and the test
//! `conformance_vectors_are_fresh` fails when the committed files differ.
//!
//! Besides the vectors (version 2), `version-1/commands.jsonl` holds the `commands` cases as
//! version 1 writes them (no footer, no rules), so that a reader shows it still reads them.

mod bad_inputs;
mod vectors;

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut check = false;
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/conformance");
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--check" => check = true,
            "-h" | "--help" => {
                eprintln!("usage: gen_conformance [--check] [DIR]");
                return ExitCode::SUCCESS;
            }
            other => dir = PathBuf::from(other),
        }
    }
    let mut files = vectors::generate();
    files.push(version_1(&files));
    match readme(&files, &dir) {
        Ok(file) => files.push(file),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    }
    let mut stale = 0;
    let mut n_cases = 0;
    for (file, n) in &files {
        n_cases += n;
        let path = dir.join(&file.path);
        let same = std::fs::read(&path).map(|b| b == file.bytes).unwrap_or(false);
        if same {
            continue;
        }
        stale += 1;
        if check {
            eprintln!("stale: {}", path.display());
            continue;
        }
        if let Some(parent) = path.parent() {
            if let Err(e) = std::fs::create_dir_all(parent) {
                eprintln!("{}: {e}", parent.display());
                return ExitCode::from(2);
            }
        }
        if let Err(e) = std::fs::write(&path, &file.bytes) {
            eprintln!("{}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    eprintln!("{} files, {n_cases} cases, {stale} {}", files.len(), if check { "stale" } else { "written" });
    if check && stale > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// `README.md` with its table of rules and the cases that pin them regenerated.
fn readme(files: &[(vectors::File, usize)], dir: &std::path::Path) -> Result<(vectors::File, usize), String> {
    use ledger_harness::conformance::{read_bytes, rules};
    let path = dir.join("README.md");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut read = Vec::new();
    for (file, _) in files.iter().filter(|(f, _)| !f.path.contains('/')) {
        let segments = read_bytes(&file.bytes).map_err(|e| format!("{}: {e}", file.path))?;
        read.push((file.path.clone(), segments));
    }
    let bytes = rules::splice(&text, &rules::table(&read)).into_bytes();
    Ok((vectors::File { path: "README.md".to_owned(), bytes }, 0))
}

/// The `commands` vectors written as version 1: the good vector of the oldest version read.
fn version_1(files: &[(vectors::File, usize)]) -> (vectors::File, usize) {
    use ledger_harness::conformance::{read_bytes, write_version, Header};
    let (commands, n) = files.iter().find(|(f, _)| f.path == "commands.jsonl").expect("commands.jsonl is generated");
    let segments = read_bytes(&commands.bytes).expect("the generated vectors read");
    let parts: Vec<_> = segments
        .into_iter()
        .map(|s| (Header { rules: Vec::new(), ..s.header }, s.steps.into_iter().map(|(_, step)| step).collect()))
        .collect();
    let bytes = write_version(1, &parts).into_bytes();
    (vectors::File { path: "version-1/commands.jsonl".to_owned(), bytes }, *n)
}
