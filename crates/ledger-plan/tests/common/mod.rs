//! What the planner's tests share.

/// Deterministic arrivals, no concurrency (work and payment take no time), no faults.
pub const CLOSED_FORM: &str = r#"
days = 10
seeds = 1
pool_initial_sats = 1000000
credit_pct = 10

[population]
new = 50
established = 100
trusted = 0
elite = 0

[requests]
per_user_per_day = { dist = "fixed", value = 4 }
even = true
session_share = 0

[cost]
estimate_sats = { dist = "fixed", value = 15 }
actual_pct = { dist = "fixed", value = 100 }
work_ms = 0
work_failure = 0

[payment]
gate_paid = 1
partial_paid = 1
pay_delay_ms = 0

[tiers]
promote_per_day = {}
decay_per_day = {}

[budget]
new = 0
established = 50
"#;
