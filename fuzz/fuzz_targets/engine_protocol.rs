//! The engine protocol on arbitrary bytes, as `serve`'s input and as an implementation's
//! answers: see `fuzz/src/engine_protocol.rs`.
#![no_main]

#[path = "../src/engine_protocol.rs"]
mod body;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| body::run(data));
