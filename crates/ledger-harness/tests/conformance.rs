//! The conformance vectors of `fixtures/conformance/`: fresh, complete, and true of the
//! reference engine; the bad inputs refused with the line and kind they promise.

#[path = "../examples/gen_conformance/bad_inputs.rs"]
#[allow(dead_code, unreachable_pub)]
mod bad_inputs;
#[path = "../examples/gen_conformance/vectors.rs"]
#[allow(dead_code, unreachable_pub)]
mod vectors;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use ledger_core::{Ledger, Outcome};
use ledger_harness::conformance::replay::replay;
use ledger_harness::conformance::{self, ErrorKind, Expect, Segment};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/conformance")
}

/// The valid vector files, read.
fn vector_files() -> Vec<(String, Vec<Segment>)> {
    conformance::read_dir(&dir()).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn conformance_vectors_are_fresh() {
    let files = vectors::generate();
    let mut owned = BTreeSet::new();
    for (file, _) in &files {
        let on_disk = std::fs::read(dir().join(&file.path)).unwrap_or_default();
        assert!(
            on_disk == file.bytes,
            "fixtures/conformance/{} is stale: run `cargo run -p ledger-harness --example gen_conformance`",
            file.path
        );
        owned.insert(file.path.clone());
    }
    // Nothing else may sit among the vectors, or a deleted case would live on.
    for sub in ["", "bad-input/"] {
        for e in std::fs::read_dir(dir().join(sub)).expect("dir") {
            let name = format!("{sub}{}", e.expect("entry").file_name().to_string_lossy());
            let extra = name.ends_with(".jsonl") && !owned.contains(&name);
            assert!(!extra, "fixtures/conformance/{name} is not generated; remove it or add it to the generator");
        }
    }
    // Generating twice gives the same bytes.
    let again = vectors::generate();
    assert!(files.iter().zip(&again).all(|(a, b)| a.0.path == b.0.path && a.0.bytes == b.0.bytes));
}

#[test]
fn every_vector_holds_for_the_reference_engine() {
    let mut failures = Vec::new();
    let mut n_cases = 0;
    let mut n_steps = 0;
    for (file, segs) in vector_files() {
        for seg in &segs {
            failures.extend(replay(seg, &file, &mut Ledger::new(seg.header.config)));
            n_cases += 1;
            n_steps += seg.steps.len();
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    assert!(n_cases >= 300, "only {n_cases} cases");
    assert!(n_steps >= 3000, "only {n_steps} steps");
}

#[test]
fn case_names_are_unique() {
    let mut seen = BTreeSet::new();
    for (file, segs) in vector_files() {
        for seg in segs {
            assert!(seen.insert(seg.header.case.clone()), "{file}: case {} twice", seg.header.case);
        }
    }
}

#[test]
fn vectors_cover_every_command_outcome_and_refusal() {
    let mut seen = BTreeSet::new();
    for (_, segs) in vector_files() {
        for seg in segs {
            for (_, step) in seg.steps {
                seen.insert(format!("cmd:{}", step.command.name()));
                seen.insert(vectors::label(&step.expect.to_result()));
                if let Expect::Outcome(Outcome::Expired { released }) = &step.expect {
                    if released.len() > 1 {
                        seen.insert("expired:several".into());
                    }
                }
                if let Expect::Outcome(Outcome::TierSet { previous: Some(_) }) = &step.expect {
                    seen.insert("tier_set:previous".into());
                }
            }
        }
    }
    let want = [
        "cmd:set_tier",
        "cmd:decide",
        "cmd:reserve_partial",
        "cmd:release",
        "cmd:record",
        "cmd:credit",
        "cmd:expire",
        "tier_set",
        "tier_set:previous",
        "decided:free",
        "decided:partial",
        "decided:gate:unknown_identity",
        "decided:gate:zero_estimate",
        "decided:gate:zero_budget",
        "decided:gate:daily_budget_exhausted",
        "decided:gate:pool_empty",
        "reserved",
        "released",
        "recorded",
        "credited",
        "expired",
        "expired:several",
        "unknown_identity",
        "unknown_request",
        "zero_amount",
        "insufficient_funds",
        "exists_with_different_pubkey",
        "exists_with_different_estimate",
        "reservation_exists",
        "amount_above_estimate",
        "recorded_with_different_amount",
        "payment_with_different_amount",
        "not_reserved",
        "already_recorded",
        "already_released",
        "reservation_expired",
        "overflow",
    ];
    let missing: Vec<&str> = want.iter().copied().filter(|w| !seen.contains(*w)).collect();
    assert!(missing.is_empty(), "not covered: {missing:?}");
    // A refusal added to the engine must be added here (and to the vectors).
    let refusals = seen.iter().filter(|s| !s.contains(':') && !want.contains(&s.as_str())).count();
    assert_eq!(refusals, 0, "answers seen but not listed: {seen:?}");
}

#[test]
fn bad_inputs_are_refused_with_their_line_and_kind() {
    let index = std::fs::read_to_string(dir().join("bad-input/expected.jsonl")).expect("index");
    let mut n = 0;
    let mut kinds = BTreeSet::new();
    for line in index.lines() {
        let e: serde_json::Value = serde_json::from_str(line).expect("index line");
        let file = e["file"].as_str().expect("file");
        let want_line = e["line"].as_u64().expect("line") as usize;
        let want_kind: ErrorKind = serde_json::from_value(e["kind"].clone()).expect("kind");
        let bytes = std::fs::read(dir().join("bad-input").join(file)).expect("bad file");
        let err = match conformance::read_bytes(&bytes) {
            Ok(_) => panic!("{file}: accepted"),
            Err(err) => err,
        };
        assert_eq!((err.line, err.kind), (want_line, want_kind), "{file}: {err}");
        assert!(err.to_string().starts_with(&format!("line {want_line}: ")), "{err}");
        kinds.insert(want_kind);
        n += 1;
    }
    assert!(n >= 40, "only {n} bad inputs");
    assert_eq!(kinds.len(), 10, "every error kind has a bad input: {kinds:?}");
}

#[test]
fn every_vector_file_has_a_footer_that_adds_up() {
    for e in std::fs::read_dir(dir()).expect("dir") {
        let path = e.expect("entry").path();
        if path.extension().is_some_and(|x| x == "jsonl") {
            let trace = conformance::read_trace(&std::fs::read(&path).expect("file")).expect("a vector file reads");
            assert_eq!(trace.version, conformance::FORMAT_VERSION, "{}", path.display());
            let footer = trace.footer.unwrap_or_else(|| panic!("{}: no footer", path.display()));
            assert_eq!(footer.segments as usize, trace.segments.len());
            assert_eq!(footer.steps as usize, trace.segments.iter().map(|s| s.steps.len()).sum::<usize>());
        }
    }
}

#[test]
fn the_version_1_vector_reads_as_its_version_2_twin() {
    // `version-1/commands.jsonl` is `commands.jsonl` as version 1 writes it: no footer, no
    // rules. A reader of both versions must read the same cases from either.
    let read = |path: &str| conformance::read_trace(&std::fs::read(dir().join(path)).expect(path)).expect(path);
    let (v1, v2) = (read("version-1/commands.jsonl"), read("commands.jsonl"));
    assert_eq!((v1.version, v1.footer.is_none()), (1, true));
    assert_eq!(v1.segments.len(), v2.segments.len());
    for (a, b) in v1.segments.iter().zip(&v2.segments) {
        let stale =
            "fixtures/conformance/version-1 is stale: run `cargo run -p ledger-harness --example gen_conformance`";
        assert_eq!(a.header, conformance::Header { rules: Vec::new(), ..b.header.clone() }, "{stale}");
        assert_eq!(a.steps, b.steps, "{stale}");
    }
    let names: Vec<String> = std::fs::read_dir(dir().join("version-1"))
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["commands.jsonl"], "only the generator writes fixtures/conformance/version-1");
}

#[test]
fn a_value_above_i64_max_is_refused_clearly() {
    let bytes = std::fs::read(dir().join("bad-input/paid-i64-max-plus-1.jsonl")).expect("file");
    let err = conformance::read_bytes(&bytes).unwrap_err();
    assert_eq!(
        err.to_string(),
        "line 2: number_out_of_range: command.paid_sats: 9223372036854775808 is not an integer in \
         0..=9223372036854775807 (a BIGINT)"
    );
}

#[test]
fn the_reader_survives_every_prefix_and_byte_flip() {
    // A cheap stand-in for the fuzzer in the ordinary test run: no input may panic.
    let bytes = std::fs::read(dir().join("commands.jsonl")).expect("file");
    let head = &bytes[..bytes.len().min(4000)];
    for cut in 0..head.len() {
        let _ = conformance::read_bytes(&head[..cut]);
    }
    for i in (0..head.len()).step_by(7) {
        let mut b = head.to_vec();
        b[i] ^= 0x55;
        let _ = conformance::read_bytes(&b);
    }
}
