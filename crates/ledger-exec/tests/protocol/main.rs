//! The engine protocol's tests, one module each, in one test binary: its JSON schema against the
//! Rust types, and `serve` against SPEC.md §9.
//!
//! One module: `cargo test -p ledger-exec --release --test protocol serve_spec::`.

mod cases;
mod schema;
mod serve_spec;
