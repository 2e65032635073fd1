//! The request-history reader of `plan --fit` on arbitrary bytes: it never panics; what it
//! accepts writes and reads back the same, and fits to a scenario that loads.
#![no_main]

#[path = "../src/history_csv.rs"]
mod body;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| body::run(data));
