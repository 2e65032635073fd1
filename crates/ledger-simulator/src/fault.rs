//! The kinds of fault the in-memory simulator injects, declared once.

/// Declares the fault kinds once: the enum, [`Fault::ALL`] in declaration order, each kind's
/// scenario key and what its rate is a probability of. Every table of faults (validation,
/// the swarm's draw, shrinking, a flow's count) is derived from this list, and every `match`
/// on a [`Fault`] is exhaustive, so a new kind cannot be half-wired: it must be given a rate
/// field in [`Faults`] and an answer in [`Flow::take_fault`](crate::history::Flow::take_fault) before anything
/// compiles.
macro_rules! faults {
    ($($(#[doc = $doc:literal])* $variant:ident => $key:literal, per $per:literal;)*) => {
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
                    $(Fault::$variant => $key,)*
                }
            }

            /// The same key with its table, as errors name it: `faults.crash`.
            pub const fn scenario_key(self) -> &'static str {
                match self {
                    $(Fault::$variant => concat!("faults.", $key),)*
                }
            }

            /// What the rate is a probability of: one chance per flow, invoice or step.
            pub const fn per(self) -> &'static str {
                match self {
                    $(Fault::$variant => $per,)*
                }
            }
        }
    };
}

faults! {
    /// A worker crashes after one of its calls returns.
    Crash => "crash", per "flow";
    /// The paid-for work fails.
    WorkFailure => "work_failure", per "flow";
    /// The user abandons an invoice.
    Abandon => "abandon", per "invoice";
    /// A call is delivered twice.
    Duplicate => "duplicate", per "flow";
    /// A call commits but its acknowledgement is lost, and the caller retries.
    LostAck => "lost_ack", per "flow";
    /// The clock jumps across a daily window boundary.
    ClockJump => "clock_jump", per "scheduler step";
    /// A user's tier changes.
    TierChange => "tier_change", per "scheduler step";
    /// A credit webhook is delivered twice.
    DuplicateCredit => "duplicate_credit", per "paid invoice";
}
