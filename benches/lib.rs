//! Criterion benches of the workspace; see `benches/`.
