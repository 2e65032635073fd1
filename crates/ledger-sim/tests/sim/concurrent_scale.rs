//! A long concurrent exec run: memory in proportion to its steps, every call judged, and a word
//! on stderr every few seconds. The recipe README gives implementers (`--concurrency 32
//! --lost-ack 0.05` on the default scenario, 200,000 steps) grew past 17 GB in 3.5 minutes
//! with nothing said but its two start lines: the linearizability search of its history copied
//! the reference for every attempt and kept a copy every 64 calls it placed, so its memory and
//! time grew with the square of the steps (10,000 steps: 733 MB; 20,000: 1.9 GB and 22 s).

use std::process::Command;
use std::time::Instant;

use crate::common::{json, root, Ended, Running, CHILD_LIMIT, SIM};

/// `ledger-sim run --engine exec --exec ENGINE --concurrency 32 --lost-ack 0.05 --seed 0 --json`
/// with `more` arguments, from the repository's root, killed (and the test failed) once its
/// peak resident memory passes `bound_kb`: how it ended and its peak in kB.
#[cfg(target_os = "linux")]
fn concurrent_run(engine: &str, more: &[&str], bound_kb: u64) -> (Ended, u64) {
    let mut args =
        vec!["run", "--engine", "exec", "--exec", engine, "--concurrency", "32", "--lost-ack", "0.05", "--seed", "0"];
    args.extend_from_slice(more);
    args.push("--json");
    let mut cmd = Command::new(SIM);
    cmd.args(&args).current_dir(root()).env_remove("DATABASE_URL");
    let what = format!("ledger-sim {}", args.join(" "));
    let (ended, peak) = Running::spawn(&mut cmd).wait_watching_memory(Instant::now(), CHILD_LIMIT, bound_kb, &what);
    assert_eq!(ended.code, 0, "{what}: {}{}", ended.stdout, ended.stderr);
    (ended, peak)
}

/// 10,000 steps, 40,000 and the default scenario's 200,000: each peak under a bound the old
/// search passed at 10,000 steps already, and growing no faster than the steps (a fixed part
/// plus a part per step: 4 times the steps, less than 4 times the peak), where it grew with
/// their square. Every call of the longest run is judged: its whole history searched within
/// the run's budget (`linearizable_whole`), not given up on for its length.
#[cfg(target_os = "linux")]
#[test]
fn concurrent_memory_grows_with_the_steps_not_with_their_square() {
    let serve = format!("'{SIM}' serve");
    let (_, peak_10k) = concurrent_run(&serve, &["--steps", "10000"], 400_000);
    let (_, peak_40k) = concurrent_run(&serve, &["--steps", "40000"], 400_000);
    let (ended, peak_200k) = concurrent_run(&serve, &[], 1_000_000);
    assert!(peak_10k > 5_000, "the peak of 10,000 steps, {peak_10k} kB, was not seen");
    assert!(peak_40k < 4 * peak_10k, "10,000 steps peaked at {peak_10k} kB, 40,000 at {peak_40k} kB");
    assert!(peak_200k < 5 * peak_40k, "40,000 steps peaked at {peak_40k} kB, 200,000 at {peak_200k} kB");
    let r = json(&ended.stdout);
    assert_eq!(r["requests"], 200_000, "{}", ended.stdout);
    assert_eq!(r["coverage"]["linearizable_whole"], 1, "{}{}", ended.stdout, ended.stderr);
    assert!(r["coverage"].get("linearizability_undecided").is_none(), "{}", ended.stdout);
    assert!(!ended.stderr.contains("not judged"), "{}", ended.stderr);
}

/// A concurrent run says where each seed is at most every few seconds: the seed, its steps
/// done of its steps, the calls answered and in flight; then that it checks the history.
/// The served reference answers through a pipe that waits a millisecond after each answer,
/// so that 3,000 steps (about 7,000 calls) take more than those few seconds on any machine.
#[cfg(target_os = "linux")]
#[test]
fn a_long_concurrent_run_says_where_it_is() {
    let slow = format!("'{SIM}' serve | while IFS= read -r line; do printf '%s\\n' \"$line\"; sleep 0.001; done");
    let started = Instant::now();
    let (ended, _) = concurrent_run(&slow, &["--users", "200", "--steps", "3000"], 1_000_000);
    let took = started.elapsed().as_secs();
    let progress: Vec<&str> = ended.stderr.lines().filter(|l| l.contains(" steps done, ")).collect();
    assert!(!progress.is_empty(), "nothing said in {took} s: {}", ended.stderr);
    for line in &progress {
        let rest = line.strip_prefix("ledger-sim: seed 0: ").unwrap_or_else(|| panic!("{line}"));
        let (done, rest) = rest.split_once(" of 3000 steps done, ").unwrap_or_else(|| panic!("{line}"));
        let (answered, rest) = rest.split_once(" calls answered, ").unwrap_or_else(|| panic!("{line}"));
        let (in_flight, rest) = rest.split_once(" in flight (").unwrap_or_else(|| panic!("{line}"));
        let n = |s: &str| s.parse::<u64>().unwrap_or_else(|e| panic!("{line}: {e}"));
        assert!(n(done) <= 3_000 && n(answered) > 0 && n(in_flight) <= 64, "{line}");
        assert!(rest.ends_with(" s)"), "{line}");
    }
    // One line per period at most: 5 s apart, so no more than the run's seconds allow.
    assert!(progress.len() as u64 <= took / 5 + 1, "{} lines in {took} s: {}", progress.len(), ended.stderr);
    let checking = ended.stderr.lines().find(|l| l.contains("checking its history of"));
    let checking = checking.unwrap_or_else(|| panic!("{}", ended.stderr));
    assert!(checking.starts_with("ledger-sim: seed 0: traffic done after "), "{checking}");
    let r = json(&ended.stdout);
    assert_eq!(r["requests"], 3_000, "{}", ended.stdout);
}
