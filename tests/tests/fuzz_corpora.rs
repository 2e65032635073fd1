//! The fuzz targets' committed corpora, replayed as ordinary tests: every input that the
//! fuzzer kept (`fuzz/corpus/<target>/`) must still pass its target's checks, whether or not
//! `cargo fuzz` is installed. The bodies are the targets' own (`fuzz/src/`).

use std::path::Path;

#[path = "../../fuzz/src/engine_protocol.rs"]
#[allow(dead_code, unreachable_pub)]
mod engine_protocol;
#[path = "../../fuzz/src/history_csv.rs"]
#[allow(dead_code, unreachable_pub)]
mod history_csv;
#[path = "../../fuzz/src/reference_invariants.rs"]
#[allow(dead_code, unreachable_pub)]
mod reference_invariants;
#[path = "../../fuzz/src/scenario_toml.rs"]
#[allow(dead_code, unreachable_pub)]
mod scenario_toml;
#[path = "../../fuzz/src/trace_parser.rs"]
#[allow(dead_code, unreachable_pub)]
mod trace_parser;

/// Runs `target` on every file of its corpus; returns how many there were.
fn replay(name: &str, target: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(name);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a corpus entry").path())
        .collect();
    files.sort();
    for file in &files {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let outcome = std::panic::catch_unwind(|| target(&data));
        assert!(outcome.is_ok(), "{name}: the corpus input {} fails its target", file.display());
    }
    files.len()
}

#[test]
fn the_trace_parser_corpus_still_passes() {
    assert!(replay("trace_parser", trace_parser::run) > 0, "an empty corpus proves nothing");
}

#[test]
fn the_reference_invariants_corpus_still_passes() {
    assert!(replay("reference_invariants", reference_invariants::run) > 0, "an empty corpus proves nothing");
}

#[test]
fn the_scenario_toml_corpus_still_passes() {
    assert!(replay("scenario_toml", scenario_toml::run) > 0, "an empty corpus proves nothing");
}

#[test]
fn the_history_csv_corpus_still_passes() {
    assert!(replay("history_csv", history_csv::run) > 0, "an empty corpus proves nothing");
}

#[test]
fn the_engine_protocol_corpus_still_passes() {
    assert!(replay("engine_protocol", engine_protocol::run) > 0, "an empty corpus proves nothing");
}
