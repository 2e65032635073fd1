//! Property tests of the reference engine: random command sequences, with duplicates,
//! out-of-order commands and clock jumps, keep every invariant the checker can see without
//! a caller (I1, I2, I4, I5 after every command; I5 and I6 after the drain).

use ledger_core::{Command, Config, Ledger, Movement, PaymentId, Pubkey, RequestId, Sats, Tier, TimeMs, DAY_MS};
use ledger_harness::Checker;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestError, TestRunner};
use proptest_state_machine::{prop_state_machine, ReferenceStateMachine, StateMachineTest};

const N_USERS: u64 = 5;
const N_REQUESTS: u64 = 12;
const N_PAYMENTS: u64 = 6;
const T0: TimeMs = TimeMs(1_700_000_000_000);

/// One step of a random history.
#[derive(Clone, Debug)]
pub enum Step {
    /// A command.
    Cmd(Command),
    /// The clock moves forward.
    Advance(u64),
}

/// The abstract state: nothing but how far the history has gone (commands are drawn from
/// small id ranges so repeats and out-of-order commands are common).
#[derive(Clone, Debug, Default)]
pub struct Model;

fn pubkey() -> impl Strategy<Value = Pubkey> {
    (0..N_USERS).prop_map(ledger_harness::user_pubkey)
}

fn sats(max: u64) -> impl Strategy<Value = Sats> {
    (0..=max).prop_map(|v| Sats::new(v).unwrap())
}

fn tier() -> impl Strategy<Value = Tier> {
    prop::sample::select(Tier::ALL.to_vec())
}

/// Random steps; a pure function of nothing, so histories shrink freely.
fn step() -> BoxedStrategy<Step> {
    let request = (0..N_REQUESTS).prop_map(RequestId);
    prop_oneof![
        2 => (pubkey(), tier()).prop_map(|(pubkey, tier)| Step::Cmd(Command::SetTier { pubkey, tier })),
        4 => (request.clone(), pubkey(), sats(300)).prop_map(|(request_id, pubkey, estimated_sats)| Step::Cmd(Command::Decide { request_id, pubkey, estimated_sats })),
        2 => (request.clone(), pubkey(), sats(300)).prop_map(|(request_id, pubkey, amount_sats)| Step::Cmd(Command::ReservePartial { request_id, pubkey, amount_sats })),
        2 => request.clone().prop_map(|request_id| Step::Cmd(Command::Release { request_id })),
        3 => (request, sats(400)).prop_map(|(request_id, actual_sats)| Step::Cmd(Command::Record { request_id, actual_sats })),
        2 => ((0..N_PAYMENTS).prop_map(PaymentId), sats(3_000)).prop_map(|(payment_id, paid_sats)| Step::Cmd(Command::Credit { payment_id, paid_sats })),
        1 => Just(Step::Cmd(Command::Expire)),
        2 => prop::sample::select(vec![1, 1_000, 600_000, 600_001, DAY_MS - 1, DAY_MS, DAY_MS + 1, 3 * DAY_MS]).prop_map(Step::Advance),
    ]
    .boxed()
}

impl ReferenceStateMachine for Model {
    type State = Model;
    type Transition = Step;

    fn init_state() -> BoxedStrategy<Model> {
        Just(Model).boxed()
    }

    fn transitions(_: &Model) -> BoxedStrategy<Step> {
        step()
    }

    fn apply(state: Model, _: &Step) -> Model {
        state
    }
}

/// A ledger under test with its checker; `broken` makes credits ignore their payment id
/// (a test-only bug that the checker must catch).
pub struct Harness {
    ledger: Ledger,
    checker: Checker,
    now: TimeMs,
    journal: Vec<Movement>,
    broken: bool,
    n_broken_credits: u64,
}

impl Harness {
    fn new(config: Config, broken: bool) -> Harness {
        Harness {
            ledger: Ledger::new(config),
            checker: Checker::new(&config),
            now: T0,
            journal: Vec::new(),
            broken,
            n_broken_credits: 0,
        }
    }

    fn step(&mut self, step: &Step) {
        match step {
            Step::Advance(ms) => self.now = self.now.plus_ms(*ms),
            Step::Cmd(cmd) => {
                if let Command::Credit { payment_id, paid_sats } = cmd {
                    self.checker.on_payment(*payment_id, *paid_sats);
                }
                let mut effective = cmd.clone();
                if let (true, Command::Credit { payment_id, .. }) = (self.broken, &mut effective) {
                    // The bug: every delivery looks like a new payment to the ledger.
                    self.n_broken_credits += 1;
                    *payment_id = PaymentId(1_000_000 + self.n_broken_credits);
                }
                self.journal.clear();
                let result = self.ledger.apply(&effective, self.now, &mut self.journal);
                if self.broken {
                    for m in &mut self.journal {
                        if let (Movement::Credit { payment_id, .. }, Command::Credit { payment_id: original, .. }) =
                            (m, cmd)
                        {
                            *payment_id = *original;
                        }
                    }
                }
                if let (Ok(_), Command::SetTier { pubkey, tier }) = (&result, cmd) {
                    self.checker.on_tier(*pubkey, *tier, self.now);
                }
                self.checker.on_movements(&self.journal, self.now);
            }
        }
        let observed = ledger_harness::Observed::of(&self.ledger);
        self.checker.after_step(&observed);
    }

    /// Traffic stops, deadlines pass, the sweeper runs: nothing may be left.
    fn drain(&mut self) {
        let ttl = self.ledger.config().reservation_ttl_ms;
        self.step(&Step::Advance(ttl + 1));
        self.step(&Step::Cmd(Command::Expire));
        self.checker.finish();
    }

    fn violations(&self) -> String {
        self.checker.violations().iter().map(|v| v.to_string()).collect::<Vec<_>>().join("\n")
    }
}

fn small_config() -> Config {
    Config { pool_initial_sats: Sats::new(700).unwrap(), ..Config::default() }
}

/// The reference engine under random histories.
pub struct ReferenceTest;

impl StateMachineTest for ReferenceTest {
    type SystemUnderTest = Harness;
    type Reference = Model;

    fn init_test(_: &Model) -> Harness {
        Harness::new(small_config(), false)
    }

    fn apply(mut h: Harness, _: &Model, step: Step) -> Harness {
        h.step(&step);
        h
    }

    fn check_invariants(h: &Harness, _: &Model) {
        assert!(h.checker.violations().is_empty(), "{}", h.violations());
    }

    fn teardown(mut h: Harness) {
        h.drain();
        assert!(h.checker.violations().is_empty(), "after the drain: {}", h.violations());
    }
}

prop_state_machine! {
    #![proptest_config(ProptestConfig { cases: 512, max_shrink_iters: 4096, ..ProptestConfig::default() })]
    #[test]
    fn reference_keeps_every_invariant(sequential 1..80 => ReferenceTest);
}

/// The checker bites: a ledger whose credits ignore their payment id is caught, and
/// proptest shrinks the failure to the two deliveries of one payment that show it.
#[test]
fn checker_catches_a_broken_engine_and_shrinks_it() {
    let mut runner =
        TestRunner::new(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() });
    let result = runner.run(&Model::sequential_strategy(1..80), |(_, steps, seen)| {
        let mut h = Harness::new(small_config(), true);
        for s in &steps {
            // The strategy's first shrink drops the transitions a run never reached.
            if let Some(seen) = &seen {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            h.step(s);
        }
        h.drain();
        if h.checker.violations().is_empty() {
            Ok(())
        } else {
            Err(TestCaseError::fail(h.violations()))
        }
    });
    match result {
        Err(TestError::Fail(reason, (_, steps, _))) => {
            let credits = steps.iter().filter(|s| matches!(s, Step::Cmd(Command::Credit { .. }))).count();
            assert_eq!(steps.len(), 2, "shrunk to {steps:?}: {reason}");
            assert_eq!(credits, 2, "{steps:?}");
            assert!(reason.message().contains("I2"), "{reason}");
        }
        other => panic!("the broken engine was not caught: {other:?}"),
    }
}

/// `Ledger::reset` and `Checker::reset` keep only their tables' room: after any history, a
/// reset pair answers a second history exactly as a new pair does, outcome by outcome, with
/// the same journal, the same snapshot and the same violations.
#[test]
fn a_reset_ledger_and_checker_answer_as_new_ones() {
    let history = || prop::collection::vec(step(), 0..60);
    let mut runner =
        TestRunner::new(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() });
    runner
        .run(&(history(), history(), 1u64..2_000), |(first, second, pool)| {
            let config = Config { pool_initial_sats: Sats::new(pool).unwrap(), ..Config::default() };
            // A broken first history leaves violations and stray books behind.
            let mut used = Harness::new(small_config(), true);
            for s in &first {
                used.step(s);
            }
            used.ledger.reset(config);
            used.checker.reset(&config);
            (used.now, used.broken) = (T0, false);
            used.journal.clear();
            let mut new = Harness::new(config, false);
            for s in &second {
                used.step(s);
                new.step(s);
                prop_assert_eq!(&used.journal, &new.journal);
                prop_assert_eq!(used.ledger.snapshot(), new.ledger.snapshot());
                prop_assert_eq!(used.violations(), new.violations());
            }
            used.drain();
            new.drain();
            prop_assert_eq!(used.violations(), new.violations());
            Ok(())
        })
        .unwrap();
}
