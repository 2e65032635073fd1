//! The ledger's rules as pure functions: the daily window, what is left of a budget, the
//! answer to a `decide`, how a `record` settles a reservation.
//!
//! Every engine in Rust takes its arithmetic from here, so a rule is written once: the
//! reference [`Ledger`](crate::Ledger) and `ledger-concurrent`'s `SharedLedger` differ in how
//! they hold their state and take their locks, never in what they compute. (The SQL of
//! `ledger-pg` is a separate implementation, held to the same answers by the conformance
//! vectors and the simulator's differential runs.)

use crate::command::{Decision, GateReason};
use crate::ids::{TimeMs, DAY_MS};
use crate::sats::Sats;

/// The length of the daily window: 24 h from the first absorption after the last one ended.
pub const WINDOW_MS: u64 = DAY_MS;

/// The absorption that counts at `now` in a window that began at `window_start` and has
/// absorbed `absorbed_today`: all of it while the window lasts (`now - window_start <
/// window_ms`), nothing once it has ended. A clock that went back does not end the window.
pub fn absorbed_in_window(absorbed_today: Sats, window_start: TimeMs, now: TimeMs, window_ms: u64) -> Sats {
    if now.since(window_start) >= window_ms {
        Sats::ZERO
    } else {
        absorbed_today
    }
}

/// What may still be granted today: the budget less the window's absorption and the
/// outstanding reservations (reservations made in an earlier window count too), never below
/// zero.
pub fn daily_remaining(budget: Sats, absorbed_in_window: Sats, reserved: Sats) -> Sats {
    let used = absorbed_in_window.checked_add(reserved).unwrap_or(Sats::MAX);
    budget.saturating_sub(used)
}

/// The window after `absorbed` more sats at `now`, as `(absorbed_today, window_start)`: the
/// first absorption after the window ended starts a new one at `now`; within the window it
/// adds up; an absorption of zero changes nothing. `None` when the sum overflows.
pub fn absorb(
    absorbed_today: Sats,
    window_start: TimeMs,
    absorbed: Sats,
    now: TimeMs,
    window_ms: u64,
) -> Option<(Sats, TimeMs)> {
    if absorbed.is_zero() {
        Some((absorbed_today, window_start))
    } else if now.since(window_start) >= window_ms {
        Some((absorbed, now))
    } else {
        Some((absorbed_today.checked_add(absorbed)?, window_start))
    }
}

/// What a known identity brings to a `decide`: its tier's budget, and a way to compute what
/// is left of it (asked only once the budget is known not to be zero).
#[derive(Clone, Copy, Debug)]
pub struct Standing<F: FnOnce() -> Sats> {
    /// The budget of the identity's tier.
    pub budget: Sats,
    /// What is left of it today ([`daily_remaining`]).
    pub remaining: F,
}

/// The gates of a `decide` that do not depend on the pool, in the order they are checked: a
/// zero estimate, an unknown identity (`None`), a zero budget, an exhausted daily budget.
/// `Ok` carries what is left of the budget.
pub fn admit<F: FnOnce() -> Sats>(estimated: Sats, identity: Option<Standing<F>>) -> Result<Sats, GateReason> {
    if estimated.is_zero() {
        return Err(GateReason::ZeroEstimate);
    }
    let Some(standing) = identity else {
        return Err(GateReason::UnknownIdentity);
    };
    if standing.budget.is_zero() {
        return Err(GateReason::ZeroBudget);
    }
    let remaining = (standing.remaining)();
    if remaining.is_zero() {
        return Err(GateReason::DailyBudgetExhausted);
    }
    Ok(remaining)
}

/// The answer to an admitted `decide` given the pool: gate when the pool is empty, free when
/// the pool and the remaining budget both cover the whole estimate, otherwise a partial offer
/// of what they cover, the rest charged.
pub fn offer(estimated: Sats, remaining: Sats, pool: Sats) -> Decision {
    if pool.is_zero() {
        return Decision::Gate { reason: GateReason::PoolEmpty, charge_sats: estimated };
    }
    let can_absorb = remaining.min(pool).min(estimated);
    if can_absorb == estimated {
        Decision::Free { reserved_sats: estimated }
    } else {
        let charge_sats = estimated.checked_sub(can_absorb).expect("can_absorb <= estimated");
        Decision::Partial { offer_sats: can_absorb, charge_sats }
    }
}

/// The answer to a `decide`: [`admit`], then [`offer`].
pub fn decide<F: FnOnce() -> Sats>(estimated: Sats, identity: Option<Standing<F>>, pool: Sats) -> Decision {
    match admit(estimated, identity) {
        Ok(remaining) => offer(estimated, remaining, pool),
        Err(reason) => Decision::Gate { reason, charge_sats: estimated },
    }
}

/// How a `record` of `actual` settles a reservation of `reserved`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settlement {
    /// What the pool pays: `min(actual, reserved)`.
    pub absorbed: Sats,
    /// What goes back to the pool: `reserved - absorbed`.
    pub returned: Sats,
    /// What the caller must charge beyond the reservation: `actual - absorbed`. Reported,
    /// never absorbed.
    pub overrun: Sats,
}

/// Settles a reservation of `reserved` against the `actual` cost.
pub fn settle(reserved: Sats, actual: Sats) -> Settlement {
    let absorbed = actual.min(reserved);
    Settlement {
        absorbed,
        returned: reserved.checked_sub(absorbed).expect("absorbed <= reserved"),
        overrun: actual.checked_sub(absorbed).expect("absorbed <= actual"),
    }
}

/// True when a credit may raise the ledger's credited total to `credited_total`: genesis plus
/// every credit must fit in [`Sats`], so that reserved sats can always come back to the pool.
pub fn credit_fits(pool_initial: Sats, credited_total: Sats) -> bool {
    pool_initial.checked_add(credited_total).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: u64) -> Sats {
        Sats::new(v).unwrap()
    }

    #[test]
    fn the_window_ends_at_exactly_its_length() {
        let start = TimeMs(1_000);
        assert_eq!(absorbed_in_window(s(7), start, TimeMs(1_000 + WINDOW_MS - 1), WINDOW_MS), s(7));
        assert_eq!(absorbed_in_window(s(7), start, TimeMs(1_000 + WINDOW_MS), WINDOW_MS), Sats::ZERO);
        // A clock that went back keeps the window.
        assert_eq!(absorbed_in_window(s(7), start, TimeMs(10), WINDOW_MS), s(7));
        assert_eq!(absorb(s(7), start, s(3), TimeMs(2_000), WINDOW_MS), Some((s(10), start)));
        assert_eq!(
            absorb(s(7), start, s(3), TimeMs(1_000 + WINDOW_MS), WINDOW_MS),
            Some((s(3), TimeMs(1_000 + WINDOW_MS)))
        );
        assert_eq!(absorb(s(7), start, Sats::ZERO, TimeMs(1_000 + WINDOW_MS), WINDOW_MS), Some((s(7), start)));
        assert_eq!(absorb(Sats::MAX, start, s(1), TimeMs(2_000), WINDOW_MS), None);
    }

    #[test]
    fn gates_come_in_their_order() {
        let known = |budget, remaining| Some(Standing { budget: s(budget), remaining: move || s(remaining) });
        let gate = |d: Decision| match d {
            Decision::Gate { reason, .. } => Some(reason),
            _ => None,
        };
        let unknown: Option<Standing<fn() -> Sats>> = None;
        assert_eq!(gate(decide(Sats::ZERO, unknown, Sats::ZERO)), Some(GateReason::ZeroEstimate));
        assert_eq!(gate(decide(s(5), unknown, s(100))), Some(GateReason::UnknownIdentity));
        assert_eq!(gate(decide(s(5), known(0, 0), Sats::ZERO)), Some(GateReason::ZeroBudget));
        assert_eq!(gate(decide(s(5), known(50, 0), Sats::ZERO)), Some(GateReason::DailyBudgetExhausted));
        assert_eq!(gate(decide(s(5), known(50, 50), Sats::ZERO)), Some(GateReason::PoolEmpty));
        assert_eq!(decide(s(5), known(50, 50), s(5)), Decision::Free { reserved_sats: s(5) });
        assert_eq!(decide(s(5), known(50, 3), s(100)), Decision::Partial { offer_sats: s(3), charge_sats: s(2) });
        assert_eq!(decide(s(5), known(50, 50), s(4)), Decision::Partial { offer_sats: s(4), charge_sats: s(1) });
    }

    #[test]
    fn settlement_caps_at_the_reservation() {
        assert_eq!(settle(s(10), s(4)), Settlement { absorbed: s(4), returned: s(6), overrun: Sats::ZERO });
        assert_eq!(settle(s(10), s(14)), Settlement { absorbed: s(10), returned: Sats::ZERO, overrun: s(4) });
        assert_eq!(daily_remaining(s(50), s(30), s(30)), Sats::ZERO);
        assert_eq!(daily_remaining(s(50), Sats::MAX, s(1)), Sats::ZERO);
        assert!(credit_fits(s(10), Sats::MAX.checked_sub(s(10)).unwrap()));
        assert!(!credit_fits(s(10), Sats::MAX.checked_sub(s(9)).unwrap()));
    }
}
