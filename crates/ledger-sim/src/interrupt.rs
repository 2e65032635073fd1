//! SIGINT, SIGTERM or SIGHUP during a `run` (a CI job's timeout, a Ctrl-C), on any engine: the
//! first signal lets the seeds in flight finish and starts no other; the run then reports the
//! seeds it finished, a contiguous range from the first (their counterexamples shrunk and
//! written, `--junit` and `--json` as usual), says on stderr that it was stopped and ends with
//! status 128 + the signal's number. A second signal ends it at once, as it would have by
//! default (an `--exec` run's children are stopped first, and a throwaway PostgreSQL by its
//! watchdog). Without this, hours of seeds and the counterexamples they found were lost.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// The signals that stop a run.
const SIGNALS: [i32; 3] = [SIGINT, SIGTERM, SIGHUP];

/// Whether, and by which signal, the run was asked to stop.
pub struct Interrupt {
    stop: Arc<AtomicBool>,
    signal: Arc<AtomicUsize>,
}

impl Interrupt {
    /// Takes [`SIGNALS`] for the rest of the process: the first sets the flag, a second
    /// ends the process by its default action.
    pub fn install() -> anyhow::Result<Interrupt> {
        Interrupt::take(true)
    }

    /// As [`Interrupt::install`], but a second signal only sets the flag again: for a run
    /// that something else ends on the second (an `--exec` run, whose children a thread of
    /// `ledger_exec::child` stops first).
    pub fn install_without_default() -> anyhow::Result<Interrupt> {
        Interrupt::take(false)
    }

    fn take(second_ends_it: bool) -> anyhow::Result<Interrupt> {
        let stop = Arc::new(AtomicBool::new(false));
        let signal = Arc::new(AtomicUsize::new(0));
        for sig in SIGNALS {
            // In this order: the default action runs only when `stop` was already set, by an
            // earlier signal, before this one sets it.
            if second_ends_it {
                signal_hook::flag::register_conditional_default(sig, Arc::clone(&stop))?;
            }
            signal_hook::flag::register_usize(sig, Arc::clone(&signal), sig as usize)?;
            signal_hook::flag::register(sig, Arc::clone(&stop))?;
        }
        if second_ends_it {
            // Seeds in flight (a concurrent seed on PostgreSQL) can take a while: the first
            // signal is said at once, so that nobody takes the wait for a hang. (An `--exec`
            // run's signal thread says it there.)
            let mut signals = signal_hook::iterator::Signals::new(SIGNALS)?;
            std::thread::Builder::new().name("signal-notice".into()).spawn(move || {
                if let Some(sig) = signals.forever().next() {
                    let _ = writeln!(
                        std::io::stderr(),
                        "ledger-sim: {}: stopping: no seed starts now, and the run reports what it has done once \
                         the seeds in flight finish (a second signal ends it at once)",
                        name(sig)
                    );
                }
            })?;
        }
        Ok(Interrupt { stop, signal })
    }

    /// Set once a signal has come: no seed starts after it.
    pub fn flag(&self) -> &AtomicBool {
        &self.stop
    }

    /// The signal that stopped the run, if one did.
    pub fn signal(&self) -> Option<i32> {
        let sig = self.signal.load(Ordering::Relaxed);
        (self.stop.load(Ordering::Relaxed) && sig != 0).then_some(sig as i32)
    }
}

/// The name of `signal` (`SIGINT`).
pub fn name(signal: i32) -> &'static str {
    signal_hook::low_level::signal_name(signal).unwrap_or("a signal")
}

/// A run a signal stopped, after its report was printed: the command line exits 128 + `signal`.
#[derive(Debug)]
pub struct Interrupted {
    pub signal: i32,
    /// The seeds the report covers.
    pub ran: (u64, u64),
    /// The seeds asked for (`--seeds`); `None` for a soak, which asks for a time.
    pub asked: Option<(u64, u64)>,
    /// It came after every seed had run, or while the last ones ran, and the run has
    /// counterexamples: one whose shrinking it cut short is written as far as it got.
    pub while_shrinking: bool,
    /// The run was a `--shard` of a larger range: its rest is run without `--shard` (a
    /// report `merge-runs` takes to fill the shard's gap).
    pub sharded: bool,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Interrupted { signal, ran, asked, while_shrinking, sharded } = self;
        if *while_shrinking {
            return write!(
                f,
                "stopped by {} after every seed had run: the report covers seeds {}..{}, and a counterexample \
                 whose shrinking the signal cut short is written as far as it got (a run of its seed alone, \
                 `--seeds S..S+1`, shrinks it again)",
                name(*signal),
                ran.0,
                ran.1
            );
        }
        write!(f, "stopped by {}: the report covers seeds {}..{}", name(*signal), ran.0, ran.1)?;
        if let Some(asked) = asked {
            let without = if *sharded { ", without `--shard`," } else { "" };
            write!(f, " of {}..{} (`--seeds {}..{}`{without} runs the rest)", asked.0, asked.1, ran.1, asked.1)?;
        }
        Ok(())
    }
}

impl std::error::Error for Interrupted {}
