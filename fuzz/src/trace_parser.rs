//! The conformance trace reader on arbitrary bytes: it never panics, and whatever it accepts
//! it writes back as a trace that reads the same, line for line.
//!
//! The body of the fuzz target of the same name (`fuzz/fuzz_targets/`), and of the test that
//! replays its committed corpus under `cargo test` (`tests/tests/fuzz_corpora.rs`).

use ledger_harness::conformance::{read_bytes, read_str, write_string};

/// Runs the target on `data`: panics when a property breaks.
pub fn run(data: &[u8]) {
    let Ok(segments) = read_bytes(data) else { return };
    let parts: Vec<_> =
        segments.iter().map(|s| (s.header.clone(), s.steps.iter().map(|(_, st)| st.clone()).collect())).collect();
    let text = write_string(&parts);
    let again = read_str(&text).expect("a written trace reads back");
    assert_eq!(again, segments, "a trace changed on its way through the writer");
}
