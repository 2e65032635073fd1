//! What the loom models share: a trace of the statements one execution ran, in the order loom ran
//! them, and a report of the executions whose end state broke an invariant. [`pg`] holds what the
//! two models of `ledger-pg`'s locking share (`loom_pg_protocol.rs` and `loom_pg_batches.rs`).
//!
//! The trace and the report are `std` types on purpose: loom does not see them, so they add no
//! interleavings. That is sound because loom runs the threads of one execution one at a time on
//! the test's own OS thread, switching only at loom operations; a push made right after a
//! statement is therefore in the order the statements ran.

// Every `loom_*.rs` test file declares this module; only the `ledger-pg` models use `pg`.
#[allow(dead_code)]
pub mod pg;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The statements one execution ran, as `who: what` lines.
#[derive(Clone, Default)]
pub struct Trace(Arc<Mutex<Vec<String>>>);

impl Trace {
    /// Appends one statement done by `who`.
    pub fn step(&self, who: &str, what: impl AsRef<str>) {
        let line = format!("{who}: {}", what.as_ref());
        self.0.lock().unwrap().push(line);
    }

    /// The statements so far, in the order they ran.
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// What a model run explored and found.
#[derive(Debug)]
pub struct Report {
    pub name: &'static str,
    pub preemption_bound: usize,
    pub executions: u64,
    pub violating_executions: u64,
    /// The first violation found: what broke, and the interleaving that broke it.
    pub first: Option<(String, Vec<String>)>,
    pub elapsed: Duration,
}

impl Report {
    /// Prints the summary and, when one was found, the first counterexample.
    pub fn print(&self) {
        println!(
            "{}: preemption bound {}, {} executions, {} violating, {:.1?}",
            self.name, self.preemption_bound, self.executions, self.violating_executions, self.elapsed
        );
        if let Some((what, lines)) = &self.first {
            println!("  first counterexample: {what}");
            for (step_idx, line) in lines.iter().enumerate() {
                println!("    {:>2}. {line}", step_idx + 1);
            }
        }
    }
}

#[derive(Default)]
struct Tally {
    executions: u64,
    violating_executions: u64,
    first: Option<(String, Vec<String>)>,
}

/// Runs `model` over every interleaving within `preemption_bound` preemptions.
///
/// `model` runs one execution and returns `Some(description)` when its end state breaks the
/// property under test. Violations do not stop the exploration: they are counted, and the first
/// one is kept with its trace, so a test can assert that loom *does* find a known bug.
pub fn explore<F>(name: &'static str, preemption_bound: usize, model: F) -> Report
where
    F: Fn(&Trace) -> Option<String> + Send + Sync + 'static,
{
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(preemption_bound);
    let start = Instant::now();
    {
        let tally = Arc::clone(&tally);
        builder.check(move || {
            let trace = Trace::default();
            let violation = model(&trace);
            let mut tally = tally.lock().unwrap();
            tally.executions += 1;
            if let Some(what) = violation {
                tally.violating_executions += 1;
                if tally.first.is_none() {
                    tally.first = Some((what, trace.lines()));
                }
            }
        });
    }
    let tally = Arc::try_unwrap(tally).ok().expect("the model closure is dropped after check").into_inner().unwrap();
    Report {
        name,
        preemption_bound,
        executions: tally.executions,
        violating_executions: tally.violating_executions,
        first: tally.first,
        elapsed: start.elapsed(),
    }
}
