//! The two scenario readers (the simulator's `run` scenario and the planner's) on arbitrary
//! text: they never panic; whatever they accept passes its own validation again.
#![no_main]

#[path = "../src/scenario_toml.rs"]
mod body;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| body::run(data));
