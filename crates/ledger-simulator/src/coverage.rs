//! Coverage marks: the rare states a run reached, counted.
//!
//! A mark is a [`Mark`], never a string, so a misspelt mark does not compile. The marks a
//! default in-memory run is expected to reach are reported even when never reached (as 0),
//! so that a run which stops reaching one shows it.

use std::collections::BTreeMap;

use serde::Serialize;

/// Declares the marks once: the enum, [`Mark::ALL`], each mark's name in reports, and whether
/// a default in-memory run is expected to reach it.
macro_rules! marks {
    ($($(#[doc = $doc:literal])* $variant:ident => $name:literal, $expected:literal;)*) => {
        /// A rare state a run reached.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Mark {
            $($(#[doc = $doc])* $variant,)*
        }

        impl Mark {
            /// Every mark, in declaration order.
            pub const ALL: &'static [Mark] = &[$(Mark::$variant),*];

            /// Its name in reports.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Mark::$variant => $name,)*
                }
            }

            /// True when a default in-memory run is expected to reach it; such marks are
            /// reported at 0 when never reached.
            pub const fn expected_in_memory(self) -> bool {
                match self {
                    $(Mark::$variant => $expected,)*
                }
            }
        }
    };
}

marks! {
    /// The pool balance is exactly zero after a step.
    PoolExactlyZero => "pool_exactly_zero", true;
    /// A grant used up a user's daily budget exactly.
    DailyBudgetExactlyExhausted => "daily_budget_exactly_exhausted", true;
    /// A decide was gated because the daily budget was used up.
    GateDailyBudgetExhausted => "gate_daily_budget_exhausted", true;
    /// A decide was gated because the pool was empty.
    GatePoolEmpty => "gate_pool_empty", true;
    /// A daily window ended while a request of its user was in flight.
    WindowRolloverInFlight => "window_rollover_in_flight", true;
    /// A call whose acknowledgement was lost was retried.
    LostAckRetry => "lost_ack_retry", true;
    /// A call was delivered twice.
    DuplicateDelivered => "duplicate_delivered", true;
    /// A duplicate delivery was answered as a repeat and changed nothing.
    DuplicateSuppressed => "duplicate_suppressed", true;
    /// A refused reservation made the caller ask for a new quote.
    ReserveRefusedRequote => "reserve_refused_requote", true;
    /// A reservation passed its deadline and was released by `expire`.
    ReservationExpired => "reservation_expired", true;
    /// A record reported an overrun above the reservation.
    OverrunReported => "overrun_reported", true;
    /// A user's tier changed while one of their requests was in flight.
    TierChangeInFlight => "tier_change_in_flight", true;
    /// A worker crashed after a call.
    WorkerCrash => "worker_crash", true;
    /// Paid-for work failed.
    WorkFailure => "work_failure", true;
    /// A user abandoned an invoice.
    InvoiceAbandoned => "invoice_abandoned", true;
    /// A decide answered with a partial offer.
    DecisionPartial => "decision_partial", true;
    /// A decide answered free (counted by the Postgres concurrent runs).
    DecisionFree => "decision_free", false;
    /// A decide answered gate (counted by the Postgres concurrent runs).
    DecisionGate => "decision_gate", false;
    /// The database server was restarted mid-run.
    ServerRestart => "server_restart", false;
    /// The database server was killed (SIGKILL) mid-run and recovered from its crash.
    ServerCrash => "server_crash", false;
    /// An implementation out of process was killed (SIGKILL) and started again (`--kill-child-at`).
    ChildKilled => "child_killed", false;
    /// An implementation out of process answered an indefinite error: the call may have applied.
    IndefiniteError => "indefinite_error", false;
    /// A connection was killed in the middle of a call.
    ConnectionKilled => "connection_killed", false;
    /// A call that failed was retried.
    FailedCallRetried => "failed_call_retried", false;
    /// A call had no answer within its time limit (and was retried).
    CallTimedOut => "call_timed_out", false;
    /// A call failed every retry and its caller gave up.
    CallGaveUp => "call_gave_up", false;
    /// A concurrent run's history was checked for linearizability one identity at a time (no
    /// answer could read the pool), once per seed.
    LinearizableByIdentity => "linearizable_by_identity", false;
    /// A concurrent run's history was checked for linearizability as a whole, once per seed.
    LinearizableWhole => "linearizable_whole", false;
    /// The linearizability search ran out of its budget: the seed's history was not judged.
    LinearizabilityUndecided => "linearizability_undecided", false;
}

/// How often rare states were reached, by mark name (ordered, so reports are stable).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Coverage(pub BTreeMap<&'static str, u64>);

impl Coverage {
    /// Count one more `mark`.
    pub fn hit(&mut self, mark: Mark) {
        *self.0.entry(mark.name()).or_insert(0) += 1;
    }

    /// Add another run's counts.
    pub fn merge(&mut self, other: &Coverage) {
        for (k, v) in &other.0 {
            *self.0.entry(k).or_insert(0) += v;
        }
    }

    /// Counts with every mark a default in-memory run is expected to reach present (zero when
    /// never reached).
    pub fn with_all_marks(mut self) -> Coverage {
        for m in Mark::ALL.iter().filter(|m| m.expected_in_memory()) {
            self.0.entry(m.name()).or_insert(0);
        }
        self
    }
}
