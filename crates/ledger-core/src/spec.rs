//! The rules of `SPEC.md` by their stable ids, so that code, conformance vectors and tests can
//! name the rule they implement, pin or break.
//!
//! `SPEC.md` (at the repository root) is the normative text; this list is its index. A test
//! (`ledger-harness/tests/spec.rs`) holds the two to the same ids in the same order, holds
//! every rule to at least one conformance case that names it, and holds every rule to a
//! variant of the reference that breaks it ([`Variant::breaks`](crate::variant::Variant::breaks))
//! and that one of those cases catches.

use std::fmt;

macro_rules! rules {
    ($($(#[$doc:meta])* $name:ident = $id:literal, $summary:literal;)*) => {
        /// A rule of `SPEC.md`.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Rule {
            $($(#[$doc])* $name,)*
        }

        impl Rule {
            /// Every rule, in the order of `SPEC.md`.
            pub const ALL: &'static [Rule] = &[$(Rule::$name,)*];

            /// The rule's stable id (`R-DECIDE-3`).
            pub const fn id(self) -> &'static str {
                match self {
                    $(Rule::$name => $id,)*
                }
            }

            /// The rule in one line (`SPEC.md` has it in full).
            pub const fn summary(self) -> &'static str {
                match self {
                    $(Rule::$name => $summary,)*
                }
            }
        }
    };
}

rules! {
    /// `set_tier` creates a missing identity.
    TierCreates = "R-TIER-1", "set_tier on a pubkey with no identity creates it: the tier, nothing absorbed, the window opening now, nothing reserved; previous is null";
    /// `set_tier` changes only the tier.
    TierChangesOnlyTier = "R-TIER-2", "set_tier on an identity changes its tier only (never its window, absorption or reservations) and answers the previous tier";
    /// The budget is the current tier's.
    BudgetOfCurrentTier = "R-TIER-3", "decide and reserve_partial use the budget of the tier the identity holds when they run";

    /// A zero estimate is gated first.
    DecideZeroEstimateFirst = "R-DECIDE-1", "a new decide with estimate 0 is gated zero_estimate, for any pubkey, known or not";
    /// An unknown pubkey is gated.
    DecideUnknownIdentity = "R-DECIDE-2", "a new decide for a pubkey with no identity is gated unknown_identity";
    /// A zero budget is gated before the daily remaining.
    DecideZeroBudget = "R-DECIDE-3", "a tier budget of 0 is gated zero_budget, before the daily remaining is looked at";
    /// An exhausted day is gated before the pool.
    DecideDailyExhausted = "R-DECIDE-4", "a daily remaining of 0 is gated daily_budget_exhausted, before the pool is looked at";
    /// An empty pool is gated.
    DecidePoolEmpty = "R-DECIDE-5", "an empty pool is gated pool_empty";
    /// The daily remaining counts outstanding reservations.
    RemainingCountsReservations = "R-DECIDE-6", "daily remaining = budget - absorbed in the window - the identity's outstanding reservations, never below 0";
    /// Reservations of an earlier window still count.
    RemainingCountsEarlierReservations = "R-DECIDE-7", "outstanding reservations count against the remaining even when made in a window that has ended";
    /// Free debits at once.
    DecideFreeDebits = "R-DECIDE-8", "when min(remaining, pool) covers the estimate: free, the pool debited by the estimate and a reservation made, in the same step";
    /// A partial offer is what the pool and the remaining both cover.
    DecidePartialOffer = "R-DECIDE-9", "otherwise partial: offer = min(remaining, pool), charge = estimate - offer; nothing moves";
    /// A gate charges the whole estimate.
    GateChargesAll = "R-DECIDE-10", "a gate charges the whole estimate";

    /// `reserve_partial` needs a decision.
    PartialUnknownRequest = "R-PARTIAL-1", "reserve_partial of a request id never decided is refused unknown_request";
    /// `reserve_partial` for another pubkey.
    PartialOtherPubkey = "R-PARTIAL-2", "reserve_partial with a pubkey other than the decided one is refused exists_with_different_pubkey";
    /// A repeat of `reserve_partial`.
    PartialRepeat = "R-PARTIAL-3", "a request holding a reservation made by reserve_partial of the same amount answers reserved again; any other reservation is reservation_exists";
    /// A held reservation is reported before the amount is judged.
    PartialExistsBeforeAmount = "R-PARTIAL-4", "reservation_exists is answered before the amount is judged (a zero or too large amount included)";
    /// A zero amount.
    PartialZeroAmount = "R-PARTIAL-5", "an amount of 0 is refused zero_amount";
    /// More than the estimate.
    PartialAboveEstimate = "R-PARTIAL-6", "an amount above the decided estimate is refused amount_above_estimate";
    /// Refused amounts are remembered.
    PartialRefusalMemory = "R-PARTIAL-7", "every amount refused insufficient_funds is refused again, with the same available, whenever it is repeated for that request";
    /// The identity is looked up when reserving.
    PartialIdentityNow = "R-PARTIAL-8", "the identity is looked up when reserve_partial runs (it may have been created since the decide); none is unknown_identity";
    /// All or nothing.
    PartialAllOrNothing = "R-PARTIAL-9", "exactly the amount is debited and reserved when min(remaining, pool) covers it; otherwise insufficient_funds with that available, nothing moves";
    /// After any decision without a reservation.
    PartialAfterAnyGate = "R-PARTIAL-10", "reserve_partial is allowed after a partial offer and after any gate";

    /// `release` needs a reservation.
    ReleaseNotReserved = "R-RELEASE-1", "release of a request id never decided is unknown_request; of a request without a reservation, not_reserved";
    /// `release` returns the reservation.
    ReleaseReturns = "R-RELEASE-2", "release of an outstanding reservation returns all of it to the pool";
    /// A repeated `release`.
    ReleaseRepeat = "R-RELEASE-3", "release of a released reservation answers released again and moves nothing";
    /// A settled reservation cannot be released.
    ReleaseSettled = "R-RELEASE-4", "release of a recorded reservation is already_recorded; of an expired one, reservation_expired";

    /// `record` needs an outstanding reservation.
    RecordNotOutstanding = "R-RECORD-1", "record: unknown_request, not_reserved, already_released, reservation_expired for a request that has no outstanding or recorded reservation";
    /// How `record` settles.
    RecordSettles = "R-RECORD-2", "record absorbs min(actual, reserved), returns the rest of the reservation to the pool and reports actual - absorbed as overrun";
    /// Every record is a grant.
    RecordIsAGrant = "R-RECORD-3", "every record of an outstanding reservation is one grant, even one that absorbs 0";
    /// A late record still counts.
    RecordAfterDeadline = "R-RECORD-4", "a record after the deadline but before an expire took the reservation is accepted";
    /// A repeated `record`.
    RecordRepeat = "R-RECORD-5", "a repeated record with the same actual answers the first outcome and moves nothing; another actual is recorded_with_different_amount";
    /// The overrun total cannot overflow.
    RecordOverrunOverflow = "R-RECORD-6", "a record that would take the overrun total past 2^63-1 is refused overflow and changes nothing";

    /// The credit rate.
    CreditRounding = "R-CREDIT-1", "credit adds floor(paid * credit_bps / 10,000) to the pool, computed without overflow";
    /// Every credited payment is remembered.
    CreditRemembered = "R-CREDIT-2", "a credited payment is remembered with its amount, also when it credits 0";
    /// A repeated `credit`.
    CreditRepeat = "R-CREDIT-3", "a repeated credit with the same paid answers the first outcome and moves nothing; another paid is payment_with_different_amount";
    /// Credits cannot overflow genesis plus credits.
    CreditOverflow = "R-CREDIT-4", "a credit that would take genesis + all credits past 2^63-1 is refused overflow and changes nothing";

    /// The deadline.
    Deadline = "R-EXPIRE-1", "a reservation's deadline is now + reservation_ttl_ms when it is made, capped at 2^63-1";
    /// Strictly past the deadline.
    ExpireStrict = "R-EXPIRE-2", "expire takes every outstanding reservation whose deadline < now; one whose deadline = now stays";
    /// Expired sats go back.
    ExpireReturns = "R-EXPIRE-3", "an expired reservation's sats return to the pool and stop counting against the day";
    /// The order of expiry.
    ExpireOrder = "R-EXPIRE-4", "expire lists what it took in (deadline, request id) order";

    /// The window is 24 h.
    WindowLength = "R-WINDOW-1", "absorption counts while now - window start < 86,400,000 ms; at exactly 24 h it no longer does";
    /// A new window opens at the absorption.
    WindowOpensAtAbsorption = "R-WINDOW-2", "the first non-zero absorption 24 h or more after the window start opens a new window at that now, holding that absorption";
    /// Absorptions add up.
    WindowAddsUp = "R-WINDOW-3", "within a window, absorptions add up";
    /// A zero absorption changes nothing.
    WindowZeroAbsorption = "R-WINDOW-4", "an absorption of 0 leaves the window as it was, ended or not";
    /// A clock that went back keeps the window.
    WindowClockBack = "R-WINDOW-5", "a now before the window start is inside the window";

    /// A repeated `decide`.
    DecideRepeat = "R-IDEM-1", "a repeated decide (same request id, pubkey and estimate) answers the first decision and moves nothing, whatever changed since";
    /// A reused request id.
    DecideReused = "R-IDEM-2", "a decide reusing a request id with another pubkey is exists_with_different_pubkey, checked before the estimate; with another estimate, exists_with_different_estimate";
    /// Refusals are not remembered unless a rule says so.
    RefusalsForgotten = "R-IDEM-3", "a refusal other than R-PARTIAL-7's is not remembered: the same command may succeed once the state allows it";
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl Rule {
    /// The rule with this id.
    pub fn from_id(id: &str) -> Option<Rule> {
        Rule::ALL.iter().copied().find(|r| r.id() == id)
    }
}
