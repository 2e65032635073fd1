//! What a concurrent run says while a seed runs: a line on stderr every [`PROGRESS_EVERY`], as
//! the soak says its seeds, with the seed, its steps done of its steps, the calls answered and
//! the calls in flight, and, before the seed's history is checked, how many calls that is. A
//! seed of many steps ran for minutes with nothing said but the run's two start lines.

use std::time::{Duration, Instant};

/// How often a seed in progress says where it is.
pub(crate) const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Where one seed of a concurrent run is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Where {
    /// Steps (flows) done: finished, crashed or given up.
    pub(crate) done: u64,
    /// Calls answered (an answer dropped as a lost acknowledgement counts).
    pub(crate) answered: u64,
    /// Of those, the answers that were errors (the call is sent again): all of the latest
    /// when the server is down, which a count of answers alone hid.
    pub(crate) failed: u64,
    /// Calls sent and not answered yet.
    pub(crate) in_flight: u64,
}

/// The progress of one seed: when it started and when it last said where it was.
pub(crate) struct Progress {
    seed: u64,
    n_steps: u64,
    started: Instant,
    last: Instant,
}

impl Progress {
    pub(crate) fn new(seed: u64, n_steps: u64) -> Progress {
        let now = Instant::now();
        Progress { seed, n_steps, started: now, last: now }
    }

    /// Whether a line is due at `now`; when it is, the next is due [`PROGRESS_EVERY`] later.
    pub(crate) fn due(&mut self, now: Instant) -> bool {
        let due = now.duration_since(self.last) >= PROGRESS_EVERY;
        if due {
            self.last = now;
        }
        due
    }

    /// The line that says where the seed is.
    pub(crate) fn line(&self, at: Where) -> String {
        let failed = if at.failed > 0 { format!(" ({} of them errors)", at.failed) } else { String::new() };
        format!(
            "ledger-sim: seed {}: {} of {} steps done, {} calls answered{failed}, {} in flight ({} s)",
            self.seed,
            at.done,
            self.n_steps,
            at.answered,
            at.in_flight,
            self.started.elapsed().as_secs()
        )
    }

    /// Says where the seed is, if a line is due.
    pub(crate) fn tick(&mut self, at: impl FnOnce() -> Where) {
        if self.due(Instant::now()) {
            ledger_exec::say!("{}", self.line(at()));
        }
    }

    /// Before the seed's history of `n_calls` calls is checked: said when the seed has run long
    /// enough to have said where it was, so that the check that follows is not taken for a hang.
    pub(crate) fn checking(&self, n_calls: usize) {
        if self.started.elapsed() >= PROGRESS_EVERY {
            ledger_exec::say!(
                "ledger-sim: seed {}: traffic done after {} s; checking its history of {n_calls} calls",
                self.seed,
                self.started.elapsed().as_secs()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_due_every_period_and_says_where_the_seed_is() {
        let mut p = Progress::new(3, 200_000);
        let at = |secs: f64| p.started + Duration::from_secs_f64(secs);
        let (t1, t2, t3, t4) = (at(4.9), at(5.5), at(10.0), at(10.5));
        assert!(!p.due(t1));
        assert!(p.due(t2));
        assert!(!p.due(t3));
        assert!(p.due(t4));
        let line = p.line(Where { done: 1_234, answered: 2_900, failed: 0, in_flight: 32 });
        assert!(
            line.starts_with("ledger-sim: seed 3: 1234 of 200000 steps done, 2900 calls answered, 32 in flight ("),
            "{line}"
        );
        let line = p.line(Where { done: 1_234, answered: 2_900, failed: 16, in_flight: 32 });
        assert!(
            line.starts_with(
                "ledger-sim: seed 3: 1234 of 200000 steps done, 2900 calls answered (16 of them errors), 32 in flight ("
            ),
            "{line}"
        );
    }
}
