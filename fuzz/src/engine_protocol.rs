//! The engine protocol (SPEC.md §9) on arbitrary bytes, from both ends. `ledger-sim serve`
//! (the reference behind the protocol) reads them as its input: it never panics and never
//! fails, answers each line at most once, every answer is a JSON object with an `id` and a
//! `type` that the harness's own reader of an implementation's answers takes as a response,
//! and the same input gets the same answers, byte for byte. The harness's reader takes each
//! line as an implementation's answer: it never panics, whatever the line.
//!
//! The body of the fuzz target of the same name (`fuzz/fuzz_targets/`), and of the test that
//! replays its committed corpus under `cargo test` (`tests/tests/fuzz_corpora.rs`).

use ledger_exec::protocol::{amount_out_of_range, tags_are_names, top_level_id, Response};

/// Runs the target on `data`: panics when a property breaks.
pub fn run(data: &[u8]) {
    let answers = serve(data);
    assert_eq!(answers, serve(data), "the same input answered differently");
    let text = String::from_utf8(answers).expect("serve writes UTF-8");
    let lines: Vec<&str> = text.lines().collect();
    let asked = data.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count();
    assert!(lines.len() <= asked, "{} answers to {asked} lines", lines.len());
    for line in &lines {
        let value: serde_json::Value = serde_json::from_str(line).expect("an answer is JSON");
        assert!(value.get("id").is_some_and(|id| id.is_u64()), "an answer without an id: {line}");
        assert!(value.get("type").is_some_and(|t| t.is_string()), "an answer without a type: {line}");
        let response: Response = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        tags_are_names(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(top_level_id(line), Some(response.id), "{line}");
        assert_eq!(amount_out_of_range(line), None, "{line}");
    }
    // Each line of the input, taken as an implementation's answer to the harness.
    for line in data.split(|&b| b == b'\n') {
        let line = String::from_utf8_lossy(line);
        let _ = serde_json::from_str::<Response>(&line);
        let _ = tags_are_names(&line);
        let _ = amount_out_of_range(&line);
        let _ = top_level_id(&line);
        let _ = ledger_exec::child::line_shown(&line);
    }
}

/// What `serve` answers to `data`.
fn serve(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut log = Vec::new();
    ledger_exec::serve::serve(data, &mut out, &mut log).expect("serve fails only when its streams do");
    out
}
