//! The conformance trace reader on arbitrary bytes: it never panics, and whatever it accepts
//! it writes back as a trace that reads the same, line for line.
#![no_main]

#[path = "../src/trace_parser.rs"]
mod body;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| body::run(data));
