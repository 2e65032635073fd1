//! The kinds of fault the in-memory simulator injects, declared once, with their rates.

use serde::{Deserialize, Serialize};

/// Declares the fault kinds once: the enum, [`Fault::ALL`] in declaration order, each kind's
/// scenario key, what its rate is a probability of and its default rate, and the [`Faults`]
/// table of rates a scenario holds (one field per kind, named by its key). Every table of
/// faults (validation, the swarm's draw, shrinking, a flow's count) is derived from this list,
/// and every `match` on a [`Fault`] is exhaustive, so a new kind is one line here plus what it
/// means: the field a flow carries ([`Flow::take_fault`](crate::history::Flow::take_fault)
/// will not compile without it), how a flow draws it (`gen.rs`) and what it does (`exec.rs`).
macro_rules! faults {
    ($($(#[doc = $doc:literal])* $variant:ident => $key:ident = $default:literal, per $per:literal;)*) => {
        /// One kind of fault the in-memory simulator injects.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Fault {
            $($(#[doc = $doc])* $variant,)*
        }

        impl Fault {
            /// Every kind, in declaration order (the order the swarm draws their rates in).
            pub const ALL: &'static [Fault] = &[$(Fault::$variant),*];

            /// The key of its rate in a scenario file, under `[faults]`.
            pub const fn key(self) -> &'static str {
                match self {
                    $(Fault::$variant => stringify!($key),)*
                }
            }

            /// The same key with its table, as errors name it: `faults.crash`.
            pub const fn scenario_key(self) -> &'static str {
                match self {
                    $(Fault::$variant => concat!("faults.", stringify!($key)),)*
                }
            }

            /// What the rate is a probability of: one chance per flow, invoice or step.
            pub const fn per(self) -> &'static str {
                match self {
                    $(Fault::$variant => $per,)*
                }
            }
        }

        /// Rates of the faults, each a probability per event ([`Fault::per`]); the `[faults]`
        /// table of a scenario.
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct Faults {
            $($(#[doc = $doc])* pub $key: f64,)*
        }

        impl Default for Faults {
            fn default() -> Faults {
                Faults { $($key: $default,)* }
            }
        }

        impl Faults {
            /// The rate of `fault`.
            pub fn rate(&self, fault: Fault) -> f64 {
                match fault {
                    $(Fault::$variant => self.$key,)*
                }
            }

            /// The rate of `fault`, to change.
            pub fn rate_mut(&mut self, fault: Fault) -> &mut f64 {
                match fault {
                    $(Fault::$variant => &mut self.$key,)*
                }
            }
        }
    };
}

faults! {
    /// A worker crashes after one of its calls returns.
    Crash => crash = 0.01, per "flow";
    /// The paid-for work fails.
    WorkFailure => work_failure = 0.03, per "flow";
    /// The user abandons an invoice.
    Abandon => abandon = 0.2, per "invoice";
    /// A call is delivered twice.
    Duplicate => duplicate = 0.01, per "flow";
    /// A call commits but its acknowledgement is lost, and the caller retries.
    LostAck => lost_ack = 0.01, per "flow";
    /// The clock jumps across a daily window boundary.
    ClockJump => clock_jump = 0.0002, per "scheduler step";
    /// A user's tier changes.
    TierChange => tier_change = 0.002, per "scheduler step";
    /// A credit webhook is delivered twice.
    DuplicateCredit => duplicate_credit = 0.01, per "paid invoice";
}

impl Faults {
    /// All faults off (the drain, and the planner's fault-free runs).
    pub fn none() -> Faults {
        let mut f = Faults::default();
        for &fault in Fault::ALL {
            *f.rate_mut(fault) = 0.0;
        }
        f
    }
}
