//! Coverage that steers (`run --steer`): rare marks reached on more seeds within the same seed
//! budget, and a steered seed's run a function of its number alone.

use ledger_simulator::gen::SchedulerKind;
use ledger_simulator::report::{continue_seeds, run_seeds, EngineKind, EngineSpec, SeedsRun};
use ledger_simulator::scenario::Scenario;
use ledger_simulator::steer::Steering;

const REFERENCE: EngineSpec = EngineSpec { kind: EngineKind::Reference, mutant: None };

fn run(seeds: (u64, u64), steer: bool) -> SeedsRun {
    run_seeds(REFERENCE, &Scenario::small(), seeds, SchedulerKind::Random, false, false, steer, None).unwrap()
}

/// Over seeds 0..200 of the small scenario the plain swarm reaches `window_rollover_in_flight`
/// on 31 seeds, the rarest mark; steered, on 43 (measured). Every mark steering boosted is
/// reached on more seeds than without it.
#[test]
fn steering_reaches_the_rarest_mark_on_43_seeds_of_200_where_the_plain_swarm_reaches_31() {
    let (plain, steered) = (run((0, 200), false), run((0, 200), true));
    let rare = "window_rollover_in_flight";
    let (p, s) = (plain.seeds_reaching[rare], steered.seeds_reaching[rare]);
    let rarest = plain.seeds_reaching.iter().min_by_key(|(_, n)| **n).unwrap();
    assert_eq!(*rarest.0, rare, "the plain swarm's rarest mark: {:?}", plain.seeds_reaching);
    assert!(s >= p + 8, "{rare}: {p} seeds plain, {s} steered");
    let report = &steered.steering.as_ref().unwrap().report;
    assert!(report.boosted.contains_key(rare), "{:?}", report.boosted);
    for (mark, boost) in &report.boosted {
        let (p, s) = (plain.seeds_reaching[mark], steered.seeds_reaching[mark]);
        assert!(s > p, "{mark} boosted ({boost:?}) but reached on {s} seeds steered, {p} plain");
    }
    assert!(steered.never_reached().is_empty() && plain.never_reached().is_empty());
}

/// A steered seed runs the same whatever range it is run in and however many threads run it:
/// a range run in two parts, the second with the steering forgotten (as `--seed N --steer`, a
/// shard or a soak would start), and on one thread, folds to the same trace hash.
#[test]
fn a_steered_seed_depends_on_its_number_alone() {
    let whole = run((0, 200), true);
    let s = Scenario::small();
    let mut parts = SeedsRun::steered();
    continue_seeds(&mut parts, REFERENCE, &s, (0, 77), SchedulerKind::Random, false, None, None).unwrap();
    parts.steering = Some(Steering::new());
    continue_seeds(&mut parts, REFERENCE, &s, (77, 200), SchedulerKind::Random, true, None, None).unwrap();
    assert_eq!(parts.trace_hash, whole.trace_hash);
    assert_eq!(parts.seeds_reaching, whole.seeds_reaching);
    assert!(parts.steering.unwrap().report.warmup_seeds > 0);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let one = pool.install(|| run((0, 200), true));
    assert_eq!(one.trace_hash, whole.trace_hash);
    assert_ne!(whole.trace_hash, run((0, 200), false).trace_hash, "steering changes the aimed seeds");
    // The plain seeds are the plain swarm's own.
    assert_eq!(run((0, 32), true).trace_hash, run((0, 32), false).trace_hash);
}
