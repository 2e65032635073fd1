//! Replaying the conformance vectors on an in-process implementation: every step's outcome or
//! refusal, the balances after it and the identity's standing compared with the vector, I1-I6
//! checked on the journal after every step, and the drain (I6) once every deadline has
//! passed. The reference `Ledger` and `SharedLedger` are held to the vectors this way; a
//! database engine, which answers asynchronously, replays them in its own test.

use ledger_core::variant::Variant;
use ledger_core::{Command, Identity, Ledger, Movement, Outcome, Pubkey, Refusal, TimeMs, Totals};

use crate::conformance::{named_pubkey, Balances, Expect, Segment, Standing};
use crate::{Checker, Observed};

/// What a replay needs of an implementation: apply a command, read the balance sheet and an
/// identity's standing.
pub trait Implementation {
    /// Applies `command` at `now`, appending the movements it made to `journal`.
    fn apply(&mut self, command: &Command, now: TimeMs, journal: &mut Vec<Movement>) -> Result<Outcome, Refusal>;
    /// The balance sheet.
    fn totals(&self) -> Totals;
    /// `pubkey`'s standing, if it has an identity.
    fn identity(&self, pubkey: &Pubkey) -> Option<Identity>;
}

impl<V: Variant> Implementation for Ledger<V> {
    fn apply(&mut self, command: &Command, now: TimeMs, journal: &mut Vec<Movement>) -> Result<Outcome, Refusal> {
        Ledger::apply(self, command, now, journal)
    }

    fn totals(&self) -> Totals {
        Ledger::totals(self)
    }

    fn identity(&self, pubkey: &Pubkey) -> Option<Identity> {
        Ledger::identity(self, pubkey)
    }
}

/// Replays `seg` on `engine`, which must be at genesis under the segment's config. Returns
/// one line per difference from the vector and per invariant broken, each naming
/// `label:line (case)`; empty when the implementation conforms.
pub fn replay(seg: &Segment, label: &str, engine: &mut impl Implementation) -> Vec<String> {
    let mut checker = Checker::new(&seg.header.config);
    let mut failures = Vec::new();
    for (line, step) in &seg.steps {
        let mut journal: Vec<Movement> = Vec::new();
        let got = Expect::from(engine.apply(&step.command, step.now, &mut journal));
        // The caller's facts; a refused credit is no payment.
        match (&step.command, &got) {
            (Command::SetTier { pubkey, tier }, _) => checker.on_tier(*pubkey, *tier, step.now),
            (Command::Credit { payment_id, paid_sats }, Expect::Outcome(_)) => {
                checker.on_payment(*payment_id, *paid_sats)
            }
            _ => {}
        }
        checker.on_movements(&journal, step.now);
        checker.after_step(&Observed::from(engine.totals()));
        let at = format!("{label}:{line} ({})", seg.header.case);
        if got != step.expect {
            failures.push(format!("{at}: expected {:?}, got {got:?}", step.expect));
        }
        let totals = Balances::from(engine.totals());
        if totals != step.totals {
            failures.push(format!("{at}: expected totals {:?}, has {totals:?}", step.totals));
        }
        let identity: Option<Standing> = named_pubkey(&step.command).and_then(|p| engine.identity(&p)).map(Into::into);
        if identity != step.identity {
            failures.push(format!("{at}: expected identity {:?}, has {identity:?}", step.identity));
        }
    }
    // The drain (I6): once every deadline has passed, expire leaves nothing held.
    let last = seg.steps.iter().map(|(_, s)| s.now).max().unwrap_or_default();
    let after = last.plus_ms(seg.header.config.reservation_ttl_ms).plus_ms(1);
    let mut journal = Vec::new();
    if let Err(refusal) = engine.apply(&Command::Expire, after, &mut journal) {
        failures.push(format!("{label} ({}): the final expire was refused: {refusal}", seg.header.case));
    }
    checker.on_movements(&journal, after);
    checker.after_step(&Observed::from(engine.totals()));
    checker.finish();
    failures.extend(checker.violations().iter().map(|v| format!("{label} ({}): {v}", seg.header.case)));
    failures
}
