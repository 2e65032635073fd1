//! The conformance trace reader on arbitrary bytes: it never panics, and whatever it accepts
//! it writes back as a trace that reads the same, line for line.
#![no_main]

use ledger_harness::conformance::{read_bytes, read_str, write_string};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(segments) = read_bytes(data) else { return };
    let parts: Vec<_> =
        segments.iter().map(|s| (s.header.clone(), s.steps.iter().map(|(_, st)| st.clone()).collect())).collect();
    let text = write_string(&parts);
    let again = read_str(&text).expect("a written trace reads back");
    assert_eq!(again, segments, "a trace changed on its way through the writer");
});
