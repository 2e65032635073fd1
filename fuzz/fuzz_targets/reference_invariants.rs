//! Arbitrary command sequences against the reference engine, under the invariant checker.
//!
//! The bytes are decoded by hand into a configuration and a sequence of commands over small
//! id spaces (4 users, 8 requests, 4 payments), so that repeats, races and refusals are
//! common; amounts and time steps come from tables of edge values or straight from the bytes.
//! After every step I1, I2 and I5 are checked; at the end, the drain checks I5 and I6. Every
//! step also goes through the conformance writer and reader, which must agree.
#![no_main]

#[path = "../src/reference_invariants.rs"]
mod body;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| body::run(data));
